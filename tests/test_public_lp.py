"""Tests of diffmech.public_lp: the exact surplus-maximising public-goods mechanism (Fang–Norman).

Reference values are copied from /work/shared/REFERENCES.md, section "Excludable public goods
(Fang–Norman appendix)" (the project never reads that file at run time):

    2 goods, θ_i^j ∈ {1, 3}, P(3) = 0.4, iid over goods and agents, C(n) = 1.25·n per good:
    first best / optimum (bundling allowed) / separate provision
        n = 2: 2.56 / 2.56 / 2.56            n = 3: 3.624 / 3.624 / 3.624
        n = 4: 4.659200 / 4.576492 / 4.539733 n = 5: 5.694400 / 5.523807 / 5.486778
    1 good, n = 2, θ_i ~ U[0, 1], C = 1: optimal surplus 9/64.

Incentive feasibility of the returned tables is checked with the independent interim kernels of
diffmech.interim, in float64.
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np
import pytest

from diffmech._compat import enable_x64
from diffmech.errors import ConfigError
from diffmech.interim import exact_nodes, ex_ante, interim_regret, interim_utility, others_profiles, product_profiles
from diffmech.mechanisms import mechanism_from_config
from diffmech.mechanisms.analytic.public_lp_mechanism import NoExclusion, PublicLP, SeparateProvision, cached_solution
from diffmech.public_lp import first_best_surplus, solve_public_lp, solve_public_lp_arrays
from diffmech.settings import setting_from_config

# REFERENCES.md, "Excludable public goods": n -> (first best, optimum, separate provision)
TABLE = {
    2: (2.56, 2.56, 2.56),
    3: (3.624, 3.624, 3.624),
    4: (4.659200, 4.576492, 4.539733),
    5: (5.694400, 5.523807, 5.486778),
}


def binary(n: int, **extra):
    cfg = dict(
        kind="public_goods", n_agents=n, prior=dict(dist="discrete", values=[1, 3], probs=[0.6, 0.4]), n_goods=2,
        cost_per_agent=1.25,
    )
    return setting_from_config({**cfg, **extra})


def correlated(budget="ex_ante"):
    """Five type vectors with correlated goods and one off-grid type; exclusion is used here."""
    return setting_from_config(
        dict(
            kind="public_goods", n_agents=3, types=[[1, 1], [1, 3], [3, 1], [3, 3], [2, 0]],
            probs=[0.3, 0.2, 0.2, 0.2, 0.1], cost=[4.0, 3.0], budget=budget,
        )
    )


# --------------------------------------------------------------------------------------------
# 1. The REFERENCES table, both formulations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_references_table(n):
    setting = binary(n)
    fb, opt, sep = TABLE[n]
    assert abs(first_best_surplus(setting) - fb) < 1e-6
    values = {}
    for method in ("profiles", "counts"):
        best = solve_public_lp_arrays(setting, method=method)
        assert best.method == method
        assert abs(best.first_best - fb) < 1e-6
        assert abs(best.surplus - opt) < 1e-6, (method, best.surplus)
        alone = solve_public_lp_arrays(setting, restriction="separate", method=method)
        assert abs(alone.surplus - sep) < 1e-6, (method, alone.surplus)
        values[method] = (best.surplus, alone.surplus)
    # Claim B2: the anonymous (counts) LP has the same optimum as the full-profile LP
    assert np.allclose(values["profiles"], values["counts"], atol=1e-8, rtol=0)


def test_profiles_equal_counts_with_exclusion_and_correlated_goods():
    setting = correlated()
    for restriction in ("none", "separate", "no_exclusion"):
        a = solve_public_lp_arrays(setting, restriction=restriction, method="profiles").surplus
        b = solve_public_lp_arrays(setting, restriction=restriction, method="counts").surplus
        assert abs(a - b) < 1e-8, restriction


def test_orderings_and_exclusion_helps():
    """first best ≥ optimum ≥ each restriction; on four values per good exclusion strictly helps
    (and bundling strictly beats separate provision in the binary n = 5 instance above)."""
    s = setting_from_config(
        dict(kind="public_goods", n_agents=10, prior=dict(dist="discrete", values=[0, 1, 2, 3], probs=[0.25] * 4),
             n_goods=1, cost_per_agent=1.6)
    )
    best = solve_public_lp_arrays(s, method="counts").surplus
    pure = solve_public_lp_arrays(s, restriction="no_exclusion", method="counts").surplus
    assert first_best_surplus(s) > best > pure + 0.1  # 0.485 vs 0.188 in total at n = 10
    five = binary(5)
    five_best = solve_public_lp_arrays(five).surplus
    assert TABLE[5][2] + 1e-3 < solve_public_lp_arrays(five, restriction="no_exclusion").surplus <= five_best + 1e-9


def test_one_good_uniform_discretisation_approaches_9_64():
    """REFERENCES: 1 good, n = 2, θ ~ U[0,1], C = 1 has optimum 9/64. Midpoint grids of K values
    (weights 1/K) give LP optima that decrease toward it as K grows."""
    vals = []
    for k in (10, 20, 40):
        v = ((np.arange(k) + 0.5) / k).tolist()
        s = setting_from_config(
            dict(kind="public_goods", n_agents=2, prior=dict(dist="discrete", values=v, probs=[1 / k] * k), n_goods=1, cost=1.0)
        )
        vals.append(solve_public_lp_arrays(s, method="counts").surplus)
    assert vals[0] > vals[1] > vals[2] > 9 / 64
    assert vals[2] - 9 / 64 < 4e-3


# --------------------------------------------------------------------------------------------
# 2. The returned table is incentive feasible (independent interim kernels, float64)
# --------------------------------------------------------------------------------------------


def _check_feasible(setting, result, tol=1e-7):
    mech = result.mechanism
    nodes = exact_nodes(setting, jnp.float64)
    others, w = others_profiles(nodes)
    table = interim_utility(mech, setting, nodes.points, nodes.points, others, w)  # (n, K, R)
    truthful = jnp.diagonal(table, axis1=1, axis2=2)
    assert float(interim_regret(table, truthful).max()) <= tol  # Bayesian IC
    assert float(truthful.min()) >= -tol  # interim IR
    prof, pw = product_profiles(nodes)
    surplus, revenue, cost, _ = ex_ante(setting, mech, prof, pw)
    assert float(revenue - cost) >= -tol  # ex ante budget balance
    assert abs(float(surplus) - result.surplus) <= tol  # the table attains the LP value
    out = mech(prof)
    assert float(jnp.min(out.provision)) >= 0.0 and float(jnp.max(out.provision)) <= 1.0
    assert float(jnp.min(out.inclusion)) >= 0.0 and float(jnp.max(out.inclusion)) <= 1.0
    return out, prof


@pytest.mark.parametrize(
    "n,restriction,method",
    [(3, "none", "profiles"), (4, "none", "profiles"), (4, "none", "counts"), (5, "none", "counts"),
     (4, "separate", "auto"), (4, "no_exclusion", "counts")],
)
def test_table_is_incentive_feasible(n, restriction, method):
    setting = binary(n)
    with enable_x64():
        result = solve_public_lp(setting, restriction=restriction, method=method)
        assert result.restriction == restriction and result.status
        _check_feasible(setting, result)
        if restriction == "no_exclusion":
            assert float(jnp.min(result.mechanism.inclusion)) == 1.0


def test_correlated_goods_with_exclusion_is_feasible():
    setting = correlated()
    with enable_x64():
        result = solve_public_lp(setting, method="counts")
        out, _ = _check_feasible(setting, result)
        # the 0/0 convention: inclusion is 1 wherever the good is not provided
        off = np.asarray(out.provision)[:, None, :] == 0.0
        assert np.all(np.asarray(out.inclusion)[np.broadcast_to(off, out.inclusion.shape)] == 1.0)
        _check_feasible(setting, solve_public_lp(setting, restriction="separate"))


def test_ex_post_budget_balance_reaches_the_same_optimum():
    """With independent types an ex ante balanced mechanism can be rebalanced profile by profile
    without changing interim transfers, so ex post budget balance costs nothing (n ≥ 2)."""
    ante, post = correlated("ex_ante"), correlated("ex_post")
    with enable_x64():
        result = solve_public_lp(post)
        assert abs(result.surplus - solve_public_lp_arrays(ante).surplus) < 1e-8
        out, _ = _check_feasible(post, result)
        assert float(jnp.max(jnp.abs(post.budget_surplus(out)))) < 1e-9


# --------------------------------------------------------------------------------------------
# 3. Registry mechanisms, errors, sizes
# --------------------------------------------------------------------------------------------


def test_registry_mechanisms_and_cache():
    setting = binary(4)
    mech = mechanism_from_config(setting, {"kind": "public_lp"})
    assert isinstance(mech, PublicLP) and abs(mech.surplus - TABLE[4][1]) < 1e-6
    sep = mechanism_from_config(setting, {"kind": "separate_provision", "method": "counts"})
    assert isinstance(sep, SeparateProvision) and abs(sep.surplus - TABLE[4][2]) < 1e-6
    none = mechanism_from_config(setting, {"kind": "no_exclusion"})
    assert isinstance(none, NoExclusion) and none.restriction == "no_exclusion"
    start = time.perf_counter()
    again = mechanism_from_config(setting, {"kind": "public_lp", "restriction": "none"})
    assert time.perf_counter() - start < 0.5 and again.surplus == mech.surplus
    assert cached_solution(setting, "none", "auto") is cached_solution(setting, "none", "auto")
    reports = jnp.asarray([[[3.0, 1.0]] * 4, [[1.0, 1.0]] * 4])
    out = mech(reports)
    assert out.provision.shape == (2, 2) and out.inclusion.shape == (2, 4, 2) and out.payments.shape == (2, 4)


def test_errors():
    cont = setting_from_config(
        dict(kind="public_goods", n_agents=2, prior=dict(dist="uniform", low=0.0, high=1.0), n_goods=1, cost=1.0)
    )
    with pytest.raises(ConfigError, match="finite type space"):
        solve_public_lp(cont)
    with pytest.raises(ConfigError, match="finite type space"):
        mechanism_from_config(cont, {"kind": "public_lp"})
    single = setting_from_config(dict(kind="single_item", priors=[dict(dist="uniform", low=0.0, high=1.0)] * 2))
    with pytest.raises(ConfigError, match="public_goods"):
        mechanism_from_config(single, {"kind": "separate_provision"})
    with pytest.raises(ConfigError, match="restriction"):
        solve_public_lp(binary(2), restriction="bundled")
    with pytest.raises(ConfigError, match="unknown key"):
        mechanism_from_config(binary(2), {"kind": "no_exclusion", "restriction": "none"})
    with pytest.raises(ConfigError, match="counts"):
        solve_public_lp(binary(9), method="profiles")  # 4^9 profiles


def test_large_instance_uses_counts_without_table():
    """n = 9: 4^9 = 262144 profiles — the counts LP (220 cells) solves it; no table is built."""
    result = solve_public_lp(binary(9))
    assert result.method == "counts" and result.mechanism is None
    assert first_best_surplus(binary(9)) > result.surplus > solve_public_lp(binary(9), restriction="separate").surplus
    with pytest.raises(ConfigError, match="too large"):
        mechanism_from_config(binary(9), {"kind": "public_lp"})
