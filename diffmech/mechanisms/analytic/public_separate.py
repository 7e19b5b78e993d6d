"""The optimal *separate-provision* mechanism for continuous public goods (``separate_optimal``).

Each good j is provided by its own mechanism, which sees only the values θ_i^j for that good and
balances its own ex ante budget; with independent goods and additive utilities the stacked
mechanism is Bayesian IC and interim IR whenever every one-good mechanism is. The one-good
mechanism is the surplus-maximising Bayesian IC, interim IR, ex ante budget-balanced mechanism for
that good *with exclusion* (module docstring of :mod:`.public_goods`, (EX1)–(EX3)): with
g_α(θ) = θ − α(1 − F(θ))/f(θ) and h = max(g_α, 0),

    η_i = 1{g_α(θ_i) ≥ 0},    ρ = 1{Σ_i h(θ_i) ≥ C},                                        (EX1)
    Q_ρ(θ) = G_{n−1}(C − h(θ)),    Q(θ) = η(θ) Q_ρ(θ),                                       (EX2)
    t(θ) = θ Q(θ) − ∫_{θ̲}^θ Q(s) ds,                                                        (OC3)

α ∈ [0, 1] the smallest root of B(α) = n E[ψ Q] − C E[Q_ρ] (EX3). For one good it is the global
optimum (the relaxed problem's pointwise maximiser has a nondecreasing Q, so the monotonicity
constraint is slack); for several goods it is the best mechanism that runs the goods separately.

How the transfers are evaluated. Q has jumps (at θ0, g_α(θ0) = 0, where η switches on, and where
Q_ρ reaches 1 through the atom of the others' sum at 0), so it is never interpolated across them:

- at call time, η and h are computed exactly from g_α, and Q_ρ(θ) = ``where``(C − h ≤ (n−1) h_lo,
  1, Ĝ(C − h)) from the linearly interpolated table Ĝ of the right limits of G_{n−1} (for n = 2,
  G_1 = 1 − u*(c) tabulated, linear in c for uniform priors, so exact there);
- I(θ) = ∫_{θ̲}^θ Q̃ (Q̃ = η Ĝ(C − h), the call-time Q) is tabulated at the points θ_k of a grid
  (4097 even points plus the jumps and kinks of Q), by 4-node Gauss–Legendre on each interval of
  the grid, on which Q̃ has no jump; between grid points the midpoint rule completes it,
  I(θ) = I(θ_k) + (θ − θ_k) Q̃((θ_k + θ)/2), evaluated strictly inside the interval, so no right
  limit is ever needed;
- t(θ) = θ Q̃(θ) − I(θ). Then the interim regret of reporting r against the call-time Q̃ is
  −∫_r^θ (Q̃(s) − Q̃(r)) ds + O(h³) ≤ O(h³), and the gap between Q̃ and the mechanism's true interim
  allocation is the table error of Ĝ, O(h²).

The per-good exact expected surplus and budget, n E[θ Q] − C E[Q_ρ] and n E[ψ Q] − C E[Q_ρ], come
from the Gauss–Legendre expectations of :class:`.public_goods._Interim` (quantile space, cut at
the jumps and kinks of Q).
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..._compat import enable_x64
from ...errors import ConfigError
from ...outcome import PublicGoodsOutcome, public_goods_outcome
from ...priors import Prior
from ..base import Mechanism, check_options, float_dtype, require_public_goods
from .public_goods import GRID_POINTS, _check_prior, _Interim, _Numerics, gauss_pieces, solve_alpha

#: Gauss–Legendre nodes per grid interval for the table of I(θ) = ∫ Q
INTEGRAL_NODES = 4


def _interim(x, prior: Prior, alpha, cost, n: int, sum_grid, sum_tail, atom_at):
    """(g_α(x), Q_ρ(x), Q(x)) at values x in the support, (EX1)–(EX2), with the table of G_{n−1}."""
    g = x - alpha * (1.0 - prior.cdf(x)) / prior.pdf(x)
    rest = cost - jnp.maximum(g, 0.0)
    if n == 1:
        q_rho = (rest <= 0.0).astype(x.dtype)
    else:
        q_rho = jnp.where(rest <= atom_at, 1.0, jnp.interp(rest, sum_grid, sum_tail, left=1.0, right=0.0))
    return g, q_rho, jnp.where(g >= 0.0, q_rho, 0.0)


class OneGoodExclusion(eqx.Module):
    """The optimal mechanism with exclusion for one good, (EX1)–(EX3) and (OC3).

    Attributes:
        prior: the agents' common (continuous, regular) prior of the value of the good.
        cost: C(n).
        agents: n.
        alpha: the multiplier α ∈ [0, 1] at which the ex ante budget binds.
        surplus, budget: n E[θ Q] − C E[Q_ρ] and n E[ψ Q] − C E[Q_ρ] by quadrature (float64).
        threshold: θ0, the lowest included type (g_α(θ0) = 0; θ̲ when nobody is excluded).
        sum_grid, sum_tail: the table of right limits of G_{n−1} (unused for n = 1).
        atom_at: (n − 1) h_lo; G_{n−1}(c) = 1 for c ≤ atom_at.
        grid, integral: θ_k and I(θ_k) = ∫_{θ̲}^{θ_k} Q̃.
    """

    prior: Prior = eqx.field(static=True)  # static: transforms of the module (stop_gradient) leave it alone
    cost: float = eqx.field(static=True)
    agents: int = eqx.field(static=True)
    alpha: float = eqx.field(static=True)
    surplus: float = eqx.field(static=True)
    budget: float = eqx.field(static=True)
    threshold: float = eqx.field(static=True)
    atom_at: float = eqx.field(static=True)
    sum_grid: np.ndarray
    sum_tail: np.ndarray
    grid: np.ndarray
    integral: np.ndarray

    def __init__(self, prior: Prior, n_agents: int, cost: float):
        n, cost = int(n_agents), float(cost)
        self.prior, self.agents, self.cost = prior, n, cost
        with enable_x64():
            num = _Numerics(prior)
            alpha = solve_alpha(num, n, cost, exclusion=True)
            it = _Interim(num, n, cost, alpha, exclusion=True)
            e_psi, e_theta, e_rho = it.expectations()
            lo, hi = float(prior.low), float(prior.high)
            if n >= 2:
                sum_grid, sum_tail = it.table()
            else:
                sum_grid = sum_tail = np.zeros(2)
            atom_at = (n - 1) * it.h_lo
            kink_theta = np.clip(num.theta_m(it.kinks())[0], lo, hi)
            grid = np.unique(np.concatenate([np.linspace(lo, hi, GRID_POINTS), kink_theta]))
            x, w = gauss_pieces(np.stack([grid[:-1], grid[1:]], axis=-1), INTEGRAL_NODES)
            table = jnp.asarray(sum_grid), jnp.asarray(sum_tail)
            q = eqx.filter_jit(_interim)(jnp.asarray(x), prior, alpha, cost, n, *table, atom_at)[2]
            integral = np.concatenate([[0.0], np.cumsum(np.sum(w * np.asarray(q, np.float64), axis=-1))])
        self.alpha = alpha
        self.surplus = n * e_theta - cost * e_rho
        self.budget = n * e_psi - cost * e_rho
        self.threshold = float(num.theta_m(np.array([it.u0]))[0][0])
        self.atom_at = float(atom_at)
        self.sum_grid, self.sum_tail = np.asarray(sum_grid, np.float64), np.asarray(sum_tail, np.float64)
        self.grid, self.integral = grid, integral

    def _parts(self, x: Float[Array, "..."]):
        """(g_α, Q_ρ, Q) at reports x (clipped to the support), in x's float dtype."""
        dtype = float_dtype(x)
        x = jnp.clip(x.astype(dtype), self.prior.low, self.prior.high)
        table = jnp.asarray(self.sum_grid, dtype), jnp.asarray(self.sum_tail, dtype)
        return x, _interim(x, self.prior, self.alpha, self.cost, self.agents, *table, self.atom_at)

    def interim_provision(self, theta: Float[Array, "..."]) -> Float[Array, "..."]:
        """Q_ρ(θ): the interim probability that the good is provided (EX2)."""
        return self._parts(jnp.asarray(theta))[1][1]

    def interim_allocation(self, theta: Float[Array, "..."]) -> Float[Array, "..."]:
        """Q(θ) = η(θ) Q_ρ(θ): the interim probability of consuming the good (EX2)."""
        return self._parts(jnp.asarray(theta))[1][2]

    def transfer(self, theta: Float[Array, "..."]) -> Float[Array, "..."]:
        """(OC3): t(θ) = θ Q̃(θ) − I(θ), I tabulated and completed by the midpoint rule."""
        x, (_, _, q) = self._parts(jnp.asarray(theta))
        dtype = x.dtype
        grid, integral = jnp.asarray(self.grid, dtype), jnp.asarray(self.integral, dtype)
        k = jnp.clip(jnp.searchsorted(grid, x, side="right") - 1, 0, grid.shape[0] - 2)
        x0 = grid[k]
        q_mid = self._parts((x0 + x) / 2.0)[1][2]
        return x * q - (integral[k] + (x - x0) * q_mid)

    def parts(self, x: Float[Array, "batch agents"]):
        """Provision ρ (batch,), inclusion η (batch, agents) and transfers t (batch, agents)."""
        x, (g, _, _) = self._parts(x)
        provision = (jnp.sum(jnp.maximum(g, 0.0), axis=1) >= self.cost).astype(x.dtype)
        return provision, (g >= 0.0).astype(x.dtype), self.transfer(x)


class SeparateOptimal(Mechanism):
    """Each public good run by its own optimal one-good mechanism with exclusion and own budget.

    Attributes:
        goods: one :class:`OneGoodExclusion` per good (its marginal prior and cost C^j).
    """

    goods: tuple[OneGoodExclusion, ...]

    kind: ClassVar[str] = "separate_optimal"
    summary: ClassVar[str] = (
        "each public good by its own optimal mechanism with exclusion and own budget: include iff θ − α(1−F)/f ≥ 0, "
        "provide iff Σ max(θ − α(1−F)/f, 0) ≥ C (continuous regular priors)"
    )

    def __init__(self, priors, n_agents: int, costs):
        priors, costs = tuple(priors), tuple(float(c) for c in costs)
        if len(priors) != len(costs):
            raise ConfigError(
                f"mechanism 'separate_optimal' needs one cost per prior, got {len(costs)} for {len(priors)}"
            )
        for p in priors:
            _check_prior(p, "separate_optimal", "separate_provision (the LP)")
        self.goods = tuple(OneGoodExclusion(p, n_agents, c) for p, c in zip(priors, costs))

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "SeparateOptimal":
        check_options(cls.kind, options, ())
        require_public_goods(setting, cls.kind)
        if setting.good_priors is None:
            raise ConfigError(
                "mechanism 'separate_optimal' needs one continuous prior per good; this setting has a joint finite "
                "prior (types, probs): use separate_provision (the LP)"
            )
        if getattr(setting, "common_weight", 0.0):
            raise ConfigError(
                "mechanism 'separate_optimal' needs independent goods; this setting correlates them (common_weight > 0)"
            )
        return cls(setting.good_priors, setting.n_agents, setting.costs)

    @property
    def alphas(self) -> tuple[float, ...]:
        """α^j of each good."""
        return tuple(g.alpha for g in self.goods)

    def good_values(self) -> tuple[tuple[float, float], ...]:
        """(expected surplus, expected budget surplus) of each good, by quadrature (EX3); the
        budget is 0 up to the root finder's tolerance unless α^j ∈ {0, 1} is at an end."""
        return tuple((g.surplus, g.budget) for g in self.goods)

    def transfers(self, reports: Float[Array, "batch agents goods"]) -> Float[Array, "batch agents goods"]:
        """t^j(θ_i^j) of each good; the outcome's payments are their sum over goods."""
        reports = jnp.asarray(reports)
        reports = reports.astype(float_dtype(reports))
        return jnp.stack([g.transfer(reports[..., j]) for j, g in enumerate(self.goods)], axis=-1)

    def __call__(self, reports: Float[Array, "batch agents goods"]) -> PublicGoodsOutcome:
        reports = jnp.asarray(reports)
        reports = reports.astype(float_dtype(reports))
        parts = [g.parts(reports[..., j]) for j, g in enumerate(self.goods)]  # one per good (M ≤ 6)
        provision = jnp.stack([p[0] for p in parts], axis=-1)  # (batch, M)
        inclusion = jnp.stack([p[1] for p in parts], axis=-1)  # (batch, n, M)
        payments = sum(p[2] for p in parts)  # (batch, n)
        return public_goods_outcome(provision, inclusion, payments)
