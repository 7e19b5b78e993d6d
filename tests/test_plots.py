"""Figures: valid PNGs, written atomically, that reflect the mechanism drawn."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import matplotlib
import matplotlib.image as mimage
import numpy as np
import pytest

from diffmech import plots
from diffmech.errors import DiffmechError
from diffmech.outcome import Outcome
from diffmech.priors import Uniform
from diffmech.settings.single_item import SingleItem

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRID = 41  # small grid keeps the tests fast


class SecondPrice(eqx.Module):
    """Stand-in mechanism: highest bid wins (ties split), pays max(other bid, reserve)."""

    reserve: float = 0.0

    def __call__(self, reports):
        bids = reports[..., 0]
        win = (bids >= jnp.max(bids, axis=1, keepdims=True)) & (bids >= self.reserve)
        alloc = win / jnp.maximum(win.sum(axis=1, keepdims=True), 1)
        n = bids.shape[1]
        others = jnp.where(jnp.eye(n, dtype=bool)[None], -jnp.inf, bids[:, None, :])
        price = jnp.maximum(jnp.max(others, axis=-1), self.reserve)
        return Outcome(alloc=alloc[..., None], payments=alloc * price)


class Constant(eqx.Module):
    """Stand-in mechanism that never allocates and never charges."""

    def __call__(self, reports):
        b, n, _ = reports.shape
        return Outcome(alloc=jnp.zeros((b, n, 1)), payments=jnp.zeros((b, n)))


@pytest.fixture(scope="module")
def setting():
    return SingleItem([Uniform(0.0, 1.0), Uniform(0.0, 2.0)])


def assert_png(path, min_bytes=5_000):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > min_bytes
    img = mimage.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    # nothing left behind by the atomic write
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    return img


def first_panel(img):
    """A crop well inside the bidder-1 allocation heatmap of a one-row map figure."""
    h, w = img.shape[:2]
    return img[int(0.25 * h): int(0.70 * h), int(0.08 * w): int(0.18 * w), :3]


def n_colours(crop):
    return len(np.unique(np.round(crop.reshape(-1, 3), 3), axis=0))


# ---------------------------------------------------------------------------------------------
# plot_maps


def test_maps_png_and_reflects_mechanism(tmp_path, setting):
    backend = matplotlib.rcParams["backend"]
    p_sp = plots.plot_maps(SecondPrice(), setting, tmp_path / "a" / "sp.png", grid=GRID)
    p_res = plots.plot_maps(SecondPrice(reserve=0.5), setting, tmp_path / "a" / "res.png", grid=GRID)
    p_const = plots.plot_maps(Constant(), setting, tmp_path / "a" / "const.png", grid=GRID)
    assert p_sp == tmp_path / "a" / "sp.png"
    img_sp, img_res, img_const = (assert_png(p) for p in (p_sp, p_res, p_const))
    assert matplotlib.rcParams["backend"] == backend  # no global backend switch

    assert img_sp.shape == img_res.shape
    assert not np.array_equal(img_sp, img_res)
    # the crop lies inside the heatmap: uniform for the constant mechanism, two-valued
    # (bidder 1 wins below the diagonal v2 = v1, loses above) for second price
    assert n_colours(first_panel(img_const)) == 1
    assert n_colours(first_panel(img_sp)) >= 2
    assert not np.array_equal(first_panel(img_sp), first_panel(img_const))


def test_maps_grid_orientation_and_one_batched_call(setting):
    calls = []

    class Recording(SecondPrice):
        def __call__(self, reports):
            calls.append(reports.shape)
            return super().__call__(reports)

    lo, hi = plots._check_two_bidders(setting)
    data = plots._grid_outcomes(Recording(), lo, hi, 5)
    assert calls == [(25, 2, 1)]
    a1 = data["alloc1"]
    assert a1.shape == (5, 5)
    # rows follow v2 in [0, 2], columns v1 in [0, 1]: bidder 1 wins only where v1 > v2
    assert a1[0, -1] == 1.0  # v2 = 0, v1 = 1
    assert a1[-1, 0] == 0.0  # v2 = 2, v1 = 0
    assert a1[-1, -1] == 0.0  # v2 = 2 > v1 = 1
    assert np.allclose(data["alloc1"] + data["alloc2"], 1.0)
    # the winner with v2 = 0, v1 = 1 pays bidder 2's bid 0; bidder 2 at (v1=0, v2=2) pays 0
    assert data["pay1"][0, -1] == 0.0
    assert np.isclose(data["pay2"][-1, -1], 1.0)


def test_maps_with_reference_row(tmp_path, setting):
    one = plots.plot_maps(SecondPrice(), setting, tmp_path / "one.png", grid=GRID)
    two = plots.plot_maps(SecondPrice(), setting, tmp_path / "two.png", grid=GRID,
                          reference=SecondPrice(reserve=0.5), label="learned", reference_label="Myerson")
    img1, img2 = assert_png(one), assert_png(two)
    assert img2.shape[0] > 1.5 * img1.shape[0]  # a second row
    assert img2.shape[1] == img1.shape[1]


def test_maps_reject_three_bidders(tmp_path):
    three = SingleItem([Uniform(0, 1)] * 3)
    with pytest.raises(DiffmechError, match="2 bidders and one-dimensional types; this one has 3"):
        plots.plot_maps(SecondPrice(), three, tmp_path / "x.png", grid=GRID)
    assert not (tmp_path / "x.png").exists()


def test_maps_reject_bad_grid(tmp_path, setting):
    with pytest.raises(DiffmechError, match="grid"):
        plots.plot_maps(SecondPrice(), setting, tmp_path / "x.png", grid=1)


# ---------------------------------------------------------------------------------------------
# plot_training


def _history(n):
    return [
        {
            "step": 10 * i,
            "revenue": 0.3 + 0.01 * i,
            "regret": [1e-2 / (i + 1), 0.0 if i == 0 else 2e-2 / (i + 1)],
            "ir": [0.0, 1e-3],
            "lam": {"regret": [1.0 + i, 2.0 + i], "ir": [0.0, 0.5]},
            "rho": 1.0 * (i + 1),
            "loss": -0.3 + 0.001 * i,
        }
        for i in range(n)
    ]


def test_training_full_history(tmp_path):
    out = plots.plot_training(_history(20), tmp_path / "deep" / "dir" / "train.png",
                              reference={"Myerson": 0.4167})
    assert out == tmp_path / "deep" / "dir" / "train.png"
    assert_png(out)


def test_training_missing_keys_and_length_one(tmp_path):
    # IC by construction: no regret, no multipliers, no rho; jax / numpy scalars accepted
    hist = [
        {"step": 0, "revenue": jnp.float32(0.2), "loss": np.float64(-0.2), "regret": None, "lam": {}},
        {"step": 1, "revenue": 0.25, "loss": -0.25},
    ]
    assert_png(plots.plot_training(hist, tmp_path / "ic.png"))
    assert_png(plots.plot_training(hist[:1], tmp_path / "one.png", reference={"Myerson": 0.42}))
    assert_png(plots.plot_training(_history(1), tmp_path / "one_full.png"))
    assert_png(plots.plot_training([], tmp_path / "empty.png"))


def test_training_overwrites_atomically(tmp_path):
    out = tmp_path / "train.png"
    out.write_bytes(b"old")
    plots.plot_training(_history(3), out)
    assert_png(out)


# ---------------------------------------------------------------------------------------------
# plot_revenue_bars


def test_revenue_bars(tmp_path):
    results = {"learned": 0.41, "myerson": 0.4167, "second_price_best_reserve": 0.40}
    out = plots.plot_revenue_bars(results, tmp_path / "bars.png", errors={"learned": 0.01})
    assert out == tmp_path / "bars.png"
    img = assert_png(out)
    other = assert_png(plots.plot_revenue_bars({"learned": 0.1, "myerson": 0.4167,
                                                 "second_price_best_reserve": 0.40},
                                                tmp_path / "bars2.png"))
    assert img.shape != other.shape or not np.array_equal(img, other)
    assert_png(plots.plot_revenue_bars({}, tmp_path / "none.png"), min_bytes=1_000)


# ---------------------------------------------------------------------------------------------
# plot_item_maps: one buyer, two items


def _setting_from(cfg):
    import diffmech

    return diffmech.setting_from_config(cfg)


U01 = {"dist": "uniform", "low": 0.0, "high": 1.0}


@pytest.fixture(scope="module")
def mv_setting():
    return _setting_from({"kind": "multi_item", "prior": U01, "n_agents": 1, "n_items": 2, "valuation": "additive"})


@pytest.fixture(scope="module")
def units_setting():
    return _setting_from({"kind": "identical_items", "n_items": 2, "prior": U01})


def _mech(setting, kind):
    from diffmech.mechanisms import mechanism_from_config

    return mechanism_from_config(setting, {"kind": kind})


def test_item_map_arrays_match_manelli_vincent_rule(mv_setting):
    calls = []
    mv = _mech(mv_setting, "manelli_vincent")

    class Recording(eqx.Module):
        def __call__(self, reports):
            calls.append(reports.shape)
            return mv(reports)

    data = plots.item_map_arrays(Recording(), mv_setting, grid=11)  # axes 0, 0.1, ..., 1
    assert calls == [(121, 1, 2)]
    assert np.allclose(data["v1"], np.linspace(0, 1, 11)) and np.allclose(data["v2"], np.linspace(0, 1, 11))
    bundle = (4.0 - np.sqrt(2.0)) / 3.0

    def at(v1, v2):  # rows follow v2, columns v1
        r, c = round(v2 * 10), round(v1 * 10)
        return data["q1"][r, c], data["q2"][r, c], data["t"][r, c]

    assert np.allclose(at(0.9, 0.1), (1.0, 0.0, 2.0 / 3.0), atol=1e-6)  # item 1 alone at 2/3
    assert np.allclose(at(0.1, 0.9), (0.0, 1.0, 2.0 / 3.0), atol=1e-6)  # item 2 alone (orientation)
    assert np.allclose(at(0.9, 0.9), (1.0, 1.0, bundle), atol=1e-6)  # the bundle at (4 − √2)/3
    assert np.allclose(at(0.1, 0.1), (0.0, 0.0, 0.0), atol=1e-6)  # nothing
    assert all(np.isfinite(data[k]).all() for k in ("q1", "q2", "t"))  # no masking off the cone


def test_item_map_arrays_mask_outside_cone_for_identical_units(units_setting):
    data = plots.item_map_arrays(_mech(units_setting, "uniform_price"), units_setting, grid=11)
    V1, V2 = np.meshgrid(data["v1"], data["v2"], indexing="xy")
    outside = V2 > V1
    assert outside.sum() == 55
    for k in ("q1", "q2", "t"):
        assert np.isnan(data[k][outside]).all()
        assert np.isfinite(data[k][~outside]).all()
    # uniform price p = 1/2: at (0.9, 0.1) one unit for 1/2, at (0.9, 0.6) both for 1
    assert (data["q1"][1, 9], data["q2"][1, 9], data["t"][1, 9]) == pytest.approx((1.0, 0.0, 0.5))
    assert (data["q1"][6, 9], data["q2"][6, 9], data["t"][6, 9]) == pytest.approx((1.0, 1.0, 1.0))
    assert (data["q1"][3, 4], data["t"][3, 4]) == pytest.approx((0.0, 0.0))


def test_item_maps_png_and_reference_row(tmp_path, mv_setting, units_setting):
    mv = _mech(mv_setting, "manelli_vincent")
    bundle = _mech(mv_setting, "bundle_price")
    one = plots.plot_item_maps(bundle, mv_setting, tmp_path / "m" / "one.png", grid=GRID)
    two = plots.plot_item_maps(bundle, mv_setting, tmp_path / "m" / "two.png", reference=mv, grid=GRID)
    assert one == tmp_path / "m" / "one.png"
    img1, img2 = assert_png(one), assert_png(two)
    assert img2.shape[0] > 1.5 * img1.shape[0]  # a second row for the reference
    assert img2.shape[1] == img1.shape[1]
    # the allocation panel is not blank: several colours inside it
    h, w = img1.shape[:2]
    assert n_colours(img1[int(0.3 * h): int(0.8 * h), int(0.05 * w): int(0.25 * w), :3]) >= 3
    units = plots.plot_item_maps(_mech(units_setting, "uniform_price"), units_setting, tmp_path / "u.png", grid=GRID)
    assert_png(units)


def test_item_maps_reject_two_bidders(tmp_path):
    from diffmech.errors import ConfigError

    two = _setting_from({"kind": "multi_item", "prior": U01, "n_agents": 2, "n_items": 2, "valuation": "additive"})
    with pytest.raises(ConfigError, match="1 bidder and 2 items") as info:
        plots.plot_item_maps(Constant(), two, tmp_path / "x.png", grid=GRID)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="1 bidder and 2 items"):
        plots.item_map_arrays(Constant(), SingleItem([Uniform(0, 1)] * 2), grid=GRID)
    assert not (tmp_path / "x.png").exists()


def test_write_figures_uses_item_maps_with_benchmark_reference(tmp_path, monkeypatch, mv_setting, units_setting):
    from diffmech import cli

    seen = []
    real = plots.plot_item_maps

    def spy(mechanism, setting, path, reference=None, grid=101):
        seen.append(getattr(reference, "kind", None))
        return real(mechanism, setting, path, reference=reference, grid=GRID)

    monkeypatch.setattr(plots, "plot_item_maps", spy)
    mv = _mech(mv_setting, "manelli_vincent")
    written = cli._write_figures(tmp_path / "a", mv, mv_setting, [], {})
    assert written == [tmp_path / "a" / "maps.png"]
    assert_png(written[0])
    cli._write_figures(tmp_path / "b", _mech(units_setting, "uniform_price"), units_setting, [], {})
    unit_demand = _setting_from({"kind": "multi_item", "prior": U01, "n_agents": 1, "n_items": 2, "valuation": "unit_demand"})
    cli._write_figures(tmp_path / "c", _mech(unit_demand, "uniform_item_price"), unit_demand, [], {})
    assert seen == ["manelli_vincent", "uniform_price", "uniform_item_price"]
