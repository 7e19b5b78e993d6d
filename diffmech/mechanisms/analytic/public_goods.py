"""Analytic baselines for excludable public goods (the setting of the Fang–Norman appendix).

First best (``first_best``). Provide good j iff the reported values cover its cost, include
everyone, and split the cost equally:

    ρ^j(θ) = 1{Σ_i θ_i^j ≥ C^j},    η_i^j = 1,    t_i(θ) = Σ_j ρ^j(θ) C^j / n.              (FB)

It is ex post budget balanced but neither incentive compatible nor individually rational in
general; its expected surplus E Σ_j (Σ_i θ_i^j − C^j)⁺ bounds every mechanism's from above.

Optimal mechanism without exclusion (``optimal_cutoff``; Mailath–Postlewaite 1990, Norman 2004).
One good, n agents with iid values θ_i ~ F on [θ̲, θ̄] (continuous, regular). With the virtual
value ψ(θ) = θ − (1 − F(θ))/f(θ) and, for α ∈ [0, 1],

    g_α(θ) = θ − α (1 − F(θ))/f(θ) = (1 − α) θ + α ψ(θ),
    ρ_α(θ) = 1{Σ_i g_α(θ_i) ≥ C},    η_i = 1,                                               (OC1)

(the pointwise maximiser of the Lagrangian E[ρ(Σθ − C)] + λ E[ρ(Σψ − C)], α = λ/(1 + λ)).
Every agent is included (no exclusion). With the interim provision probability

    Q(θ_i) = P_{−i}( Σ_{k≠i} g_α(θ_k) ≥ C − g_α(θ_i) )                                     (OC2)

the transfers are the envelope ("simple interim") transfers with interim IR binding at θ̲,

    t(θ_i) = θ_i Q(θ_i) − ∫_{θ̲}^{θ_i} Q(s) ds,                                             (OC3)

so the mechanism is Bayesian IC (Q is nondecreasing because g_α is increasing) and the interim
utility of type θ is ∫_{θ̲}^θ Q ≥ 0, 0 at θ̲. Expected transfers are E t(θ_i) = E[ψ(θ_i) Q(θ_i)],
so the ex ante budget surplus is

    B(α) = E[ρ_α(θ)(Σ_i ψ(θ_i) − C)] = E_θ[(n ψ(θ) − C) Q_α(θ)],                            (OC4)

and α is the smallest root of B(α) = 0 (α = 0 when the first best already balances the budget,
B(0) ≥ 0; B(1) ≥ 0 always, since then ρ = 1{Σψ ≥ C}; so α ≤ 1, i.e. λ < ∞). B is nondecreasing in
α (ρ_α maximises the Lagrangian pointwise, so for λ₁ < λ₂ optimality of each gives
(λ₂ − λ₁)(B₂ − B₁) ≥ 0), hence the root in [0, 1] is unique up to flat pieces where the rule does
not change. It is found by ``scipy.optimize.brentq``
on [0, 1] with (OC4) computed by Gauss–Legendre quadrature in quantile space, 64 nodes on each of
the (up to) three pieces between the kinks of Q (where Q leaves 0 and reaches 1). For n = 2,
θ_i ~ U[0, 1], C = 1: α = 1/3, provide iff θ_1 + θ_2 ≥ 5/4, surplus 9/64 (first best 1/6).

How Q is computed (float64, at construction). Let u*(c) be the quantile at which g_α = c
(vectorised bisection in quantile space, 64 halvings; g_α(F⁻¹(u)) = F⁻¹(u) − α(1 − u)/f(F⁻¹(u))),
so that P(g_α(θ) ≥ c) = 1 − u*(c) exactly.

- n = 2: Q(θ_i) = 1 − u*(C − g_α(θ_i)), exact.
- n > 2: the tail G_m(c) = P(Σ_{k=1}^m g_α(θ_k) ≥ c) of the sum of m others is built by the
  recursion G_{m+1}(c) = ∫_0^1 G_m(c − g_α(F⁻¹(u))) du, each G_m tabulated on 4097 even points of
  its support [m g_α(θ̲), m g_α(θ̄)] and linearly interpolated, the integral by 32-node
  Gauss–Legendre on the three pieces of [0, 1] cut where c − g_α(F⁻¹(u)) leaves the support of
  G_m (G_1 is exact at its grid points). Then Q(θ_i) = G_{n−1}(C − g_α(θ_i)). The error is
  that of the linear interpolation, O(h²) (about 1e-7 or below for smooth priors).

Q is tabulated on 4097 even points of [θ̲, θ̄] plus the kinks of Q, and (OC3) is evaluated with
the piecewise-linear interpolant Q̂ of that table and its exact integral (so t is exact where Q is
piecewise linear, e.g. for uniform priors and n = 2; otherwise the interim regret is O(h²)).
Reports are clipped to [θ̲, θ̄]. The prior must be regular (no ironing intervals, so that g_α is
increasing) with a density positive and finite at both ends of its support.

With exclusion (the one-good optimum used by ``separate_optimal``, :mod:`.public_separate`). When
the designer may also exclude, the pointwise maximiser of the same Lagrangian is

    η_i = 1{g_α(θ_i) ≥ 0},    ρ_α(θ) = 1{Σ_i h(θ_i) ≥ C},    h = max(g_α, 0),              (EX1)

with G_m(c) = P(Σ_{k=1}^m h(θ_k) ≥ c) the tail of the sum of m others, the interim provision
probability and the interim allocation

    Q_ρ(θ_i) = P(ρ = 1 | θ_i) = G_{n−1}(C − h(θ_i)),    Q(θ_i) = η(θ_i) Q_ρ(θ_i)             (EX2)

(Q nondecreasing, with a jump at θ0, g_α(θ0) = 0, and one where Q_ρ reaches 1). Transfers are again
t(θ) = θ Q(θ) − ∫_{θ̲}^θ Q (OC3), and

    B(α) = n E[ψ Q] − C E[Q_ρ],    surplus = n E[θ Q] − C E[Q_ρ]                            (EX3)

(E[ρ] = E[Q_ρ] ≠ E[Q] once exclusion binds); α is again the smallest root of B on [0, 1]
(B(1) ≥ 0 since ρ_1 provides only when Σ η_i ψ_i ≥ C). The atom of h at 0 (mass u0 = F(θ0) when
g_α(θ̲) < 0) is handled as described in :class:`_Interim`; the transfers with exclusion
are tabulated as described in :mod:`.public_separate`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy import optimize

from ..._compat import enable_x64
from ...errors import ConfigError
from ...outcome import PublicGoodsOutcome, public_goods_outcome
from ...priors import Prior
from ..base import Mechanism, check_options, float_dtype, require_public_goods

#: points of the table of Q over the support (plus the kinks of Q)
GRID_POINTS = 4097
#: Gauss–Legendre nodes per piece for the budget (OC4) and for the sum recursion
BUDGET_NODES = 64
SUM_NODES = 32
#: points of each table G_m of the others' sum (n > 2)
SUM_GRID = 4097
#: halvings of the quantile bisection (below float64 resolution of u)
HALVINGS = 64


class FirstBest(Mechanism):
    """The first-best rule (FB): provide good j iff Σ_i θ_i^j ≥ C^j, include everyone, equal cost
    shares. Ex post budget balanced, not IC or IR in general; its surplus is the first-best bound.

    Attributes:
        costs: C^j(n) per good.
    """

    costs: tuple[float, ...]

    kind: ClassVar[str] = "first_best"
    summary: ClassVar[str] = "provide a public good iff the values cover its cost, equal cost shares (not IC; surplus bound)"

    def __init__(self, costs):
        self.costs = tuple(float(c) for c in costs)

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "FirstBest":
        check_options(cls.kind, options, ())
        require_public_goods(setting, cls.kind)
        return cls(setting.costs)

    def __call__(self, reports: Float[Array, "batch agents goods"]) -> PublicGoodsOutcome:
        reports = jnp.asarray(reports)
        dtype = float_dtype(reports)
        reports = reports.astype(dtype)
        n = reports.shape[1]
        cost = jnp.asarray(self.costs, dtype)
        provision = (jnp.sum(reports, axis=1) >= cost).astype(dtype)  # (batch, goods)
        inclusion = jnp.ones(reports.shape, dtype)
        share = (provision @ cost) / n
        return public_goods_outcome(provision, inclusion, jnp.broadcast_to(share[:, None], reports.shape[:2]))


# ----------------------------------------------------------------------------- float64 numerics


class _Numerics:
    """float64 kernels of one prior (built and called inside ``enable_x64``)."""

    def __init__(self, prior: Prior):
        self.prior = prior

        def theta_m(u):  # θ = F⁻¹(u) and m = (1 − F)/f at θ
            th = prior.icdf(u)
            return th, (1.0 - u) / prior.pdf(th)

        def quantile(c, alpha):  # u*(c): g_α(F⁻¹(u*)) = c, clamped to [0, 1]
            lo = jnp.zeros_like(c)
            hi = jnp.ones_like(c)

            def body(_, lh):
                lo, hi = lh
                mid = 0.5 * (lo + hi)
                th, m = theta_m(mid)
                below = th - alpha * m < c
                return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

            lo, hi = jax.lax.fori_loop(0, HALVINGS, body, (lo, hi))
            return 0.5 * (lo + hi)

        def g_theta(x, alpha):  # g_α at values x (θ-space)
            return x - alpha * (1.0 - prior.cdf(x)) / prior.pdf(x)

        self._theta_m = jax.jit(theta_m)
        self._quantile = jax.jit(quantile)
        self._g_theta = jax.jit(g_theta)

    def theta_m(self, u):
        with enable_x64():
            th, m = self._theta_m(jnp.asarray(u, jnp.float64))
            return np.asarray(th, np.float64), np.asarray(m, np.float64)

    def quantile(self, c, alpha):
        with enable_x64():
            return np.asarray(self._quantile(jnp.asarray(c, jnp.float64), jnp.float64(alpha)), np.float64)

    def g_theta(self, x, alpha):
        with enable_x64():
            return np.asarray(self._g_theta(jnp.asarray(x, jnp.float64), jnp.float64(alpha)), np.float64)


def gauss_pieces(cuts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on each piece between consecutive ``cuts`` (..., P+1) →
    nodes and weights (..., P·k); pieces of zero length get zero weight."""
    x, w = np.polynomial.legendre.leggauss(k)
    a, b = cuts[..., :-1, None], cuts[..., 1:, None]
    nodes = a + (b - a) * (x + 1.0) / 2.0
    wts = (b - a) * w / 2.0
    shape = cuts.shape[:-1] + (-1,)
    return nodes.reshape(shape), wts.reshape(shape)


class _Interim:
    """The interim rule of (OC1), or of its version with exclusion (EX1), for one α.

    Without exclusion (``exclusion=False``, the module docstring): h = g_α and
    Q(θ) = Q_ρ(θ) = G_{n−1}(C − g_α(θ)).

    With exclusion (``exclusion=True``): η(θ) = 1{g_α(θ) ≥ 0}, h = max(g_α, 0), and
    Q_ρ(θ) = P(provide | θ) = G_{n−1}(C − h(θ)), Q(θ) = η(θ) Q_ρ(θ), where G_m(c) =
    P(Σ_{k=1}^m h(θ_k) ≥ c). When g_α(θ̲) < 0, h has an atom at 0 of mass u0 = u*(0) and the sum of
    m copies has one atom, at 0 (mass u0^m): G_m(c) = 1 for c ≤ m h_lo (h_lo = 0) and G_m is
    continuous on (m h_lo, m h_hi]. Each table holds the right limits on [m h_lo, m h_hi] and is
    read as ``where(c ≤ m h_lo, 1, interp)``; the recursion is

        G_{m+1}(c) = u0 G_m(c⁺) + ∫_{u0}^1 G_m(c − g_α(F⁻¹(u))) du,

    its integral cut at u0, at u*(c − m h_hi) (below it G_m = 0), at u*(c − m h_lo) (above it
    the integrand is 1) and, with the atom, at u*(c − k h_hi), 0 < k < m (kinks of G_m: the terms
    of the sum with m − k copies at the atom end at k h_hi). With u0 = 0 (no exclusion, or
    g_α(θ̲) ≥ 0) everything is the rule without exclusion, computed by the same arithmetic.
    """

    def __init__(self, num: _Numerics, n: int, cost: float, alpha: float, exclusion: bool = False):
        self.num, self.n, self.cost, self.alpha, self.exclusion = num, n, cost, alpha, exclusion
        th, m = num.theta_m(np.array([0.0, 1.0]))
        self.g_lo, self.g_hi = th[0] - alpha * m[0], th[1] - alpha * m[1]
        if exclusion:
            self.h_lo, self.h_hi = max(self.g_lo, 0.0), max(self.g_hi, 0.0)
            self.u0 = float(num.quantile(np.array([0.0]), alpha)[0]) if self.g_lo < 0.0 else 0.0
        else:
            self.h_lo, self.h_hi, self.u0 = self.g_lo, self.g_hi, 0.0
        self.atom = self.u0 > 0.0
        self.tables = []  # (c-grid, G_m on it) for m = 1 .. n − 1
        if n > 2 or (exclusion and n == 2):
            c = np.linspace(self.h_lo, self.h_hi, SUM_GRID)
            self.tables.append((c, 1.0 - num.quantile(c, alpha)))
            for m in range(1, n - 1):  # G_2 .. G_{n−1}
                self.tables.append(self._next(m))

    def _right(self, m: int, c: np.ndarray) -> np.ndarray:
        """The interpolated right limit G_m(c⁺), clamped to 1 below and 0 above the support."""
        grid, vals = self.tables[m - 1]
        return np.interp(c, grid, vals, left=1.0, right=0.0)

    def _tail(self, m: int, c: np.ndarray) -> np.ndarray:
        """G_m(c), by interpolation (m ≥ 1), with the atom of the sum at m h_lo = 0 if h has one."""
        if self.atom:
            return np.where(c <= m * self.h_lo, 1.0, self._right(m, c))
        return self._right(m, c)

    def _next(self, m: int):
        """Tabulate G_{m+1} from G_m: G_{m+1}(c) = u0 G_m(c⁺) + ∫_{u0}^1 G_m(c − g(F⁻¹(u))) du."""
        num, alpha, u0 = self.num, self.alpha, self.u0
        c = np.linspace((m + 1) * self.h_lo, (m + 1) * self.h_hi, SUM_GRID)
        ua = np.maximum(u0, num.quantile(c - m * self.h_hi, alpha))  # below: c − g ≥ m h_hi, G_m = 0
        ub = num.quantile(c - m * self.h_lo, alpha)  # above: c − g ≤ m h_lo, G_m = 1
        inner = [ua]
        if self.atom:  # G_m has kinks at k h_hi (k < m), from the terms with m − k atoms
            inner += [np.maximum(u0, num.quantile(c - k * self.h_hi, alpha)) for k in range(m - 1, 0, -1)]
        inner = np.maximum.accumulate(np.stack(inner + [ub], axis=-1), axis=-1)
        cuts = np.concatenate([np.full_like(c, u0)[:, None], inner, np.ones_like(c)[:, None]], axis=-1)
        u, w = gauss_pieces(cuts, SUM_NODES)
        th, mm = num.theta_m(u)
        vals = np.sum(w * self._tail(m, c[:, None] - (th - alpha * mm)), axis=-1)
        if self.atom:
            vals = vals + u0 * self._right(m, c)
        return c, np.clip(vals, 0.0, 1.0)

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """The table (c-grid, right limits of G_{n−1}) of the others' sum (n ≥ 2)."""
        return self.tables[self.n - 2]

    def rho_of_g(self, g: np.ndarray) -> np.ndarray:
        """Q_ρ, the interim provision probability, as a function of the own g_α(θ_i)."""
        rest = self.cost - (np.maximum(g, 0.0) if self.exclusion else g)
        if self.n == 1:
            return (rest <= 0.0).astype(np.float64)
        if self.n == 2:
            q = 1.0 - self.num.quantile(rest, self.alpha)
            return np.where(rest <= self.h_lo, 1.0, q) if self.atom else q
        return self._tail(self.n - 1, rest)

    def of_g(self, g: np.ndarray) -> np.ndarray:
        """Q = η Q_ρ, the interim allocation, as a function of the own g_α(θ_i)."""
        q = self.rho_of_g(g)
        return np.where(g >= 0.0, q, 0.0) if self.exclusion else q

    def kinks(self) -> np.ndarray:
        """Quantiles u where Q leaves 0 and where it reaches 1 (its kinks), in [0, 1]; with exclusion
        also u0 (where η jumps) and u*(C − j h_hi), u*(C − j h_lo), j < n (kinks of Q_ρ)."""
        if self.exclusion:
            j = np.arange(self.n)
            c = np.concatenate([self.cost - j * self.h_hi, self.cost - j * self.h_lo])
            return np.unique(np.concatenate([[self.u0], self.num.quantile(c, self.alpha)]))
        if self.n == 1:
            return self.num.quantile(np.array([self.cost]), self.alpha).repeat(2)
        k = self.n - 1
        return np.sort(self.num.quantile(np.array([self.cost - k * self.g_hi, self.cost - k * self.g_lo]), self.alpha))

    def expectations(self) -> tuple[float, float, float]:
        """(E[ψ Q], E[θ Q], E[Q_ρ]) over the prior, by Gauss–Legendre between the kinks
        (E[Q_ρ] = E[ρ]; it is E[Q] without exclusion)."""
        cuts = np.concatenate([[0.0], self.kinks(), [1.0]])
        u, w = gauss_pieces(cuts, BUDGET_NODES)
        th, m = self.num.theta_m(u)
        g = th - self.alpha * m
        q_rho = self.rho_of_g(g)
        q = np.where(g >= 0.0, q_rho, 0.0) if self.exclusion else q_rho
        return float(np.sum(w * (th - m) * q)), float(np.sum(w * th * q)), float(np.sum(w * q_rho))

    def budget(self) -> float:
        """(OC4)/(EX3): n E[ψ Q] − C E[Q_ρ]."""
        e_psi, _, e_rho = self.expectations()
        return self.n * e_psi - self.cost * e_rho

    def surplus(self) -> float:
        """n E[θ Q] − C E[Q_ρ]."""
        _, e_theta, e_rho = self.expectations()
        return self.n * e_theta - self.cost * e_rho


def solve_alpha(num: _Numerics, n: int, cost: float, exclusion: bool = False) -> float:
    """The smallest root α ∈ [0, 1] of the budget B(α) (OC4)/(EX3): 0 when B(0) ≥ 0, 1 when
    B(1) ≤ 0 (the good can never be paid for), else Brent's method on [0, 1]."""
    budget = lambda a: _Interim(num, n, cost, a, exclusion).budget()  # noqa: E731
    if budget(0.0) >= 0.0:
        return 0.0
    if budget(1.0) <= 0.0:
        return 1.0
    return float(optimize.brentq(budget, 0.0, 1.0, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200))


class OptimalCutoff(Mechanism):
    """The surplus-maximising mechanism without exclusion for one good, (OC1)–(OC4).

    Attributes:
        prior: the agents' common (continuous, regular) prior of the value of the good.
        cost: C(n).
        agents: n.
        alpha: the multiplier α ∈ [0, 1] of (OC1) at which the ex ante budget binds.
        grid, q, integral: float64 tables of θ, Q̂(θ) and ∫_{θ̲}^θ Q̂ (the transfers (OC3)).
    """

    prior: Prior = eqx.field(static=True)  # static: no array leaves, safe under stop_gradient
    cost: float = eqx.field(static=True)
    agents: int = eqx.field(static=True)
    alpha: float = eqx.field(static=True)
    grid: np.ndarray
    q: np.ndarray
    integral: np.ndarray

    kind: ClassVar[str] = "optimal_cutoff"
    summary: ClassVar[str] = (
        "one public good, no exclusion: provide iff Σ θ − α(1−F)/f ≥ C, α binding the ex ante budget (Mailath–Postlewaite)"
    )

    def __init__(self, prior: Prior, n_agents: int, cost: float):
        _check_prior(prior)
        self.prior, self.agents, self.cost = prior, int(n_agents), float(cost)
        num = _Numerics(prior)
        self.alpha = alpha = solve_alpha(num, self.agents, self.cost)
        interim = _Interim(num, self.agents, self.cost, alpha)
        lo, hi = float(prior.low), float(prior.high)
        kink_theta = num.theta_m(interim.kinks())[0]
        grid = np.unique(np.concatenate([np.linspace(lo, hi, GRID_POINTS), np.clip(kink_theta, lo, hi)]))
        q = np.clip(interim.of_g(num.g_theta(grid, alpha)), 0.0, 1.0)
        q = np.maximum.accumulate(q)  # Q is nondecreasing; remove bisection round-off
        integral = np.concatenate([[0.0], np.cumsum(np.diff(grid) * (q[1:] + q[:-1]) / 2.0)])
        self.grid, self.q, self.integral = grid, q, integral

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "OptimalCutoff":
        check_options(cls.kind, options, ())
        require_public_goods(setting, cls.kind)
        if getattr(setting, "common_weight", 0.0):
            raise ConfigError("mechanism 'optimal_cutoff' needs the value's own prior; this setting mixes in a common taste (common_weight > 0)")
        if setting.n_goods != 1 or setting.good_priors is None:
            raise ConfigError(
                f"mechanism 'optimal_cutoff' provides one good; this setting has {setting.n_goods} goods"
                + ("" if setting.good_priors is not None else " and a joint finite prior")
            )
        return cls(setting.good_priors[0], setting.n_agents, setting.costs[0])

    def interim_provision(self, theta: Float[Array, "..."]) -> Float[Array, "..."]:
        """Q̂(θ): the interpolated interim probability (OC2) that the good is provided."""
        theta = jnp.asarray(theta)
        dtype = float_dtype(theta)
        grid = jnp.asarray(self.grid, dtype)
        return jnp.interp(jnp.clip(theta.astype(dtype), grid[0], grid[-1]), grid, jnp.asarray(self.q, dtype))

    def transfer(self, theta: Float[Array, "..."]) -> Float[Array, "..."]:
        """(OC3) with Q̂: t(θ) = θ Q̂(θ) − ∫_{θ̲}^θ Q̂ (θ clipped to the support)."""
        theta = jnp.asarray(theta)
        dtype = float_dtype(theta)
        grid, q, integral = (jnp.asarray(a, dtype) for a in (self.grid, self.q, self.integral))
        x = jnp.clip(theta.astype(dtype), grid[0], grid[-1])
        k = jnp.clip(jnp.searchsorted(grid, x, side="right") - 1, 0, grid.shape[0] - 2)
        x0, x1 = grid[k], grid[k + 1]
        qx = q[k] + (q[k + 1] - q[k]) * (x - x0) / (x1 - x0)
        return x * qx - (integral[k] + (x - x0) * (q[k] + qx) / 2.0)

    def __call__(self, reports: Float[Array, "batch agents 1"]) -> PublicGoodsOutcome:
        reports = jnp.asarray(reports)
        dtype = float_dtype(reports)
        x = jnp.clip(reports.astype(dtype)[..., 0], self.prior.low, self.prior.high)  # (batch, agents)
        g = x - self.alpha * (1.0 - self.prior.cdf(x)) / self.prior.pdf(x)
        provision = (jnp.sum(g, axis=1, keepdims=True) >= self.cost).astype(dtype)  # (batch, 1)
        inclusion = jnp.ones(x.shape + (1,), dtype)
        return public_goods_outcome(provision, inclusion, self.transfer(x).astype(dtype))


def _check_prior(prior: Prior, kind: str = "optimal_cutoff", finite: str = "the LP (public_lp)") -> None:
    """Refuse (one-line ConfigError) a prior that is discrete, irregular, or whose density is not
    positive and finite at both ends of the support; ``finite`` names the mechanism for finite types."""
    if getattr(prior, "discrete", False):
        raise ConfigError(f"mechanism {kind!r} needs a continuous prior; for finite types use {finite}")
    if prior.ironing_intervals():
        raise ConfigError(
            f"mechanism {kind!r} needs a regular prior (increasing virtual value); this prior needs ironing"
        )
    with enable_x64():
        f = np.asarray(prior.pdf(jnp.asarray([prior.low, prior.high], jnp.float64)), np.float64)
    if not np.all(np.isfinite(f) & (f > 0)):
        raise ConfigError(
            f"mechanism {kind!r} needs a density positive and finite at both ends of the support; use another prior"
        )
