"""Ke's two-agent mechanisms M2(k) and M3(k) ("Auctioning social surplus", Sections 4.1.2, 4.2.2
and 5.2.1), for the ``efficient`` setting with n = 2 iid agents.

Notation: F, f the common prior on [θ̲, θ̄]; x*(τ, z) the efficient allocation when the own type is
τ and the other's z, x_i* the own share (the common quantity for a public good); v(x, θ) the value,
∂_θ v(x, θ) its derivative in the type argument at fixed x (for v = θ(2x − x²) it is 2x − x²);
S(τ, τ) the surplus at the tie; c(x) the cost. The printed displays are garbled; these are the
forms of REFERENCES.md (Ke), re-derived below.

M2 (``ke_m2``; endogenous quantity: ``public_good``). The highest report w wins, the other is the
loser l; with the lump sum L = (1 − k) β^k(θ̂_w) + k β^k(θ̂_l),

    M_w = c(x*) − v(x*, θ̂_l) + L,    M_l = v(x*, θ̂_l) − L           (Σ_i M_i = c(x*)),

so the truthful payoffs are S(θ) − L (winner) and L (loser), and

    β^k(θ) = ∫_{F⁻¹(k)}^θ (F − k)(S(τ, τ) − h(τ)) dF(τ) / (F(θ) − k)²,
    h(τ) = ∫_τ^θ̄ ∂_θ v(x*(τ, z), τ) dF(z) / f(τ).                                       (M2)

Derivation (Bayesian IC). Type θ reporting r against z has the interim utility
U(θ, r) = ∫_{z<r} [v(x*(r,z), θ) + v(x*(r,z), z) − c − L_w(r, z)] dF + ∫_{z>r} [v(x*(z,r), θ) −
v(x*(z,r), r) + L_w(z, r)] dF. At r = θ the winner's bracket is stationary in r (efficiency), the
loser's has r-derivative −∂_θ v, and the first-order condition reads
β'(F − k) + 2fβ = f(S − h), i.e. d/dθ[(F − k)² β] = (F − k)(S − h) f, whose solution that is
finite at F(θ) = k is (M2). At θ_k = F⁻¹(k) (M2) is 0/0; l'Hôpital gives β^k(θ_k) =
(S(θ_k, θ_k) − h(θ_k))/2 (the numerator is ≈ (S − h)(F − k)²/2). k = 1 gives Ke's β¹(θ) =
∫_θ^θ̄ (1 − F)(S − h) dF / (1 − F)², β¹(θ̄) = S(θ̄, θ̄)/2, β¹(θ̲) = E Δ / 2 = U(θ̲) (Theorem 6).

Type-dependent reservation u̲(θ) (Remark 5, Section 5.2.1, Proposition 6), ``reservation_adjusted``
(default true; it changes nothing when the setting's reservation is ``zero``): M2 is applied to the
net primitives S# = S − u̲(θ_1) − u̲(θ_2) and v#(x, θ) = v(x, θ) − ½ Σ_j u̲_j(θ) = v(x, θ) − u̲(θ)
(the paper's ½Σ_j u̲_j(θ_i) at the own type, as its proof of Proposition 6 uses it; reading it as
½(u̲(θ_1) + u̲(θ_2)) with β^{1#} = β¹ − u̲ would shift each agent's payoff by ½(u̲(θ̂_other) −
u̲(θ̂_own)) in either role, which is not IC). Since the true utility is the net one
plus u̲(θ_true), which the report does not move, IC and budget balance carry over: the loser pays
v(x*, θ̂_l) − u̲(θ̂_l) − L#, the winner c(x*) − v(x*, θ̂_l) + u̲(θ̂_l) + L#, L# built from

    β^{k#}(θ) = β^k(θ) + [(F(θ) − k)(1 − F(θ)) u̲(θ) − (1 − k) ∫_{θ_k}^θ u̲ dF] / (F(θ) − k)²

(put S# and h# = h − u̲'(1 − F)/f in (M2) and integrate u̲' by parts). For k = 1 this is
β^{1#} = β¹ − u̲, Ke's formula, and the payments are exactly those of M2(1): the lump sum and the
netting cancel; ex post IR against u̲ then reads β¹(θ_l) ≥ u̲(θ_l), S(θ) − β¹(θ_l) ≥ u̲(θ_w), which
holds iff E Δ ≥ Σ u̲(θ̲) (Proposition 6). For k < 1 the adjusted rule differs from plain M2(k).

M3 (``ke_m3``; fixed total supply: ``endowment``, ``partnership``). The LOWEST report h holds the
entitlement; o is the other; with L = (1 − k) r^k(θ̂_h) + k r^k(θ̂_o),

    M_h = −v(x_o*, θ̂_o) + L,    M_o = v(x_o*, θ̂_o) − L             (Σ_i M_i = 0 = c),

truthful payoffs S − L (holder) and L (other), and

    r^k(θ) = ∫_{F⁻¹(1−k)}^θ (F − (1 − k))(S(τ, τ) + μ(τ)) dF(τ) / (F(θ) − (1 − k))²,
    μ(τ) = ∫_θ̲^τ ∂_θ v(x*(τ, z), τ) dF(z) / f(τ),                                         (M3)

by the same first-order condition with the roles reversed: r'(F − (1 − k)) + 2fr = f(S + μ);
r^k(F⁻¹(1 − k)) = (S + μ)/2 there. Example 4 (endowment, U[0, 1]): μ = (ln 4 − ½)τ,
r¹ = (1 + ln 4)θ/3, r⁰ = (1 + ln 4)(1 + 2θ)/6. M3 does not use the reservation (the shares).

Ties θ̂_1 = θ̂_2 average the two role assignments. Reports are clipped to [θ̲, θ̄].

Numerics (float64, at construction, inside ``enable_x64``). With D(τ) = S(τ, τ) f(τ) ∓ H(τ),
H(τ) = f(τ)h(τ) (M2, minus) or f(τ)μ(τ) (M3, plus) — so no division by f — the lump sum is
N(θ)/(F(θ) − a)² with N(θ) = ∫_{θ_a}^θ (F − a) D dτ (a = k, resp. 1 − k). H is an integral over
the other's quantile u = F(z) on [F(τ), 1] (M2) or [0, F(τ)] (M3) by Gauss–Legendre on P equal
pieces, P doubled (2, 4, 8, 16) until two successive results agree to 1e-13; ∂_θ v is the exact
forward-mode derivative (``jax.jvp``) of the setting's ``value`` at fixed x (and u̲' that of
``reservation_utility``). N is accumulated outward from θ_a over the cells of a grid of
``GRID_POINTS`` even points (the one nearest θ_a moved onto it) with ``CELL_NODES``-point
Gauss–Legendre per cell, so it keeps its relative accuracy near θ_a; at θ_a the limit D/(2f) is
used (linear extrapolation from the neighbours if f(θ_a) is 0 or infinite; then the lump sum
may diverge at θ_a, e.g. β⁰ ~ −1/(θ − θ̲) for F = ((θ − θ̲)/w)², and the table holds its values on
the grid). The table is
interpolated linearly with jnp at call time (error ≈ Δ²|β''|/8, about 1e-9 on Example 3).
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..._compat import enable_x64
from ...errors import ConfigError
from ...outcome import Outcome
from ..base import Mechanism, check_options, float_dtype

#: even points of the lump-sum table on [θ̲, θ̄] (the one nearest θ_a is moved onto θ_a)
GRID_POINTS = 4097
#: Gauss–Legendre nodes per table cell (outer integral) and per piece (inner integral)
CELL_NODES = 4
INNER_NODES = 16
#: the inner integral's pieces are doubled from 2 up to this many until converged to INNER_TOL
MAX_PIECES = 16
INNER_TOL = 1e-13


def _check_k(kind: str, k: Any) -> float:
    if not isinstance(k, (int, float)) or isinstance(k, bool) or not 0.0 <= float(k) <= 1.0:
        raise ConfigError(f"mechanism.k of {kind!r} must be a number in [0, 1], got {k!r}")
    return float(k)


def _check_setting(setting, kind: str, models: tuple[str, ...], hint: str) -> None:
    """One-line ConfigError unless ``setting`` is an ``efficient`` setting of two iid agents whose
    model is in ``models``."""
    if getattr(setting, "kind", "") != "efficient":
        got = getattr(setting, "kind", type(setting).__name__)
        raise ConfigError(f"mechanism {kind!r} needs an 'efficient' setting (Ke), got {got!r}")
    if setting.model not in models:
        raise ConfigError(f"mechanism {kind!r} applies to model {' or '.join(models)}, not {setting.model!r}; {hint}")
    if setting.n_agents != 2:
        raise ConfigError(f"mechanism {kind!r} is defined for 2 agents, got {setting.n_agents}; set n_agents = 2")
    if len({repr(p.to_config()) for p in setting.priors}) != 1:
        raise ConfigError(f"mechanism {kind!r} needs iid agents (one prior for both); use 'prior' with n_agents = 2")


def _applies(setting, kind: str, models: tuple[str, ...]) -> bool:
    try:
        _check_setting(setting, kind, models, "")
    except ConfigError:
        return False
    return True


def _gauss(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [a, b] (elementwise, arrays (...,)) → (..., k)."""
    x, w = np.polynomial.legendre.leggauss(k)
    a, b = a[..., None], b[..., None]
    return a + (b - a) * (x + 1.0) / 2.0, (b - a) * w / 2.0


def _own_derivative(fn, th: Float[Array, "... 2"]) -> tuple[Array, Array]:
    """fn(θ)[..., 0] and its exact derivative in θ_0 (forward mode; fn acts on (batch, 2))."""
    flat = th.reshape(-1, 2)
    tangent = jnp.broadcast_to(jnp.asarray([1.0, 0.0], flat.dtype), flat.shape)
    val, der = jax.jvp(fn, (flat,), (tangent,))
    return val[:, 0].reshape(th.shape[:-1]), der[:, 0].reshape(th.shape[:-1])


@eqx.filter_jit
def _diag_kernel(setting, tau: Float[Array, " m"]):
    """S(τ, τ), F(τ), f(τ), u̲(τ), u̲'(τ) (one compiled program per setting and shape)."""
    prior = setting.priors[0]
    th = jnp.stack([tau, tau], axis=-1)
    res, dres = _own_derivative(setting.reservation_utility, th)
    return setting.welfare(th), prior.cdf(tau), prior.pdf(tau), res, dres


@eqx.filter_jit
def _dv_kernel(setting, tau: Float[Array, " m"], u: Float[Array, "m p k"]) -> Float[Array, "m p k"]:
    """∂_θ v(x*(τ, z), θ) at θ = τ with x fixed, z = F⁻¹(u) (agent 0 has type τ)."""
    z = setting.priors[0].icdf(u)
    th = jnp.stack([jnp.broadcast_to(tau[:, None, None], z.shape), z], axis=-1).reshape(-1, 2)
    x = setting.allocation(th)
    return _own_derivative(lambda t: setting.value(x, t), th)[1].reshape(z.shape)


class _Tabulator:
    """float64 evaluation of the setting's primitives on two-agent profiles (own type first), by
    the jitted kernels above (compiled once per setting and shape, reused across mechanisms)."""

    def __init__(self, setting, adjusted: bool):
        self.setting, self.prior, self.adjusted = setting, setting.priors[0], adjusted

    def _np(self, fn, *args):
        with enable_x64():
            out = fn(self.setting, *(jnp.asarray(a, jnp.float64) for a in args))
        return tuple(np.asarray(o, np.float64) for o in out) if isinstance(out, tuple) else np.asarray(out, np.float64)

    def diag(self, tau: np.ndarray) -> tuple[np.ndarray, ...]:
        """S(τ, τ), F(τ), f(τ), u̲(τ), u̲'(τ)."""
        return self._np(_diag_kernel, tau)

    def inner(self, tau: np.ndarray, above: bool) -> np.ndarray:
        """H(τ) = ∫ ∂_θ v#(x*(τ, z), τ) dF(z) over z > τ (``above``, M2) or z < τ (M3), by
        Gauss–Legendre in the quantile u = F(z) on P equal pieces, P doubled until converged.
        With the reservation adjustment ∂_θ v# = ∂_θ v − u̲'(τ)."""
        _, big_f, _, _, dres = self.diag(tau)
        lo, hi = (big_f, np.ones_like(big_f)) if above else (np.zeros_like(big_f), big_f)
        shift = dres if self.adjusted else np.zeros_like(tau)

        def quad(p: int) -> tuple[np.ndarray, np.ndarray]:  # the rules with p and 2p pieces, one evaluation
            cuts = [np.linspace(0.0, 1.0, q + 1) for q in (p, 2 * p)]
            a = np.concatenate([c[:-1] for c in cuts])
            b = np.concatenate([c[1:] for c in cuts])
            u, w = _gauss(lo[:, None] + (hi - lo)[:, None] * a, lo[:, None] + (hi - lo)[:, None] * b, INNER_NODES)
            wg = w * (self._np(_dv_kernel, tau, u) - shift[:, None, None])  # (m, 3p, K)
            return wg[:, :p].sum(axis=(1, 2)), wg[:, p:].sum(axis=(1, 2))

        p = 2
        while True:
            coarse, fine = quad(p)
            if np.max(np.abs(fine - coarse)) <= INNER_TOL or 2 * p >= MAX_PIECES:
                return fine
            p *= 2

    def integrand(self, tau: np.ndarray, anchor: float, above: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """F(τ), (F − a)·D and D/(2f) at τ, D = S# f ∓ H (minus for M2 (``above``), plus for M3)."""
        s, big_f, f, res, _ = self.diag(tau)
        if self.adjusted:
            s = s - 2.0 * res
        h = self.inner(tau, above)
        with np.errstate(divide="ignore", invalid="ignore"):  # f = 0 or ∞ at an end: see ``table``
            d = s * f + (-1.0 if above else 1.0) * h
            return big_f, (big_f - anchor) * d, d / (2.0 * f)

    def table(self, anchor: float, above: bool) -> tuple[np.ndarray, np.ndarray]:
        """The grid and N(θ)/(F(θ) − a)² on it, a = ``anchor`` (the lump sum β^k or r^k).

        The grid is ``GRID_POINTS`` even points with the one nearest θ_a moved onto θ_a (the
        endpoints stay), so every table has the same shape."""
        lo, hi = float(self.prior.low), float(self.prior.high)
        with enable_x64():
            t_a = float(np.clip(np.asarray(self.prior.icdf(jnp.float64(anchor)), np.float64), lo, hi))
        grid = np.linspace(lo, hi, GRID_POINTS)
        j = int(np.argmin(np.abs(grid - t_a)))
        if t_a not in (lo, hi):
            j = min(max(j, 1), GRID_POINTS - 2)
        grid[j] = t_a
        nodes, wts = _gauss(grid[:-1], grid[1:], CELL_NODES)
        big_f, q, limit = self.integrand(np.concatenate([nodes.reshape(-1), grid]), anchor, above)
        cells = np.sum(wts * q[: nodes.size].reshape(nodes.shape), axis=1)  # ∫ over each cell
        num = np.zeros_like(grid)
        num[j + 1 :] = np.cumsum(cells[j:])
        num[:j] = -np.cumsum(cells[:j][::-1])[::-1]
        big_f = big_f[nodes.size :]
        table = np.empty_like(grid)
        off = np.arange(grid.size) != j
        table[off] = num[off] / (big_f[off] - anchor) ** 2
        limit = float(limit[nodes.size + j])
        if not np.isfinite(limit):  # f(θ_a) is 0 or ∞: extrapolate from the side that has data
            i1, i2 = (j + 1, j + 2) if j + 2 < grid.size else (j - 1, j - 2)
            limit = table[i1] + (table[i1] - table[i2]) * (t_a - grid[i1]) / (grid[i1] - grid[i2])
        table[j] = limit
        return grid, table


class _KeTwoAgent(Mechanism):
    """Shared parts of M2 and M3: the setting, k, and the lump-sum table."""

    setting: Any
    k: float = eqx.field(static=True)
    grid: np.ndarray
    table: np.ndarray

    def lump_sum(self, theta: Float[Array, "..."]) -> Float[Array, "..."]:
        """The tabulated β^k (M2; β^{k#} when reservation-adjusted) or r^k (M3) at θ (clipped to the
        support), linearly interpolated."""
        theta = jnp.asarray(theta)
        dtype = float_dtype(theta)
        grid = jnp.asarray(self.grid, dtype)
        return jnp.interp(jnp.clip(theta.astype(dtype), grid[0], grid[-1]), grid, jnp.asarray(self.table, dtype))

    def _reports(self, reports):
        reports = jnp.asarray(reports)
        dtype = float_dtype(reports)
        lo, hi = (float(b[0, 0]) for b in self.setting.type_bounds())
        return jnp.clip(reports[..., 0].astype(dtype), lo, hi)  # (batch, 2)

    @staticmethod
    def _first_role_weight(first: Float[Array, " batch"], second: Float[Array, " batch"], higher: bool) -> Float[Array, " batch"]:
        """1 when agent 0 takes the role (highest report if ``higher``, else lowest), ½ at ties."""
        wins = first > second if higher else first < second
        return jnp.where(wins, 1.0, jnp.where(first == second, 0.5, 0.0)).astype(first.dtype)


class KeM2(_KeTwoAgent):
    """Ke's M2(k) for two iid agents with an endogenous quantity (module docstring, (M2)).

    Attributes:
        setting: the ``efficient`` setting (model ``public_good``).
        k: the weight of the loser's report in the lump sum, in [0, 1].
        adjusted: play M2 on the net primitives S#, v# (reservation ≠ zero and
            ``reservation_adjusted``).
        grid, table: float64 table of β^k (β^{k#} when adjusted).
    """

    adjusted: bool = eqx.field(static=True)

    kind: ClassVar[str] = "ke_m2"
    summary: ClassVar[str] = (
        "Ke's M2(k), 2 iid agents, endogenous quantity (public_good): highest report wins, charges the loser "
        "its value, pays a lump sum; BB, Bayesian IC (keys: k in [0, 1], default 1; reservation_adjusted, default true)"
    )

    def __init__(self, setting, k: float = 1.0, reservation_adjusted: bool = True):
        _check_setting(setting, self.kind, ("public_good",),
                       "use ke_m1 for private_good and ke_m3 for endowment or partnership (fixed supply)")
        self.setting = setting
        self.k = _check_k(self.kind, k)
        if not isinstance(reservation_adjusted, bool):
            raise ConfigError(f"mechanism.reservation_adjusted of 'ke_m2' must be true or false, got {reservation_adjusted!r}")
        self.adjusted = bool(reservation_adjusted) and setting.reservation != "zero"
        self.grid, self.table = _Tabulator(setting, self.adjusted).table(self.k, above=True)

    @classmethod
    def applies(cls, setting) -> bool:
        """Whether M2 is defined for ``setting`` (two iid agents, ``public_good``), e.g. to filter
        benchmark lists."""
        return _applies(setting, cls.kind, ("public_good",))

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "KeM2":
        check_options(cls.kind, options, ("k", "reservation_adjusted"))
        return cls(setting, options.get("k", 1.0), options.get("reservation_adjusted", True))

    def __call__(self, reports: Float[Array, "batch 2 1"]) -> Outcome:
        th = self._reports(reports)
        s = self.setting
        x = s.allocation(th)
        cost = s.production_cost(x)
        v = s.value(x, th)
        if self.adjusted:
            v = v - s.reservation_utility(th)  # v#(x*, θ̂_i) = v − u̲(θ̂_i)
        beta = self.lump_sum(th)
        k = self.k
        l0 = (1.0 - k) * beta[:, 0] + k * beta[:, 1]  # agent 0 wins
        l1 = (1.0 - k) * beta[:, 1] + k * beta[:, 0]  # agent 1 wins
        m0 = jnp.stack([cost - v[:, 1] + l0, v[:, 1] - l0], axis=1)
        m1 = jnp.stack([v[:, 0] - l1, cost - v[:, 0] + l1], axis=1)
        p = self._first_role_weight(th[:, 0], th[:, 1], higher=True)[:, None]
        return Outcome(alloc=x[..., None], payments=p * m0 + (1.0 - p) * m1)


class KeM3(_KeTwoAgent):
    """Ke's M3(k) for two iid agents with a fixed total supply (module docstring, (M3)).

    Attributes:
        setting: the ``efficient`` setting (model ``endowment`` or ``partnership``).
        k: the weight of the other's (higher) report in the lump sum, in [0, 1].
        grid, table: float64 table of r^k.
    """

    kind: ClassVar[str] = "ke_m3"
    summary: ClassVar[str] = (
        "Ke's M3(k), 2 iid agents, fixed supply (endowment, partnership): lowest report holds the entitlement, "
        "buys the other's consumption, pays a lump sum; BB, Bayesian IC (keys: k in [0, 1], default 1)"
    )

    def __init__(self, setting, k: float = 1.0):
        _check_setting(setting, self.kind, ("endowment", "partnership"),
                       "use ke_m2 for public_good (endogenous quantity) and ke_m1 for private_good")
        self.setting = setting
        self.k = _check_k(self.kind, k)
        self.grid, self.table = _Tabulator(setting, False).table(1.0 - self.k, above=False)

    @classmethod
    def applies(cls, setting) -> bool:
        """Whether M3 is defined for ``setting`` (two iid agents, ``endowment`` or ``partnership``)."""
        return _applies(setting, cls.kind, ("endowment", "partnership"))

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "KeM3":
        check_options(cls.kind, options, ("k",))
        return cls(setting, options.get("k", 1.0))

    def __call__(self, reports: Float[Array, "batch 2 1"]) -> Outcome:
        th = self._reports(reports)
        s = self.setting
        x = s.allocation(th)
        v = s.value(x, th)
        r = self.lump_sum(th)
        k = self.k
        l0 = (1.0 - k) * r[:, 0] + k * r[:, 1]  # agent 0 holds (lowest report)
        l1 = (1.0 - k) * r[:, 1] + k * r[:, 0]  # agent 1 holds
        m0 = jnp.stack([-v[:, 1] + l0, v[:, 1] - l0], axis=1)
        m1 = jnp.stack([v[:, 0] - l1, -v[:, 0] + l1], axis=1)
        p = self._first_role_weight(th[:, 0], th[:, 1], higher=False)[:, None]
        return Outcome(alloc=x[..., None], payments=p * m0 + (1.0 - p) * m1)
