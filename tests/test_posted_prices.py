"""Posted-price baselines: the grand-bundle price, one price for every item (unit demand and
additive), and the uniform-price mechanism for identical units (Bikhchandani–Mishra §5.3)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech.config import EvalConfig
from diffmech.evaluate import regret_attack
from diffmech.mechanisms.analytic.posted_prices import (
    _IndependentSum,
    bundle_revenue,
    item_price_revenue,
    optimal_bundle_price,
    optimal_item_price,
)
from diffmech.mechanisms.analytic.uniform_price import optimal_uniform_price, uniform_price_revenue
from diffmech.priors import Discrete, Uniform

U01 = {"dist": "uniform", "low": 0.0, "high": 1.0}


def _multi(m, valuation="additive", prior=U01, n=1, **extra):
    cfg = {"kind": "multi_item", "prior": prior, "n_agents": n, "n_items": m, "valuation": valuation, **extra}
    return dm.setting_from_config(cfg)


def _identical(n, prior=U01):
    return dm.setting_from_config({"kind": "identical_items", "prior": prior, "n_items": n})


def _mc_revenue(mech, types):
    pay = np.asarray(jnp.sum(mech(types).payments, axis=-1), np.float64)
    return pay.mean(), pay.std(ddof=1) / math.sqrt(pay.size)


# ----------------------------------------------------------------------------- bundle price


def test_bundle_price_two_uniform_items_reference():
    """Pure bundling, 1 buyer × 2 items iid U[0,1] (REFERENCES.md): P(v1 + v2 ≥ p) = 1 − p²/2 on
    [0, 1], so p* = √(2/3) and revenue (2/3)√(2/3) = 0.544331. Optimum to 1e-6 (exact formula);
    the mechanism's Monte Carlo revenue on 200k samples within 4 s.e.; ex post IR."""
    s = _multi(2)
    p, rev = optimal_bundle_price(s)
    assert abs(p - math.sqrt(2 / 3)) < 1e-6
    assert abs(rev - (2 / 3) * math.sqrt(2 / 3)) < 1e-6
    assert abs(bundle_revenue(s, 0.5) - 0.5 * (1 - 0.125)) < 1e-12
    mech = dm.mechanism_from_config(s, {"kind": "bundle_price"})
    assert mech.price == p
    types = s.sample(jax.random.PRNGKey(7), 200_000)
    mean, se = _mc_revenue(mech, types)
    assert abs(mean - rev) < 4 * se
    out = mech(types)
    bought = np.asarray(types.sum(-1) >= p)
    assert np.array_equal(np.asarray(out.alloc[..., 0]), bought) and np.array_equal(np.asarray(out.alloc[..., 1]), bought)
    assert float(jnp.min(s.utility(types, out))) >= 0.0


def test_bundle_sum_law_methods_agree():
    """The lattice convolution against exact laws: three unequal uniforms (exact piecewise-polynomial
    cdf) and a {0, 1} coin plus U[0,1] (P(S ≥ p) = ½P(U ≥ p) + ½P(U ≥ p − 1)); 1e-9 / 1e-7."""
    priors = [Uniform(0.0, 1.0), Uniform(0.5, 2.0), Uniform(1.0, 1.3)]
    exact, lattice = _IndependentSum(priors, "uniform"), _IndependentSum(priors, "lattice")
    ps = np.array([1.6, 2.0, 2.3, 2.9, 3.7])
    assert np.max(np.abs(exact.survival(ps) - lattice.survival(ps))) < 1e-9
    pe, re = exact.optimum()
    pl, rl = lattice.optimum()
    assert abs(re - rl) < 1e-9 and abs(pe - pl) < 1e-4  # the price only to ~ the lattice step (flat top)

    coin = Discrete([0.0, 1.0], [0.5, 0.5])
    mixed = _IndependentSum([coin, Uniform(0.0, 1.0)])
    assert mixed.method == "lattice"
    ps = np.array([0.2, 0.7, 1.0, 1.4, 1.9])
    want = 0.5 * np.clip(1 - ps, 0, 1) + 0.5 * np.clip(2 - ps, 0, 1)
    assert np.max(np.abs(mixed.survival(ps) - want)) < 1e-7

    coins = _IndependentSum([coin, coin, coin])  # exact enumeration: P(S ≥ k) = 1, 7/8, 1/2, 1/8
    assert coins.method == "discrete"
    assert np.allclose(coins.survival(np.array([0.0, 1.0, 2.0, 3.0, 3.5])), [1, 7 / 8, 1 / 2, 1 / 8, 0], atol=1e-15)
    assert coins.optimum() == pytest.approx((2.0, 1.0), abs=1e-12)


def test_bundle_price_correlated_prior_uses_fixed_sample():
    """common_weight 0.5: the price comes from a fixed 2^20-draw sample (deterministic), and its
    in-sample revenue agrees with a fresh Monte Carlo evaluation of the mechanism (4 combined s.e.)."""
    s = _multi(2, common_weight=0.5)
    p, rev = optimal_bundle_price(s)
    assert optimal_bundle_price(s) == (p, rev)
    assert bundle_revenue(s, p) == pytest.approx(rev, abs=1e-12)
    mech = dm.mechanism_from_config(s, {"kind": "bundle_price"})
    mean, se = _mc_revenue(mech, s.sample(jax.random.PRNGKey(3), 200_000))
    se_fixed = p * 0.5 / math.sqrt(2**20)  # s.e. of the sample estimate (Bernoulli sd ≤ 1/2)
    assert abs(mean - rev) < 4 * math.hypot(se, se_fixed)
    # correlation makes the sum more dispersed than with independent items: bundling earns more
    assert rev > (2 / 3) * math.sqrt(2 / 3) + 0.005


# ----------------------------------------------------------------------------- one price for every item


def test_uniform_item_price_unit_demand_reference_and_dsic():
    """Unit demand, 2 items iid U[0,1]: revenue p(1 − p²), p = 1/√3, 2/(3√3) = 0.3849 (1e-6).
    DSIC: the exhaustive product-grid attack (plus gradient steps) finds no gain above 1e-6."""
    s = _multi(2, "unit_demand")
    p, rev = optimal_item_price(s)
    assert abs(p - 1 / math.sqrt(3)) < 1e-6 and abs(rev - 2 / (3 * math.sqrt(3))) < 1e-6
    mech = dm.mechanism_from_config(s, {"kind": "uniform_item_price"})
    assert mech.price == p
    types = s.sample(jax.random.PRNGKey(1), 300)
    gains = regret_attack(mech, s, types, jax.random.PRNGKey(2), EvalConfig(grid_points=900, attack_steps=20))
    assert gains.max() <= 1e-6
    big = s.sample(jax.random.PRNGKey(4), 200_000)
    out = mech(big)
    mean, se = _mc_revenue(mech, big)
    assert abs(mean - rev) < 4 * se
    assert float(jnp.max(s.feasibility_violation(out))) == 0.0
    assert float(jnp.min(s.utility(big, out))) >= 0.0


def test_uniform_item_price_unit_demand_rule_and_ties():
    mech = dm.mechanism_from_config(_multi(3, "unit_demand"), {"kind": "uniform_item_price", "price": 0.5})
    b = jnp.asarray([[[0.4, 0.3, 0.1]], [[0.6, 0.9, 0.9]], [[0.5, 0.2, 0.5]]])
    out = mech(b)
    np.testing.assert_array_equal(np.asarray(out.alloc[:, 0]), [[0, 0, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(np.asarray(out.payments[:, 0]), [0.0, 0.5, 0.5])


def test_uniform_item_price_unit_demand_u23():
    """Unit demand, 2 items iid U[2,3]: Rev(p) = p(1 − (p − 2)²) on [2, 3]; with x = p − 2 the
    first-order condition 1 − 4x − 3x² = 0 gives x = (√7 − 2)/3, p = (4 + √7)/3 ≈ 2.21525 and
    revenue ≈ 2.11261: above 2 (price 2, always sold) and below 2.137, the published optimum over
    all mechanisms for this instance."""
    s = _multi(2, "unit_demand", {"dist": "uniform", "low": 2.0, "high": 3.0})
    p, rev = optimal_item_price(s)
    x = (math.sqrt(7) - 2) / 3
    assert abs(p - (2 + x)) < 1e-6
    assert abs(rev - (2 + x) * (1 - x * x)) < 1e-9
    assert 2.0 < rev < 2.137


def test_uniform_item_price_additive_and_atoms():
    """Additive: one common price = selling separately, p·Σ_j P(v_j ≥ p) (0.5 at p = 1/2 for two
    U[0,1] items, REFERENCES.md). Discrete values {1, 2} w.p. ½: a unit worth exactly p is bought
    (P(v ≥ p) = 1 − F(p⁻)), so for unit demand p = 2 earns 2·(1 − ¼) = 1.5 > 1 (p = 1)."""
    s = _multi(2)
    p, rev = optimal_item_price(s)
    assert abs(p - 0.5) < 1e-6 and abs(rev - 0.5) < 1e-9
    mech = dm.mechanism_from_config(s, {"kind": "uniform_item_price", "price": 0.5})
    out = mech(jnp.asarray([[[0.7, 0.5]], [[0.2, 0.9]], [[0.1, 0.3]]]))
    np.testing.assert_array_equal(np.asarray(out.alloc[:, 0]), [[1, 1], [0, 1], [0, 0]])
    np.testing.assert_array_equal(np.asarray(out.payments[:, 0]), [1.0, 0.5, 0.0])

    coin = {"dist": "discrete", "values": [1.0, 2.0], "probs": [0.5, 0.5]}
    sd = _multi(2, "unit_demand", coin)
    assert optimal_item_price(sd) == pytest.approx((2.0, 1.5), abs=1e-12)
    assert item_price_revenue(sd, 1.0) == pytest.approx(1.0, abs=1e-12)
    assert item_price_revenue(_multi(2, "additive", coin), 2.0) == pytest.approx(2.0, abs=1e-12)


# ----------------------------------------------------------------------------- uniform price, identical units


@pytest.mark.parametrize("n", [2, 3])
def test_optimal_uniform_price_reference(n):
    """G_avg = U[0,1]: REV(p) = n·p(1 − p) (eq. (12)), p† = 1/2, REV = n/4 (REFERENCES.md §5.3)."""
    p, rev = optimal_uniform_price(_identical(n))
    assert abs(p - 0.5) < 1e-9 and abs(rev - n / 4) < 1e-9
    assert uniform_price_revenue(0.3, 0.3, n) == pytest.approx(n * 0.3 * 0.7, abs=1e-15)
    mech = dm.mechanism_from_config(_identical(n), {"kind": "uniform_price"})
    assert abs(mech.price - 0.5) < 1e-9


def _sorted_types(kind, n, key, size):
    u = jax.random.uniform(key, (size,), dtype=jnp.float32)
    if kind == "iid":
        return _identical(n).sample(key, size)
    if kind == "comonotone":
        return jnp.repeat(u[:, None, None], n, axis=-1)
    return jnp.stack([jnp.maximum(u, 1 - u), jnp.minimum(u, 1 - u)], axis=-1)[:, None, :]  # antithetic


@pytest.mark.parametrize("n, law", [(2, "iid"), (3, "iid"), (2, "comonotone"), (3, "comonotone"), (2, "antithetic")])
@pytest.mark.parametrize("price", [0.3, 0.5])
def test_uniform_price_revenue_is_robust(n, law, price):
    """Proposition 6 / eq. (12): three joint laws of sorted types with average marginal U[0,1]
    (sorted iid, comonotone v_1 = … = v_n = U, antithetic (max(U, 1−U), min(U, 1−U))) all earn
    n·p(1 − p) (Monte Carlo, 4 s.e.; the antithetic law at p = 1/2 earns exactly 1/2 per draw,
    hence the 1e-9 floor); the allocation is always feasible (q_1 ≥ q_2 ≥ …)."""
    s = _identical(n)
    mech = dm.mechanism_from_config(s, {"kind": "uniform_price", "price": price})
    types = _sorted_types(law, n, jax.random.PRNGKey(11), 200_000)
    mean, se = _mc_revenue(mech, types)
    assert abs(mean - n * price * (1 - price)) < 4 * se + 1e-9
    out = mech(types)
    assert float(jnp.max(s.feasibility_violation(out))) == 0.0
    assert float(jnp.min(s.utility(types, out))) >= 0.0


def test_uniform_price_rule_sorts_and_is_dsic():
    s = _identical(2)
    mech = dm.mechanism_from_config(s, {"kind": "uniform_price", "price": 0.4})
    out = mech(jnp.asarray([[[0.9, 0.5]], [[0.2, 0.6]], [[0.3, 0.1]]]))  # the second is unsorted
    np.testing.assert_array_equal(np.asarray(out.alloc[:, 0]), [[1, 1], [1, 0], [0, 0]])
    np.testing.assert_allclose(np.asarray(out.payments[:, 0]), [0.8, 0.4, 0.0], atol=1e-7)
    gains = regret_attack(mech, s, s.sample(jax.random.PRNGKey(5), 200), jax.random.PRNGKey(6), EvalConfig(grid_points=800, attack_steps=10))
    assert gains.max() <= 1e-6


def test_uniform_price_correlated_prior():
    """common_weight 0.5: G_avg is the common marginal of w·z + (1 − w)·x; the fixed-sample optimum
    agrees with a fresh Monte Carlo evaluation of the mechanism (4 combined s.e.)."""
    s = dm.setting_from_config({"kind": "identical_items", "prior": U01, "n_items": 2, "common_weight": 0.5})
    p, rev = optimal_uniform_price(s)
    mech = dm.mechanism_from_config(s, {"kind": "uniform_price"})
    assert mech.price == p
    mean, se = _mc_revenue(mech, s.sample(jax.random.PRNGKey(9), 200_000))
    se_fixed = 2 * p * 0.5 / math.sqrt(2**20)  # 2^20 draws (two correlated values each): conservative
    assert abs(mean - rev) < 4 * math.hypot(se, se_fixed)


# ----------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    "setting, options, match",
    [
        (lambda: _multi(2, n=2), {"kind": "bundle_price"}, "one buyer"),
        (lambda: _multi(2, "unit_demand"), {"kind": "bundle_price"}, "uniform_item_price"),
        (lambda: _identical(2), {"kind": "bundle_price"}, "uniform_price"),
        (lambda: _multi(2), {"kind": "bundle_price", "price": -1.0}, "≥ 0"),
        (lambda: _multi(2), {"kind": "bundle_price", "reserve": 1.0}, "unknown key"),
        (lambda: _multi(2, "unit_demand", n=2), {"kind": "uniform_item_price"}, "one buyer"),
        (lambda: _identical(2), {"kind": "uniform_item_price"}, "uniform_price"),
        (lambda: _multi(2, "unit_demand"), {"kind": "uniform_item_price", "price": "high"}, "finite number"),
        (lambda: _multi(2), {"kind": "uniform_price"}, "uniform_item_price"),
        (lambda: dm.setting_from_config({"kind": "single_item", "prior": U01, "n_agents": 2}), {"kind": "uniform_price"}, "identical_items"),
        (lambda: _identical(2), {"kind": "uniform_price", "price": float("nan")}, "finite number"),
        (lambda: _identical(2), {"kind": "uniform_price", "prices": 0.5}, "unknown key"),
    ],
)
def test_configuration_errors(setting, options, match):
    with pytest.raises(dm.ConfigError, match=match) as err:
        dm.mechanism_from_config(setting(), options)
    assert "\n" not in str(err.value)
