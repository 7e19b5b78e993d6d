"""VCG and AGV payment rules for every ``efficient`` setting (Ke, "Auctioning social surplus").

Notation (the setting's module docstring): types θ_i ~ F_i on [θ̲_i, θ̄_i], efficient allocation
x*(θ), values v_i(x_i, θ_i), cost c(x), surplus S(θ) = Σ_i v_i(x_i*(θ), θ_i) − c(x*(θ)).

VCG (``vcg_efficient``; also what ``vcg`` builds for an efficient setting), Ke eq. (1) with the
lowest type as the pivot:

    M_i^V(θ̂) = S(θ̲_i, θ̂_−i) − Σ_{j≠i} v_j(x_j*(θ̂), θ̂_j) + c(x*(θ̂)).                        (V)

Agent i's utility is v_i − M_i^V = S(θ_i, θ̂_−i) − S(θ̲_i, θ̂_−i) when she reports θ_i: truthful
reporting maximises the first term whatever the others report (ex post / dominant-strategy IC),
and it is ≥ 0 because S is nondecreasing in each type in every model (ex post IR relative to a
zero reservation, not to ``autarky`` or ``shares``). Σ_i M_i^V − c = Σ_i S(θ̲_i, θ̂_−i) − (n − 1) S(θ̂),
whose expectation is Ke's E Δ; it is not budget balanced ex post. For the private good the winner
pays S(second-highest report) (the corrected display of Ke, REFERENCES.md errata), the losers 0.

AGV (``agv``; Arrow 1979, d'Aspremont–Gérard-Varet 1979), the expected-externality mechanism with
the cost shared equally:

    ξ_i(r) = E_{θ−i}[ Σ_{j≠i} v_j(x_j*(r, θ−i), θ_j) − ((n−1)/n) c(x*(r, θ−i)) ],             (A1)
    M_i(θ̂) = c(x*(θ̂))/n − ξ_i(θ̂_i) + (1/(n−1)) Σ_{j≠i} ξ_j(θ̂_j).                            (A2)

Σ_i M_i = c(x*) exactly (the ξ terms cancel: each ξ_j enters once with −1 and n − 1 times with
1/(n−1)). With the others truthful, the interim utility of report r for type θ_i is
E_{θ−i}[v_i(x_i*(r, ·), θ_i) + Σ_{j≠i} v_j(x_j*(r, ·), θ_j) − c(x*(r, ·))] + const, the expected
surplus of the allocation chosen for r, which the efficient r = θ_i maximises: Bayesian IC.

Payoff equivalence (Ke Lemma 3 holds with equality). For AGV, U_i(θ_i) =
E_{θ−i} S(θ_i, θ−i) − (1/(n−1)) Σ_{j≠i} E ξ_j, and Σ_j E ξ_j = (n − 1) E S, so
Σ_i U_i(θ̲_i) = Σ_i E_{θ−i} S(θ̲_i, θ−i) − (n − 1) E S = E Δ. The same holds for *every* Bayesian IC,
ex post budget-balanced rule with the efficient allocation: the envelope theorem gives
U_i(θ_i) = U_i(θ̲_i) + E S(θ_i, θ−i) − E S(θ̲_i, θ−i), and Σ_i E U_i = E S by budget balance.

Ex post IR of AGV. For the private good with n = 2 it holds whenever S ≥ 0: the loser receives
ξ(l) − ξ(w) = ∫_l^w S dF ≥ 0 and the winner keeps S(w) − ∫_l^w S dF ≥ S(w)(1 − F(w) + F(l)) ≥ 0.
With n ≥ 3 it fails: an agent who loses but is not the lowest pays. For U[0, 1], S = θ,
ξ(t) = (n−1)(1 − tⁿ)/n, and at (0.9, 0.8, 0.1) the middle agent's utility is
ξ(0.8) − (ξ(0.9) + ξ(0.1))/2 = (2/3)(0.488 − 0.635) = −0.098.

How ξ is computed (float64, at construction, ``enable_x64``) and tabulated; jnp interpolates the
tables at call time (reports beyond the table take its end values):

- ``private_good`` and ``partnership`` (any n; c = 0, v_j = S(θ_j) x_j with S(t) = v(1, t)):
  ξ_i(r) = E[S(Z_i) 1{Z_i > r}], Z_i = max_{j≠i} θ_j with cdf G_i = Π_{j≠i} F_j, i.e.

      ξ_i(r) = ∫_r^∞ S dG_i = Σ_{j≠i} ∫_{F_j(r)}^1 S(F_j⁻¹(u)) Π_{k∉{i,j}} F_k(F_j⁻¹(u)) du    (A3)

  (the j-th term: j is the highest of the others; ξ_i is constant outside the others' support).
  :func:`upper_integrals` computes it at every point of :func:`common_grid` (``GRID_POINTS`` even
  points over [min_i θ̲_i, max_i θ̄_i], points crowding towards the lowest type, where ξ may behave
  like a power of t − θ̲, and the priors' breakpoints) by summing, from the top, ``CELL_NODES``-point
  Gauss–Legendre rules in quantile space on each grid cell (the density is never evaluated and
  F_j⁻¹'s endpoint behaviour stays inside tiny cells): ~1e-13 at the grid points; linear
  interpolation between them, error ≈ h²|ξ''|/8 ≈ 3e-8·|ξ''|.
- ``public_good`` and ``endowment`` (:func:`generic_externality`): E_{θ−i} by Gauss–Legendre in
  the others' quantiles. n = 2: one dimension, ``GL_NODES`` nodes on each piece of [0, 1] cut at
  F_j(r) (where the integrand of the private good jumps; harmless for smooth models, so the same
  routine checks (A3)), at F_j of the prior's breakpoints and at points graded geometrically
  towards 0 and 1 (F_j⁻¹ may be singular there, e.g. u^{1/a}); ~1e-12 for smooth integrands.
  n = 3, 4: the product rule with ``PRODUCT_NODES[n]`` nodes per axis and piece (smooth
  integrands; for the endowment model with n ≥ 3 the shares hit 0 on kinks inside the cube, and
  ξ itself has kinks, so ξ is only accurate to ~1e-4 there). n ≥ 5 is refused (the product rule
  would need ≥ 10⁴ nodes per report).
  ξ is tabulated with its derivative ξ' = E ∂h/∂r (forward-mode differentiation of the integrand
  h of (A1) under the integral) on a smaller :func:`common_grid` (``SMOOTH_POINTS`` even points and
  as many crowding towards θ̲, where the endowment's ξ is not smooth when θ̲ = 0) and interpolated
  by cubic Hermite polynomials (error ≈ h⁴ max|ξ⁗|/384).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..._compat import enable_x64
from ...errors import ConfigError
from ...outcome import Outcome
from ..base import Mechanism, check_options, float_dtype
from .public_goods import gauss_pieces

#: even points of the common grid on which ξ (and M1's payments) are tabulated
GRID_POINTS = 2049
#: points of the grid graded towards the lowest type (quartic spacing, :func:`common_grid`)
GRADED_POINTS = 1025
#: even points of the grid of ξ for the smooth models (public good, endowment; cubic Hermite)
SMOOTH_POINTS = 257
#: Gauss–Legendre nodes per grid cell of the cumulative integrals (A3)
CELL_NODES = 8
#: Gauss–Legendre nodes per piece of the one-dimensional rule (n = 2)
GL_NODES = 20
#: extra cuts of the quantile axis of the one-dimensional rule, graded towards both ends
GRADED_CUTS = (1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 0.1, 0.5, 0.9, 1 - 1e-2, 1 - 1e-4)
#: nodes per axis and piece of the product rule over the others' quantiles (n = 3, 4)
PRODUCT_NODES = {3: 16, 4: 10}
#: the largest n for which the product rule is used (public good, endowment)
MAX_PRODUCT_AGENTS = 4
#: profiles evaluated per chunk when tabulating ξ
CHUNK = 1 << 18
#: models whose surplus is S(max_j θ_j) (closed form (A3))
MAX_FORM = ("private_good", "partnership")


# ---------------------------------------------------------------------- float64 helpers


def f64(fn: Callable, x) -> np.ndarray:
    """``fn`` (a jnp function) evaluated in float64 on ``x``, returned as a numpy array."""
    with enable_x64():
        return np.asarray(fn(jnp.asarray(np.asarray(x, np.float64))), np.float64)


def top_surplus(setting, t) -> np.ndarray:
    """S(t) = v(1, t): the surplus when the highest type is t (private good, partnership)."""
    return f64(lambda z: setting.value(jnp.ones_like(z), z), t)


def breakpoints(priors) -> np.ndarray:
    """Every prior's ends and interior breakpoints (where a density may jump), sorted."""
    pts = []
    for p in priors:
        pts += [float(p.low), float(p.high)] + [float(b) for b in p._breakpoints()]
    return np.unique(np.asarray(pts, np.float64))


def common_grid(priors, points: int = GRID_POINTS, extra=(), graded_points: int = GRADED_POINTS) -> np.ndarray:
    """``points`` even points over [θ̲, θ̄] = [min θ̲_i, max θ̄_i], ``graded_points`` points
    θ̲ + (θ̄ − θ̲)(k/m)⁴ that crowd towards θ̲, the priors' breakpoints and ``extra``.

    The quartic points keep linear interpolation accurate where a table behaves like a power
    (t − θ̲)^β, β < 1 (power-law priors, S = θ^γ/γ): their spacing 4 t^{3/4}/m makes the error
    ≈ 2β(1 − β) c t^{β−1/2}/m², ≤ 5e-7·c for β ≥ 1/2 (against ≈ 1e-6·c at t = 0.025 for the even
    grid alone when β = 1/2)."""
    b = breakpoints(priors)
    lo, hi = float(b[0]), float(b[-1])
    graded = lo + (hi - lo) * np.linspace(0.0, 1.0, graded_points) ** 4
    g = np.concatenate([np.linspace(lo, hi, points), graded, b, np.asarray(extra, np.float64)])
    return np.unique(np.clip(g, lo, hi))


def quantile_cuts(prior, r: np.ndarray | None = None, graded: bool = False) -> np.ndarray:
    """Cuts of [0, 1] (the prior's quantile axis) at F of its interior breakpoints, optionally at
    ``GRADED_CUTS`` (towards both ends, where F⁻¹ may be singular, e.g. u^{1/a}) and, per entry
    of ``r``, at F(r): shape (len(r), m) (or (m,) without ``r``), sorted."""
    pts = [float(b) for b in prior._breakpoints() if prior.low < b < prior.high]
    base = np.concatenate([[0.0, 1.0], f64(prior.cdf, np.asarray(pts)) if pts else np.zeros(0),
                           np.asarray(GRADED_CUTS if graded else ())])
    if r is None:
        return np.sort(np.clip(base, 0.0, 1.0))
    fr = np.clip(f64(prior.cdf, r), 0.0, 1.0)
    cuts = np.concatenate([np.broadcast_to(base, (fr.size, base.size)), fr.reshape(-1, 1)], axis=1)
    return np.sort(np.clip(cuts, 0.0, 1.0), axis=1)


def upper_integrals(priors, grid: np.ndarray, weight: Callable[[np.ndarray], np.ndarray], nodes: int = CELL_NODES) -> np.ndarray:
    """T[i, j, c] = ∫_{grid[c]}^{grid[-1]} w_j(z) Π_{k∉{i,j}} F_k(z) dF_j(z) for i ≠ j (0 for i = j).

    ``weight(z)`` returns w_k(z) for all agents, shape (n, *z.shape). Each grid cell is integrated
    by a ``nodes``-point Gauss–Legendre rule in agent j's quantile u = F_j(z) (z = F_j⁻¹(u)), and
    the cells are summed from the top. Σ_{j≠i} T[i, j] with w = S is ξ_i of (A3); with w_j = M1's
    payment of winner j it is what agent i expects to receive (:mod:`.ke_private`).
    """
    n, size = len(priors), grid.size
    out = np.zeros((n, n, size))
    seen: dict[str, tuple] = {}  # iid agents share the nodes, the cdfs and the weights
    for j in range(n):
        key = repr(priors[j].to_config())
        if key not in seen:
            cuts = np.clip(f64(priors[j].cdf, grid), 0.0, 1.0)
            u, wts = gauss_pieces(cuts, nodes)  # (C·nodes,)
            z = f64(priors[j].icdf, u)
            F = np.stack([np.clip(f64(p.cdf, z), 0.0, 1.0) for p in priors])  # (n, C·nodes)
            seen[key] = (z, wts, F, np.asarray(weight(z), np.float64))
        z, wts, F, wall = seen[key]
        wz = wall[j]
        for i in range(n):
            if i == j:
                continue
            keep = [k for k in range(n) if k not in (i, j)]
            prod = np.prod(F[keep], axis=0) if keep else np.ones_like(z)
            cell = (wts * wz * prod).reshape(size - 1, nodes).sum(axis=1)
            out[i, j, :-1] = np.cumsum(cell[::-1])[::-1]
    return out


def _surplus_terms(setting, i: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """θ (..., n) ↦ (h, ∂h/∂θ_i) with h = Σ_{j≠i} v_j(x_j*(θ), θ_j) − ((n−1)/n) c(x*(θ)) (the integrand
    of (A1)), float64, jitted once (the derivative by forward-mode differentiation) and evaluated in
    chunks of ``CHUNK`` profiles (the last one padded)."""
    n = setting.n_agents

    def fn(t):
        x = setting.allocation(t)
        v = setting.value(x, t)
        return jnp.sum(v, axis=1) - v[:, i] - (n - 1) / n * setting.production_cost(x)

    with enable_x64():
        jf = jax.jit(lambda t: jax.jvp(fn, (t,), (jnp.zeros_like(t).at[:, i].set(1.0),)))

    def terms(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = np.asarray(theta, np.float64).reshape(-1, n)
        val, der = np.empty(flat.shape[0]), np.empty(flat.shape[0])
        size = min(CHUNK, flat.shape[0])
        with enable_x64():
            for a in range(0, flat.shape[0], size):
                part = flat[a : a + size]
                pad = size - part.shape[0]
                if pad:
                    part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
                h, dh = jf(jnp.asarray(part))
                val[a : a + size] = np.asarray(h, np.float64)[: size - pad]
                der[a : a + size] = np.asarray(dh, np.float64)[: size - pad]
        shape = np.shape(theta)[:-1]
        # a removable 0·∞ (θ_i = 0 in the endowment model, whose share then stays 0): derivative 0
        der = np.where(np.isfinite(der), der, 0.0)
        return val.reshape(shape), der.reshape(shape)

    return terms


def generic_externality(setting, i: int, r: np.ndarray, derivative: bool = False):
    """ξ_i(r) of (A1) by quadrature over the others' quantiles (module docstring), float64; with
    ``derivative`` also ξ_i'(r) = E_{θ−i} ∂h/∂r (differentiation under the integral: right only when
    h is continuous in r, i.e. not for the private good, whose h jumps at θ_j = r).

    n = 2: ``GL_NODES`` Gauss–Legendre nodes on each piece of [0, 1] cut at F_j(r), at F_j of
    the prior's breakpoints and at ``GRADED_CUTS``. n = 3, 4: the product rule with
    ``PRODUCT_NODES[n]`` nodes per axis and piece (the integrand must be smooth in the others'
    types: public good, endowment).
    """
    n = setting.n_agents
    r = np.asarray(r, np.float64).reshape(-1)
    others = [j for j in range(n) if j != i]
    if n > MAX_PRODUCT_AGENTS:
        raise ConfigError(
            f"AGV's expectation over {n - 1} other agents of model {setting.model!r} needs a product rule that is too "
            f"large; use at most {MAX_PRODUCT_AGENTS} agents (the private_good and partnership models take any n)"
        )
    terms = _surplus_terms(setting, i)
    if n == 2:
        j = others[0]
        u, w = gauss_pieces(quantile_cuts(setting.priors[j], r, graded=True), GL_NODES)  # (R, Q)
        theta = np.empty(u.shape + (2,))
        theta[..., j] = f64(setting.priors[j].icdf, u)
        theta[..., i] = r[:, None]
        h, dh = terms(theta)
        xi, dxi = np.sum(w * h, axis=1), np.sum(w * dh, axis=1)
    else:
        axes, wts = [], []
        for j in others:
            u, w = gauss_pieces(quantile_cuts(setting.priors[j]), PRODUCT_NODES[n])
            axes.append(f64(setting.priors[j].icdf, u))
            wts.append(w)
        rest = np.array(list(itertools.product(*axes)))  # (Q, n−1)
        weight = np.prod(np.array(list(itertools.product(*wts))), axis=1)
        xi, dxi = np.empty(r.size), np.empty(r.size)
        per = max(1, CHUNK // rest.shape[0])
        for a in range(0, r.size, per):
            rr = r[a : a + per]
            theta = np.empty((rr.size, rest.shape[0], n))
            theta[..., others] = rest[None]
            theta[..., i] = rr[:, None]
            h, dh = terms(theta)
            xi[a : a + per], dxi[a : a + per] = h @ weight, dh @ weight
    return (xi, dxi) if derivative else xi


def externality_table(setting) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(grid, ξ (n, K), ξ' (n, K) or None): (A3) on :func:`common_grid` for the private good and
    the partnership (linear interpolation); for the smooth models :func:`generic_externality` with
    its derivative on a smaller :func:`common_grid` (cubic Hermite)."""
    n = setting.n_agents
    if setting.model in MAX_FORM:
        grid = common_grid(setting.priors)
        t = upper_integrals(setting.priors, grid, lambda z: np.broadcast_to(top_surplus(setting, z), (n,) + z.shape))
        return grid, t.sum(axis=1), None
    grid = common_grid(setting.priors, SMOOTH_POINTS, graded_points=SMOOTH_POINTS)
    both = [generic_externality(setting, i, grid, derivative=True) for i in range(n)]
    return grid, np.stack([v for v, _ in both]), np.stack([d for _, d in both])


def interp_rows(x: Float[Array, "batch agents"], grid, table, slopes=None) -> Float[Array, "batch agents"]:
    """Row i of ``table`` (agents, K) interpolated on ``grid`` (K,) at column i of ``x``: linearly,
    or, given the derivatives ``slopes`` (agents, K), by cubic Hermite interpolation; constant
    beyond the grid's ends."""
    dtype = float_dtype(x)
    x = x.astype(dtype)
    g = jnp.asarray(grid, dtype)
    tab = jnp.asarray(table, dtype)
    k = jnp.clip(jnp.searchsorted(g, x, side="right") - 1, 0, g.shape[0] - 2)
    g0, g1 = g[k], g[k + 1]
    w = jnp.clip((x - g0) / (g1 - g0), 0.0, 1.0)
    rows = jnp.arange(x.shape[-1])
    t0, t1 = tab[rows, k], tab[rows, k + 1]
    if slopes is None:
        return t0 + w * (t1 - t0)
    d = jnp.asarray(slopes, dtype)
    h = g1 - g0
    w2, w3 = w * w, w * w * w
    return ((2 * w3 - 3 * w2 + 1) * t0 + (w3 - 2 * w2 + w) * h * d[rows, k]
            + (3 * w2 - 2 * w3) * t1 + (w3 - w2) * h * d[rows, k + 1])


def require_efficient(setting, kind: str) -> None:
    """Raise a one-line ConfigError unless ``setting`` is Ke's ``efficient`` setting."""
    if getattr(setting, "kind", "") != "efficient":
        raise ConfigError(
            f"mechanism {kind!r} is for the efficient setting (Ke), not {getattr(setting, 'kind', type(setting).__name__)!r}; "
            "use kind = \"efficient\" in [setting]"
        )


# ---------------------------------------------------------------------- mechanisms


class EfficientVCG(Mechanism):
    """VCG with the lowest type as pivot, Ke eq. (1) ((V) in the module docstring): ex post IC, ex
    post IR relative to 0, not budget balanced.

    Attributes:
        setting: the efficient setting (its allocation, values, cost and surplus).
    """

    setting: Any

    kind: ClassVar[str] = "vcg_efficient"
    summary: ClassVar[str] = "VCG for Ke's efficient settings, pivot at the lowest type (ex post IC and IR vs 0, not BB)"
    dsic_by_construction: ClassVar[bool] = True

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "EfficientVCG":
        check_options(cls.kind, options, ())
        require_efficient(setting, cls.kind)
        return cls(setting=setting)

    def __call__(self, reports: Float[Array, "batch agents 1"]) -> Outcome:
        reports = jnp.asarray(reports)
        dtype = float_dtype(reports)
        theta = reports[..., 0].astype(dtype)
        b, n = theta.shape
        st = self.setting
        x = st.allocation(theta)
        v = st.value(x, theta)
        c = st.production_cost(x)
        low = jnp.asarray([p.low for p in st.priors], dtype)
        eye = jnp.eye(n, dtype=bool)
        pivot = jnp.where(eye[None], low[None, None, :], theta[:, None, :])  # [b, i] = (θ̲_i, θ_−i)
        s_low = st.welfare(pivot.reshape(b * n, n)).reshape(b, n)
        pay = s_low - (jnp.sum(v, axis=1, keepdims=True) - v) + c[:, None]
        return Outcome(alloc=x[..., None], payments=pay)


class AGV(Mechanism):
    """The expected-externality (AGV) mechanism with the cost shared equally, (A1)–(A2): Bayesian
    IC and ex post budget balanced; not ex post IR in general.

    Attributes:
        setting: the efficient setting.
        grid: (K,) the common grid of own reports.
        xi: (n, K) ξ_i at the grid points (float64).
        slopes: (n, K) ξ_i' at the grid points for the smooth models (cubic Hermite interpolation),
            ``None`` for the private good and the partnership (linear interpolation).
    """

    setting: Any
    grid: np.ndarray
    xi: np.ndarray
    slopes: np.ndarray | None

    kind: ClassVar[str] = "agv"
    summary: ClassVar[str] = "AGV expected-externality mechanism for Ke's efficient settings (Bayesian IC, ex post BB)"

    def __init__(self, setting):
        require_efficient(setting, self.kind)
        if setting.model not in MAX_FORM and setting.n_agents > MAX_PRODUCT_AGENTS:
            raise ConfigError(
                f"mechanism 'agv' tabulates E over the others by a product rule, feasible for at most {MAX_PRODUCT_AGENTS} "
                f"agents in model {setting.model!r} (got {setting.n_agents}); use fewer agents"
            )
        self.setting = setting
        self.grid, self.xi, self.slopes = externality_table(setting)

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "AGV":
        check_options(cls.kind, options, ())
        return cls(setting)

    def expected_externality(self, theta: Float[Array, "batch agents"]) -> Float[Array, "batch agents"]:
        """ξ_i(θ_i) of (A1), interpolated from the table, for every column i of ``theta``."""
        return interp_rows(jnp.asarray(theta), self.grid, self.xi, self.slopes)

    def __call__(self, reports: Float[Array, "batch agents 1"]) -> Outcome:
        reports = jnp.asarray(reports)
        dtype = float_dtype(reports)
        theta = reports[..., 0].astype(dtype)
        n = theta.shape[1]
        x = self.setting.allocation(theta)
        xi = self.expected_externality(theta)
        c = self.setting.production_cost(x)
        pay = c[:, None] / n - xi + (jnp.sum(xi, axis=1, keepdims=True) - xi) / (n - 1)
        return Outcome(alloc=x[..., None], payments=pay)
