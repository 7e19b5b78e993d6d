"""Ke's M1 for one private object (symmetric and asymmetric priors) and its implementation as a
first-price auction with the revenue redistributed (Ke Sections 3 and 5).

Model: ``private_good`` (S(θ) = θ^γ/γ, γ = 1: S(θ) = θ) or ``partnership`` (S(θ) = θ), the object
to the highest report; reservation utility 0 (M1 is ex post IR relative to 0 only, so settings
with another reservation are refused — today that is every partnership, whose reservation is
always ``shares``).

M1, symmetric priors F (Ke eq. (4), Theorem 2). With W(t) = ∫_θ̲^t S dFⁿ / F(t)ⁿ = E[S(θ_(n)) |
θ_(n) ≤ t] (W(θ̲) = S(θ̲)), the highest report θ̂_w wins and pays P(θ̂_w) = ((n−1)/n) W(θ̂_w), and
every loser receives P(θ̂_w)/(n−1) = W(θ̂_w)/n; Σ_i M_i = 0. Substituting u = F(t)s,

    W(t) = ∫_0^1 S(F⁻¹(F(t) s)) n s^{n−1} ds,                                                  (W)

computed by Gauss–Legendre on pieces of [0, 1] graded towards 0 and cut at F(b)/F(t) for the
prior's breakpoints b. U[0, 1], S = θ: W(t) = n t/(n+1), the winner pays (n−1)θ_w/(n+1), each
loser receives θ_w/(n+1) (n = 2: θ_w/3; REFERENCES.md (Ke)).

M1, asymmetric priors F_k on one common support [θ̲, θ̄] (Ke eqs. (5)–(6), Proposition 4). The
winner i pays P_i(θ̂_i), each loser receives P_i(θ̂_i)/(n−1), and P = (P_1, …, P_n) solves

    P' = A P + B,  q_k = f_k/F_k,  A_ii = −Σ_{k≠i} q_k,  A_ij = −q_j/(n−1),  B_i = S Σ_{k≠i} q_k,
    P_i(θ̲) = (n−1) S(θ̲)/n                                                                        (6)

(the corrected initial condition, REFERENCES.md errata; Ke prints S(θ̲)/n, right only for n = 2).
It makes agent i's expected payment m_i(θ) = G_i(θ)P_i(θ) − (1/(n−1)) Σ_{j≠i} ∫_θ^θ̄ P_j Π_{k∉{i,j}}F_k dF_j
satisfy m_i' = g_i S (G_i = Π_{k≠i} F_k), the envelope condition of Bayesian IC.
How (6) is solved. Since A·((n−1)S/n)𝟙 + B = 0 pointwise, D = P − ((n−1)S/n)𝟙 solves
D' = A D − ((n−1)/n) S' 𝟙, D(θ̲) = 0. The q_k blow up like a_k/x at θ̲ (x = t − θ̲, F_k ≈ C x^{a_k};
a_k = 1 for a density positive at θ̲): a regular singular point. With s = ln x the system
dD/ds = x A D − ((n−1)/n) x S' 𝟙 has bounded coefficients; it is integrated by
``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-11) from x0 = 1e-10 (θ̄ − θ̲) to θ̄ − θ̲, started on
the power-law asymptotics: with K = −x A(x0) (K_ii = x q_{−i}, K_ij = x q_j/(n−1)) and
S(θ̲ + x) − S(θ̲) ≈ σ x^β (β = x0 S'(t0)/(S(t0) − S(θ̲))), D ≈ d x^β where
(βI + K) d = −((n−1)/n) σ β 𝟙, i.e. D(x0) = −((n−1)/n) β (βI + K)⁻¹ 𝟙 (S(t0) − S(θ̲)). This is exact for
power-law priors F_k = x^{a_k} with S = s₀ x^γ, whose solution for n = 2 is
P_i = s₀ a_j x^γ/(a_i + a_j + γ) (REFERENCES.md (Ke)). (For n = 2 the homogeneous system has the
constant solution (c, −c) — a lump sum between the agents — so the start must be right, not only
stable; the other directions are damped like (x0/x)^λ, λ > 0.)

Ties (probability 0): the winner is drawn uniformly among the k highest reports, and the outcome
is the average: with the allocation x_i (1/k for the tied, else 0),
M_i = x_i P_i(θ̂_i) − (Σ_w x_w P_w(θ̂_w) − x_i P_i(θ̂_i))/(n−1), which sums to 0.

Tables: P_i is tabulated on a grid of ``GRID_POINTS`` even points over [θ̲, θ̄] plus points that
crowd towards θ̲ (where P may behave like (t − θ̲)^γ; :func:`~.ke_generic.common_grid`) and the
priors' breakpoints, and interpolated linearly with jnp (reports beyond the support take the end
values). The interim utility of truthful type θ,

    U_i(θ) = G_i(θ)(S(θ) − P_i(θ)) + (1/(n−1)) Σ_{j≠i} ∫_θ^θ̄ P_j Π_{k∉{i,j}} F_k dF_j,

is tabulated on the same grid (the integrals by per-cell Gauss–Legendre in quantile space,
:func:`~.ke_generic.upper_integrals`, with P_j evaluated exactly: (W) or the ODE's dense output).
For any Bayesian IC, ex post budget-balanced efficient rule Σ_i U_i(θ̲) = E Δ (Ke Lemma 3 holds with
equality; :mod:`.ke_generic`); for symmetric M1 U(θ̲) = E Δ/n (U[0, 1], n = 2: U(θ) = 1/6 + θ²/2).

Ex post IR (relative to 0, S ≥ 0): a loser receives W/n ≥ 0 and the winner keeps
S(θ_w) − ((n−1)/n)W(θ_w) ≥ S(θ_w)/n ≥ 0 because W(θ_w) ≤ S(θ_w).

Probability of ex post IC (Ke Definition 4: a winner may not lower his payment while keeping the
object). The winner cannot gain: raising his report raises his payment; losing gives him at most
W(θ_(2))/n ≤ W(θ_w)/n ≤ S(θ_w) − ((n−1)/n)W(θ_w). A loser's payoff W(θ_w)/n does not depend on his
report while he loses; outbidding the winner (report r ↓ θ_w) gives S(θ_i) − ((n−1)/n)W(θ_w), a gain
iff S(θ_i) > W(θ_w). The most tempted loser is the second highest, so M1 is ex post IC iff
S(θ_(2)) ≤ W(θ_(1)). For U[0, 1], S = θ: W(t) = nt/(n+1); given θ_(1) = t the other n − 1 types are
iid U[0, t], their maximum is ≤ nt/(n+1) with probability (n/(n+1))^{n−1}, whatever t, so

    P(M1 ex post IC) = (n/(n+1))^{n−1}     (n = 2: 2/3).

First-price auction with redistribution (Ke eq. (10)): the highest bid wins and pays it, each
loser receives the highest bid/(n−1). In the symmetric equilibrium b(θ) = ((n−1)/n) W(θ): the
interim payoff of bidding as type r, G(r)(S(θ) − b(r)) + (1/(n−1)) ∫_r^θ̄ b dG (G = F^{n−1}), has the
first-order condition G b' = g (S − n b/(n−1)), which b = ((n−1)/n)W solves because
W' = (n f/F)(S − W); as a mechanism over types it is M1. :meth:`FirstPriceRedistribution.payoff_of_bid`
gives the interim payoff of any bid against others who bid b(θ_j), by quadrature in F-quantiles.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy.integrate import solve_ivp

from ..._compat import enable_x64
from ...errors import ConfigError
from ...outcome import Outcome
from ..base import Mechanism, check_options, float_dtype
from .ke_generic import (
    GRID_POINTS,
    MAX_FORM,
    common_grid,
    f64,
    interp_rows,
    require_efficient,
    top_surplus,
    upper_integrals,
)
from .public_goods import gauss_pieces

#: start of the ODE integration, relative to the width of the support
ODE_X0 = 1e-10
#: relative tolerance of solve_ivp (absolute: 1e-13 times the scale of S)
ODE_RTOL = 1e-11
#: pieces of [0, 1] for (W), graded towards s = 0, and Gauss–Legendre nodes per piece
W_CUTS = (0.0, 1e-8, 1e-6, 1e-4, 1e-2, 0.1, 0.25, 0.5, 0.75, 1.0)
W_NODES = 16
#: Gauss–Legendre nodes per piece (the pieces of W_CUTS, mapped to [w*, 1]) of the first-price payoff
BID_NODES = 16


def check_m1(setting, kind: str) -> None:
    """Refuse (one-line ConfigError) settings M1 does not apply to."""
    require_efficient(setting, kind)
    if setting.model not in MAX_FORM:
        raise ConfigError(
            f"mechanism {kind!r} sells one object to the highest type (model private_good); model {setting.model!r} "
            "needs another rule (agv, or Ke's M2/M3)"
        )
    if setting.reservation != "zero":
        raise ConfigError(
            f"mechanism {kind!r} is ex post IR only relative to a zero reservation utility, and this {setting.model} "
            f"setting has reservation {setting.reservation!r} (the partnership always does); use agv or a learned rule"
        )
    lows = {float(p.low) for p in setting.priors}
    highs = {float(p.high) for p in setting.priors}
    if len(lows) > 1 or len(highs) > 1:
        raise ConfigError(
            f"mechanism {kind!r} solves Ke's ODE (6) on one common support; give every agent's prior the same low and high"
        )


def symmetric_w(setting, t) -> np.ndarray:
    """W(t) = ∫_θ̲^t S dFⁿ / F(t)ⁿ by (W) (float64; iid priors, the first one is used)."""
    prior, n = setting.priors[0], setting.n_agents
    t = np.asarray(t, np.float64)
    flat = t.reshape(-1)
    ft = np.clip(f64(prior.cdf, flat), 0.0, 1.0)
    base = np.broadcast_to(np.asarray(W_CUTS), (flat.size, len(W_CUTS)))
    pts = [float(b) for b in prior._breakpoints() if prior.low < b < prior.high]
    if pts:
        fb = np.clip(f64(prior.cdf, np.asarray(pts)), 0.0, 1.0)
        ratio = np.where(ft[:, None] > 0, fb[None, :] / np.where(ft[:, None] > 0, ft[:, None], 1.0), 0.0)
        base = np.concatenate([base, np.clip(ratio, 0.0, 1.0)], axis=1)
    s, w = gauss_pieces(np.sort(base, axis=1), W_NODES)
    z = f64(prior.icdf, ft[:, None] * s)
    vals = np.sum(w * top_surplus(setting, z) * n * s ** (n - 1), axis=1)
    return vals.reshape(t.shape)


def _scalar_surplus(setting):
    return lambda t: setting.value(jnp.ones((1, 1), t.dtype), jnp.reshape(t, (1, 1)))[0, 0]


def ode_payments(setting) -> Callable[[np.ndarray], np.ndarray]:
    """Solve (6) (module docstring) and return P: t (T,) ↦ winner payments (n, T), float64."""
    priors, n = setting.priors, setting.n_agents
    lo, hi = float(priors[0].low), float(priors[0].high)
    width = hi - lo
    s_fn = _scalar_surplus(setting)

    def coeffs(s):
        x = jnp.exp(s)
        t = lo + x
        F = jnp.stack([p.cdf(t) for p in priors])
        f = jnp.stack([p.pdf(t) for p in priors])
        return x * f / F, x * jax.grad(s_fn)(t)

    with enable_x64():
        cj = jax.jit(coeffs)

        def xq_at(s):
            xq, xds = cj(jnp.float64(s))
            return np.asarray(xq, np.float64), float(xds)

        x0 = ODE_X0 * width
        while min(float(f64(p.cdf, lo + x0)) for p in priors) < 1e-200 and x0 < 1e-3 * width:
            x0 *= 10.0
        s0, s1 = float(np.log(x0)), float(np.log(width))
        s_lo = float(top_surplus(setting, lo))
        d_s = float(top_surplus(setting, lo + x0)) - s_lo
        xq0, xds0 = xq_at(s0)
        big_k = np.diag(xq0.sum() - xq0) + (1.0 - np.eye(n)) * xq0[None, :] / (n - 1)
        beta = xds0 / d_s if d_s != 0.0 else 0.0
        if beta > 0.0:
            d0 = -((n - 1) / n) * beta * np.linalg.solve(beta * np.eye(n) + big_k, np.ones(n)) * d_s
        else:
            d0 = np.zeros(n)

        def rhs(s, d):
            xq, xds = xq_at(s)
            qm = xq.sum() - xq
            return -qm * d - (xq @ d - xq * d) / (n - 1) - (n - 1) / n * xds

        scale = float(np.max(np.abs(top_surplus(setting, np.linspace(lo, hi, 65))))) or 1.0
        sol = solve_ivp(rhs, (s0, s1), d0, method="DOP853", rtol=ODE_RTOL, atol=1e-13 * scale, dense_output=True)
    if not sol.success:
        raise ConfigError(f"mechanism 'ke_m1': the ODE (6) for these priors did not solve ({sol.message}); try other priors")

    def payments(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, np.float64)
        flat = t.reshape(-1)
        x = flat - lo
        st = top_surplus(setting, flat)
        d = np.zeros((n, flat.size))
        big = x >= x0
        if np.any(big):
            d[:, big] = sol.sol(np.clip(np.log(x[big]), s0, s1))
        if d_s != 0.0 and np.any(~big):
            d[:, ~big] = d0[:, None] * (st[~big] - s_lo)[None, :] / d_s
        return ((n - 1) / n * st[None, :] + d).reshape((n,) + t.shape)

    return payments


def m1_tables(setting, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, P (n, K), U (n, K)): M1's winner payments and truthful interim utilities on the grid;
    ``method`` ``"closed_form"`` uses (W) (iid priors), ``"ode"`` solves (6)."""
    priors, n = setting.priors, setting.n_agents
    grid = common_grid(priors, GRID_POINTS)
    if method == "closed_form":
        pay_fn = lambda t: np.broadcast_to((n - 1) / n * symmetric_w(setting, t), (n,) + np.shape(t))  # noqa: E731
    elif method == "ode":
        pay_fn = ode_payments(setting)
    else:
        raise ConfigError(f"mechanism 'ke_m1': method must be 'closed_form' or 'ode', got {method!r}")
    pay = np.array(pay_fn(grid), np.float64)
    received = upper_integrals(priors, grid, pay_fn).sum(axis=1) / (n - 1)  # (n, K)
    F = np.stack([np.clip(f64(p.cdf, grid), 0.0, 1.0) for p in priors])
    g_others = np.stack([np.prod(np.delete(F, i, axis=0), axis=0) for i in range(n)])
    util = g_others * (top_surplus(setting, grid)[None, :] - pay) + received
    return grid, pay, util


class KeM1(Mechanism):
    """Ke's M1 (module docstring): the highest report wins and pays P_i(θ̂_i), each loser receives
    P_i/(n−1); Bayesian IC, ex post budget balanced, ex post IR relative to 0.

    Attributes:
        setting: the efficient setting (private_good, reservation 0).
        grid: (K,) grid over the common support.
        pay: (n, K) winner payments P_i at the grid points (float64).
        utility: (n, K) truthful interim utilities U_i at the grid points.
        method: ``"closed_form"`` (iid priors, (W)) or ``"ode"`` (eq. (6)).
    """

    setting: Any
    grid: np.ndarray
    pay: np.ndarray
    utility: np.ndarray
    method: str = eqx.field(static=True)

    kind: ClassVar[str] = "ke_m1"
    summary: ClassVar[str] = (
        "Ke's M1: one object to the highest report, the winner pays P(θ̂_w) to the losers (Bayesian IC, ex post IR and BB)"
    )

    def __init__(self, setting, method: str | None = None):
        check_m1(setting, self.kind)
        if method is None:
            method = "closed_form" if setting.symmetric else "ode"
        if method == "closed_form" and not setting.symmetric:
            raise ConfigError(f"mechanism {self.kind!r}: the closed form (W) needs iid priors; use method 'ode'")
        self.setting, self.method = setting, method
        self.grid, self.pay, self.utility = m1_tables(setting, method)

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "KeM1":
        check_options(cls.kind, options, ())
        return cls(setting)

    def winner_payment(self, theta: Float[Array, "batch agents"]) -> Float[Array, "batch agents"]:
        """P_i(θ_i): what agent i pays when she wins with report θ_i (column i of ``theta``)."""
        return interp_rows(jnp.asarray(theta), self.grid, self.pay)

    def interim_utility(self, theta: Float[Array, "batch agents"]) -> Float[Array, "batch agents"]:
        """U_i(θ_i): agent i's expected utility when everyone reports truthfully (column i)."""
        return interp_rows(jnp.asarray(theta), self.grid, self.utility)

    def __call__(self, reports: Float[Array, "batch agents 1"]) -> Outcome:
        reports = jnp.asarray(reports)
        dtype = float_dtype(reports)
        theta = reports[..., 0].astype(dtype)
        n = theta.shape[1]
        x = self.setting.allocation(theta)
        xp = x * self.winner_payment(theta)
        pay = xp - (jnp.sum(xp, axis=1, keepdims=True) - xp) / (n - 1)
        return Outcome(alloc=x[..., None], payments=pay)


class FirstPriceRedistribution(KeM1):
    """First-price auction whose revenue goes to the losers (Ke eq. (10)), played in its symmetric
    equilibrium b(θ) = ((n−1)/n) W(θ): as a mechanism over types it is symmetric M1.

    Attributes: those of :class:`KeM1` (``pay`` holds the bid function b on the grid).
    """

    kind: ClassVar[str] = "first_price_redistribution"
    summary: ClassVar[str] = (
        "first-price auction, revenue split among the losers, equilibrium bids ((n-1)/n)E[S(max)|max<=θ] (= Ke's M1)"
    )

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "FirstPriceRedistribution":
        check_options(cls.kind, options, ())
        check_m1(setting, cls.kind)
        if not setting.symmetric:
            raise ConfigError(f"mechanism {cls.kind!r} plays the symmetric equilibrium; it needs iid priors (use ke_m1)")
        if setting.gamma != 1.0 and setting.priors[0].low < 0:
            raise ConfigError(f"mechanism {cls.kind!r} needs a strictly increasing bid; with gamma != 1 use types >= 0")
        return cls(setting, "closed_form")

    def bid(self, theta: Float[Array, "..."]) -> Float[Array, "..."]:
        """The equilibrium bid b(θ) = ((n−1)/n) W(θ)."""
        theta = jnp.asarray(theta)
        dtype = float_dtype(theta)
        return jnp.interp(theta.astype(dtype), jnp.asarray(self.grid, dtype), jnp.asarray(self.pay[0], dtype))

    def payoff_of_bid(self, theta: Float[Array, "..."], bid: Float[Array, "..."]) -> Float[Array, "..."]:
        """Interim payoff of type θ bidding ``bid`` against equilibrium bidders (see :func:`_payoff_of_bid`)."""
        return _payoff_of_bid(self, jnp.asarray(theta), jnp.asarray(bid))


@eqx.filter_jit
def _payoff_of_bid(mech: FirstPriceRedistribution, theta, bid):
    """Interim payoff of type θ bidding ``bid`` when the others bid b(θ_j) (broadcast shapes).

    With z* = b⁻¹(bid) clamped to [θ̲, θ̄] (the highest type the bid beats) and w* = F(z*):
    payoff = F(z*)^{n−1}(S(θ) − bid) + (1/(n−1)) E[b(Z); Z > z*] with Z the others' maximum,
    E[b(Z); Z > z*] = (n−1) ∫_{w*}^1 b(F⁻¹(w)) w^{n−2} dw (Gauss–Legendre in w, ``BID_NODES``
    nodes on each piece of ``W_CUTS`` mapped to [w*, 1], graded towards w*). A bid below b(θ̲)
    never wins (payoff E[b(Z)]/(n−1)); one above b(θ̄) always wins.
    """
    theta, bid = jnp.broadcast_arrays(jnp.asarray(theta), jnp.asarray(bid))
    dtype = float_dtype(theta)
    theta, bid = theta.astype(dtype), bid.astype(dtype)
    prior, n = mech.setting.priors[0], mech.setting.n_agents
    grid, b = jnp.asarray(mech.grid, dtype), jnp.asarray(mech.pay[0], dtype)
    zstar = jnp.interp(bid, b, grid)
    wstar = jnp.clip(prior.cdf(zstar), 0.0, 1.0)
    unit, unit_w = gauss_pieces(np.asarray(W_CUTS), BID_NODES)  # graded towards w*, where F⁻¹ may be singular
    w = wstar[..., None] + (1.0 - wstar[..., None]) * jnp.asarray(unit, dtype)
    bz = jnp.interp(prior.icdf(w), grid, b)
    tail = (1.0 - wstar) * jnp.sum(jnp.asarray(unit_w, dtype) * bz * w ** (n - 2), axis=-1)  # E[b(Z); Z > z*]/(n−1)
    s_theta = mech.setting.value(jnp.ones_like(theta), theta)
    return wstar ** (n - 1) * (s_theta - bid) + tail
