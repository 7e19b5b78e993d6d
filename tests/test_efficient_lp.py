"""Tests of diffmech.efficient_exact (E S, E Δ, θ^#, the existence margin and threshold) and
diffmech.efficient_lp (the LP feasibility oracle for ex post socially efficient mechanisms, Ke).

Reference values are copied from /work/shared/REFERENCES.md (Ke) (never read at run time):

    single object, n iid U[0, 1], S(θ) = θ:            E Δ = (n − 1)/(n + 1)
    Example 3 (public good, n = 2, v = θ(2x − x²), c = x², U[1/2, 1], u̲ = θ²/(1 + θ)):
                                                       E Δ = 4(6 ln 5 − 9 ln 2 − 3 ln 3) = 0.48986393
    same, θ ~ U[a, 1]: existence threshold              a* = 0.2029882 (there E Δ(a) = 2a²/(1 + a))
    Errata: Example 4 (endowment, U[0, 1], n = 2):      E Δ = (2 − 2 ln 2)/3 = 0.204569
    Errata: Proposition 7(i) is contradicted by the equal-share linear partnership with the price
    p(w, l) = w/2 − (w² − l²)/4 paid by the high type w to the low type l.

Other reference numbers are derived by hand in the docstrings.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from diffmech._compat import enable_x64
from diffmech.efficient_exact import (
    example3_threshold,
    existence_margin,
    expected_delta,
    expected_surplus,
    interim_surplus,
    lowest_types,
)
from diffmech.efficient_lp import MAX_PROFILES, feasibility_lp
from diffmech.errors import ConfigError
from diffmech.settings import setting_from_config

UNIT = {"dist": "uniform", "low": 0.0, "high": 1.0}


def efficient(model, n=2, prior=UNIT, **kw):
    return setting_from_config({"kind": "efficient", "model": model, "n_agents": n, "prior": prior, **kw})


def example3(a):
    return efficient("public_good", prior={"dist": "uniform", "low": a, "high": 1.0})


# ---------------------------------------------------------------------- exact quantities


@pytest.mark.parametrize("n", [2, 3, 5])
def test_private_good_expected_delta_iid_uniform(n):
    """REFERENCES.md (Ke): E Δ = (n − 1)/(n + 1). (E S(0, θ−i) = E max_{j≠i} θ_j = (n − 1)/n and
    E S = n/(n + 1): n(n − 1)/n − (n − 1)n/(n + 1) = (n − 1)/(n + 1).)"""
    s = efficient("private_good", n)
    assert expected_surplus(s) == pytest.approx(n / (n + 1), abs=1e-10)
    assert expected_delta(s) == pytest.approx((n - 1) / (n + 1), abs=1e-10)


def test_private_good_asymmetric_power_law_with_gamma():
    """F_k = t^{a_k} on [0, 1], S = θ^γ/γ (singular densities for a_1 = 1/2, γ = 1/2):
    E φ(θ_k) = a_k/(γ(a_k + γ)); max θ has F = t^A, A = a_1 + a_2, so E S = A/(γ(A + γ));
    E Δ = Σ_k a_k/(γ(a_k + γ)) − A/(γ(A + γ)) (S(0, θ_j) = φ(θ_j))."""
    a1, a2, g = 0.5, 2.0, 0.5
    s = setting_from_config({
        "kind": "efficient", "model": "private_good", "gamma": g,
        "priors": [{"dist": "power_law", "low": 0.0, "high": 1.0, "a": a1}, {"dist": "power_law", "low": 0.0, "high": 1.0, "a": a2}],
    })
    A = a1 + a2
    assert expected_surplus(s) == pytest.approx(A / (g * (A + g)), abs=1e-10)
    ref = a1 / (g * (a1 + g)) + a2 / (g * (a2 + g)) - A / (g * (A + g))
    assert expected_delta(s) == pytest.approx(ref, abs=1e-10)


def test_example3_expected_delta_lowest_types_and_margin():
    """REFERENCES.md (Ke): E Δ = 4(6 ln 5 − 9 ln 2 − 3 ln 3). S̄(θ) − u̲(θ) is increasing (Ke fn. 10),
    so θ^# = 1/2 and the margin is E Δ − 2 u̲(1/2) = E Δ − 2·(1/4)/(3/2) = E Δ − 1/3."""
    s = example3(0.5)
    ref = 4.0 * (6 * math.log(5) - 9 * math.log(2) - 3 * math.log(3))
    assert expected_delta(s) == pytest.approx(ref, abs=1e-10)
    assert np.allclose(lowest_types(s), 0.5, atol=1e-12)
    assert existence_margin(s) == pytest.approx(ref - 1.0 / 3.0, abs=1e-10)


def test_public_good_expected_surplus_closed_form_and_consistency():
    """C = 1, U[0, 1], n = 2: S = T²/(1 + T) = T − 1 + 1/(1 + T) with T = θ_1 + θ_2 (triangular on
    [0, 2]), so E S = E 1/(1 + T) = ∫_0^1 t/(1+t) + ∫_1^2 (2−t)/(1+t) = 3 ln(3/2) − ln 2.
    For n = 3 (no closed form): E_{θ_i} of the interim surplus must equal E S (Gauss–Legendre in θ_i)."""
    s2 = efficient("public_good", 2, reservation="zero")
    assert expected_surplus(s2) == pytest.approx(3 * math.log(1.5) - math.log(2), abs=1e-10)
    s3 = efficient("public_good", 3)
    x, w = np.polynomial.legendre.leggauss(40)
    outer = float(interim_surplus(s3, 1, (x + 1) / 2) @ (w / 2))
    assert outer == pytest.approx(expected_surplus(s3), abs=1e-9)


def test_example4_endowment_expected_delta_erratum():
    """Errata: E Δ = (2 − 2 ln 2)/3. S(0, θ) = θ, so E Δ = 2·½ − E S = E[θ_1θ_2/(θ_1 + θ_2)]
    = 2∫_0^1∫_0^x xy/(x+y) dy dx = 2∫_0^1 x² dx ∫_0^1 s/(1+s) ds (y = xs) = (2/3)(1 − ln 2)."""
    s = efficient("endowment")
    assert expected_delta(s) == pytest.approx((2 - 2 * math.log(2)) / 3, abs=1e-10)


def test_partnership_worst_off_type_and_margin():
    """Equal shares, u̲ = θ/2, U[0, 1]: S̄(θ) − u̲(θ) = E max(θ, θ_j) − θ/2 = (1 + θ²)/2 − θ/2,
    minimal at θ^# = 1/2 with value 3/8; margin = 2·3/8 − E max = 3/4 − 2/3 = 1/12 > 0
    (Cramton–Gibbons–Klemperer: interim efficient dissolution exists)."""
    s = efficient("partnership")
    assert np.allclose(lowest_types(s), 0.5, atol=1e-7)
    assert existence_margin(s) == pytest.approx(1.0 / 12.0, abs=1e-10)


def test_example3_threshold():
    """REFERENCES.md (Ke): a* = 0.2029882 (7 decimals), where E Δ(a*) = 2a*²/(1 + a*) = Σ u̲(θ̲)."""
    a = example3_threshold()
    assert a == pytest.approx(0.2029882, abs=6e-8)
    assert expected_delta(example3(a)) == pytest.approx(2 * a * a / (1 + a), abs=1e-9)


def test_exact_refuses_large_product_rules_and_other_settings():
    with pytest.raises(ConfigError, match="Monte Carlo"):
        expected_delta(efficient("public_good", 5))
    single = setting_from_config({"kind": "single_item", "n_agents": 2, "prior": UNIT})
    with pytest.raises(ConfigError, match="efficient setting"):
        expected_surplus(single)


# ---------------------------------------------------------------------- the LP


def _independent_check(setting, res):
    """Recompute BB, interim IC and ex post IR of the returned payments with the setting's
    functions (n = 2): returns (max |Σ M − c|, max IC gain, min IR slack)."""
    g, pr, M = res.grid, res.probs, res.payments
    N = g.shape[1]
    th = np.stack(np.meshgrid(g[0], g[1], indexing="ij"), -1).reshape(-1, 2)
    with enable_x64():
        x = setting.allocation(jnp.asarray(th))
        cost = np.asarray(setting.production_cost(x))
        v = np.asarray(setting.value(x, jnp.asarray(th))).reshape(N, N, 2)
        res_u = np.asarray(setting.reservation_utility(jnp.asarray(th))).reshape(N, N, 2)
        xs = np.asarray(x).reshape(N, N, 2)
        # value of agent 0 of type k at the allocation of report r against θ_1^j: (r, j, k)
        v0 = np.asarray(setting.value(jnp.asarray(np.repeat(xs[..., :1], N, -1).reshape(-1, N)),
                                      jnp.asarray(np.broadcast_to(g[0], (N * N, N))))).reshape(N, N, N)
        v1 = np.asarray(setting.value(jnp.asarray(np.repeat(xs.transpose(1, 0, 2)[..., 1:], N, -1).reshape(-1, N)),
                                      jnp.asarray(np.broadcast_to(g[1], (N * N, N))))).reshape(N, N, N)
    bb = np.max(np.abs(M.sum(-1).reshape(-1) - cost))
    gains = []
    for vi, Mi, p_other in ((v0, M[..., 0], pr[1]), (v1, M[..., 1].T, pr[0])):
        U = np.einsum("rjk,j->rk", vi, p_other) - (Mi @ p_other)[:, None]  # type k reporting r
        gains.append(np.max(U - np.diag(U)[None, :]))
    return bb, max(gains), float(np.min(v - M - res_u))


def test_example3_lp_sign_and_independent_check():
    """Example 3: existence at a = 1/2 (margin E Δ − 1/3 = 0.157 > 0; M2 with k = 1 is ex post
    socially efficient, Ke Proposition 6) and non-existence at a = 0.1 < a* (even interim IR
    fails in the continuum, and the grid LP with N = 20 agrees). The returned payments satisfy BB,
    IC and IR ≥ t* when recomputed independently."""
    r = feasibility_lp(example3(0.5), 20)
    assert r.t_star > 0.01
    bb, gain, slack = _independent_check(example3(0.5), r)
    assert bb < 1e-9 and gain < 1e-8 and slack == pytest.approx(r.t_star, abs=1e-8)
    r = feasibility_lp(example3(0.1), 20)
    assert r.t_star < -0.01
    assert not r.exists()


def test_private_good_lp_existence_and_discrete_lemma3():
    """Private good, n = 2, U[0, 1], u̲ = 0, midpoints θ^k = (k + ½)/N, π = 1/N (ties split).

    t*: summing the two IR constraints at the lowest profile gives 2t ≤ S(θ^0, θ^0) = 1/(2N), so
    0 ≤ t* ≤ 1/(4N) (M1 exists, Ke Theorem 2; the grid LP must find t* ≥ 0).

    Discrete Lemma 3 (module docstring (L3)): P(win | k) = (k + ½)/N, so
    W(l, l+1) − W(l, l) = (1/N)(l + ½)/N; P(θ > θ^l) = (N − 1 − l)/N; Σ_l (l + ½)(N − 1 − l) =
    N(N − 1)(2N − 1)/12; E S = Σ_k θ^k (2k + 1)/N² = 2/3 − 1/(6N²). Hence
    B_grid = E S − 2(N − 1)(2N − 1)/(12N²) = 1/3 + 1/(2N) − 1/(3N²), attained by maximising
    Σ U(θ^0), while E Δ_grid = 2 E θ − E S = 1/3 + 1/(6N²) < B_grid: on a grid Σ U(θ̲) ≤ E Δ(grid)
    fails, (L3) holds, and both tend to Ke's 1/3."""
    N = 20
    s = efficient("private_good")
    r = feasibility_lp(s, N)
    assert 0.0 <= r.t_star <= 1.0 / (4 * N) + 1e-9
    B = 1 / 3 + 1 / (2 * N) - 1 / (3 * N * N)
    assert r.lemma3_bound == pytest.approx(B, abs=1e-12)
    assert r.expected_delta == pytest.approx(1 / 3 + 1 / (6 * N * N), abs=1e-12)
    assert r.lowest_utility_sum <= B + 1e-8
    best = feasibility_lp(s, N, objective="lowest_utility")
    assert best.lowest_utility_sum == pytest.approx(B, abs=1e-8)
    assert best.lowest_utility_sum > best.expected_delta + 1e-3
    # interim utilities reported by the LP match the payments
    assert np.allclose(best.interim_utility[:, 0].sum(), best.lowest_utility_sum)


def test_private_good_ex_post_monotone():
    """With the monotonicity rows (Ke Definition 3) the LP still finds t* ≥ 0 (M1 is ex post
    monotone, Ke Proposition 2), and the returned ex post payoffs are nondecreasing in own type."""
    N = 12
    s = efficient("private_good")
    r = feasibility_lp(s, N, monotone=True)
    assert r.t_star >= 0.0
    g = r.grid
    th = np.stack(np.meshgrid(g[0], g[1], indexing="ij"), -1).reshape(-1, 2)
    with enable_x64():
        x = s.allocation(jnp.asarray(th))
        v = np.asarray(s.value(x, jnp.asarray(th))).reshape(N, N, 2)
    u = v - r.payments
    assert np.all(np.diff(u[..., 0], axis=0) >= -1e-8) and np.all(np.diff(u[..., 1], axis=1) >= -1e-8)


def test_partnership_equal_shares_price_mechanism_contradicts_prop7i():
    """Equal-share linear partnership, U[0, 1], u̲_i = θ_i/2. The high type w takes the asset and
    pays p(w, l) = w/2 − (w² − l²)/4 to the low type l (REFERENCES errata). Ex post BB: a transfer.
    Ex post IR: w − p − w/2 = (w² − l²)/4 ≥ 0 and p − l/2 = ((w − l)/2)(1 − (w + l)/2) ≥ 0.
    Bayesian IC: a type θ reporting r gets U(r; θ) = ∫_0^r (θ − p(r, s)) ds + ∫_r^1 p(s, r) ds, and
    dU/dr = θ − r (the r² terms cancel), so U(θ; θ) − U(r; θ) = (θ − r)²/2 ≥ 0. So Proposition
    7(i) fails. On any grid containing the diagonal, 2t ≤ max θ − Σ θ_i/2 = 0 there, so t* ≤ 0; the
    LP finds t* = 0 (existence), with and without ex post monotonicity."""
    p = lambda w, l: w / 2 - (w * w - l * l) / 4  # noqa: E731
    x, wq = np.polynomial.legendre.leggauss(30)

    def U(r, th):
        s1, s2 = r * (x + 1) / 2, r + (1 - r) * (x + 1) / 2
        return np.sum((th - p(r, s1)) * wq) * r / 2 + np.sum(p(s2, r) * wq) * (1 - r) / 2

    for th in (0.1, 0.5, 0.8):
        for r in (0.0, 0.3, 0.5, 0.95):
            assert U(th, th) - U(r, th) == pytest.approx((th - r) ** 2 / 2, abs=1e-12)
    ws, ls = np.meshgrid(np.linspace(0, 1, 41), np.linspace(0, 1, 41))
    hi, lo = np.maximum(ws, ls), np.minimum(ws, ls)
    assert np.all(hi - p(hi, lo) - hi / 2 >= -1e-15) and np.all(p(hi, lo) - lo / 2 >= -1e-15)
    s = efficient("partnership")
    for mono in (False, True):
        r = feasibility_lp(s, 16, monotone=mono)
        assert r.t_star == pytest.approx(0.0, abs=1e-9)


def test_lp_options_and_refusals():
    s = efficient("private_good")
    for nodes in ("quantile", "gauss"):
        r = feasibility_lp(s, 8, nodes=nodes)
        assert r.probs.sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-12)
        assert r.ic_violation < 1e-8 and r.budget_residual < 1e-9 and r.t_star >= 0.0
    with pytest.raises(ConfigError, match="grid profiles exceed"):
        feasibility_lp(s, int(MAX_PROFILES ** 0.5) + 1)
    with pytest.raises(ConfigError, match="nodes must be"):
        feasibility_lp(s, 8, nodes="chebyshev")
    with pytest.raises(ConfigError, match="n_grid"):
        feasibility_lp(s, 1)
    single = setting_from_config({"kind": "single_item", "n_agents": 2, "prior": UNIT})
    with pytest.raises(ConfigError, match="efficient setting"):
        feasibility_lp(single, 8)
