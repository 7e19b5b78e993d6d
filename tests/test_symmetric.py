"""Issue 3: unit-demand and identical-objects settings, the exchangeable prior, feasible heads,
the equivariant net, symmetric extension (B–M Definition 3) and the symmetry / rank-preservation
measurements (Definitions 1 and 2)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech import symmetry as S
from diffmech._compat import enable_x64
from diffmech.config import EvalConfig
from diffmech.evaluate import regret_attack

U01 = {"dist": "uniform", "low": 0.0, "high": 1.0}


def _multi(n=1, m=2, **kw):
    return dm.setting_from_config({"kind": "multi_item", "prior": U01, "n_agents": n, "n_items": m, **kw})


def _identical(m=2, **kw):
    return dm.setting_from_config({"kind": "identical_items", "prior": U01, "n_items": m, **kw})


def test_common_shock_prior_is_exchangeable_with_the_stated_correlation():
    """v_j = w·z + (1 − w)·x_j: correlation w² / (w² + (1 − w)²) between items, same marginal for
    every item (exchangeable), support inside [0, 1]."""
    w = 0.4
    s = _multi(1, 3, common_weight=w)
    v = np.asarray(s.sample(jax.random.PRNGKey(0), 200_000)[:, 0], np.float64)
    rho = w**2 / (w**2 + (1 - w) ** 2)
    c = np.corrcoef(v.T)
    n = v.shape[0]
    se = (1 - rho**2) / math.sqrt(n)  # standard error of a sample correlation
    assert np.all(np.abs(c[np.triu_indices(3, 1)] - rho) < 4 * se)
    means = v.mean(axis=0)
    assert np.all(np.abs(means - 0.5) < 4 * v.std(axis=0) / math.sqrt(n))
    assert v.min() >= 0.0 and v.max() <= 1.0
    assert s.to_config()["common_weight"] == w and dm.setting_from_config(s.to_config()).to_config() == s.to_config()


def test_identical_items_is_the_law_of_sorted_heterogeneous_values():
    h = _multi(1, 3, common_weight=0.3)
    i = h.identical()
    key = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(np.asarray(i.sample(key, 100)), -np.sort(-np.asarray(h.sample(key, 100)), axis=-1))
    assert i.heterogeneous() is h and i.feasibility == "units"
    assert dm.setting_from_config(i.to_config()).to_config() == i.to_config()
    grid = np.asarray(_identical(2).attack_grid(1000))[0]
    assert np.all(grid[:, 0] >= grid[:, 1]) and grid.shape[0] >= 900
    projected = np.asarray(i.project(jnp.asarray([[[0.2, 1.4, 0.5]]])))
    np.testing.assert_allclose(projected, [[[1.0, 0.5, 0.2]]], rtol=1e-6)  # clipped to [0, 1], then sorted
    for bad, msg in [
        ({"kind": "identical_items", "prior": U01, "n_items": 2, "n_agents": 2}, "one buyer"),
        ({"kind": "identical_items", "n_items": 2}, "needs 'prior'"),
        ({"kind": "identical_items", "prior": U01, "n_items": 2, "valuation": "unit_demand"}, "unknown key"),
    ]:
        with pytest.raises(dm.ConfigError, match=msg):
            dm.setting_from_config(bad)
    with pytest.raises(dm.ConfigError, match="exchangeable"):
        dm.setting_from_config({"kind": "multi_item", "item_priors": [U01, {**U01, "high": 2.0}], "n_agents": 1}).identical()


def test_feasibility_violation_detects_each_constraint():
    out = dm.Outcome(alloc=jnp.asarray([[[0.7, 0.6]], [[0.2, 0.5]]]), payments=jnp.zeros((2, 1)))
    np.testing.assert_allclose(np.asarray(_multi(1, 2).feasibility_violation(out)), [0.0, 0.0])
    np.testing.assert_allclose(np.asarray(_multi(1, 2, valuation="unit_demand").feasibility_violation(out)), [0.3, 0.0], atol=1e-7)
    np.testing.assert_allclose(np.asarray(_identical(2).feasibility_violation(out)), [0.0, 0.3], atol=1e-7)
    two = dm.Outcome(alloc=jnp.asarray([[[0.7, 0.0], [0.5, 0.0]]]), payments=jnp.zeros((1, 2)))
    np.testing.assert_allclose(np.asarray(_multi(2, 2).feasibility_violation(two)), [0.2], atol=1e-7)


@pytest.mark.parametrize("n, m", [(1, 3), (2, 2), (3, 4)])
def test_regretnet_heads_are_feasible_by_construction(n, m):
    """Unit-demand: doubly sub-stochastic; identical units: q_1 ≥ q_2 ≥ … (B–M eq. (1))."""
    key = jax.random.PRNGKey(n * 10 + m)
    ud = _multi(n, m, valuation="unit_demand")
    mech = dm.mechanism_from_config(ud, {"kind": "regretnet", "hidden": [16]}, key)
    # large random reports spread the scores so that the heads are pushed to their limits
    a = np.asarray(mech(ud.sample(key, 512)).alloc)
    assert a.min() >= 0 and np.all(a.sum(axis=1) <= 1 + 1e-6) and np.all(a.sum(axis=2) <= 1 + 1e-6)
    assert a.sum(axis=2).max() > 0.3  # a lottery, not the empty allocation
    if n == 1:
        ident = _identical(m)
        net = dm.mechanism_from_config(ident, {"kind": "regretnet", "hidden": [16]}, key)
        q = np.asarray(net(ident.sample(key, 512)).alloc[:, 0])
        assert np.all(np.diff(q, axis=-1) <= 0) and q.min() >= 0 and q.max() <= 1
        assert float(ident.feasibility_violation(net(ident.sample(key, 512))).max()) == 0.0


def test_equivariant_net_is_symmetric_and_the_swap_gain_identity_holds():
    """Definition 1 holds exactly for every parameter value, and for a symmetric mechanism the gain
    from reporting the type with coordinates i and j swapped is (v_i − v_j)(q_j − q_i) (proof of
    Theorem 1), to 1e-9 in float64."""
    with enable_x64():
        s = _multi(1, 3)
        mech = dm.mechanism_from_config(s, {"kind": "equivariant", "channels": [8, 8]}, jax.random.PRNGKey(2))
        v = s.sample(jax.random.PRNGKey(3), 300).astype(jnp.float64)
        assert S.symmetry_report(mech, v, tol=1e-12)["share"] == 0.0
        q = np.asarray(mech(v).alloc[:, 0])
        vv = np.asarray(v[:, 0])
        for i, j in [(0, 1), (0, 2), (1, 2)]:
            gain = np.asarray(S.swap_gain(mech, s, v, i, j))
            np.testing.assert_allclose(gain, (vv[:, i] - vv[:, j]) * (q[:, j] - q[:, i]), atol=1e-9)
        # an unconstrained RegretNet is not symmetric, and the measurement says so
        free = dm.mechanism_from_config(s, {"kind": "regretnet", "hidden": [8]}, jax.random.PRNGKey(2))
        assert S.symmetry_report(free, v)["share"] > 0.9


def test_equivariant_net_over_bidders_and_items():
    s = _multi(2, 3, valuation="unit_demand")
    mech = dm.mechanism_from_config(s, {"kind": "equivariant", "channels": [8]}, jax.random.PRNGKey(0))
    v = s.sample(jax.random.PRNGKey(1), 64)
    out, swapped = mech(v), mech(v[:, ::-1])
    np.testing.assert_allclose(np.asarray(swapped.alloc), np.asarray(out.alloc[:, ::-1]), atol=1e-6)
    assert float(s.feasibility_violation(out).max()) == 0.0
    assert S.symmetry_report(mech, v)["share"] == 0.0
    # different bidder priors: item symmetry stays, bidder symmetry goes
    asym = dm.setting_from_config({"kind": "multi_item", "priors": [[U01] * 3, [{**U01, "high": 2.0}] * 3]})
    mech = dm.mechanism_from_config(asym, {"kind": "equivariant", "channels": [8]}, jax.random.PRNGKey(0))
    v = asym.sample(jax.random.PRNGKey(1), 64)
    assert S.symmetry_report(mech, v)["share"] == 0.0 and not mech.bidder_symmetric
    with pytest.raises(dm.ConfigError, match="share one prior"):
        dm.mechanism_from_config(dm.setting_from_config({"kind": "multi_item", "item_priors": [U01, {**U01, "high": 2.0}], "n_agents": 1}), {"kind": "equivariant"})
    with pytest.raises(dm.ConfigError, match="identical units"):
        dm.mechanism_from_config(_identical(2), {"kind": "equivariant"})


def test_symmetric_extension_keeps_ic_with_rank_preservation_and_breaks_it_without():
    """Lemma 2: extending a rank-preserving IC mechanism on D(σ^I) gives an IC mechanism (here
    Manelli–Vincent, whose restriction is rank preserving: regret ≈ 0). Example 1: extending the
    restriction of the rank-reversing mechanism ((0, 1) on v_1 > v_2) is not IC — every type gains
    |v_1 − v_2| by reporting a type in the other cone, so the expected regret is E|v_1 − v_2| = 1/3."""
    s = _multi(1, 2)
    types = s.sample(jax.random.PRNGKey(7), 2000)
    cfg = EvalConfig(grid_points=900, attack_steps=20)
    mv = dm.transforms.SymmetricExtension(dm.mechanism_from_config(s, {"kind": "manelli_vincent"}))
    assert regret_attack(mv, s, types[:300], jax.random.PRNGKey(0), cfg).max() < 1e-5
    rr = dm.transforms.SymmetricExtension(dm.mechanism_from_config(s, {"kind": "rank_reversing"}))
    np.testing.assert_array_equal(np.asarray(rr(types).alloc), np.asarray(dm.mechanism_from_config(s, {"kind": "rank_reversing"})(types).alloc))
    gains = regret_attack(rr, s, types, jax.random.PRNGKey(0), cfg)[:, 0]
    exact = np.abs(np.asarray(types[:, 0, 0] - types[:, 0, 1]))
    np.testing.assert_allclose(gains, exact, atol=2e-3)  # the attack finds the exact gain per profile
    assert abs(gains.mean() - 1 / 3) < 4 * gains.std() / math.sqrt(gains.size)
    rep = S.rank_preservation_report(rr, types)
    assert rep["share"] > 0.99 and abs(rep["max"] - 1.0) < 1e-9
    assert S.symmetry_report(rr, types)["share"] == 0.0  # symmetric but not rank preserving


def test_symmetric_extension_of_an_identical_model_mechanism_from_config():
    """The extension of any identical-objects mechanism is symmetric and rank preserving on D^H, and
    agrees with the base on sorted types."""
    h = _multi(1, 3)
    ext = dm.mechanism_from_config(h, {"kind": "symmetric_extension", "base": {"kind": "regretnet", "hidden": [8]}})
    assert ext.trainable and not ext.dsic_by_construction and ext.base.allocation == "units"
    v = h.sample(jax.random.PRNGKey(0), 500)
    assert S.symmetry_report(ext, v)["share"] == 0.0 and S.rank_preservation_report(ext, v)["share"] == 0.0
    ordered = -jnp.sort(-v, axis=-1)
    np.testing.assert_allclose(np.asarray(ext(ordered).alloc), np.asarray(ext.base(ordered).alloc), atol=1e-7)
    with pytest.raises(dm.ConfigError, match="needs base"):
        dm.mechanism_from_config(h, {"kind": "symmetric_extension"})
    with pytest.raises(dm.ConfigError, match="one buyer"):
        dm.mechanism_from_config(_multi(2, 2), {"kind": "symmetric_extension", "base": {"kind": "regretnet"}})


def test_symmetrised_mechanism_is_symmetric_and_preserves_ic():
    s = _multi(1, 3)
    base = dm.mechanism_from_config(s, {"kind": "regretnet", "hidden": [8]}, jax.random.PRNGKey(4))
    sym = dm.transforms.Symmetrised(base, 3)
    v = s.sample(jax.random.PRNGKey(0), 200)
    assert S.symmetry_report(base, v)["share"] > 0.9 and S.symmetry_report(sym, v)["share"] == 0.0
    # an IC base stays IC: Manelli–Vincent is already symmetric, so symmetrising changes nothing
    s2 = _multi(1, 2)
    mv = dm.mechanism_from_config(s2, {"kind": "manelli_vincent"})
    w = s2.sample(jax.random.PRNGKey(1), 200)
    np.testing.assert_allclose(np.asarray(dm.transforms.Symmetrised(mv, 2)(w).payments), np.asarray(mv(w).payments), atol=1e-7)


def test_evaluate_reports_symmetry_and_rank_preservation():
    s = _multi(1, 2)
    quick = EvalConfig(samples=500, grid_points=100, attack_steps=0, symmetry_samples=300)
    good = dm.evaluate(dm.mechanism_from_config(s, {"kind": "manelli_vincent"}), s, quick, benchmarks=False)
    bad = dm.evaluate(dm.mechanism_from_config(s, {"kind": "rank_reversing"}), s, quick, benchmarks=False)
    assert good["rank_violation_share"] == 0.0 and good["symmetry_violation_share"] == 0.0
    assert bad["rank_violation_share"] > 0.99 and bad["symmetry_violation_share"] == 0.0
    assert good["feasibility_violation_max"] == 0.0


def test_ordered_net_trains_in_the_identical_model():
    """A short RegretNet run on 2 identical units: outputs stay feasible and revenue rises."""
    cfg = {
        "setting": {"kind": "identical_items", "prior": U01, "n_items": 2},
        "mechanism": {"kind": "regretnet", "hidden": [32, 32]},
        "train": {"steps": 300, "batch": 128, "train_size": 1024, "lr": 0.003, "inner_steps": 5},
    }
    run = dm.resolve(cfg)
    quick = EvalConfig(samples=1000, grid_points=300, attack_steps=10)
    before = dm.evaluate(run.build_mechanism(jax.random.PRNGKey(0)), run.setting, quick, benchmarks=False)
    after = dm.evaluate(dm.train(run).mechanism, run.setting, quick, benchmarks=False)
    assert after["feasibility_violation_max"] == 0.0
    assert after["revenue"] > before["revenue"] + 0.05


def test_symmetric_extension_of_uniform_price_sells_each_item_at_the_price():
    """A non-trivial extension (3 items): the uniform-price mechanism of the identical-objects model
    (q_k = 1{v_k ≥ p}, t = p·Σq) extended by Definition 3 is selling every item separately at p —
    the k-th highest-valued item goes with unit k — and it is IC (regret ≈ 0 under the attack)."""
    h = _multi(1, 3)
    ident = h.identical()
    ext = dm.transforms.SymmetricExtension(dm.mechanism_from_config(ident, {"kind": "uniform_price", "price": 0.4}))
    v = h.sample(jax.random.PRNGKey(11), 400)
    out = ext(v)
    np.testing.assert_array_equal(np.asarray(out.alloc), np.asarray(v >= 0.4).astype(np.float32))
    np.testing.assert_allclose(np.asarray(out.payments[:, 0]), 0.4 * np.asarray((v >= 0.4).sum(axis=(1, 2))), atol=1e-6)
    gains = regret_attack(ext, h, v[:200], jax.random.PRNGKey(0), EvalConfig(attack_starts=4, attack_steps=50))
    assert gains.max() < 1e-5


def test_mechanisms_refuse_settings_they_are_not_made_for():
    """One-item auctions on several items, Manelli–Vincent and item-wise Myerson off their settings,
    the equivariant net without a prior symmetric across items: one-line ConfigErrors."""
    cases = [
        (_multi(2, 2), "second_price"), (_multi(2, 2), "first_price"), (_multi(2, 2), "myerson"),
        (_identical(2), "vcg"), (_multi(1, 2, valuation="unit_demand"), "manelli_vincent"),
        (_multi(1, 2, common_weight=0.5), "manelli_vincent"), (_multi(1, 2, common_weight=0.5), "itemwise_myerson"),
        (_multi(1, 2, valuation="unit_demand"), "itemwise_myerson"),
        (dm.setting_from_config({"kind": "multi_item", "n_agents": 1, "item_priors": [U01, {"dist": "power_law", "low": 0.0, "high": 1.0, "a": 3.0}]}), "equivariant"),
        (dm.setting_from_config({"kind": "single_item", "prior": U01, "n_agents": 2}), "equivariant"),
    ]
    for setting, kind in cases:
        with pytest.raises(dm.ConfigError) as err:
            dm.mechanism_from_config(setting, {"kind": kind})
        assert "\n" not in str(err.value), kind


def test_symmetric_extension_trains_from_a_config(tmp_path):
    """`kind = "symmetric_extension"` with a trainable base is trained like any neural mechanism
    (the ordered net learns on D^I and sells by its extension): revenue rises, and the result is
    symmetric and rank preserving in the heterogeneous model."""
    cfg = {
        "setting": {"kind": "multi_item", "prior": U01, "n_agents": 1, "n_items": 2},
        "mechanism": {"kind": "symmetric_extension", "base": {"kind": "regretnet", "hidden": [32, 32]}},
        "train": {"steps": 200, "batch": 128, "train_size": 1024, "lr": 0.003, "inner_steps": 5},
    }
    run = dm.resolve(cfg)
    assert run.trainable
    quick = EvalConfig(samples=1000, grid_points=225, attack_steps=10, symmetry_samples=200)
    before = dm.evaluate(run.build_mechanism(jax.random.PRNGKey(0)), run.setting, quick, benchmarks=False)
    after = dm.evaluate(dm.train(run, tmp_path / "r").mechanism, run.setting, quick, benchmarks=False)
    assert after["revenue"] > before["revenue"] + 0.05
    assert after["symmetry_violation_share"] == 0.0 and after["rank_violation_share"] == 0.0
    assert dm.load(tmp_path / "r").mechanism.base.allocation == "units"
