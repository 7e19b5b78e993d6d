"""Exact (quadrature) quantities of Ke's efficient settings: E S, E Δ, the worst-off types θ^# and
the Krishna–Perry existence margin.

For an :class:`~diffmech.settings.efficient.Efficient` setting with efficient surplus S(θ), own
types θ_i ~ F_i independent and reservation utilities u̲_i(θ_i):

    S̄_i(θ_i) = E_{θ−i} S(θ_i, θ−i)                                (interim surplus of type θ_i)
    E Δ     = Σ_i S̄_i(θ̲_i) − (n − 1) E S(θ)                        (Ke, Lemma 1; θ̲_i = low of F_i)

E Δ is the expected budget surplus of the VCG (pivot) mechanism whose pivot type is the lowest
type: Σ_i M_i^V − c = Σ_i S(θ̲_i, θ−i) − (n − 1) S(θ) (Ke eq. (1)). With type-dependent reservation
utilities the pivot moves to the worst-off type (Ke Lemma 1, Proposition 6)

    θ_i^# = argmin_{θ_i} S̄_i(θ_i) − u̲_i(θ_i),
    margin = E Δ^# − Σ_i u̲_i(θ_i^#) = Σ_i [S̄_i(θ_i^#) − u̲_i(θ_i^#)] − (n − 1) E S(θ),

and an efficient, interim IC, interim IR, ex post budget-balanced mechanism exists iff margin ≥ 0
(Krishna–Perry 1998: VCG with interim utility exactly u̲_i at θ_i^# maximises the expected revenue
among efficient, IC, interim IR mechanisms, and any expected budget surplus can be rebalanced ex
post, AGV-style). θ_i^# is found on an even grid of ``GRID`` points over the support, refined by
``ZOOM``-point grids between the neighbours of the best point until the spacing is 1e-12 of the
support (a global grid search: no unimodality is assumed beyond the first grid's resolution).

Quadrature (float64 numpy/scipy; the setting's and priors' jnp functions run inside
``enable_x64``), in quantile space u = F_j(θ_j) so that no density is ever evaluated:

- ``private_good`` and ``partnership``: S(θ) = φ(max_j θ_j) with φ(t) = v(1, t) (θ^γ/γ, resp. t).
  With G_{−i} = Π_{j≠i} F_j, 1-D integrals against order statistics:

      S̄_i(θ_i) = φ(θ_i) G_{−i}(θ_i) + Σ_{j≠i} ∫_{F_j(θ_i)}^1 φ(F_j⁻¹(u)) Π_{k∉{i,j}} F_k(F_j⁻¹(u)) du,
      E S     = Σ_j ∫_0^1 φ(F_j⁻¹(u)) Π_{k≠j} F_k(F_j⁻¹(u)) du

  (the j-th term is E[φ(θ_j); θ_j is the largest]); any n.
- ``public_good`` and ``endowment``: S is smooth; E S and S̄_i by the product rule over the
  n (resp. n − 1) quantile cubes, for n ≤ ``MAX_PRODUCT_AGENTS`` = 4 (larger n is refused with
  a ConfigError that points to Monte Carlo: the product rule would need too many points).

Every 1-D rule is tanh-sinh (double exponential) on pieces of [0, 1] cut at F_j of the breakpoints
of the priors (and of 0, where φ = max(t, 0)^γ/γ has a kink): it converges exponentially for
analytic integrands and is insensitive to the algebraic endpoint singularities of F_j⁻¹ (e.g.
u^{1/a} of a power law). All integrands are bounded, so truncating the rule at u ≈ 1e-16 from the
ends costs ≈ 1e-16. Observed accuracy: ≤ 1e-13 on the closed forms below (n = 2, and the
private good for any n); for the public good the product rules for n = 3, 4 agree with 1.6× the
nodes to ~1e-14 and ~1e-9; the endowment model with n ≥ 3 has kinks (shares hitting 0) inside the
cube and is only accurate to ~1e-6 (n = 3, uniform) .. 3e-4 (n = 4, power law a = 1/2). θ^# itself is
exact at a support end and ~1e-8 at an interior minimum (where S̄ − u̲ is flat to rounding); the
margin is accurate to quadrature level either way.

Closed forms (REFERENCES.md (Ke), with the errata): private good, n iid U[0, 1], S = θ:
E Δ = (n − 1)/(n + 1); Example 3 (public good, C = 1, U[1/2, 1], autarky): E Δ = 4(6 ln 5 − 9 ln 2 −
3 ln 3) = 0.48986393; its existence threshold in a of U[a, 1] is a* = 0.2029882 (there
Σ u̲(θ̲) = 2a²/(1 + a)); Example 4 (endowment, U[0, 1]): E Δ = (2 − 2 ln 2)/3.
"""

from __future__ import annotations

import math
from typing import Callable

import jax.numpy as jnp
import numpy as np
from jaxtyping import Float
from scipy.optimize import brentq
from scipy.special import expit

from ._compat import enable_x64
from .errors import ConfigError

__all__ = [
    "MAX_PRODUCT_AGENTS",
    "interim_surplus",
    "expected_surplus",
    "expected_delta",
    "lowest_types",
    "existence_margin",
    "existence_threshold",
    "example3_threshold",
]

#: the product rule (public good, endowment) is used up to this many agents
MAX_PRODUCT_AGENTS = 4
#: tanh-sinh nodes per piece: 1-D integrals, and per axis of a product rule over d dimensions
NODES_1D = 101
NODES_PRODUCT = {1: 101, 2: 61, 3: 41, 4: 27}
#: even grid points over the support for the search of θ^# (fewer for larger product rules)
GRID = {1: 129, 2: 65, 3: 33}
#: points of each refinement grid around the best point
ZOOM = 17
#: |u| of the outermost tanh-sinh abscissa is expit(−2·(π/2)·sinh(T)) ≈ 1e-16
_T = 3.15
_SMOOTH = ("public_good", "endowment")
_MAX_FORM = ("private_good", "partnership")


# ------------------------------------------------------------------ quadrature rules


def _tanh_sinh(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u ∈ (0, 1) and weights of the m-point tanh-sinh rule: u = (1 + tanh(π/2 sinh s))/2
    on an even grid of s ∈ [−T, T], weights h (π/4) cosh s / cosh²(π/2 sinh s)."""
    s = np.linspace(-_T, _T, m)
    h = s[1] - s[0]
    y = 0.5 * math.pi * np.sinh(s)
    u = expit(2.0 * y)
    w = h * 0.25 * math.pi * np.cosh(s) / np.cosh(y) ** 2
    return u, w


def _pieces(cuts: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """tanh-sinh nodes and weights on every piece between consecutive ``cuts`` (..., P+1) →
    (..., P·m) (pieces of zero length get zero weight)."""
    u, w = _tanh_sinh(m)
    a, b = cuts[..., :-1, None], cuts[..., 1:, None]
    nodes = a + (b - a) * u
    wts = (b - a) * w
    shape = cuts.shape[:-1] + (-1,)
    return nodes.reshape(shape), wts.reshape(shape)


# ------------------------------------------------------------------ float64 access to the setting


def _np(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def _call(fn, *arrays: np.ndarray) -> np.ndarray:
    """``fn(*arrays)`` in float64 jnp. The leading axis (rows) is padded, by repeating the last
    row, to a power of two ≥ 256 so that eager JAX compiles each primitive for few shapes."""
    rows = arrays[0].shape[0]
    size = max(256, 1 << max(rows - 1, 0).bit_length())
    padded = [np.concatenate([a, np.repeat(a[-1:], size - rows, axis=0)]) if size > rows else a for a in arrays]
    with enable_x64():
        out = fn(*[jnp.asarray(a, jnp.float64) for a in padded])
    return _np(out)[:rows]


def _cdf(prior, t) -> np.ndarray:
    t = np.asarray(t, np.float64)
    return _call(prior.cdf, t.reshape(-1)).reshape(t.shape)


def _icdf(prior, u) -> np.ndarray:
    u = np.asarray(u, np.float64)
    return _call(prior.icdf, u.reshape(-1)).reshape(u.shape)


def _column(setting, fn: str, i: int, theta: np.ndarray) -> np.ndarray:
    """Agent i's entry of the setting's per-agent function ``fn`` (``reservation_utility``) at own
    types ``theta`` (the other columns are filled with the same values and discarded)."""
    theta = np.asarray(theta, np.float64)
    full = np.repeat(theta.reshape(-1, 1), setting.n_agents, axis=1)
    return _call(getattr(setting, fn), full)[:, i].reshape(theta.shape)


def _phi(setting, t: np.ndarray) -> np.ndarray:
    """φ(t) = v(1, t): the surplus when the top type is t (private good, partnership)."""
    t = np.asarray(t, np.float64)
    flat = t.reshape(-1, 1)
    return _call(setting.value, np.ones_like(flat), flat)[:, 0].reshape(t.shape)


def _welfare(setting, theta: np.ndarray) -> np.ndarray:
    """S(θ) for profiles (..., n)."""
    theta = np.asarray(theta, np.float64)
    return _call(setting.welfare, theta.reshape(-1, setting.n_agents)).reshape(theta.shape[:-1])


def _reservation(setting, i: int, theta) -> np.ndarray:
    return _column(setting, "reservation_utility", i, theta)


def _check(setting) -> None:
    if getattr(setting, "kind", None) != "efficient":
        raise ConfigError(f"Ke's exact quantities need an efficient setting, got {getattr(setting, 'kind', setting)!r}")
    if setting.model in _SMOOTH and setting.n_agents > MAX_PRODUCT_AGENTS:
        raise ConfigError(
            f"exact quadrature for model {setting.model!r} supports at most {MAX_PRODUCT_AGENTS} agents, got "
            f"{setting.n_agents}; estimate E S and E Δ by Monte Carlo over setting.sample instead"
        )


def _quantile_cuts(setting, j: int, extra: tuple[float, ...] = ()) -> np.ndarray:
    """Cut points in [0, 1] of agent j's quantile axis: F_j of its breakpoints and of ``extra``
    points inside its support."""
    p = setting.priors[j]
    pts = [b for b in tuple(p._breakpoints()) + tuple(extra) if p.low < b < p.high]
    cuts = [0.0, 1.0] + (list(_cdf(p, np.asarray(pts, np.float64))) if pts else [])
    return np.unique(np.clip(np.asarray(cuts, np.float64), 0.0, 1.0))


def _kinks(setting) -> tuple[float, ...]:
    """Points where F_k ∘ F_j⁻¹ or φ may kink: every prior's ends and breakpoints, and 0."""
    pts = {0.0}
    for p in setting.priors:
        pts.update((p.low, p.high, *tuple(p._breakpoints())))
    return tuple(sorted(pts))


# ------------------------------------------------------------------ interim and ex ante surplus


def _max_form_term(setting, i: int | None, j: int, lower: np.ndarray) -> np.ndarray:
    """∫_{lower}^1 φ(F_j⁻¹(u)) Π_{k∉{i,j}} F_k(F_j⁻¹(u)) du for every entry of ``lower``."""
    cuts = _quantile_cuts(setting, j, _kinks(setting))
    lower = np.asarray(lower, np.float64).reshape(-1, 1)
    c = np.maximum(cuts[None, :], lower)  # pieces of [lower, 1]
    u, w = _pieces(c, NODES_1D)
    t = _icdf(setting.priors[j], u)
    g = _phi(setting, t)
    for k in range(setting.n_agents):
        if k not in (i, j):
            g = g * _cdf(setting.priors[k], t)
    return np.sum(g * w, axis=-1)


def _product_rule(setting, agents: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Product tanh-sinh rule over the quantile cubes of ``agents``: types (K, len(agents)) and
    weights (K,)."""
    m = NODES_PRODUCT[len(agents)]
    axes, wts = [], []
    for j in agents:
        u, w = _pieces(_quantile_cuts(setting, j), m)
        axes.append(_icdf(setting.priors[j], u))
        wts.append(w)
    grids = np.meshgrid(*axes, indexing="ij")
    wgrid = np.meshgrid(*wts, indexing="ij")
    theta = np.stack([g.reshape(-1) for g in grids], axis=-1)
    weight = np.prod(np.stack([g.reshape(-1) for g in wgrid], axis=-1), axis=-1)
    keep = weight > 0
    return theta[keep], weight[keep]


def interim_surplus(setting, i: int, theta_i: Float[np.ndarray, "..."]) -> Float[np.ndarray, "..."]:
    """S̄_i(θ_i) = E_{θ−i} S(θ_i, θ−i) at each own type in ``theta_i`` (float64, same shape)."""
    _check(setting)
    theta_i = np.asarray(theta_i, np.float64)
    flat = theta_i.reshape(-1)
    n = setting.n_agents
    others = [j for j in range(n) if j != i]
    if setting.model in _MAX_FORM:
        out = _phi(setting, flat)
        for j in others:
            out = out * _cdf(setting.priors[j], flat)
        for j in others:
            out = out + _max_form_term(setting, i, j, _cdf(setting.priors[j], flat))
        return out.reshape(theta_i.shape)
    rest, w = _product_rule(setting, others)
    full = np.empty((flat.size, rest.shape[0], n))
    full[:, :, others] = rest[None]
    full[:, :, i] = flat[:, None]
    return (_welfare(setting, full) @ w).reshape(theta_i.shape)


def expected_surplus(setting) -> float:
    """E S(θ), the expected efficient surplus."""
    _check(setting)
    n = setting.n_agents
    if setting.model in _MAX_FORM:
        return float(sum(_max_form_term(setting, None, j, np.zeros(1))[0] for j in range(n)))
    theta, w = _product_rule(setting, list(range(n)))
    return float(_welfare(setting, theta) @ w)


def expected_delta(setting) -> float:
    """E Δ = Σ_i E_{θ−i} S(θ̲_i, θ−i) − (n − 1) E S(θ) with θ̲_i the lowest type (Ke Lemma 1)."""
    _check(setting)
    n = setting.n_agents
    pivots = sum(float(interim_surplus(setting, i, np.asarray([p.low]))[0]) for i, p in enumerate(setting.priors))
    return pivots - (n - 1) * expected_surplus(setting)


# ------------------------------------------------------------------ worst-off types and existence


def _net(setting, i: int, theta) -> np.ndarray:
    """S̄_i(θ_i) − u̲_i(θ_i)."""
    return interim_surplus(setting, i, theta) - _reservation(setting, i, theta)


def _argmin_net(setting, i: int) -> tuple[float, float]:
    """(θ_i^#, min value) of S̄_i − u̲_i: an even grid, then repeated ``ZOOM``-point grids on the
    bracket of the best point until the spacing is below 1e-12 of the support (every grid
    contains its ends, so a minimum at a support end is found exactly)."""
    p = setting.priors[i]
    grid = np.linspace(p.low, p.high, GRID.get(setting.n_agents - 1, 33) if setting.model in _SMOOTH else GRID[1])
    best = (np.inf, np.nan)
    while True:
        vals = _net(setting, i, grid)
        k = int(np.argmin(vals))
        best = min(best, (float(vals[k]), float(grid[k])))
        if grid[1] - grid[0] <= 1e-12 * (p.high - p.low):
            return best[1], best[0]
        grid = np.linspace(grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)], ZOOM)


def _worst_off(setting) -> list[tuple[float, float]]:
    """(θ_i^#, min value) for every agent (computed once for iid agents)."""
    if setting.symmetric:
        return [_argmin_net(setting, 0)] * setting.n_agents
    return [_argmin_net(setting, i) for i in range(setting.n_agents)]


def lowest_types(setting) -> Float[np.ndarray, " n"]:
    """θ_i^# = argmin_{θ_i} E_{θ−i} S(θ_i, θ−i) − u̲_i(θ_i) for every agent (Ke Lemma 1 /
    Proposition 6): the type whose interim IR binds in the VCG mechanism that maximises revenue."""
    _check(setting)
    return np.asarray([x for x, _ in _worst_off(setting)], np.float64)


def existence_margin(setting) -> float:
    """E Δ^# − Σ_i u̲_i(θ_i^#) = Σ_i min_{θ_i}[S̄_i(θ_i) − u̲_i(θ_i)] − (n − 1) E S (Krishna–Perry):
    an efficient, interim IC and IR, ex post budget-balanced mechanism exists iff it is ≥ 0."""
    _check(setting)
    n = setting.n_agents
    return float(sum(v for _, v in _worst_off(setting)) - (n - 1) * expected_surplus(setting))


def existence_threshold(make_setting: Callable[[float], object], lo: float, hi: float, *, xtol: float = 1e-12) -> float:
    """The parameter a ∈ [lo, hi] where ``existence_margin(make_setting(a))`` crosses 0
    (``scipy.optimize.brentq``; the margin must change sign on [lo, hi])."""
    f = lambda a: existence_margin(make_setting(float(a)))  # noqa: E731
    flo, fhi = f(lo), f(hi)
    if not np.isfinite(flo) or not np.isfinite(fhi) or flo * fhi > 0:
        raise ConfigError(
            f"the existence margin does not change sign on [{lo}, {hi}] (margins {flo:.6g}, {fhi:.6g}); widen the bracket"
        )
    return float(brentq(f, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps))


def example3_threshold(cost: float = 1.0, lo: float = 0.0, hi: float = 0.5) -> float:
    """Ke's Example 3 (public good, n = 2, v = θ(2x − x²), c = C x², autarky reservation
    θ²/(C + θ), θ ~ U[a, 1]): the a* below which no efficient mechanism with interim IR (hence none
    with ex post IR) exists. For C = 1, a* = 0.2029882 (REFERENCES.md (Ke))."""
    from .priors import Uniform
    from .settings.efficient import Efficient

    return existence_threshold(lambda a: Efficient([Uniform(a, 1.0)] * 2, "public_good", cost=cost), lo, hi)

