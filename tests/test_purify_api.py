"""Tests of diffmech.purify.purify: purification of mechanisms on settings, its report, the CLI.

Source: Chen, He, Li & Sun, "Equivalence of stochastic and deterministic mechanisms" (CHLS;
/work/shared/papers/chen-he-li-sun-stochastic-deterministic.txt): Theorem 1 (same interim
allocations and utilities, same ex post transfers — Remark 3), Example 1 (Section 3.1), Section
5.2 (support). Reference values from /work/shared/REFERENCES.md ("Example 1 … interim win
probability … (3/4, 3/4, 1/4, 1/4) by quarter; ex ante surplus 5/8 in both"); every other number
is derived in the test's docstring or recomputed here independently.

Why regret is preserved exactly on finite spaces. Payments are kept profile by profile, so the
interim transfer T_i(r) = Σ_{t−i} p_−i t_i(r, t_−i) of every report is unchanged; with private
values U_i(t_i, r) = Σ_k Q_i(r, k) u_i^k(t_i) − T_i(r) depends on the mechanism's lottery only
through the interim allocation Q_i(r, ·) of the report. An exact purification keeps every
Q_i(r, ·) — for each sub-type too (sub-type identity, diffmech.purified) — hence every U_i(t_i, r),
hence the interim regret max_r U_i(t_i, r) − U_i(t_i, t_i) and the interim IR slack, type by type.
"""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmech.cli import main
from diffmech.config import EvalConfig
from diffmech.errors import ConfigError
from diffmech._compat import enable_x64
from diffmech.evaluate_interim import evaluate_interim
from diffmech.outcome import Outcome
from diffmech.priors import Uniform
from diffmech.purified import LatinTable
from diffmech.purify import NOT_PRESERVED, Purification, purify
from diffmech.settings import MultiItem, SingleItem
from diffmech.settings.social_choice import SocialChoice
from diffmech.social_choice_lp import SocialChoiceTable

FAST = EvalConfig(samples=1024, grid_points=20, attack_steps=0, interim_types=8)


def _interim_by_enumeration(mech, setting, agent):
    """Interim lottery of every own type of ``agent`` on a finite two-agent setting, by calling the
    mechanism on every profile (explicit loops; independent of the purifier): (T, K)."""
    (a0, p0), (a1, p1) = setting.type_supports()
    rows = []
    for i, x in enumerate(a0 if agent == 0 else a1):
        prof = [np.stack([x, y]) if agent == 0 else np.stack([y, x]) for y in (a1 if agent == 0 else a0)]
        with enable_x64():
            out = mech(jnp.asarray(np.stack(prof)))
        w = p1 if agent == 0 else p0
        rows.append(w @ np.asarray(out.choice, np.float64))
    return np.stack(rows)


def _all_profiles(setting):
    prof, prob = setting.profiles()
    return prof, prob


# --------------------------------------------------------------------------------------------
# 1. Random stochastic table on a finite two-agent social choice
# --------------------------------------------------------------------------------------------


def _finite_instance(seed, denominators=True, T=4, K=3):
    """Two iid agents, T types 0, …, T−1 with probability 1/T, K alternatives with integer payoffs
    A[k, i] ∈ {−2, …, 3}; q random (multiples of 1/6 or Dirichlet), payments random."""
    rng = np.random.default_rng(seed)
    A = rng.integers(-2, 4, size=(K, 2, 1)).astype(float)
    s = SocialChoice(2, A, atoms=np.arange(T, dtype=float)[:, None], probs=np.full(T, 1.0 / T))
    if denominators:
        q = rng.multinomial(6, np.ones(K) / K, size=(T, T)) / 6.0
    else:
        q = rng.dirichlet(np.ones(K), size=(T, T))
    pay = rng.normal(size=(T, T, 2))
    with enable_x64():  # float64 tables: q's entries stay multiples of 1/6
        return s, q, pay, SocialChoiceTable.from_tables(s, q, pay)


def test_random_table_purified_exactly():
    """q in multiples of 1/6, uniform priors 1/4: the vertex's entries have small denominators, so
    the Latin split is exact (R = the lcm) and

    - revenue_change is exactly 0.0 (identical payments on the same profiles);
    - interim allocation error ≤ 1e-9, checked here sub-type by sub-type by calling the purified
      mechanism on every enlarged profile;
    - interim regret and IR after = before to 1e-9 (module docstring: utilities are identical type
      by type);
    - the purified mechanism is one-hot on every enlarged profile and only picks alternatives
      with q > 0 (CHLS Section 5.2).
    """
    s, q, pay, mech = _finite_instance(0)
    res = purify(mech, s)
    rep = res.report
    assert isinstance(res, Purification) and isinstance(res.mechanism, LatinTable)
    assert rep["method"] == "vertex" and rep["R_exact"] and rep["rounding"] == "exact"
    assert rep["revenue_change"] == 0.0 and rep["revenue_after"] == rep["revenue_before"] and rep["payments_identical"]
    assert rep["interim_allocation_error"] <= 1e-9
    for k in ("interim_regret_mean", "interim_regret_max", "interim_ir_violation_max"):
        assert abs(rep[f"{k}_after"] - rep[f"{k}_before"]) <= 1e-9, k
    assert rep["interim_regret_max_before"] > 1e-3  # a random table is not BIC: the check is not vacuous
    assert abs(rep["surplus_change"]) <= 1e-9 and rep["deterministic"] and rep["support_preserved"]
    assert NOT_PRESERVED in rep["warnings"]
    # the enlarged setting: every type split into R sub-types of probability 1/(4R)
    R = rep["R"]
    big = res.setting
    assert big.type_counts == (4 * R, 4 * R) and big.dim == 2
    prof, prob = _all_profiles(big)
    with enable_x64():
        out = res.mechanism(jnp.asarray(prof))
    choice = np.asarray(out.choice)
    assert np.all(np.isin(choice, (0.0, 1.0))) and np.all(choice.sum(-1) == 1.0)
    t_idx = np.stack([np.rint(prof[:, i, 0]).astype(int) for i in range(2)], 1)  # the original type of each sub-type
    assert np.all(q[t_idx[:, 0], t_idx[:, 1]][choice == 1.0] > 0)  # support
    np.testing.assert_array_equal(np.asarray(out.payments), pay[t_idx[:, 0], t_idx[:, 1]])  # t_i(t, s) = t_i(t)
    for agent in (0, 1):
        got = _interim_by_enumeration(res.mechanism, big, agent)
        want = (q * 0.25).sum(1 - agent)  # Q_i(t_i, k) of q with p = 1/4
        np.testing.assert_allclose(got, np.repeat(want, R, axis=0), atol=1e-9, rtol=0)


def test_rounded_split_sub_type_identity():
    """Dirichlet (irrational) q and R = 3 forced: the vertex's fractional entries are not
    multiples of 1/3, so the counts are rounded (error > 0 but < 1/R). The report's figures equal
    the library's exhaustive evaluation (evaluate_interim, exact): "before" of the original table
    on the 4 × 4 space, "after" — computed on the grid from N/R by the sub-type identity — of the
    purified mechanism on the enlarged setting itself (12 × 12 profiles),
    and each sub-type's interim allocation equals that of its type under N/R (recomputed by
    enumeration). Revenue still changes by exactly 0.0."""
    s, q, pay, mech = _finite_instance(1, denominators=False, T=4)
    res = purify(mech, s, R=3)
    rep = res.report
    assert rep["R"] == 3 and not rep["R_exact"] and rep["rounding"] in ("milp", "largest_remainder")
    assert 0.0 < rep["interim_allocation_error"] < 1 / 3
    assert rep["revenue_change"] == 0.0 and rep["deterministic"] and rep["support_preserved"]
    with enable_x64():
        lib_before = evaluate_interim(mech, s, EvalConfig(), benchmarks=False)
        lib_after = evaluate_interim(res.mechanism, res.setting, EvalConfig(), benchmarks=False)
    for lib, tag in ((lib_before, "before"), (lib_after, "after")):
        assert abs(lib["interim_regret_max"] - rep[f"interim_regret_max_{tag}"]) <= 1e-9
        assert abs(lib["interim_regret_mean"] - rep[f"interim_regret_mean_{tag}"]) <= 1e-9
        assert abs(lib["ir_violation_max"] - rep[f"interim_ir_violation_max_{tag}"]) <= 1e-9
        assert abs(lib["welfare"] - rep[f"surplus_{tag}"]) <= 1e-9
        assert abs(lib["revenue"] - rep["revenue_before"]) <= 1e-9
    got = _interim_by_enumeration(res.mechanism, res.setting, 0)  # (12, K): sub-types of a type agree
    np.testing.assert_allclose(got.reshape(4, 3, -1), np.repeat(got.reshape(4, 3, -1)[:, :1], 3, axis=1), atol=1e-12)
    err = np.max(np.abs(got.reshape(4, 3, -1)[:, 0] - (q * 0.25).sum(1)))
    assert err <= rep["interim_allocation_error"] + 1e-12


# --------------------------------------------------------------------------------------------
# 2. Single item on a grid: CHLS Example 1
# --------------------------------------------------------------------------------------------


class _Example1(eqx.Module):
    """CHLS Example 1 on two U[0, 1] bidders: cells [0, ½) and [½, 1]; same cell: ½ each, else the
    bidder in the high cell wins; payments t_i = v_i·a_i/2 (any profile-dependent rule will do)."""

    def __call__(self, reports):
        v = reports[..., 0]
        high = (v >= 0.5).astype(v.dtype)
        a1 = jnp.where(high[:, 0] == high[:, 1], 0.5, high[:, 0])
        alloc = jnp.stack([a1, 1.0 - a1], axis=1)[..., None]
        return Outcome(alloc=alloc, payments=0.5 * v * alloc[..., 0])


def test_single_item_example1_on_a_grid():
    """Example 1 read on the 4-cell quantile grid (midpoints 1/8, 3/8, 5/8, 7/8, mass 1/4 each).

    By hand: a low-cell type wins with probability ¼·½·2 = 1/4 (half the others share its cell,
    where it wins ½), a high-cell type with ½·1 + ¼·2·½ = 3/4: REFERENCES.md's (3/4, 3/4, 1/4, 1/4)
    in decreasing order. Surplus: low-low pairs give Σ(v_1 + v_2)/2 = 1, high-high 3, mixed pairs
    4·(5/8 + 7/8) = 6, so (1 + 3 + 6)/16 = 5/8 (REFERENCES.md: 5/8 in both). The purified
    mechanism keeps the win probabilities sub-type by sub-type (1e-9), the surplus 5/8, the revenue
    (change exactly 0.0) and the interim regret, and is deterministic.
    """
    s = SingleItem([Uniform(0.0, 1.0)] * 2)
    res = purify(_Example1(), s, method="vertex", grid=4)
    rep = res.report
    assert rep["grid"] == 4 and rep["types"] == [4, 4] and rep["alternatives"] == 3 and rep["R_exact"]
    assert rep["revenue_change"] == 0.0 and rep["interim_allocation_error"] <= 1e-9
    assert abs(rep["surplus_before"] - 5 / 8) <= 1e-12 and abs(rep["surplus_after"] - 5 / 8) <= 1e-9
    assert abs(rep["interim_regret_max_after"] - rep["interim_regret_max_before"]) <= 1e-9
    assert rep["deterministic"] and rep["support_preserved"]
    R = rep["R"]
    for agent in (0, 1):
        wins = _interim_by_enumeration(res.mechanism, res.setting, agent)[:, 1 + agent]  # alternative 1 + i: bidder i
        np.testing.assert_allclose(wins, np.repeat([0.25, 0.25, 0.75, 0.75], R), atol=1e-9, rtol=0)
    # ex post properties are not kept: a sub-type report changes who wins at a shared cell
    assert rep["ex_post_regret_max_after"] > rep["ex_post_regret_max_before"] + 0.1


# --------------------------------------------------------------------------------------------
# 3. Dither on a continuous single item
# --------------------------------------------------------------------------------------------


class _Softmax(eqx.Module):
    """Smooth stochastic single-item rule on [0, 1]²: softmax of (0, 3v_1, 3v_2) over (nobody,
    bidder 1, bidder 2); payments t_i = v_i·a_i/2."""

    def __call__(self, reports):
        v = reports[..., 0]
        logits = jnp.concatenate([jnp.zeros_like(v[:, :1]), 3.0 * v], axis=1)
        a = jax.nn.softmax(logits, axis=1)[:, 1:]
        return Outcome(alloc=a[..., None], payments=0.5 * v * a)


def test_dither_single_item_continuous():
    """R = 16 on two U[0, 1] bidders (quantile = value). Payments of the dithered mechanism equal
    the original's bit for bit (each called on its own), the allocation is one-hot (or nobody),
    revenue_change is exactly 0.0, and the interim allocation error is below the bound of
    dither_choice's docstring, (5/2)·L(n − 1)/R with L = 3/4 (|∂C_k/∂v_j| = 3 p_a p_b ≤ 3/4 for
    softmax partial sums): 1.875/16 ≈ 0.117 — and, the rule being smooth, far below it."""
    s = SingleItem([Uniform(0.0, 1.0)] * 2)
    base = _Softmax()
    res = purify(base, s, R=16, eval_cfg=FAST, error_nodes=1024)
    rep = res.report
    assert rep["method"] == "dither" and rep["R"] == 16 and res.setting is s
    assert rep["revenue_change"] == 0.0 and rep["payments_identical"]
    assert rep["deterministic"] and rep["support_preserved"]
    assert 0.0 < rep["interim_allocation_error"] <= 1.875 / 16
    assert rep["interim_allocation_error"] <= 0.05
    x = s.sample(jax.random.PRNGKey(5), 2000)
    with enable_x64():
        x = x.astype(jnp.float64)
        p0, out = eqx.filter_jit(lambda b, m, r: (b(r).payments, m(r)))(base, res.mechanism, x)
    np.testing.assert_array_equal(np.asarray(out.payments), p0)
    a = np.asarray(out.alloc)[..., 0]
    assert np.all(np.isin(a, (0.0, 1.0))) and np.all(a.sum(1) <= 1.0)
    assert rep["ex_post_regret_max_after"] > rep["ex_post_regret_max_before"]  # DSIC is not kept (reported)


class _PerItemSoftmax(eqx.Module):
    """Two additive bidders, two items: each item by softmax of (0, 3v_1j, 3v_2j) over (nobody,
    bidder 1, bidder 2), independently; payments 0.3·Σ_j v_ij a_ij."""

    def __call__(self, reports):
        z = jnp.concatenate([jnp.zeros_like(reports[:, :1, :]), 3.0 * reports], axis=1)
        a = jax.nn.softmax(z, axis=1)[:, 1:, :]
        return Outcome(alloc=a, payments=0.3 * jnp.sum(reports * a, axis=-1))


def test_additive_multi_item_through_the_auction_map():
    """2 × 2 additive on a 2-cell grid per item (4 types per bidder): K = 3² = 9 assignments, the
    outcome read as the product lottery of its marginals. The purified mechanism picks one
    assignment per enlarged profile, so its marginals are 0/1 with each item to at most one bidder,
    only assignments of positive probability are picked, revenue changes by exactly 0.0 and the
    interim error is below 1/R = 1/8 (each rounded entry moves by < 1/R)."""
    from diffmech.settings.social_choice import alloc_from_lottery

    s = MultiItem([[Uniform()] * 2] * 2)
    res = purify(_PerItemSoftmax(), s, method="vertex", grid=2, R=8)
    rep = res.report
    assert rep["alternatives"] == 9 and rep["types"] == [4, 4] and rep["R"] == 8 and res.setting.dim == 3
    assert rep["revenue_change"] == 0.0 and rep["deterministic"] and rep["support_preserved"]
    assert rep["interim_allocation_error"] < 1 / rep["R"]
    prof, _ = _all_profiles(res.setting)
    with enable_x64():
        a = np.asarray(alloc_from_lottery(res.mechanism(jnp.asarray(prof)).choice, 2, 2))  # all 32 × 32 profiles
    assert np.all(np.isin(a, (0.0, 1.0))) and np.all(a.sum(1) <= 1.0)


# --------------------------------------------------------------------------------------------
# 4. Refusals and the command line
# --------------------------------------------------------------------------------------------


def test_refusals_are_one_line_config_errors():
    """Unit demand (the product lottery breaks "at most one item"), one agent, the dither on
    finite types, an unknown method."""
    ud = MultiItem([[Uniform()] * 2] * 2, valuation="unit_demand")
    with pytest.raises(ConfigError, match="unit-demand") as e:
        purify(_Softmax(), ud)
    assert "\n" not in str(e.value)
    s, q, pay, mech = _finite_instance(0)
    with pytest.raises(ConfigError, match="atomless"):
        purify(mech, s, method="dither")
    with pytest.raises(ConfigError, match="method"):
        purify(mech, s, method="magic")
    with pytest.raises(ConfigError, match="two agents"):
        purify(_Softmax(), SingleItem([Uniform()]), method="vertex", grid=3)


CONFIG = """
[setting]
kind = "single_item"
prior = { dist = "uniform", low = 0.0, high = 1.0 }
n_agents = 2

[mechanism]
kind = "second_price"
"""


def test_cli_purify(tmp_path, capsys):
    """`diffmech purify CONFIG --grid 4` prints the report and exits 0 (second price on the 4-point
    grid: ties on the diagonal are split ½–½, so R = 2 is exact and revenue is unchanged); --json
    prints the dict and --out writes it; a bad target is one line on stderr with exit code 2."""
    cfg = tmp_path / "sp.toml"
    cfg.write_text(CONFIG)
    assert main(["purify", str(cfg), "--grid", "4"]) == 0
    text = capsys.readouterr().out
    assert "revenue_change" in text and "interim_allocation_error" in text and f"warning: {NOT_PRESERVED}" in text
    assert main(["purify", str(cfg), "--grid", "4", "--json", "--out", str(tmp_path / "rep")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["revenue_change"] == 0.0 and rep["R"] == 2 and rep["R_exact"]
    assert json.loads((tmp_path / "rep" / "purify.json").read_text()) == rep
    assert main(["purify", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffmech: error:") and err.count("\n") == 1
    assert main(["purify", str(cfg), "--method", "dither", "--grid", "4"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
