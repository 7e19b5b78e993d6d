"""Ke's two-agent mechanisms M2(k) (``ke_m2``) and M3(k) (``ke_m3``).

Reference values (REFERENCES.md (Ke) and Ke, "Auctioning social surplus"):

- Example 3 (public good v = θ(2x − x²), c = x², θ ~ U[1/2, 1]): h(τ) = 1 − τ − 1/(1 + 2τ) +
  1/(2 + τ); Section 4.1.2 closed forms
  β¹(θ) = −[1 + (θ(5 − 2θ) − 4)θ + ln 27 − 6 ln(θ + 2) + 3 ln(1 + 2θ)] / (2(1 − θ)²),
  β⁰(θ) = 2[−3/8 + 2θ − 7θ²/2 + 2θ³ − ln(3125/128) + 5 ln(2 + θ) − 2 ln(1 + 2θ)] / (1 − 2θ)²
  (both re-derived by integrating (M2) symbolically: ∫(1 − F)(S − h) dF with S(τ, τ) = 4τ²/(1 + 2τ),
  F = 2τ − 1); REFERENCES.md (Ke): β¹ at 0.5, 0.6, 0.75, 0.9, 1 = 0.244932, 0.324562, 0.449171,
  0.578465, 2/3; E Δ = 4(6 ln 5 − 9 ln 2 − 3 ln 3) = 0.48986393 and β¹(θ̲) = U(θ̲) = E Δ/2.
- The 0/0 limit at θ_k = F⁻¹(k): β^k(θ_k) = (S(θ_k, θ_k) − h(θ_k))/2 (l'Hôpital). Example 3:
  k = 0: (1/2 − 2/5)/2 = 1/20; k = 1/2, θ_k = 3/4: (9/10 − (1/4 − 2/5 + 4/11))/2 = (9/10 − 47/220)/2.
- Example 4 (endowment v = θ(2x − x²), Σx = 1, U[0, 1]): μ = (ln 4 − ½)τ, r¹ = (1 + ln 4)θ/3,
  r⁰ = (1 + ln 4)(1 + 2θ)/6.
- Linear partnership (v = θx, winner takes all, U[0, 1]): x*(τ, z) = 1 for z < τ, so
  ∂_θ v = 1 and μ(τ) = F(τ)/f(τ) = τ; S(τ, τ) = τ; r¹(θ) = ∫_0^θ τ·2τ dτ/θ² = 2θ/3,
  r⁰(θ) = ∫_θ^1 (1 − τ)2τ dτ/(1 − θ)² = (1 + 2θ)/3.

Bayesian IC is checked independently of the mechanism's construction: the interim utility of type θ
reporting r is integrated by Gauss–Legendre over the other's (truthful) type, the pieces cut at
z = r where the roles switch (32 nodes per piece, exact up to the O(1e-9) interpolation of the
tables), so a gain above 1e-6 would be a real violation.
"""

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech._compat import enable_x64
from diffmech.errors import ConfigError
from diffmech.mechanisms import MECHANISMS, mechanism_from_config
from diffmech.mechanisms.analytic.ke_two_agent import KeM2, KeM3

LN = np.log
E_DELTA_EX3 = 4 * (6 * math.log(5) - 9 * math.log(2) - 3 * math.log(3))  # REFERENCES.md (Ke)


def setting(model, low, high, **extra):
    return dm.setting_from_config({"kind": "efficient", "model": model, "n_agents": 2,
                                   "prior": {"dist": "uniform", "low": low, "high": high}, **extra})


def beta1_ex3(t):
    return -(1 + (t * (5 - 2 * t) - 4) * t + LN(27) - 6 * LN(t + 2) + 3 * LN(1 + 2 * t)) / (2 * (1 - t) ** 2)


def beta0_ex3(t):
    return 2 * (-3 / 8 + 2 * t - 3.5 * t**2 + 2 * t**3 - LN(3125 / 128) + 5 * LN(2 + t) - 2 * LN(1 + 2 * t)) / (1 - 2 * t) ** 2


def lump(mech, t):
    return np.asarray(mech.lump_sum(jnp.asarray(t, jnp.float64)))


def run(mech, s, reports, types=None):
    """Payments, utilities v_i(x_i*(reports), types_i) − M_i, budget residuals and ex post IR slacks
    at the (m, 2) profiles ``reports`` (truthful unless ``types``), float64. The batch is padded to a
    power of two (≥ 1024) so that few shapes are compiled."""
    reports = np.asarray(reports, np.float64)
    types = reports if types is None else np.asarray(types, np.float64)
    m = len(reports)
    size = max(1024, 1 << (m - 1).bit_length())
    rep = jnp.asarray(np.concatenate([reports, np.repeat(reports[:1], size - m, 0)]))[..., None]
    typ = jnp.asarray(np.concatenate([types, np.repeat(types[:1], size - m, 0)]))[..., None]
    return {k: np.asarray(v)[:m] for k, v in _evaluate(mech, s, rep, typ).items()}


@eqx.filter_jit
def _evaluate(mech, s, rep, typ):
    out = mech(rep)
    return {"payments": out.payments, "utility": s.utility(typ, out), "residual": s.budget_residual(out),
            "slack": s.ir_slack(typ, out)}


def interim_utility(mech, s, theta, r, nodes=32):
    """U(θ, r) of agent 0 (agent 1 truthful): Gauss–Legendre over z on [θ̲, r] and [r, θ̄]
    (uniform prior, density 1/(θ̄ − θ̲)). ``theta``, ``r``: 1-D arrays of equal length."""
    lo, hi = s.priors[0].low, s.priors[0].high
    x, w = np.polynomial.legendre.leggauss(nodes)
    a = np.stack([np.full_like(r, lo), r])[:, :, None]  # (piece, point, 1)
    b = np.stack([r, np.full_like(r, hi)])[:, :, None]
    z = a + (b - a) * (x + 1) / 2
    wz = (b - a) * w / 2 / (hi - lo)
    rep = np.stack([np.broadcast_to(r[None, :, None], z.shape), z], -1).reshape(-1, 2)
    typ = np.stack([np.broadcast_to(theta[None, :, None], z.shape), z], -1).reshape(-1, 2)
    u = run(mech, s, rep, typ)["utility"][:, 0]
    return np.sum(wz * u.reshape(z.shape), axis=(0, 2))


def max_ic_gain(mech, s, n_types=9, n_reports=41):
    """max over a grid of types θ and reports r of U(θ, r) − U(θ, θ)."""
    lo, hi = s.priors[0].low, s.priors[0].high
    t = np.linspace(lo, hi, n_types)
    th, r = np.meshgrid(t, np.linspace(lo, hi, n_reports), indexing="ij")
    u = interim_utility(mech, s, np.concatenate([th.ravel(), t]), np.concatenate([r.ravel(), t]))
    return float((u[: th.size].reshape(th.shape) - u[th.size :][:, None]).max())


def profile_grid(lo, hi, n=201):
    t = np.linspace(lo, hi, n)
    a, b = np.meshgrid(t, t, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], 1)


# ----------------------------------------------------------------------------- M2


def test_m2_example3_lump_sums_match_the_closed_forms():
    with enable_x64():
        s = setting("public_good", 0.5, 1.0, reservation="zero")
        m1, m0, mh = KeM2(s, 1.0), KeM2(s, 0.0), KeM2(s, 0.5)
        t = np.linspace(0.5, 0.95, 401)  # the closed forms cancel catastrophically near θ_k
        np.testing.assert_allclose(lump(m1, t), beta1_ex3(t), atol=1e-8)
        t = np.linspace(0.55, 1.0, 401)
        np.testing.assert_allclose(lump(m0, t), beta0_ex3(t), atol=1e-8)
        np.testing.assert_allclose(lump(m1, [0.5, 0.6, 0.75, 0.9, 1.0]),
                                   [0.244932, 0.324562, 0.449171, 0.578465, 2 / 3], atol=1e-6)
        np.testing.assert_allclose(lump(m1, [0.5]), E_DELTA_EX3 / 2, atol=1e-9)
        # 0/0 limits at θ_k: (S − h)/2
        np.testing.assert_allclose(lump(m1, [1.0]), 2 / 3, atol=1e-12)
        np.testing.assert_allclose(lump(m0, [0.5]), 1 / 20, atol=1e-12)
        np.testing.assert_allclose(lump(mh, [0.75]), (0.9 - 47 / 220) / 2, atol=1e-12)
        # ... and the table is continuous through them
        np.testing.assert_allclose(lump(mh, [0.75 - 1e-4, 0.75 + 1e-4]), (0.9 - 47 / 220) / 2, atol=2e-4)


@pytest.mark.parametrize("k", [1.0, 0.5, 0.0])
def test_m2_budget_balance_ties_and_bayesian_ic(k):
    with enable_x64():
        s = setting("public_good", 0.5, 1.0, reservation="zero")
        m = KeM2(s, k)
        th = np.random.default_rng(1).uniform(0.5, 1.0, (500, 2))
        t = 0.7
        prof = np.concatenate([th, th[:, ::-1], [[t, t], [0.9, 0.6]]])
        out = run(m, s, prof)
        assert np.max(np.abs(out["residual"])) <= 1e-12
        # swapping the agents swaps the payments
        np.testing.assert_allclose(out["payments"][500:1000], out["payments"][:500, ::-1], atol=1e-14)
        # at a tie each pays the average of the two roles, ((c − v + L) + (v − L))/2 = c/2
        x = 2 * t / (1 + 2 * t)
        np.testing.assert_allclose(out["payments"][1000], [x * x / 2] * 2, atol=1e-12)
        # (0.9, 0.6): winner pays c − v_l + L, loser v_l − L
        x = 1.5 / 2.5
        L = (1 - k) * lump(m, [0.9])[0] + k * lump(m, [0.6])[0]
        v_l = 0.6 * (2 * x - x * x)
        np.testing.assert_allclose(out["payments"][1001], [x * x - v_l + L, v_l - L], atol=1e-12)
        assert max_ic_gain(m, s) <= 1e-6


def test_the_ic_check_detects_a_wrong_lump_sum():
    """Negative control: scaling β¹ by 1.1 breaks the first-order condition of (M2)."""
    with enable_x64():
        s = setting("public_good", 0.5, 1.0, reservation="zero")
        m = KeM2(s, 1.0)
        bad = eqx.tree_at(lambda q: q.table, m, m.table * 1.1)
        assert max_ic_gain(bad, s) > 1e-4


def test_m2_expected_surplus_identity():
    """Σ_i U_i(θ̲) = E Δ (Theorem 6: each agent's U(θ̲) = β¹(θ̲) = E Δ/2), zero reservation."""
    with enable_x64():
        s = setting("public_good", 0.5, 1.0, reservation="zero")
        m = KeM2(s, 1.0)
        u_low = interim_utility(m, s, np.array([0.5]), np.array([0.5]))[0]
        np.testing.assert_allclose(2 * u_low, E_DELTA_EX3, atol=1e-6)
        np.testing.assert_allclose(E_DELTA_EX3, 0.48986393, atol=1e-8)


def test_m2_reservation_adjusted_is_bic_and_at_k1_equals_plain_m2():
    """β^{1#} = β¹ − u̲ (Proposition 6) and the k = 1 payments do not change; for k = 1/2 the
    adjusted rule differs from plain M2 but stays budget balanced and Bayesian IC."""
    with enable_x64():
        s = setting("public_good", 0.5, 1.0)  # autarky: u̲ = θ²/(1 + θ)
        zero = setting("public_good", 0.5, 1.0, reservation="zero")
        plain, adj = KeM2(zero, 1.0), KeM2(s, 1.0)
        assert adj.adjusted and not KeM2(s, 1.0, reservation_adjusted=False).adjusted
        t = np.linspace(0.5, 1.0, 301)
        np.testing.assert_allclose(lump(adj, t), lump(plain, t) - t**2 / (1 + t), atol=1e-8)
        th = np.random.default_rng(2).uniform(0.5, 1.0, (300, 2))
        np.testing.assert_allclose(run(adj, s, th)["payments"], run(plain, zero, th)["payments"], atol=1e-8)
        half = KeM2(s, 0.5)
        out = run(half, s, th)
        assert np.max(np.abs(out["residual"])) <= 1e-12
        assert np.abs(out["payments"] - run(KeM2(s, 0.5, reservation_adjusted=False), s, th)["payments"]).max() > 1e-3
        assert max_ic_gain(half, s) <= 1e-6


def test_m2_ex_post_ir_against_autarky_iff_e_delta_covers_the_reservations():
    """Example 3 with u̲ = θ²/(1 + θ): a = 1/2 is ex post IR (E Δ = 0.4899 > 2u̲(1/2) = 1/3); a =
    0.15 < a* = 0.2029882 (REFERENCES.md (Ke)) is not: the loser at θ̲ gets β¹(θ̲) = E Δ(a)/2 < u̲(a).
    The binding slack β^{1#}(θ̲) changes sign between a* − 0.002 and a* + 0.002 (Proposition 6)."""
    with enable_x64():
        good = setting("public_good", 0.5, 1.0)
        assert run(KeM2(good, 1.0), good, profile_grid(0.5, 1.0))["slack"].min() >= 0.0
        bad = setting("public_good", 0.15, 1.0)
        grid = profile_grid(0.15, 1.0)
        slack = run(KeM2(bad, 1.0), bad, grid)["slack"]
        assert slack.min() < 0.0
        i = np.unravel_index(np.argmin(slack), slack.shape)
        assert grid[i] == 0.15  # the violator is the lowest type
        # the binding slack β^{1#}(θ̲) = E Δ(a)/2 − u̲(a) changes sign at a* = 0.2029882
        for a, sign in ((0.2009, -1.0), (0.2049, 1.0)):
            assert sign * lump(KeM2(setting("public_good", a, 1.0), 1.0), [a])[0] > 0.0


# ----------------------------------------------------------------------------- M3


def test_m3_example4_closed_forms_ir_bb_and_ic():
    with enable_x64():
        s = setting("endowment", 0.0, 1.0)
        m1, m0 = KeM3(s, 1.0), KeM3(s, 0.0)
        t = np.linspace(0.0, 1.0, 501)
        np.testing.assert_allclose(lump(m1, t), (1 + LN(4)) * t / 3, atol=1e-8)
        np.testing.assert_allclose(lump(m0, t), (1 + LN(4)) * (1 + 2 * t) / 6, atol=1e-8)
        out = run(m1, s, np.concatenate([profile_grid(0.0, 1.0), [[0.4, 0.4], [0.3, 0.8]]]))
        assert np.max(np.abs(out["residual"])) <= 1e-12
        # every ex post payoff ≥ 0 (zero reservation; 1e-12 for round-off at the (0, 0) profile)
        assert out["utility"].min() >= -1e-12
        # truthful payoffs at (0.3, 0.8): holder (lowest) S − r¹(0.8), other r¹(0.8)
        S, r = 1.1 - 0.24 / 1.1, (1 + LN(4)) * 0.8 / 3
        np.testing.assert_allclose(out["utility"][-1], [S - r, r], atol=1e-12)
        # a tie averages the roles: ((−v + L) + (v − L))/2 = 0 for both
        np.testing.assert_allclose(out["payments"][-2], [0.0, 0.0], atol=1e-14)
        for m in (m1, KeM3(s, 0.5)):
            th = np.random.default_rng(3).uniform(0, 1, (500, 2))
            assert np.max(np.abs(run(m, s, th)["residual"])) <= 1e-12
            assert max_ic_gain(m, s) <= 1e-6


def test_m3_partnership_is_bic_but_not_ex_post_ir_with_equal_shares():
    """Proposition 7(i): with u̲_i = θ_i/2 M3(1) fails ex post IR: near a tie at θ the holder gets
    θ − r¹(θ) = θ/3 < u̲ = θ/2 (min slack → −1/6 at θ → 1). (REFERENCES.md (Ke) errata: another
    mechanism, p(w, l) = w/2 − (w² − l²)/4, is ex post IR here, so only M3's failure is tested.)"""
    with enable_x64():
        s = setting("partnership", 0.0, 1.0)
        m1 = KeM3(s, 1.0)
        t = np.linspace(0.0, 1.0, 501)
        np.testing.assert_allclose(lump(m1, t), 2 * t / 3, atol=1e-8)
        np.testing.assert_allclose(lump(KeM3(s, 0.0), t), (1 + 2 * t) / 3, atol=1e-8)
        out = run(m1, s, profile_grid(0.0, 1.0))
        assert out["slack"].min() < -0.15
        assert np.max(np.abs(out["residual"])) <= 1e-12
        assert max_ic_gain(m1, s) <= 1e-6


# ----------------------------------------------------------------------------- config


def test_registry_float32_and_config_errors():
    assert MECHANISMS["ke_m2"] is KeM2 and MECHANISMS["ke_m3"] is KeM3
    pub = setting("public_good", 0.5, 1.0)
    m = mechanism_from_config(pub, {"kind": "ke_m2", "k": 1, "reservation_adjusted": False})
    out = m(jnp.asarray([[[0.7], [0.9]]], jnp.float32))
    assert out.payments.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out.payments)))
    end = setting("endowment", 0.0, 1.0)
    assert KeM2.applies(pub) and not KeM2.applies(end) and KeM3.applies(end) and not KeM3.applies(pub)
    bad = [
        (end, {"kind": "ke_m2"}, "ke_m3"),
        (pub, {"kind": "ke_m3"}, "ke_m2"),
        (setting("private_good", 0.0, 1.0), {"kind": "ke_m2"}, "ke_m1"),
        (pub, {"kind": "ke_m2", "k": 1.5}, "[0, 1]"),
        (pub, {"kind": "ke_m2", "k": True}, "[0, 1]"),
        (pub, {"kind": "ke_m2", "reservation_adjusted": "yes"}, "true or false"),
        (end, {"kind": "ke_m3", "reservation_adjusted": True}, "unknown key"),
        (dm.setting_from_config({"kind": "efficient", "model": "public_good", "n_agents": 3,
                                 "prior": {"dist": "uniform", "low": 0.5, "high": 1.0}}), {"kind": "ke_m2"}, "2 agents"),
        (dm.setting_from_config({"kind": "efficient", "model": "endowment", "priors": [
            {"dist": "uniform", "low": 0.0, "high": 1.0}, {"dist": "uniform", "low": 0.0, "high": 2.0}]}),
         {"kind": "ke_m3"}, "iid"),
    ]
    for s, cfg, words in bad:
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")) as e:
            mechanism_from_config(s, cfg)
        assert "\n" not in str(e.value)
