"""Tests of diffmech.priors: distributions, virtual values and ironing.

Comparisons at 1e-9 run inside ``with jax.enable_x64(True):`` because float32 (the default) only
resolves ~1e-7; the library's precomputations always run in float64 whatever the mode.
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.optimize import brentq

from diffmech.errors import ConfigError
from diffmech.priors import (
    PRIORS,
    Discrete,
    PowerLaw,
    Prior,
    TruncatedExponential,
    Uniform,
    UniformMixture,
    compute_ironing,
    prior_from_config,
)

# --------------------------------------------------------------------------------------------
# The priors under test, with exact means and variances written here (not taken from the library)
# --------------------------------------------------------------------------------------------


def _uniform_moments(lo, hi):
    return (lo + hi) / 2, (hi - lo) ** 2 / 12


def _power_moments(lo, hi, a):
    # x = (v - lo)/w ~ Beta(a, 1): E x = a/(a+1), Var x = a/((a+1)^2 (a+2))
    w = hi - lo
    return lo + w * a / (a + 1), w**2 * a / ((a + 1) ** 2 * (a + 2))


def _exp_moments(rate, hi):
    z = 1 - math.exp(-rate * hi)
    m1 = integrate.quad(lambda t: t * rate * math.exp(-rate * t) / z, 0, hi)[0]
    m2 = integrate.quad(lambda t: t * t * rate * math.exp(-rate * t) / z, 0, hi)[0]
    # closed form of the mean: 1/λ − h e^{−λh}/(1 − e^{−λh})
    assert abs(m1 - (1 / rate - hi * math.exp(-rate * hi) / z)) < 1e-12
    return m1, m2 - m1**2


def _mixture_moments(l1, h1, l2, h2, w):
    m1a, v1 = _uniform_moments(l1, h1)
    m2a, v2 = _uniform_moments(l2, h2)
    mean = w * m1a + (1 - w) * m2a
    second = w * (v1 + m1a**2) + (1 - w) * (v2 + m2a**2)
    return mean, second - mean**2


CONTINUOUS = {
    "uniform": (lambda: Uniform(2.0, 4.0), _uniform_moments(2.0, 4.0)),
    "power_law_a2.5": (lambda: PowerLaw(0.0, 1.0, 2.5), _power_moments(0.0, 1.0, 2.5)),
    "power_law_a0.5": (lambda: PowerLaw(1.0, 3.0, 0.5), _power_moments(1.0, 3.0, 0.5)),
    "exponential": (lambda: TruncatedExponential(2.0, 1.5), _exp_moments(2.0, 1.5)),
    "mixture_gap": (lambda: UniformMixture(0.0, 1.0, 2.0, 3.0, 0.5), _mixture_moments(0.0, 1.0, 2.0, 3.0, 0.5)),
    "mixture_overlap": (
        lambda: UniformMixture(0.0, 1.0, 0.2, 0.3, 0.5),
        _mixture_moments(0.0, 1.0, 0.2, 0.3, 0.5),
    ),
}
REGULAR = ["uniform", "power_law_a2.5", "exponential"]

_cache: dict[str, Prior] = {}


def get(name: str) -> Prior:
    if name not in _cache:
        _cache[name] = CONTINUOUS[name][0]()
    return _cache[name]


def _breaks(p: Prior) -> list[float]:
    return [float(b) for b in p._breakpoints()]


def _f64(fn, x):
    """fn at the points x in float64 (call inside enable_x64). The input is padded to a length of
    64 or 4096 or 131072 so that eager JAX compiles each primitive for few shapes (test speed)."""
    x = np.atleast_1d(np.asarray(x, np.float64))
    n = len(x)
    size = next(k for k in (64, 4096, 131072, n) if k >= n)
    out = fn(jnp.asarray(np.pad(x, (0, size - n), mode="edge"), jnp.float64))
    return np.asarray(out, dtype=np.float64)[:n]


# --------------------------------------------------------------------------------------------
# Continuous priors: distribution functions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONTINUOUS))
def test_cdf_icdf_roundtrip(name):
    p = get(name)
    u = np.linspace(0.0, 1.0, 1001)
    with jax.enable_x64(True):  # 1e-9 needs float64
        v = _f64(p.icdf, u)
        assert np.all((v >= p.low) & (v <= p.high))
        assert np.all(np.diff(v) >= 0)
        np.testing.assert_allclose(_f64(p.cdf, v), u, atol=1e-9)
    # float32 (default mode): same up to float32 rounding
    v32 = p.icdf(jnp.asarray(u, jnp.float32))
    assert v32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(p.cdf(v32)), u, atol=2e-5)


@pytest.mark.parametrize("name", list(CONTINUOUS))
def test_pdf_integrates_to_one_and_matches_cdf(name):
    p = get(name)
    with jax.enable_x64(True):
        pdf = lambda t: float(p.pdf(jnp.float64(t)))  # noqa: E731
        pts = _breaks(p) or None
        total = integrate.quad(pdf, p.low, p.high, points=pts, limit=200)[0]
        assert abs(total - 1.0) < 1e-6
        for t in np.linspace(p.low, p.high, 7)[1:-1]:
            inner = [b for b in _breaks(p) if b < t] or None
            num = integrate.quad(pdf, p.low, t, points=inner, limit=200)[0]
            assert abs(num - float(p.cdf(jnp.float64(t)))) < 1e-6
        assert float(p.cdf(jnp.float64(p.low))) == 0.0
        assert float(p.cdf(jnp.float64(p.high))) == pytest.approx(1.0, abs=1e-15)
        assert float(p.cdf(jnp.float64(p.low - 1))) == 0.0 and float(p.cdf(jnp.float64(p.high + 1))) == 1.0


@pytest.mark.parametrize("name", list(CONTINUOUS))
def test_sample_mean(name):
    p = get(name)
    mean, var = CONTINUOUS[name][1]
    n = 200_000
    with jax.enable_x64(True):
        x = np.asarray(p.sample(jax.random.PRNGKey(0), (n,)), np.float64)
    assert x.shape == (n,)
    assert np.all((x >= p.low) & (x <= p.high))
    assert abs(x.mean() - mean) < 4 * math.sqrt(var / n)
    x32 = p.sample(jax.random.PRNGKey(1), (4, 5))
    assert x32.shape == (4, 5) and x32.dtype == jnp.float32


# --------------------------------------------------------------------------------------------
# Continuous priors: virtual values and ironing
# --------------------------------------------------------------------------------------------


def _phi_closed_form(name, v):
    """φ(v) written out per prior (independent of the library's implementation)."""
    if name == "uniform":  # U[2, 4]
        return 2 * v - 4.0
    if name == "power_law_a2.5":  # x^2.5 on [0, 1]
        a = 2.5
        return v - (1 - v**a) / (a * v ** (a - 1))
    if name == "power_law_a0.5":  # ((v-1)/2)^0.5 on [1, 3]
        a, x = 0.5, (v - 1) / 2
        return v - (1 - x**a) / (a * x ** (a - 1) / 2)
    if name == "exponential":  # rate 2 truncated to [0, 1.5]
        lam, h = 2.0, 1.5
        F = (1 - math.exp(-lam * v)) / (1 - math.exp(-lam * h))
        f = lam * math.exp(-lam * v) / (1 - math.exp(-lam * h))
        return v - (1 - F) / f
    if name == "mixture_gap":  # ½U[0,1] + ½U[2,3]
        if v < 1:
            return 2 * v - 2  # F = v/2, f = 1/2
        if v < 2:
            return 1.0  # gap: limit from the right, φ(2) = 2·2 − 3
        return 2 * v - 3  # 1 − F = (3 − v)/2, f = 1/2
    if name == "mixture_overlap":  # ½U[0,1] + ½U[0.2,0.3]
        if v < 0.2:
            return 2 * v - 2
        if v < 0.3:  # F = 0.1 + 5.5(v − 0.2), f = 5.5
            return v - (0.9 - 5.5 * (v - 0.2)) / 5.5
        return 2 * v - 1  # 1 − F = (1 − v)/2, f = 1/2
    raise KeyError(name)


@pytest.mark.parametrize("name", list(CONTINUOUS))
def test_virtual_value_formula(name):
    p = get(name)
    pts = np.linspace(p.low, p.high, 9)[1:-1]
    with jax.enable_x64(True):
        got = _f64(p.virtual_value, pts)
        expected = np.array([_phi_closed_form(name, float(t)) for t in pts])
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
        # and the definition φ = v − (1 − F)/f from the prior's own cdf and pdf (off gaps)
        f = _f64(p.pdf, pts)
        ok = f > 0
        generic = pts - (1 - _f64(p.cdf, pts)) / np.where(ok, f, 1.0)
        np.testing.assert_allclose(got[ok], generic[ok], rtol=1e-9, atol=1e-9)
    # at the top of the support φ(high) = high
    with jax.enable_x64(True):
        assert float(p.virtual_value(jnp.float64(p.high))) == pytest.approx(p.high, abs=1e-12)


@pytest.mark.parametrize("name", list(CONTINUOUS))
def test_ironed_virtual_value_nondecreasing(name):
    p = get(name)
    with jax.enable_x64(True):
        z = np.linspace(p.low, p.high, 100_001)
        phibar = _f64(p.ironed_virtual_value, z)
        assert not np.any(np.isnan(phibar))
        assert np.diff(phibar).min() >= -1e-12
    phibar32 = np.asarray(p.ironed_virtual_value(jnp.asarray(z, jnp.float32)))
    assert phibar32.dtype == np.float32
    assert np.diff(phibar32).min() >= 0.0


@pytest.mark.parametrize("name", REGULAR)
def test_regular_priors_phibar_equals_phi(name):
    p = get(name)
    # the generic numeric hull finds no ironing interval, agreeing with the class's shortcut
    assert p.ironing_intervals() == ()
    assert compute_ironing(p) == ()
    with jax.enable_x64(True):
        z = np.linspace(p.low, p.high, 2001)
        np.testing.assert_array_equal(_f64(p.ironed_virtual_value, z), _f64(p.virtual_value, z))


@pytest.mark.parametrize("a", [0.3, 0.5, 0.8])
def test_power_law_irregular_closed_form_and_generic_hull(a):
    # On [0, 1]: H(q) = −(1 − q) q^{1/a}. The hull is the tangent from (0, 0) touching at q_b with
    # H(q_b)/q_b = H'(q_b); dividing by q_b^{1/a − 1}: −(1 − q) = q − (1 − q)/a, so q_b = 1 − a,
    # v_b = (1 − a)^{1/a}, level = H(q_b)/q_b = −a (1 − a)^{(1 − a)/a}. Scaled to [lo, lo + w].
    lo, w = 1.0, 2.0
    p = PowerLaw(lo, lo + w, a)
    vb = lo + w * (1 - a) ** (1 / a)
    level = lo + w * (-a * (1 - a) ** ((1 - a) / a))
    ((va_lib, vb_lib, lvl_lib),) = p.ironing_intervals()
    assert va_lib == lo and abs(vb_lib - vb) < 1e-12 and abs(lvl_lib - level) < 1e-12
    ((va_gen, vb_gen, lvl_gen),) = compute_ironing(p)  # the generic path
    assert va_gen == lo and abs(vb_gen - vb) < 1e-9 and abs(lvl_gen - level) < 1e-9
    with jax.enable_x64(True):
        assert float(p.virtual_value(jnp.float64(vb))) == pytest.approx(level, abs=1e-12)  # tangency
        z = np.linspace(lo, lo + w, 1001)
        expected = np.where(z < vb, level, _f64(p.virtual_value, z))
        np.testing.assert_allclose(_f64(p.ironed_virtual_value, z), expected, atol=1e-12)


def test_power_law_phi_at_low_is_finite():
    # φ(low) = −∞ for a > 1 is returned as the most negative finite float (0·φ stays 0)
    v = PowerLaw(0.0, 1.0, 3.0).virtual_value(jnp.zeros(2, jnp.float32))
    assert np.all(np.isfinite(np.asarray(v))) and float(v[0]) < -1e30
    assert float((0.0 * v)[0]) == 0.0
    assert float(PowerLaw(0.0, 1.0, 0.5).virtual_value(0.0)) == 0.0


# --------------------------------------------------------------------------------------------
# Uniform mixtures: ironing against exact computations written here
# --------------------------------------------------------------------------------------------


def test_mixture_overlap_ironing_exact():
    """½U[0,1] + ½U[0.2,0.3]: density 1/2, 11/2, 1/2 on [0,.2), [.2,.3), [.3,1].

    F(0.2) = 0.1, F(0.3) = 0.65. φ = 2v − 2, 2v − 4/11, 2v − 1 on the three pieces: it jumps
    down at 0.3, so there is one ironing interval [v_a, v_b) with v_a in the middle piece and v_b in
    the last one. Tangency: φ(v_a) = φ(v_b) = s; chord: (H(q_b) − H(q_a))/(q_b − q_a) = s with
    H(q) = −(1 − q)·F⁻¹(q) (low = 0).
    """
    p = UniformMixture(0.0, 1.0, 0.2, 0.3, 0.5)

    def Finv(q):
        if q <= 0.1:
            return 2 * q
        if q <= 0.65:
            return 0.2 + (q - 0.1) / 5.5
        return 0.3 + (q - 0.65) / 0.5

    def F(v):
        if v <= 0.2:
            return v / 2
        if v <= 0.3:
            return 0.1 + 5.5 * (v - 0.2)
        return 0.65 + 0.5 * (v - 0.3)

    def H(q):
        return -(1 - q) * Finv(q)

    def va_of(s):  # 2v − 4/11 = s
        return (s + 4 / 11) / 2

    def vb_of(s):  # 2v − 1 = s
        return (s + 1) / 2

    def chord_residual(s):
        qa, qb = F(va_of(s)), F(vb_of(s))
        return (H(qb) - H(qa)) / (qb - qa) - s

    s = brentq(chord_residual, 2 * 0.2 - 4 / 11 + 1e-12, 2 * 0.3 - 4 / 11 - 1e-12, xtol=1e-15)
    va, vb = va_of(s), vb_of(s)
    # cross-check: equal areas on both sides give sqrt(11)(0.3 − v_a) = v_b − 0.3, linear in s
    s_lin = 2 * (math.sqrt(11) * (0.3 - 2 / 11) - 0.2) / (1 + math.sqrt(11))
    assert abs(s - s_lin) < 1e-12

    ((va_lib, vb_lib, level_lib),) = p.ironing_intervals()
    assert abs(va_lib - va) < 1e-10 and abs(vb_lib - vb) < 1e-10 and abs(level_lib - s) < 1e-10

    with jax.enable_x64(True):
        z = np.linspace(0.0, 1.0, 20_001)
        z = z[(np.abs(z - va) >= 1e-4) & (np.abs(z - vb) >= 1e-4)]
        expected = np.array([s if va <= t < vb else _phi_closed_form("mixture_overlap", t) for t in z])
        np.testing.assert_allclose(_f64(p.ironed_virtual_value, z), expected, atol=1e-6)

        # the level is the average of φ over the interval in quantile space
        qa, qb = float(p.cdf(jnp.float64(va_lib))), float(p.cdf(jnp.float64(vb_lib)))
        phiq = lambda q: float(p.virtual_value(p.icdf(jnp.float64(q))))  # noqa: E731
        avg = integrate.quad(phiq, qa, qb, points=[0.65], limit=200)[0] / (qb - qa)
        assert abs(avg - level_lib) < 1e-8


@pytest.mark.parametrize("w", [0.5, 0.3])
def test_mixture_gap_ironing_exact(w):
    """w·U[0,1] + (1 − w)·U[2,3] (w ≤ 1/2): F is flat at q_g = w on the gap (1, 2).

    With the right-continuous F⁻¹, H(q) = −(1 − q)·F⁻¹(q) is −(1 − q)q/w on [0, w) and jumps down
    to H(w) = −2(1 − w) at q = w (the payment identity charges the gap: types above it pay for the
    allocation at 1). The chord from (0, 0) to (w, −2(1 − w)) has slope L = −2(1 − w)/w and
    H(q) − L·q = q(1 − 2w + q)/w ≥ 0 on [0, w) for w ≤ 1/2; on [w, 1] H is convex with slope
    φ(v) = 2v − 3 ≥ 1 > L (1 − F = (1 − w)(3 − v), f = 1 − w). So the only ironing interval is
    [0, 2) (it ends at the gap's right end) with level L; φ̄ = 2v − 3 on [2, 3].
    """
    p = UniformMixture(0.0, 1.0, 2.0, 3.0, w)
    level = -2 * (1 - w) / w
    ((va, vb, lvl),) = p.ironing_intervals()
    assert va == 0.0 and vb == 2.0 and abs(lvl - level) < 1e-10
    with jax.enable_x64(True):
        # icdf convention at the gap: the left end of the right neighbour interval
        assert float(p.icdf(jnp.float64(w))) == 2.0
        assert float(p.pdf(jnp.float64(1.5))) == 0.0
        assert float(p.cdf(jnp.float64(1.5))) == pytest.approx(w, abs=1e-15)
        # φ in the gap is its limit from the right, φ(2) = 2·2 − 3 (f = 1 − w on [2, 3])
        assert float(p.virtual_value(jnp.float64(1.5))) == pytest.approx(float(p.virtual_value(jnp.float64(2.0))))
        z = np.array([0.0, 0.3, 0.9999, 1.0, 1.5, 1.9999, 2.0, 2.5, 3.0])
        expected = np.array([level] * 6 + [1.0, 2.0, 3.0])  # φ = 2v − 3 on [2, 3]
        np.testing.assert_allclose(_f64(p.ironed_virtual_value, z), expected, atol=1e-12)


@pytest.mark.parametrize("name", ["mixture_gap", "mixture_overlap"])
def test_mixture_revenue_identity(name):
    """E[φ̄(v)·1{v ≥ r}] = r·(1 − F(r)) for a posted price r not inside an ironing interval.

    (The allocation 1{v ≥ r} is then constant on every ironing interval.) For the gap prior this
    only holds with the jump of H at the gap, i.e. with level −2 on [0, 2).
    """
    p = get(name)
    ((va, vb, _),) = p.ironing_intervals()
    prices = [p.low, va, vb, 0.5 * (vb + p.high), p.high - 1e-3]
    with jax.enable_x64(True):
        g = lambda t: float(p.ironed_virtual_value(jnp.float64(t)) * p.pdf(jnp.float64(t)))  # noqa: E731
        for r in prices:
            pts = [b for b in _breaks(p) + [va, vb] if r < b < p.high] or None
            lhs = integrate.quad(g, r, p.high, points=pts, limit=200)[0]
            rhs = r * (1 - float(p.cdf(jnp.float64(r))))
            assert abs(lhs - rhs) < 1e-8, (r, lhs, rhs)


def test_mixture_precomputation_independent_of_x64_mode():
    p32 = UniformMixture(0.0, 1.0, 0.2, 0.3, 0.5)
    with jax.enable_x64(True):
        p64 = UniformMixture(0.0, 1.0, 0.2, 0.3, 0.5)
    assert p32.ironing_intervals() == p64.ironing_intervals()
    assert all(isinstance(x, float) for iv in p32.ironing_intervals() for x in iv)
    z = np.linspace(0.0, 1.0, 1001)
    with jax.enable_x64(True):
        phibar64 = _f64(p64.ironed_virtual_value, z)
    phibar32 = np.asarray(p32.ironed_virtual_value(jnp.asarray(z, jnp.float32)))
    # equal up to float32 rounding (away from the interval ends, where a rounded z may switch side)
    (va, vb, _), = p32.ironing_intervals()
    away = (np.abs(z - va) > 1e-6) & (np.abs(z - vb) > 1e-6)
    np.testing.assert_allclose(phibar32[away], phibar64[away], atol=1e-6)


def test_mixture_generic_path_on_regular_mixture():
    # ½U[0,1] + ½U[1,2] is U[0,2]: regular, φ̄ = φ = 2v − 2
    p = UniformMixture(0.0, 1.0, 1.0, 2.0, 0.5)
    assert p.ironing_intervals() == ()
    with jax.enable_x64(True):
        z = np.linspace(0.0, 2.0, 101)
        np.testing.assert_allclose(_f64(p.ironed_virtual_value, z), 2 * z - 2, atol=1e-12)


class _SqrtPrior(Prior):
    """A user-defined prior that only gives cdf, pdf and icdf: F(v) = sqrt(v) on [0, 1]."""

    name = "sqrt_user"

    @property
    def low(self):
        return 0.0

    @property
    def high(self):
        return 1.0

    def cdf(self, v):
        return jnp.sqrt(jnp.clip(v, 0.0, 1.0))

    def pdf(self, v):
        return jnp.where((v >= 0) & (v <= 1), 0.5 / jnp.sqrt(jnp.clip(v, 0.0, 1.0)), 0.0)

    def icdf(self, u):
        return jnp.clip(u, 0.0, 1.0) ** 2

    def to_config(self):
        return {"dist": self.name}


def test_user_defined_prior_gets_generic_ironing():
    # F = v^{1/2} is PowerLaw(a = 1/2): φ̄ = −1/4 on [0, 1/4) (closed form above), computed here by
    # the base class's generic hull at construction, with the generic φ = v − (1 − F)/f
    p = _SqrtPrior()
    ((va, vb, level),) = p.ironing_intervals()
    assert va == 0.0 and abs(vb - 0.25) < 1e-9 and abs(level + 0.25) < 1e-9
    ref = PowerLaw(0.0, 1.0, 0.5)
    with jax.enable_x64(True):
        z = np.linspace(0.0, 1.0, 2001)
        np.testing.assert_allclose(_f64(p.virtual_value, z[1:]), _f64(ref.virtual_value, z[1:]), atol=1e-12)
        np.testing.assert_allclose(_f64(p.ironed_virtual_value, z), _f64(ref.ironed_virtual_value, z), atol=1e-9)
    x = p.sample(jax.random.PRNGKey(0), (1000,))  # inverse-cdf sampling by default
    assert x.shape == (1000,) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_jit_vmap_broadcast():
    priors = [get(n) for n in ["uniform", "power_law_a0.5", "exponential", "mixture_overlap"]]
    priors.append(Discrete([1.0, 2.0, 4.0], [0.5, 0.25, 0.25]))
    x = jnp.linspace(0.0, 3.0, 12).reshape(3, 4)
    u = jnp.linspace(0.0, 1.0, 12).reshape(3, 4)
    for p in priors:

        def all_fns(x, u, p=p):
            return p.cdf(x), p.pdf(x), p.virtual_value(x), p.ironed_virtual_value(x), p.icdf(u)

        jitted = jax.jit(all_fns)(x, u)  # elementwise and broadcasting: same shape as the input
        for out in jitted:
            assert out.shape == (3, 4) and out.dtype == jnp.float32
        mapped = jax.jit(jax.vmap(all_fns))(x, u)
        for a, b in zip(mapped, jitted):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
        with jax.enable_x64(True):  # dtype follows the input (abstract evaluation, no compile)
            out64 = jax.eval_shape(all_fns, jnp.zeros((3, 4), jnp.float64), jnp.zeros((3, 4), jnp.float64))
            assert all(o.dtype == jnp.float64 for o in out64)


# --------------------------------------------------------------------------------------------
# Discrete prior
# --------------------------------------------------------------------------------------------

# Hand example: values 1..5 with masses 1/10, 4/10, 1/10, 1/10, 3/10, so F_k = 1/10, 1/2, 3/5,
# 7/10, 1 and φ_k = v_k − (v_{k+1} − v_k)(1 − F_k)/p_k:
#   φ_1 = 1 − (9/10)/(1/10) = −8,   φ_2 = 2 − (1/2)/(4/10) = 3/4,   φ_3 = 3 − (2/5)/(1/10) = −1,
#   φ_4 = 4 − (3/10)/(1/10) = 1,    φ_5 = 5 (top atom).
# Ironing (PAV weighted by p): φ_2 = 3/4 > φ_3 = −1 violate, pool: (4/10·3/4 + 1/10·(−1))/(5/10)
# = (3/10 − 1/10)/(1/2) = 2/5; then −8 ≤ 2/5 ≤ 1 ≤ 5, so φ̄ = (−8, 2/5, 2/5, 1, 5).
HAND_VALUES = [1.0, 2.0, 3.0, 4.0, 5.0]
HAND_PROBS = [0.1, 0.4, 0.1, 0.1, 0.3]
HAND_PHI = [Fraction(-8), Fraction(3, 4), Fraction(-1), Fraction(1), Fraction(5)]
HAND_PHIBAR = [Fraction(-8), Fraction(2, 5), Fraction(2, 5), Fraction(1), Fraction(5)]


def test_discrete_hand_example():
    p = Discrete(list(reversed(HAND_VALUES)), list(reversed(HAND_PROBS)))  # sorted by the prior
    assert p.discrete and p.low == 1.0 and p.high == 5.0
    atoms = p.atoms()
    assert atoms.dtype == np.float64 and atoms.tolist() == HAND_VALUES
    with jax.enable_x64(True):
        np.testing.assert_allclose(_f64(p.virtual_value, atoms), [float(f) for f in HAND_PHI], atol=1e-12)
        np.testing.assert_allclose(_f64(p.ironed_virtual_value, atoms), [float(f) for f in HAND_PHIBAR], atol=1e-12)
        # right-continuous steps: the value at the largest atom ≤ v; below the lowest atom, its value
        z = [0.0, 1.0, 1.5, 2.0, 2.999, 3.0, 3.5, 3.999, 4.0, 4.5, 5.0, 6.0]
        idx = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
        np.testing.assert_allclose(_f64(p.ironed_virtual_value, z), [float(HAND_PHIBAR[k]) for k in idx], atol=1e-12)
        np.testing.assert_allclose(_f64(p.virtual_value, z), [float(HAND_PHI[k]) for k in idx], atol=1e-12)
        # the sum of p_k φ_k is H(1) = low (telescoping)
        assert float(sum(Fraction(pk).limit_denominator(100) * f for pk, f in zip(HAND_PROBS, HAND_PHI))) == 1.0
        # distribution functions
        cdf_at = _f64(p.cdf, [0.5, 1.0, 1.5, 2.0, 4.99, 5.0, 7.0])
        np.testing.assert_allclose(cdf_at, [0, 0.1, 0.1, 0.5, 0.7, 1, 1], atol=1e-12)
        pmf_at = _f64(p.pdf, [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0])
        np.testing.assert_allclose(pmf_at, [0, 0.1, 0, 0.4, 0.1, 0.3, 0], atol=1e-12)
        assert _f64(p.pdf, atoms).sum() == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(_f64(p.cdf, atoms), np.cumsum(HAND_PROBS), atol=1e-12)
        # icdf: smallest atom with F ≥ u
        u = [0.0, 0.05, 0.1, 0.1000001, 0.5, 0.5000001, 0.65, 0.7, 0.99, 1.0]
        np.testing.assert_array_equal(_f64(p.icdf, u), [1, 1, 1, 2, 2, 3, 4, 4, 5, 5])
    assert p.ironing_intervals() == ((2.0, 3.0, pytest.approx(0.4)),)


def _gcm_slopes(q, s):
    """Slopes of the greatest convex minorant of (q_k, s_k) on each (q_{k-1}, q_k] (max-min formula)."""
    n = len(q) - 1
    out = []
    for k in range(1, n + 1):
        out.append(max(min((s[j] - s[i]) / (q[j] - q[i]) for j in range(k, n + 1)) for i in range(k)))
    return out


def test_discrete_ironing_matches_convex_hull():
    rng = np.random.default_rng(0)
    for K in [2, 4, 7] * 3:
        values = np.sort(rng.choice(np.arange(1, 40), size=K, replace=False)).astype(float) / 4
        probs = rng.dirichlet(np.ones(K))
        p = Discrete(values.tolist(), probs.tolist())
        pr = np.asarray(p.probs)
        F = np.cumsum(pr)
        phi = values - np.append(np.diff(values) * (1 - F[:-1]) / pr[:-1], 0.0)
        q = np.concatenate([[0.0], F])
        S = np.concatenate([[0.0], np.cumsum(pr * phi)])
        with jax.enable_x64(True):
            np.testing.assert_allclose(_f64(p.virtual_value, values), phi, atol=1e-9)
            got = _f64(p.ironed_virtual_value, values)
            np.testing.assert_allclose(got, _gcm_slopes(q, S), atol=1e-9)
            z = np.linspace(values[0] - 1, values[-1] + 1, 1001)
            assert np.diff(_f64(p.ironed_virtual_value, z)).min() >= -1e-12


def test_discrete_sample_and_mean():
    p = Discrete(HAND_VALUES, HAND_PROBS)
    n = 200_000
    x = np.asarray(p.sample(jax.random.PRNGKey(0), (n,)), np.float64)
    assert set(np.unique(x).tolist()) <= set(HAND_VALUES)
    mean = float(np.dot(HAND_VALUES, HAND_PROBS))
    var = float(np.dot(np.square(HAND_VALUES), HAND_PROBS)) - mean**2
    assert abs(x.mean() - mean) < 4 * math.sqrt(var / n)


def test_discrete_validation_and_zero_mass():
    p = Discrete([3.0, 1.0, 2.0], [0.5, 0.5, 0.0])  # zero-mass atoms are dropped
    assert p.atoms().tolist() == [1.0, 3.0]
    assert prior_from_config(p.to_config()).to_config() == p.to_config()
    for values, probs, msg in [
        ([1.0, 2.0], [0.5, 0.4], "summing to 1"),
        ([1.0, 2.0], [1.5, -0.5], ">= 0"),
        ([1.0, 1.0], [0.5, 0.5], "distinct"),
        ([1.0, 2.0], [1.0], "as many probs"),
        ([1.0, 2.0], [1.0, 0.0], "at least two"),
        ("12", [1.0], "list of numbers"),
        ([1.0, "x"], [0.5, 0.5], "must be a number"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            Discrete(values, probs)


# --------------------------------------------------------------------------------------------
# Construction and configs
# --------------------------------------------------------------------------------------------


def test_registry_and_roundtrip():
    assert set(PRIORS) == {"uniform", "power_law", "exponential", "uniform_mixture", "discrete"}
    for name, cls in PRIORS.items():
        assert cls.name == name and cls.summary
    priors = [get(n) for n in ["uniform", "power_law_a0.5", "exponential", "mixture_overlap"]]
    priors.append(Discrete(HAND_VALUES, HAND_PROBS))
    for p in priors:
        cfg = p.to_config()
        assert all(isinstance(v, (str, float, list)) for v in cfg.values())
        q = prior_from_config(cfg)
        assert type(q) is type(p) and q.to_config() == cfg
        assert q.ironing_intervals() == p.ironing_intervals()
        # equal parameters give equal modules (eqx.filter_jit keys its cache on the float fields)
        assert q == p


def test_prior_from_config_errors():
    with pytest.raises(ConfigError) as e:
        prior_from_config({"dist": "gaussian"})
    assert all(name in str(e.value) for name in PRIORS)
    with pytest.raises(ConfigError, match="dist"):
        prior_from_config({"low": 0.0})
    with pytest.raises(ConfigError, match="table"):
        prior_from_config([1, 2])
    bad = [
        ({"dist": "uniform", "low": 1.0, "high": 0.0}, "low < high"),
        ({"dist": "power_law", "low": 2.0, "high": 1.0}, "low < high"),
        ({"dist": "power_law", "a": -1}, "needs a > 0, got a=-1.0"),
        ({"dist": "exponential", "rate": 0.0}, "rate > 0"),
        ({"dist": "exponential", "high": -1.0}, "high > 0"),
        ({"dist": "uniform_mixture", "low1": 1, "high1": 0, "low2": 0, "high2": 1, "weight": 0.5}, "low1 < high1"),
        ({"dist": "uniform_mixture", "low1": 0, "high1": 1, "low2": 3, "high2": 2, "weight": 0.5}, "low2 < high2"),
        ({"dist": "uniform_mixture", "low1": 0, "high1": 1, "low2": 0, "high2": 2, "weight": 1.5}, "0 < weight < 1"),
        ({"dist": "uniform", "lo": 0.0}, "bad keys"),
        ({"dist": "uniform_mixture", "low1": 0, "high1": 1}, "bad keys"),
        ({"dist": "uniform", "low": "zero"}, "must be a number"),
        ({"dist": "uniform", "high": float("inf")}, "finite"),
        ({"dist": "discrete", "values": [1, 2], "probs": [0.2, 0.2]}, "summing to 1"),
    ]
    for cfg, msg in bad:
        with pytest.raises(ConfigError, match=msg) as e:
            prior_from_config(cfg, where="setting.prior")
        text = str(e.value)
        assert "\n" not in text and text.startswith("setting.prior")


def test_construction_inside_jit():
    @jax.jit
    def f(x):
        p = UniformMixture(0.0, 1.0, 2.0, 3.0, 0.5)
        return p.ironed_virtual_value(x)

    np.testing.assert_allclose(np.asarray(f(jnp.array([0.5, 2.5]))), [-2.0, 2.0])
