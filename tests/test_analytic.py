"""Analytic single-item mechanisms against closed forms.

Comparisons at 1e-9 run in float64 (inside ``with enable_x64():``); Monte Carlo checks use a fixed
key and a 4-standard-error band.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmech._compat import enable_x64
from diffmech.errors import ConfigError
from diffmech.mechanisms.analytic.first_price import FirstPrice
from diffmech.mechanisms.analytic.myerson import Myerson
from diffmech.mechanisms.analytic.second_price import (
    VCG,
    BestReserveSecondPrice,
    SecondPrice,
    best_anonymous_reserve,
    second_price_revenue,
)
from diffmech.priors import Prior, Uniform
from diffmech.revenue import interim_allocation, interim_outcome, interim_payment, myerson_revenue
from diffmech.settings.single_item import SingleItem


# ----------------------------------------------------------------------------- test priors
class TwoStep(Prior):
    """Irregular prior on [0, 1]: density 1.6 on [0, 0.5], 0.4 on (0.5, 1].

    φ(v) = 2v − 0.625 on [0, 0.5] and 2v − 1 on (0.5, 1] (drops from 0.375 to 0 at 0.5). Ironing
    (∫_{z1}^{z2} (φ − c) f = 0 with φ(z1) = φ(z2) = c) gives the flat c = 0.25 on [0.4375, 0.625]:
    φ̄ = 2v − 0.625 below 0.4375, 0.25 on the flat, 2v − 1 above 0.625; reserve φ̄ = 0 at 0.3125.
    """

    name: ClassVar[str] = "two_step_test"

    @property
    def low(self):
        return 0.0

    @property
    def high(self):
        return 1.0

    def sample(self, key, shape):
        return self.icdf(jax.random.uniform(key, shape))

    def cdf(self, v):
        return jnp.clip(jnp.where(v <= 0.5, 1.6 * v, 0.8 + 0.4 * (v - 0.5)), 0.0, 1.0)

    def pdf(self, v):
        return jnp.where((v >= 0) & (v <= 1), jnp.where(v <= 0.5, 1.6, 0.4), 0.0)

    def icdf(self, u):
        return jnp.where(u <= 0.8, u / 1.6, 0.5 + (u - 0.8) / 0.4)

    def virtual_value(self, v):
        return jnp.where(v <= 0.5, 2 * v - 0.625, 2 * v - 1.0)

    def ironed_virtual_value(self, v):
        return jnp.where(v < 0.4375, 2 * v - 0.625, jnp.where(v <= 0.625, 0.25 + 0 * v, 2 * v - 1.0))

    def to_config(self):
        return {"dist": self.name}


class TwoAtoms(Prior):
    """Discrete prior P(v = 1) = P(v = 2) = 1/2.

    Discrete virtual values φ(a_k) = a_k − (a_{k+1} − a_k)(1 − F(a_k))/P(a_k): φ(1) = 0, φ(2) = 2;
    as a right-continuous step, φ̄ = 0 on [1, 2) and 2 at 2.
    """

    name: ClassVar[str] = "two_atoms_test"
    discrete: ClassVar[bool] = True

    @property
    def low(self):
        return 1.0

    @property
    def high(self):
        return 2.0

    def sample(self, key, shape):
        return jnp.where(jax.random.bernoulli(key, 0.5, shape), 2.0, 1.0)

    def cdf(self, v):
        return jnp.where(v >= 2, 1.0, jnp.where(v >= 1, 0.5, 0.0))

    def pdf(self, v):
        return jnp.where((v == 1) | (v == 2), 0.5, 0.0)

    def icdf(self, u):
        return jnp.where(u <= 0.5, 1.0, 2.0)

    def virtual_value(self, v):
        return jnp.where(v >= 2, 2.0, 0.0) + 0 * v

    def ironed_virtual_value(self, v):
        return self.virtual_value(v)

    def atoms(self):
        return np.array([1.0, 2.0])

    def to_config(self):
        return {"dist": self.name}


def profiles(*rows):
    return jnp.asarray(np.asarray(rows, dtype=np.float64)[..., None])


def monte_carlo_revenue(mech, setting, n_samples=200_000, seed=0):
    v = setting.sample(jax.random.PRNGKey(seed), n_samples)
    rev = np.asarray(jax.jit(lambda r: mech(r).payments.sum(axis=1))(v), dtype=np.float64)
    return rev.mean(), rev.std(ddof=1) / np.sqrt(n_samples)


# ------------------------------------------------------------------- Myerson, uniform priors
# Source: REFERENCES.md, single item — n iid U[0,1] bidders, optimal revenue
#   Rev*(n) = 2n/(n+1)·(1 − 2^−(n+1)) − (1 − 2^−n).
MYERSON_UNIFORM = {1: 0.25, 2: 5 / 12, 3: 0.53125, 4: 0.6125, 5: 0.671875, 10: 9217 / 11264}


@pytest.mark.parametrize("n", sorted(MYERSON_UNIFORM))
def test_myerson_revenue_iid_uniform_quadrature(n):
    expected = MYERSON_UNIFORM[n]
    assert expected == pytest.approx(2 * n / (n + 1) * (1 - 2.0 ** -(n + 1)) - (1 - 2.0**-n), abs=1e-15)
    # quadrature split at the kinks is exact for polynomial pieces: compared at 1e-9 in float64
    assert abs(myerson_revenue([Uniform()] * n) - expected) < 1e-9


@pytest.mark.parametrize("n", sorted(MYERSON_UNIFORM))
def test_myerson_revenue_iid_uniform_monte_carlo(n):
    setting = SingleItem([Uniform()] * n)
    mean, se = monte_carlo_revenue(Myerson(setting.priors), setting, seed=n)
    assert abs(mean - MYERSON_UNIFORM[n]) < 4 * se


# ------------------------------------------------------------------------------ second price
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_second_price_revenue_no_reserve(n):
    expected = (n - 1) / (n + 1)
    assert abs(second_price_revenue([Uniform()] * n, 0.0) - expected) < 1e-9
    setting = SingleItem([Uniform()] * n)
    mean, se = monte_carlo_revenue(SecondPrice(), setting, seed=100 + n)
    assert abs(mean - expected) < 4 * se + 1e-12
    mean, se = monte_carlo_revenue(VCG(), setting, seed=100 + n)
    assert abs(mean - expected) < 4 * se + 1e-12


def test_second_price_with_reserve_uniform():
    # 2 iid U[0,1], reserve r: Rev(r) = 1/3 + r² − 4r³/3, maximised at r = 1/2 with 5/12
    for r in (0.0, 0.3, 0.5, 0.8):
        assert abs(second_price_revenue([Uniform()] * 2, r) - (1 / 3 + r**2 - 4 * r**3 / 3)) < 1e-9
    r, rev = best_anonymous_reserve([Uniform()] * 2)
    assert abs(r - 0.5) < 1e-6 and abs(rev - 5 / 12) < 1e-9
    setting = SingleItem([Uniform()] * 2)
    mech = BestReserveSecondPrice.from_config(setting, {})
    assert abs(mech.reserve - 0.5) < 1e-6
    mean, se = monte_carlo_revenue(mech, setting, seed=7)
    assert abs(mean - 5 / 12) < 4 * se


def test_second_price_payments_with_reserve():
    mech = SecondPrice(reserve=0.5)
    out = mech(profiles([0.8, 0.3], [0.8, 0.6], [0.4, 0.45], [0.7, 0.7], [0.5, 0.2]))
    np.testing.assert_array_equal(out.alloc[..., 0], [[1, 0], [1, 0], [0, 0], [0.5, 0.5], [1, 0]])
    np.testing.assert_allclose(out.payments, [[0.5, 0], [0.6, 0], [0, 0], [0.35, 0.35], [0.5, 0]], atol=1e-7)


# ------------------------------------------------------------------------------- first price
def test_first_price_pays_own_bid_and_is_manipulable():
    mech = FirstPrice()
    out = mech(profiles([0.8, 0.3, 0.1], [0.5, 0.5, 0.2], [0.1, 0.2, 0.9]))
    np.testing.assert_array_equal(out.alloc[..., 0], [[1, 0, 0], [0.5, 0.5, 0], [0, 0, 1]])
    np.testing.assert_allclose(out.payments, [[0.8, 0, 0], [0.25, 0.25, 0], [0, 0, 0.9]], atol=1e-7)
    # truthful utility is 0; shading 0.8 → 0.4 still wins against 0.3 and earns 0.4 > 0 (regret > 0)
    shaded = mech(profiles([0.4, 0.3, 0.1]))
    assert float(0.8 * shaded.alloc[0, 0, 0] - shaded.payments[0, 0]) == pytest.approx(0.4)
    assert not FirstPrice.dsic_by_construction
    reserved = FirstPrice(reserve=0.5)(profiles([0.4, 0.3, 0.1], [0.6, 0.3, 0.1]))
    np.testing.assert_allclose(reserved.payments, [[0, 0, 0], [0.6, 0, 0]], atol=1e-7)


# ------------------------------------------------------------------- Myerson, hand-worked cases
def test_myerson_payments_hand_worked_uniform():
    # 2 bidders U[0,1]: φ(v) = 2v − 1, reserve 1/2; a winner pays max(1/2, the other's bid)
    rows = ([0.8, 0.3], [0.4, 0.45], [0.9, 0.7], [0.6, 0.6], [0.3, 0.55], [1.0, 0.5])
    alloc = [[1, 0], [0, 0], [1, 0], [0.5, 0.5], [0, 1], [1, 0]]
    pay = [[0.5, 0], [0, 0], [0.7, 0], [0.3, 0.3], [0, 0.5], [0.5, 0]]
    with enable_x64():  # compared at 1e-12 in float64
        out = Myerson([Uniform()] * 2)(profiles(*rows))
        assert out.payments.dtype == jnp.float64
        np.testing.assert_array_equal(out.alloc[..., 0], alloc)
        np.testing.assert_allclose(out.payments, pay, atol=1e-12)
    out32 = Myerson([Uniform()] * 2)(profiles(*rows).astype(jnp.float32))
    assert out32.payments.dtype == jnp.float32
    np.testing.assert_array_equal(out32.alloc[..., 0], alloc)
    np.testing.assert_allclose(out32.payments, pay, atol=1e-6)
    # jit works and the point 0.5 is not sold (φ = 0: allocation needs φ̄ > 0)
    out = jax.jit(Myerson([Uniform()] * 2))(profiles([0.5, 0.2]).astype(jnp.float32))
    np.testing.assert_array_equal(out.alloc[..., 0], [[0, 0]])


def test_myerson_ties_split_evenly():
    mech = Myerson([Uniform()] * 4)
    out = mech(profiles([0.7, 0.7, 0.7, 0.2], [0.9, 0.9, 0.1, 0.3]))
    np.testing.assert_allclose(out.alloc[..., 0], [[1 / 3, 1 / 3, 1 / 3, 0], [0.5, 0.5, 0, 0]], atol=1e-7)
    # tied at level m with k = 2 others: a = 1/3, p = s·z1 = 0.7/3
    np.testing.assert_allclose(out.payments, [[0.7 / 3] * 3 + [0], [0.45, 0.45, 0, 0]], atol=1e-6)
    for m in (SecondPrice(), FirstPrice()):
        o = m(profiles([0.7, 0.7, 0.7, 0.2]))
        np.testing.assert_allclose(o.alloc[..., 0], [[1 / 3, 1 / 3, 1 / 3, 0]], atol=1e-7)
        np.testing.assert_allclose(o.payments, [[0.7 / 3] * 3 + [0]], atol=1e-6)


# ----------------------------------------------------------------------------- Deb–Pai example
def test_deb_pai_example_1():
    priors = [Uniform(2.0, 4.0), Uniform(1.0, 2.0)]
    setting = SingleItem(priors)
    with enable_x64():  # 1e-9 comparisons in float64
        assert abs(myerson_revenue(priors) - 13 / 6) < 1e-9
        assert abs(second_price_revenue(priors, 0.0) - 1.5) < 1e-9
        r, rev = best_anonymous_reserve(priors)
        assert abs(r - 2.0) < 1e-6 and abs(rev - 2.0) < 1e-9
    mech = Myerson(priors)
    v1 = np.array([2.2, 2.5, 2.9, 3.0, 3.3, 3.9])
    a1, p1 = interim_outcome(mech, setting, 0, v1)
    np.testing.assert_allclose(a1, np.minimum(v1 - 2, 1), atol=1e-6)
    np.testing.assert_allclose(p1, np.where(v1 <= 3, v1**2 / 2 - 2, 2.5), atol=1e-6)
    v2 = np.array([1.1, 1.4, 1.75, 1.95])
    np.testing.assert_allclose(interim_allocation(mech, setting, 1, v2), (v2 - 1) / 2, atol=1e-6)
    np.testing.assert_allclose(interim_payment(mech, setting, 1, v2), (v2**2 - 1) / 4, atol=1e-6)
    mean, se = monte_carlo_revenue(mech, setting, seed=3)
    assert abs(mean - 13 / 6) < 4 * se


# ---------------------------------------------------------------------- irregular and discrete
def test_myerson_irregular_prior_ironing():
    prior = TwoStep()
    setting = SingleItem([prior, prior])
    mech = Myerson(setting.priors)
    # Rev* = ∫_0^¼ 1 − (0.8t + 0.5)² dt + ∫_¼^1 1 − (0.8 + 0.2t)² dt = 1277/4800 (hand integration)
    with enable_x64():
        assert abs(myerson_revenue(setting.priors) - 1277 / 4800) < 1e-9
        # hand-worked: both on the flat → split, each pays ½·z1 = ½·0.4375; above the flat vs on
        # the flat → sole winner pays (1 − ½)·0.625 + ½·0.4375 = 0.53125; reserve 0.3125
        out = mech(profiles([0.5, 0.6], [0.8, 0.5], [0.4, 0.3], [0.2, 0.1], [0.9, 0.7]))
        np.testing.assert_array_equal(out.alloc[..., 0], [[0.5, 0.5], [1, 0], [1, 0], [0, 0], [1, 0]])
        np.testing.assert_allclose(
            out.payments, [[0.21875, 0.21875], [0.53125, 0], [0.3125, 0], [0, 0], [0.7, 0]], atol=1e-12
        )
    mean, se = monte_carlo_revenue(mech, setting, seed=11)
    assert abs(mean - 1277 / 4800) < 4 * se


def test_myerson_payment_identity_and_monotonicity_irregular():
    """p_i(b) = b_i a_i(b) − ∫_low^{b_i} a_i(z, b_−i) dz checked by a fine Riemann sum over z."""
    setting = SingleItem([TwoStep(), Uniform(0.0, 1.0), TwoStep()])
    mech = Myerson(setting.priors)
    rng = np.random.default_rng(0)
    others = [[0.5, 0.3], [0.6, 0.55], [0.2, 0.1], [0.9, 0.45], [0.7, 0.62]]  # includes flat ties
    n_grid = 100_001
    with enable_x64():
        run = jax.jit(mech)
        for i in (0, 1):
            for o in others:
                z = np.linspace(0.0, 1.0, n_grid)
                prof = np.empty((n_grid, 3))
                prof[:, i] = z
                prof[:, [j for j in range(3) if j != i]] = o
                out = run(jnp.asarray(prof[..., None]))
                a = np.asarray(out.alloc[:, i, 0])
                p = np.asarray(out.payments[:, i])
                assert np.all(np.diff(a) >= 0)  # monotone in own bid
                # cumulative midpoint-free integral: left Riemann sum, error ≤ jumps·dz
                dz = z[1] - z[0]
                cum = np.concatenate([[0.0], np.cumsum(a[:-1]) * dz])
                idx = rng.choice(n_grid, 40, replace=False)
                np.testing.assert_allclose(p[idx], z[idx] * a[idx] - cum[idx], atol=3e-5)
                assert np.all(p <= z * a + 1e-12) and np.all(p >= -1e-12)  # IR, no subsidies


def test_myerson_dsic_on_grid_irregular():
    setting = SingleItem([TwoStep(), Uniform(0.0, 1.0)])
    mech = jax.jit(Myerson(setting.priors))
    grid = np.linspace(0.0, 1.0, 201)
    v = np.asarray(setting.sample(jax.random.PRNGKey(5), 64))[..., 0]
    for i in (0, 1):
        prof = np.repeat(v[:, None, :], len(grid), axis=1)  # (64, 201, 2)
        prof[:, :, i] = grid[None, :]
        out = mech(jnp.asarray(prof.reshape(-1, 2, 1)))
        util = (v[:, i, None] * np.asarray(out.alloc[:, i, 0]).reshape(64, -1)
                - np.asarray(out.payments[:, i]).reshape(64, -1))
        truth = mech(jnp.asarray(v[..., None]))
        u_true = v[:, i] * np.asarray(truth.alloc[:, i, 0]) - np.asarray(truth.payments[:, i])
        assert np.all(util <= u_true[:, None] + 1e-5)


def test_discrete_prior():
    prior = TwoAtoms()
    priors = [prior, prior]
    with enable_x64():
        # Rev* = 2·P(some v = 2) = 1.5
        assert abs(myerson_revenue(priors) - 1.5) < 1e-9
        out = Myerson(priors)(profiles([1, 1], [2, 1], [2, 2]))
        np.testing.assert_array_equal(out.alloc[..., 0], [[0, 0], [1, 0], [0.5, 0.5]])
        np.testing.assert_allclose(out.payments, [[0, 0], [2, 0], [1, 1]], atol=1e-12)
        # second price: E[v_(2)] = 1·3/4 + 2·1/4 = 1.25; with reserve 2 (a bid of 2 wins): 2·3/4
        assert abs(second_price_revenue(priors, 0.0) - 1.25) < 1e-9
        assert abs(second_price_revenue(priors, 2.0) - 1.5) < 1e-9
        r, rev = best_anonymous_reserve(priors)
        assert abs(r - 2.0) < 1e-6 and abs(rev - 1.5) < 1e-9
        setting = SingleItem(priors)
        a, p = interim_outcome(Myerson(priors), setting, 0, np.array([1.0, 2.0]))
        np.testing.assert_allclose(a, [0.0, 0.75], atol=1e-12)
        np.testing.assert_allclose(p, [0.0, 1.5], atol=1e-12)


# ---------------------------------------------------------------------------------- config
def test_from_config_and_unknown_options():
    setting = SingleItem([Uniform()] * 2)
    assert isinstance(Myerson.from_config(setting, {}), Myerson)
    assert SecondPrice.from_config(setting, {"reserve": 0.25}).reserve == 0.25
    assert FirstPrice.from_config(setting, {"reserve": 1}).reserve == 1.0
    assert VCG.from_config(setting, {}).reserve == 0.0
    for cls, opts in [
        (Myerson, {"reserve": 0.1}),
        (SecondPrice, {"bogus": 1}),
        (VCG, {"reserve": 0.1}),
        (BestReserveSecondPrice, {"reserve": 0.1}),
        (FirstPrice, {"bogus": 1}),
        (SecondPrice, {"reserve": -1.0}),
        (SecondPrice, {"reserve": "high"}),
    ]:
        with pytest.raises(ConfigError) as err:
            cls.from_config(setting, opts)
        assert "\n" not in str(err.value)
    for cls in (Myerson, SecondPrice, VCG, BestReserveSecondPrice):
        assert cls.dsic_by_construction and cls.ir_by_construction and not cls.trainable
