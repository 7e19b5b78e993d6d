"""Tests of diffmech.lp: exact LP / MILP optima for one buyer on a finite type set.

Reference values (source in each test): /work/shared/REFERENCES.md (Chen–He–Li–Sun instance,
Manelli–Vincent optimum) and Bikhchandani & Mishra, "Rank-preserving multidimensional mechanisms"
(arXiv:2209.10137) for the equivalence of the heterogeneous and identical-objects models. Every
benchmark that is not a literature value (posted prices, separate sale, bundling) is computed
directly here from the grid, not by the library.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffmech.errors import ConfigError
from diffmech.lp import (
    MenuLP,
    grid_from_marginals,
    grid_from_samples,
    rank_preservation_report,
    solve_both_models,
    solve_menu,
    symmetrise,
    symmetry_report,
    to_identical,
)
from diffmech.priors import PowerLaw, Uniform

MV = (12 + 2 * math.sqrt(2)) / 27  # Manelli–Vincent, 2 iid U[0,1] items (REFERENCES.md) = 0.549201


def _u01_grid(m: int, points: int):
    return grid_from_marginals([Uniform(0.0, 1.0)] * m, points)


def _table(types, probs, alloc, payments, valuation="additive") -> MenuLP:
    types, alloc = np.asarray(types, float), np.asarray(alloc, float)
    payments, probs = np.asarray(payments, float), np.asarray(probs, float)
    return MenuLP(float(probs @ payments), types, probs, alloc, payments, valuation, False, 0.0)


def _posted_price_revenue(values, probs):
    """max over prices p in ``values`` of p·P(value ≥ p) (values: one number per type)."""
    return max(p * probs[values >= p - 1e-12].sum() for p in np.unique(values))


# --------------------------------------------------------------------------------------------
# 1. Chen–He–Li–Sun (REFERENCES.md, "Deterministic vs stochastic mechanisms"): 1 buyer, 2 goods,
#    additive, types (2,5), (3,2), (1,2) w.p. 1/3: randomised 34/9 = 3.777778, deterministic 10/3.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lazy", [True, False])
def test_chen_he_li_sun_randomised_and_deterministic(lazy):
    types, probs = [[2, 5], [3, 2], [1, 2]], np.full(3, 1 / 3)
    lp = solve_menu(types, probs, lazy_ic=lazy)
    det = solve_menu(types, probs, deterministic=True, lazy_ic=lazy)
    assert abs(lp.revenue - 34 / 9) < 1e-7
    assert abs(det.revenue - 10 / 3) < 1e-7
    for r in (lp, det):
        assert r.max_ic_violation() <= 1e-7
        assert np.all(r.utilities() >= -1e-9)  # IR
        assert abs(r.revenue - r.probs @ r.payments) < 1e-12
    assert np.any((lp.alloc > 1e-6) & (lp.alloc < 1 - 1e-6))  # the optimum is a lottery
    assert set(np.unique(det.alloc)) <= {0.0, 1.0}
    assert ((1.0, 1.0), 5.0) in lp.menu() and ((1.0, 1.0), 5.0) in det.menu()


# --------------------------------------------------------------------------------------------
# 2. One object: the optimal mechanism is a posted price (Myerson), on a grid: the best grid price
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_one_object_lp_is_the_best_posted_price(seed):
    values = np.arange(1.0, 16.0)
    probs = np.full(15, 1 / 15) if seed is None else np.random.default_rng(seed).dirichlet(np.ones(15))
    r = solve_menu(values[:, None], probs)
    assert abs(r.revenue - _posted_price_revenue(values, probs)) < 1e-8


# --------------------------------------------------------------------------------------------
# 3. Manelli–Vincent (REFERENCES.md): 2 iid U[0,1] items, optimum (12 + 2√2)/27 = 0.549201. The
#    midpoint grid LP overstates it and decreases toward it (within 5% at 20 points per axis).
# --------------------------------------------------------------------------------------------


def test_grid_lp_decreases_toward_manelli_vincent():
    revs = [solve_menu(*_u01_grid(2, n)).revenue for n in (10, 15, 20)]
    assert revs[0] > revs[1] > revs[2] >= MV - 1e-9
    assert revs[2] / MV - 1 < 0.05
    # measured when the discretisation was chosen (diffmech.lp.grid_from_marginals docstring)
    np.testing.assert_allclose(revs, [0.59, 0.575111, 0.56925], atol=1e-6)


def test_grid_from_marginals_cells_and_weights():
    types, probs = grid_from_marginals([Uniform(0.0, 1.0), PowerLaw(0.0, 2.0, 3.0)], 4)
    assert types.shape == (16, 2) and abs(probs.sum() - 1) < 1e-12
    np.testing.assert_allclose(np.unique(types[:, 0]), [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(np.unique(types[:, 1]), [0.25, 0.75, 1.25, 1.75])
    edges = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    w2 = np.diff(edges**3)  # F(v) = (v/2)^3 on the cells [0, .5], ..., [1.5, 2]
    expected = 0.25 * w2[np.round((types[:, 1] - 0.25) / 0.5).astype(int)]
    np.testing.assert_allclose(probs, expected, atol=1e-12)


def test_grid_from_samples_histogram():
    # perfectly correlated values: only diagonal cells carry mass
    x = np.linspace(0.0, 1.0, 1001)
    types, probs = grid_from_samples(np.column_stack([x, x]), [0.0, 0.0], [1.0, 1.0], 5)
    np.testing.assert_allclose(types, np.column_stack([[0.1, 0.3, 0.5, 0.7, 0.9]] * 2))
    assert abs(probs.sum() - 1) < 1e-12 and np.all(probs > 0)
    # iid samples land on the grid_from_marginals points exactly
    s = np.random.default_rng(0).uniform(size=(4000, 2))
    types, probs = grid_from_samples(s, 0.0, 1.0, 6)
    grid, gp = _u01_grid(2, 6)
    assert len(types) == 36 and {tuple(t) for t in types} == {tuple(t) for t in grid}
    assert np.max(np.abs(probs - 1 / 36)) < 0.02
    with pytest.raises(ConfigError, match="outside"):
        grid_from_samples(s + 1.0, 0.0, 1.0, 6)


# --------------------------------------------------------------------------------------------
# 4. Bikhchandani–Mishra equivalence: heterogeneous additive optimum = identical-objects optimum on
#    the law of the sorted type, for exchangeable priors on a permutation-closed grid.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m, points", [(2, 12), (3, 5)])
def test_heterogeneous_and_identical_optima_are_equal(m, points):
    types, probs = _u01_grid(m, points)
    out = solve_both_models(types, probs)
    assert out["exchangeable"] and out["rank_preserving"]  # Theorem 1: the symmetrised IC optimum is rank preserving
    assert out["heterogeneous_types"] == points**m
    assert out["identical_types"] == math.comb(points + m - 1, m)  # sorted tuples with repetition
    assert abs(out["identical_revenue"] / out["heterogeneous_revenue"] - 1) < 1e-7
    ident = out["identical"]
    assert np.all(np.diff(ident.types, axis=1) <= 0) and abs(ident.probs.sum() - 1) < 1e-12
    assert np.all(np.diff(ident.alloc, axis=1) <= 1e-9)  # feasibility (1): q_1 ≥ q_2 ≥ …
    assert ident.max_ic_violation() <= 1e-7


def test_to_identical_merges_permutations():
    types, probs = to_identical([[1, 2], [2, 1], [2, 2], [3, 0]], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(types, [[2, 1], [2, 2], [3, 0]])
    np.testing.assert_allclose(probs, [0.3, 0.3, 0.4])


# --------------------------------------------------------------------------------------------
# 5. Symmetry (Definition 1) and rank preservation (Definition 2)
# --------------------------------------------------------------------------------------------


def test_symmetrise_an_optimum_and_a_one_sided_mechanism():
    types, probs = _u01_grid(2, 10)
    opt = solve_menu(types, probs)
    sym = symmetrise(opt)
    assert symmetry_report(sym)["symmetric"] and rank_preservation_report(sym)["rank_preserving"]
    assert abs(sym.revenue - opt.revenue) < 1e-9 and sym.max_ic_violation() <= 1e-9

    # Sell object 1 only, at price 1/2: IC and IR but neither symmetric nor rank preserving.
    sold = types[:, 0] >= 0.5
    one = _table(types, probs, np.column_stack([sold, 0 * sold]), 0.5 * sold)
    assert one.max_ic_violation() <= 1e-12
    rep = symmetry_report(one)
    assert not rep["symmetric"] and rep["max_alloc_gap"] == 1.0 and rep["max_payment_gap"] == 0.5
    rp = rank_preservation_report(one)
    # violators: v2 > v1 ≥ 1/2 (q = (1, 0) although object 2 is worth more)
    v1, v2 = types[:, 0], types[:, 1]
    direct = np.mean((v2 > v1) & (v1 >= 0.5))
    assert not rp["rank_preserving"] and abs(rp["share_violating"] - direct) < 1e-12 and direct > 0
    s = symmetrise(one)
    assert symmetry_report(s)["symmetric"] and rank_preservation_report(s)["rank_preserving"]
    assert s.max_ic_violation() <= 1e-12 and abs(s.revenue - one.revenue) < 1e-12
    np.testing.assert_allclose(s.alloc, 0.5 * np.column_stack([sold, types[:, 1] >= 0.5]))


def test_example_1_is_symmetric_but_not_rank_preserving_nor_ic():
    """B&M Example 1: q = (0, 1) if v1 > v2, (1, 0) if v1 < v2, t = 0 (ties: (½, ½))."""
    n = 6
    types, probs = _u01_grid(2, n)
    v1, v2 = types[:, 0], types[:, 1]
    q = np.where((v1 > v2)[:, None], [0.0, 1.0], np.where((v1 < v2)[:, None], [1.0, 0.0], [0.5, 0.5]))
    ex = _table(types, probs, q, np.zeros(len(types)))
    assert symmetry_report(ex)["symmetric"]
    rp = rank_preservation_report(ex)
    assert not rp["rank_preserving"] and rp["max_violation"] == 1.0
    assert abs(rp["share_violating"] - (1 - 1 / n)) < 1e-12  # every off-diagonal type
    # type (0.917, 0.083) gets 0.083; reporting (0.083, 0.917) gives 0.917
    assert abs(ex.max_ic_violation() - (types.max() - types.min())) < 1e-12
    with pytest.raises(ConfigError, match="closed under permutations"):
        symmetrise(_table([[2, 5], [3, 2]], [0.5, 0.5], [[0, 0], [0, 0]], [0, 0]))


# --------------------------------------------------------------------------------------------
# 6. Unit demand
# --------------------------------------------------------------------------------------------


def test_unit_demand_lottery_and_uniform_price_benchmark():
    types, probs = _u01_grid(2, 12)
    r = solve_menu(types, probs, "unit_demand")
    assert np.all(r.alloc.sum(axis=1) <= 1 + 1e-9)
    assert r.max_ic_violation() <= 1e-7 and np.all(r.utilities() >= -1e-9)
    uniform = _posted_price_revenue(types.max(axis=1), probs)  # one price for either item
    assert r.revenue >= uniform - 1e-9
    assert r.revenue <= solve_menu(types, probs).revenue + 1e-9  # fewer options than additive
    assert abs(r.revenue - solve_menu(types, probs, "unit_demand", lazy_ic=False).revenue) < 1e-8


# --------------------------------------------------------------------------------------------
# 7. Identical model and input validation
# --------------------------------------------------------------------------------------------


def test_identical_model_and_lazy_rows_match_all_rows():
    types, probs = to_identical(*_u01_grid(3, 4))
    lazy = solve_menu(types, probs, "identical")
    full = solve_menu(types, probs, "identical", lazy_ic=False)
    assert np.all(lazy.alloc[:, 0] >= lazy.alloc[:, 1] - 1e-9)
    assert np.all(lazy.alloc[:, 1] >= lazy.alloc[:, 2] - 1e-9)
    assert abs(lazy.revenue - full.revenue) < 1e-8


def _one_line_error(match, *args, **kwargs):
    with pytest.raises(ConfigError, match=match) as e:
        solve_menu(*args, **kwargs)
    assert "\n" not in str(e.value)


def test_bad_inputs_raise_one_line_config_errors():
    ok_t, ok_p = [[2.0, 1.0], [1.0, 1.0]], [0.5, 0.5]
    _one_line_error("to_identical", [[1.0, 2.0], [1.0, 1.0]], ok_p, "identical")
    _one_line_error("non-negative", ok_t, [1.5, -0.5])
    _one_line_error("sum to 1", ok_t, [0.5, 0.6])
    _one_line_error("shape", ok_t, [1.0])
    _one_line_error("2-D", [1.0, 2.0], ok_p)
    _one_line_error("finite", [[np.nan, 1.0], [1.0, 1.0]], ok_p)
    _one_line_error("unknown valuation", ok_t, ok_p, "xor")
    _one_line_error("fewer grid points", np.arange(2001.0)[:, None], np.full(2001, 1 / 2001))
    _one_line_error("time_limit", ok_t, ok_p, time_limit=-1)
    types, probs = _u01_grid(2, 20)
    _one_line_error("time_limit", types, probs, time_limit=1e-4, lazy_ic=False)
    # tiny float error in probs is normalised
    r = solve_menu(ok_t, [0.5, 0.5 + 1e-12])
    assert abs(r.probs.sum() - 1) < 1e-15


# --------------------------------------------------------------------------------------------
# 8. Deterministic MILP
# --------------------------------------------------------------------------------------------


def test_deterministic_milp_between_simple_menus_and_the_lp():
    types, probs = grid_from_marginals([Uniform(1.0, 2.0), Uniform(0.0, 3.0)], 6)
    det = solve_menu(types, probs, deterministic=True)
    lp = solve_menu(types, probs)
    assert np.all(np.abs(det.alloc - np.round(det.alloc)) <= 1e-6)
    assert det.max_ic_violation() <= 1e-6 and np.all(det.utilities() >= -1e-6)
    assert det.revenue <= lp.revenue + 1e-9
    assert lp.revenue - det.revenue > 1e-3  # randomisation strictly helps on this grid
    separate = sum(_posted_price_revenue(types[:, j], probs) for j in range(2))
    bundle = _posted_price_revenue(types.sum(axis=1), probs)
    assert det.revenue >= max(separate, bundle) - 1e-9
    assert abs(det.revenue - solve_menu(types, probs, deterministic=True, lazy_ic=False).revenue) < 1e-8
