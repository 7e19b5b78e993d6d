"""``separate_optimal``: each public good by its own optimal mechanism with exclusion and budget.

Everything runs in float64 (``enable_x64``, autouse fixture). Reference values are closed forms
derived here for uniform values (the docstrings); the mechanism's outcomes are integrated by
Gauss–Legendre quadrature written independently in the tests, cut where the reference region
boundaries lie, or by Monte Carlo with a 4-standard-error tolerance.

Closed form for θ_i ~ U[0, 1] with exclusion. g_α(θ) = θ − α(1 − θ) = (1 + α)θ − α, so with
a = α/(1 + α) (the exclusion threshold θ0), b = 1 − a, K = C/(1 + α) and y_i = (θ_i − a)⁺,
η_i = 1{θ_i ≥ a} and ρ = 1{Σ_i y_i ≥ K}. Split by the set J of included agents (|J| = k; each
excluded agent contributes its probability a, an included one θ_i = a + y_i with y_i uniform on
[0, b] of density 1):

    S(α) = Σ_{k=1}^n C(n,k) a^{n−k} [ (k a − C) V_k + M_k ],
    B(α) = Σ_{k=1}^n C(n,k) a^{n−k} [ ((2a − 1) k − C) V_k + 2 M_k ]     (ψ(θ) = 2θ − 1),

V_k = ∫_{[0,b]^k} 1{Σy ≥ K} dy = b^k P(Z_k ≥ K/b), M_k = ∫ 1{Σy ≥ K} Σy dy = b^{k+1} E[Z_k 1{Z_k ≥ K/b}],
Z_k the Irwin–Hall sum of k U[0,1]: F_k(s) = Σ_j (−1)^j C(k,j) (s − j)⁺^k / k!,
∫_0^s F_k = Σ_j (−1)^j C(k,j) (s − j)⁺^{k+1} / (k+1)!, and E[Z_k 1{Z_k ≥ s}] = k/2 − s F_k(s) + ∫_0^s F_k.
α_ref is the root of B by Brent's method on this closed form (no code of the library involved).
"""

from math import comb, factorial

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import diffmech as dm
from diffmech._compat import enable_x64
from diffmech.errors import ConfigError
from diffmech.mechanisms import mechanism_from_config
from diffmech.mechanisms.analytic.public_separate import SeparateOptimal

U01 = {"dist": "uniform", "low": 0.0, "high": 1.0}
EXPO = {"dist": "exponential", "rate": 2.0, "high": 1.0}
BINARY = {"dist": "discrete", "values": [1.0, 3.0], "probs": [0.6, 0.4]}


@pytest.fixture(autouse=True)
def _x64():
    with enable_x64():
        yield


def _setting(n, cost, prior=U01):
    return dm.setting_from_config({"kind": "public_goods", "n_agents": n, "n_goods": 1, "prior": prior, "cost": cost})


# ----------------------------------------------------------------------------- closed form (module docstring)


def _irwin_hall_tail(k, s):
    """(P(Z_k ≥ s), E[Z_k 1{Z_k ≥ s}]) for Z_k a sum of k iid U[0, 1]."""
    s = min(max(s, 0.0), float(k))
    cdf = sum((-1) ** j * comb(k, j) * max(s - j, 0.0) ** k for j in range(k + 1)) / factorial(k)
    icdf = sum((-1) ** j * comb(k, j) * max(s - j, 0.0) ** (k + 1) for j in range(k + 1)) / factorial(k + 1)
    return 1.0 - cdf, k / 2.0 - (s * cdf - icdf)


def _uniform_exclusion(n, cost, alpha):
    """(S(α), B(α)) of the rule with exclusion for θ ~ U[0, 1] (module docstring)."""
    a = alpha / (1.0 + alpha)
    b, big_k = 1.0 - a, cost / (1.0 + alpha)
    s = bb = 0.0
    for k in range(1, n + 1):
        p, m = _irwin_hall_tail(k, big_k / b)
        v, mk = b**k * p, b ** (k + 1) * m
        w = comb(n, k) * a ** (n - k)
        s += w * ((k * a - cost) * v + mk)
        bb += w * (((2 * a - 1) * k - cost) * v + 2 * mk)
    return s, bb


def _alpha_ref(n, cost):
    if _uniform_exclusion(n, cost, 0.0)[1] >= 0:
        return 0.0
    return brentq(lambda x: _uniform_exclusion(n, cost, x)[1], 0.0, 1.0, xtol=1e-15)


def _gl(a, b, k):
    """k-node Gauss–Legendre on [a, b] (broadcast over a, b): nodes and weights (..., k)."""
    x, w = np.polynomial.legendre.leggauss(k)
    a, b = np.asarray(a, float)[..., None], np.asarray(b, float)[..., None]
    return a + (b - a) * (x + 1) / 2, (b - a) * w / 2


def _gl_cut(cuts, k):
    """Gauss–Legendre with k nodes on each piece between sorted ``cuts`` (..., P+1) → (..., P·k)."""
    x, w = _gl(cuts[..., :-1], cuts[..., 1:], k)
    shape = cuts.shape[:-1] + (-1,)
    return x.reshape(shape), w.reshape(shape)


@eqx.filter_jit
def _run(m, prof):
    out = m(prof)
    return out.provision, out.inclusion, out.payments


# ----------------------------------------------------------------------------- n = 2: exclusion never binds


def test_two_agents_uniform_reproduces_the_cutoff_rule():
    """n = 2, U[0,1], C = 1. At α = 1/3, g = (4/3)θ − 1/3 ≥ 0 ⇔ θ ≥ 1/4, and Σh ≥ 1 with one agent
    excluded needs (4/3)θ₂ − 1/3 ≥ 1, i.e. θ₂ ≥ 1 (probability 0): exclusion never binds, the rule
    is θ₁ + θ₂ ≥ 5/4 and B(1/3) = 0 as for optimal_cutoff, so α = 1/3 and the surplus is
    ∫∫_{θ₁+θ₂ ≥ 5/4} (θ₁ + θ₂ − 1) = ∫_0^{3/4} (1 − y) y dy = 9/32 − 9/64 = 9/64 (y = 2 − θ₁ − θ₂,
    whose density is y on [0, 1]).
    Transfers: Q(θ) = (θ − 1/4)⁺ for θ < 1, t(θ) = θQ − ∫_0^θ Q = ((θ² − 1/16)/2)⁺; at θ̄ = 1 alone,
    h(1) = 1 = C, so the good is provided whatever the other reports (Q(1) = 1, a jump of measure
    zero) and t(1) = 1 − ∫_0^1 Q = 1 − 9/32."""
    m = mechanism_from_config(_setting(2, 1.0), {"kind": "separate_optimal"})
    assert isinstance(m, SeparateOptimal)
    assert abs(m.alphas[0] - 1.0 / 3.0) < 1e-8
    assert abs(m.goods[0].threshold - 0.25) < 1e-8
    (surplus, budget), = m.good_values()
    assert abs(surplus - 9.0 / 64.0) < 1e-9 and abs(budget) < 1e-9

    # independent 2-D Gauss–Legendre over the mechanism's outputs, cut at θ = 1/4 (η, kink of t)
    # and at the boundary θ₂ = 5/4 − θ₁
    x1, w1 = _gl_cut(np.array([0.0, 0.25, 1.0]), 20)
    c2 = np.stack([np.zeros_like(x1), np.full_like(x1, 0.25), 1.25 - x1, np.ones_like(x1)], -1)
    c2 = np.sort(np.clip(c2, 0.0, 1.0), -1)
    x2, w2 = _gl_cut(c2, 20)
    prof = np.stack([np.broadcast_to(x1[:, None], x2.shape), x2], -1).reshape(-1, 2, 1)
    wts = (w1[:, None] * w2).ravel()
    rho, eta, pay = (np.asarray(a) for a in _run(m, jnp.asarray(prof)))
    th = prof[..., 0]
    assert abs(np.sum(wts * rho[:, 0] * (np.sum(eta[..., 0] * th, axis=1) - 1.0)) - 9.0 / 64.0) < 1e-6
    assert abs(np.sum(wts * (pay.sum(axis=1) - rho[:, 0]))) < 1e-6
    keep = wts > 0  # (empty pieces put zero-weight nodes on the boundary)
    assert np.all(eta[keep, :, 0][rho[keep, 0] == 1] == 1)  # nobody excluded when provided
    np.testing.assert_array_equal(rho[keep, 0], (th[keep].sum(axis=1) >= 1.25).astype(float))

    r = np.linspace(0.0, 1.0, 101)
    t = np.asarray(eqx.filter_jit(lambda g, x: g.transfer(x))(m.goods[0], jnp.asarray(r)))
    ref = np.where(r >= 0.25, (r**2 - 1.0 / 16.0) / 2.0, 0.0)
    ref[-1] = 1.0 - 9.0 / 32.0  # θ̄ = 1 alone covers C (h(1) = 1): Q(1) = 1, t(1) = 1 − ∫_0^1 Q
    np.testing.assert_allclose(t, ref, atol=1e-9, rtol=0)


# ----------------------------------------------------------------------------- n = 3: exclusion binds


def _interim_three(m, r, a, big_k, k=4):
    """E[ρ | θ₁ = r], E[ρ η₁ | θ₁ = r], E[t₁ | θ₁ = r] for n = 3 uniform, by product Gauss–Legendre
    over (θ₂, θ₃) ∈ [0,1]² of the mechanism's outputs. With y = (θ − a)⁺ and K' = K − y(r) the
    provision region is y₂ + y₃ ≥ K': the inner integral is cut at a and at a + K' − y₂ (where the
    indicator switches), so it is exact; as a function of θ₂ it is piecewise linear with kinks at
    a, a + K' − b and a + K', where the outer integral is cut."""
    b = 1.0 - a
    kp = big_k - np.maximum(r - a, 0.0)  # (R,)
    c2 = np.sort(np.clip(np.stack([0 * kp, 0 * kp + a, a + kp - b, a + kp, 0 * kp + 1], -1), 0, 1), -1)
    x2, w2 = _gl_cut(c2, k)  # (R, P2)
    y2 = np.maximum(x2 - a, 0.0)
    c3 = np.sort(np.clip(np.stack([0 * y2, 0 * y2 + a, a + kp[:, None] - y2, 0 * y2 + 1], -1), 0, 1), -1)
    x3, w3 = _gl_cut(c3, k)  # (R, P2, P3)
    own = np.broadcast_to(r[:, None, None], x3.shape)
    prof = np.stack([own, np.broadcast_to(x2[..., None], x3.shape), x3], -1).reshape(-1, 3, 1)
    rho, eta, pay = (np.asarray(v) for v in _run(m, jnp.asarray(prof)))
    wts = w2[..., None] * w3
    mean = lambda v: np.sum(wts * v.reshape(x3.shape), axis=(1, 2))  # noqa: E731
    return mean(rho[:, 0]), mean(rho[:, 0] * eta[:, 0, 0]), mean(pay[:, 0])


def test_three_agents_uniform_exclusion_binds():
    """n = 3, U[0,1], C = 3/2. Without exclusion optimal_cutoff has α = 1/2, rule Σθ ≥ 2 and surplus
    ∫_0^1 (3/2 − y) y²/2 dy = 1/4 − 1/8 = 1/8 (y = 3 − Σθ). With exclusion the closed form (module
    docstring) gives α_ref ≈ 0.4458 and S(α_ref) − 1/8 ≈ 0.0129 (evaluated in the test, not
    pasted), far above the 1e-6 quadrature tolerance: here an agent with θ₃ < a (a ≈ 0.308) is
    excluded and the good is still provided when θ₁ + θ₂ ≥ 2a + K, with probability
    P(θ₃ < a, ρ = 1) = a b² P(Z₂ ≥ K/b) > 0."""
    n, cost = 3, 1.5
    alpha = _alpha_ref(n, cost)
    s_ref, b_ref = _uniform_exclusion(n, cost, alpha)
    assert abs(b_ref) < 1e-12 and s_ref - 0.125 > 0.01  # the closed form's own claims
    m = mechanism_from_config(_setting(n, cost), {"kind": "separate_optimal"})
    g = m.goods[0]
    assert abs(g.alpha - alpha) < 1e-6
    a, big_k = g.alpha / (1 + g.alpha), cost / (1 + g.alpha)
    assert abs(g.threshold - a) < 1e-9
    assert abs(g.surplus - s_ref) < 1e-6 and abs(g.budget) < 1e-9

    # (b), (c): ex ante surplus and budget by quadrature over the own type, cut where η jumps (a)
    # and where K' = K − y(r) crosses 2b, b and 0 (kinks and the jump of P(provide | r))
    b = 1.0 - a
    cuts = np.sort(np.clip([0.0, a, a + big_k - 2 * b, a + big_k - b, a + big_k, 1.0], 0.0, 1.0))
    r, wr = _gl_cut(cuts, 6)
    q_rho, q, t = _interim_three(m, r, a, big_k)
    surplus = n * np.sum(wr * r * q) - cost * np.sum(wr * q_rho)
    budget = n * np.sum(wr * t) - cost * np.sum(wr * q_rho)
    assert abs(surplus - s_ref) < 1e-6 and abs(budget) < 1e-6
    assert surplus > 0.125 + 0.01  # strictly above the optimum without exclusion (1/8)
    excluded_and_provided = np.sum(wr * (r < a) * q_rho)  # P(θ₁ < a, ρ = 1)
    p2, _ = _irwin_hall_tail(2, big_k / b)
    assert abs(excluded_and_provided - a * b**2 * p2) < 1e-6 and excluded_and_provided > 0.01

    # (a): Bayesian IC and interim IR on a grid of own types and reports
    r = np.linspace(0.0, 1.0, 121)
    q_rho, q, t = _interim_three(m, r, a, big_k)
    u = r[:, None] * q[None, :] - t[None, :]  # U(θ, report) for θ on the rows
    truth = np.diagonal(u)
    assert abs(truth[0]) < 1e-12 and truth.min() >= -1e-9  # interim IR, binding at θ = 0
    assert np.max(u.max(axis=1) - truth) <= 1e-6
    low = r < a - 1e-9
    assert np.all(q[low] == 0.0) and np.all(np.abs(t[low]) < 1e-12)  # excluded types pay nothing
    assert np.all(q[~low] > 0.0)


# ----------------------------------------------------------------------------- two goods


def test_two_goods_stack_separate_mechanisms():
    """M = 2, n = 3: good 1 ~ U[0,1] with C = 3/2 (α as in the closed form above), good 2 ~
    exponential(rate 2) on [0, 1] with C = 0.8 (its own α). The outcome stacks the goods, the
    payments are the sum of the per-good transfers, each transfer depends on that good's values
    only, and each good balances its own budget: E[Σ_i t_i^j − C^j ρ^j] = 0 within 4 standard
    errors of a Monte Carlo mean (and 1e-9 by the mechanism's own quadrature)."""
    s = dm.setting_from_config(
        {"kind": "public_goods", "n_agents": 3, "good_priors": [U01, EXPO], "cost": [1.5, 0.8]}
    )
    m = mechanism_from_config(s, {"kind": "separate_optimal"})
    assert abs(m.alphas[0] - _alpha_ref(3, 1.5)) < 1e-6
    assert abs(m.alphas[1] - m.alphas[0]) > 1e-3
    for surplus, budget in m.good_values():
        assert surplus > 0 and abs(budget) < 1e-9

    rng = np.random.default_rng(0)
    u = rng.uniform(size=(100_000, 3, 2))
    z = -np.expm1(-2.0)  # exponential(2) on [0, 1]: F⁻¹(u) = −log(1 − u z)/2
    th = np.stack([u[..., 0], -np.log1p(-u[..., 1] * z) / 2.0], -1)
    x = jnp.asarray(th)
    run = eqx.filter_jit(lambda m, x: (m(x), m.transfers(x)))
    out, per_good = run(m, x)
    assert out.provision.shape == (100_000, 2) and out.inclusion.shape == (100_000, 3, 2)
    assert out.payments.shape == (100_000, 3) and out.alloc.shape == (100_000, 3, 2)
    prov, incl, per_good = np.asarray(out.provision), np.asarray(out.inclusion), np.asarray(per_good)
    np.testing.assert_allclose(np.asarray(out.payments), per_good.sum(-1), atol=1e-12, rtol=0)
    # good j's provision, inclusion and transfers ignore the other good's values
    out2, per_good2 = run(m, jnp.asarray(np.stack([th[..., 0], th[::-1, :, 1]], -1)))
    np.testing.assert_array_equal(np.asarray(out2.provision)[:, 0], prov[:, 0])
    np.testing.assert_array_equal(np.asarray(out2.inclusion)[..., 0], incl[..., 0])
    np.testing.assert_array_equal(np.asarray(per_good2)[..., 0], per_good[..., 0])

    assert np.mean(prov[:, 1] * (incl[..., 1].min(axis=1) == 0)) > 0.01  # exclusion binds in good 2
    for j, cost in enumerate([1.5, 0.8]):
        bud = per_good[..., j].sum(axis=1) - cost * prov[:, j]
        assert abs(bud.mean()) < 4 * bud.std() / np.sqrt(len(bud))
        surplus = prov[:, j] * (np.sum(incl[..., j] * th[..., j], axis=1) - cost)
        assert abs(surplus.mean() - m.good_values()[j][0]) < 4 * surplus.std() / np.sqrt(len(surplus))


# ----------------------------------------------------------------------------- refusals


def test_separate_optimal_refusals():
    cases = [
        ({"kind": "public_goods", "n_agents": 2, "n_goods": 1, "prior": BINARY, "cost": 1.0}, "separate_provision"),
        ({"kind": "public_goods", "n_agents": 2, "good_priors": [U01, BINARY], "cost": 1.0}, "separate_provision"),
        ({"kind": "public_goods", "n_agents": 2, "types": [[1.0, 2.0], [3.0, 1.0]], "probs": [0.5, 0.5], "cost": 1.0},
         "separate_provision"),
        ({"kind": "public_goods", "n_agents": 2, "n_goods": 1, "prior": {"dist": "power_law", "a": 0.5}, "cost": 1.0},
         "regular"),
        ({"kind": "public_goods", "n_agents": 2, "n_goods": 1, "prior": {"dist": "power_law", "a": 2.0}, "cost": 1.0},
         "density"),
        ({"kind": "single_item", "prior": U01, "n_agents": 2}, "public_goods"),
    ]
    for cfg, match in cases:
        with pytest.raises(ConfigError, match=match) as e:
            mechanism_from_config(dm.setting_from_config(cfg), {"kind": "separate_optimal"})
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown key"):
        mechanism_from_config(_setting(2, 1.0), {"kind": "separate_optimal", "alpha": 0.5})
