"""One-dimensional priors over an agent's value, all in JAX.

Every prior offers sampling, ``cdf``, ``pdf`` (for a discrete prior: the probability mass),
``icdf``, the virtual value

    φ(v) = v − (1 − F(v)) / f(v)                                   (Myerson 1981, eq. 3.11)

and the *ironed* virtual value φ̄: with q = F(v) and H(q) = ∫_0^q φ(F⁻¹(s)) ds (where F has a gap,
H is (I1) below, which adds a jump), φ̄(v) is the derivative of the convex hull of H at F(v) (equivalently, minus the slope of the concave hull of the
revenue curve R(q') = q'·F⁻¹(1 − q') at q' = 1 − F(v)). φ̄ equals φ where φ is increasing and is
constant on each ironing interval.

Priors are immutable equinox modules; parameters are plain floats, so a prior can be rebuilt from
its :meth:`Prior.to_config` dictionary.

Ironing of continuous priors (generic, :func:`compute_ironing`)
--------------------------------------------------------------
Since dR/dq' = φ(F⁻¹(1 − q')), the cumulative virtual value has the closed form

    H(q) = R(1) − R(1 − q) = low − (1 − q)·F⁻¹(q).                                       (I1)

(I1) is also the right definition where F has a gap (F flat on (g_L, g_R), so F⁻¹ jumps at
q_g = F(g_L)): taking the right-continuous F⁻¹, H jumps *down* by (1 − q_g)(g_R − g_L) at q_g. This
is the point mass −(1 − q_g)(g_R − g_L)·δ_{q_g} of the virtual-value measure that the payment
identity produces (types in the gap pay for the allocation of g_L), so ∫ x dH is the revenue of any
monotone allocation x. A consequence: every gap lies inside an ironing interval that ends at g_R,
and there E[φ̄·x] is the revenue while E[φ·x] (for any pointwise convention for φ in the gap) is not.

Writing q = F(v), the hull is found from the points (F(v), H(F(v))) = (F(v), low − (1 − F(v))·v):
a quantile grid of 2^16 + 1 points mapped through ``icdf``, plus an even grid in v and the prior's
breakpoints (:meth:`Prior._breakpoints`). Hull edges that skip points lying above them by more
than 1e-12 (relative) are ironing intervals. Each is then refined: for a slope s the contact points
minimise M(v; s) = −(1 − F(v))·v − s·F(v) locally (M'(v) = f(v)·(φ(v) − s), so interior contacts
satisfy the tangency condition φ(v) = s; contacts can also sit on kinks, the support ends, or the
right end of a gap), and the level s is the root of M(v_a(s); s) − M(v_b(s); s) = 0, the
equal-area / chord condition (H(q_b) − H(q_a))/(q_b − q_a) = s. Both are solved with
``scipy.optimize.brentq`` in float64, so endpoints and levels are accurate to ~1e-12·(high − low).
The result is stored as a tuple of ``(v_a, v_b, level)`` and

    φ̄(v) = level        for v_a ≤ v < v_b,          φ̄(v) = φ(v)   elsewhere.             (I2)

(Half-open so that at the right end of a gap, a kink of the hull, φ̄ takes the value from the
right; at a smooth tangency both sides agree.) The precomputation always runs in float64, whatever
the ambient ``jax_enable_x64`` setting, so the stored floats do not depend on it.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._compat import enable_x64
from .errors import ConfigError

__all__ = [
    "Prior",
    "priors_from_list",
    "Uniform",
    "PowerLaw",
    "TruncatedExponential",
    "UniformMixture",
    "Discrete",
    "PRIORS",
    "prior_from_config",
    "compute_ironing",
]

Interval = tuple[float, float, float]


def _as_float(v) -> Array:
    """``v`` as a JAX array of a floating dtype (integers become the default float dtype)."""
    v = jnp.asarray(v)
    if not jnp.issubdtype(v.dtype, jnp.floating):
        v = v.astype(jnp.result_type(float))
    return v


def _const(values: Sequence[float], like: Array) -> Array:
    """A constant table (tuple of Python floats) in the dtype of ``like``."""
    return jnp.asarray(np.asarray(values, dtype=np.float64), dtype=like.dtype)


def _number(dist: str, key: str, x: Any) -> float:
    """``x`` as a finite float, or a one-line :class:`ConfigError`."""
    if isinstance(x, (bool, str, bytes)):
        raise ConfigError(f"{dist} prior: '{key}' must be a number, got {x!r}")
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise ConfigError(f"{dist} prior: '{key}' must be a number, got {x!r}") from None
    if not math.isfinite(x):
        raise ConfigError(f"{dist} prior: '{key}' must be finite, got {x}")
    return x


class Prior(eqx.Module):
    """Abstract base class of a one-dimensional prior with support ``[low, high]``.

    Subclasses implement ``low``, ``high``, ``cdf``, ``pdf``, ``icdf`` and ``to_config``; generic
    defaults are provided for ``sample`` (inverse-cdf sampling), ``virtual_value``
    (φ = v − (1 − F)/f) and ``ironed_virtual_value`` (eq. (I2) of the module docstring).

    The ironing intervals of a continuous prior are precomputed once, at construction: a subclass
    that knows them in closed form (or knows the prior is regular) sets ``self._ironing`` in its
    ``__init__`` (``()`` for a regular prior); otherwise :func:`compute_ironing` runs right after
    ``__init__`` (skipped when the subclass overrides ``ironed_virtual_value``). A discrete
    subclass (``discrete = True``) must implement ``virtual_value`` and ``ironed_virtual_value``.
    A subclass whose density jumps or vanishes inside the support should return those points from
    :meth:`_breakpoints` so that the numeric hull can place contacts on them exactly.
    Build priors through their constructor (not ``eqx.tree_at``), so that precomputed tables stay
    consistent with the parameters.
    """

    #: ironing intervals ``((v_a, v_b, level), ...)`` of a continuous prior; None = not yet computed
    _ironing: tuple[Interval, ...] | None = eqx.field(default=None, kw_only=True, repr=False)

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    discrete: ClassVar[bool] = False

    def __check_init__(self):
        # Runs after every subclass __init__ (equinox): precompute the ironing intervals of
        # continuous priors that did not provide them, unless the subclass implements
        # ironed_virtual_value itself (then ironing_intervals() computes them only if asked).
        # The module is frozen by now, hence the object.__setattr__; the value is a pure function
        # of the parameters.
        generic = type(self).ironed_virtual_value is Prior.ironed_virtual_value
        if generic and not self.discrete and self._ironing is None:
            object.__setattr__(self, "_ironing", compute_ironing(self))

    @property
    @abc.abstractmethod
    def low(self) -> float: ...

    @property
    @abc.abstractmethod
    def high(self) -> float: ...

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
        """``shape`` independent draws, by inverse-cdf sampling: v = F⁻¹(U), U ~ U[0, 1)."""
        return self.icdf(jax.random.uniform(key, shape))

    @abc.abstractmethod
    def cdf(self, v: Float[Array, "..."]) -> Float[Array, "..."]: ...

    @abc.abstractmethod
    def pdf(self, v: Float[Array, "..."]) -> Float[Array, "..."]: ...

    @abc.abstractmethod
    def icdf(self, u: Float[Array, "..."]) -> Float[Array, "..."]: ...

    def virtual_value(self, v: Float[Array, "..."]) -> Float[Array, "..."]:
        """φ(v) = v − (1 − F(v))/f(v)."""
        v = _as_float(v)
        return v - (1.0 - self.cdf(v)) / self.pdf(v)

    def ironing_intervals(self) -> tuple[Interval, ...]:
        """The ironing intervals ``((v_a, v_b, level), ...)``: φ̄ = level on [v_a, v_b)."""
        if self._ironing is None:  # own ironed_virtual_value, or the constructor was bypassed
            return compute_ironing(self)
        return self._ironing

    def ironed_virtual_value(self, v: Float[Array, "..."]) -> Float[Array, "..."]:
        """φ̄(v) = level on each ironing interval [v_a, v_b), φ(v) elsewhere (eq. (I2))."""
        v = _as_float(v)
        phi = self.virtual_value(v)
        for a, b, level in self.ironing_intervals():
            phi = jnp.where((v >= a) & (v < b), jnp.asarray(level, phi.dtype), phi)
        return phi

    @abc.abstractmethod
    def to_config(self) -> dict[str, Any]: ...

    def atoms(self) -> np.ndarray | None:
        """Support points of a discrete prior (sorted), ``None`` for a continuous one."""
        return None

    def _breakpoints(self) -> tuple[float, ...]:
        """Points inside (low, high) where the density may jump or vanish (used by the hull)."""
        return ()


# --------------------------------------------------------------------------------------------
# Generic ironing of a continuous prior (see the module docstring, eqs. (I1)-(I2)).
# --------------------------------------------------------------------------------------------


def _lower_hull(x: np.ndarray, y: np.ndarray) -> list[int]:
    """Indices of the vertices of the lower convex hull of points sorted by (x, y) (Andrew)."""
    xs, ys = x.tolist(), y.tolist()
    hull: list[int] = []
    for k in range(len(xs)):
        xk, yk = xs[k], ys[k]
        while len(hull) >= 2:
            i, j = hull[-2], hull[-1]
            if (xs[j] - xs[i]) * (yk - ys[i]) - (ys[j] - ys[i]) * (xk - xs[i]) <= 0.0:
                hull.pop()
            else:
                break
        hull.append(k)
    return hull


def compute_ironing(prior: Prior, n_grid: int = 2**16) -> tuple[Interval, ...]:
    """Ironing intervals ``((v_a, v_b, level), ...)`` of a continuous prior, by a numeric hull.

    Works for any continuous prior from its ``cdf``, ``pdf`` and ``icdf`` alone (module docstring,
    eqs. (I1)-(I2)): grid hull of H(q) = low − (1 − q)·F⁻¹(q) on ``n_grid + 1`` quantiles plus
    ``n_grid/8 + 1`` even points in v and the prior's breakpoints, then each interval is refined
    by root finding (tangency φ(v) = s at smooth contacts, equal-area condition for the level s).
    Runs in float64 regardless of the ambient x64 setting; returns plain Python floats, ``()`` for a
    regular prior. Ironing intervals narrower than the grid resolution (hull deviation below 1e-12)
    are not detected.
    """
    from scipy.optimize import brentq

    lo, hi = float(prior.low), float(prior.high)
    w = hi - lo
    bps = sorted({float(b) for b in prior._breakpoints() if lo < float(b) < hi})
    bps_u = np.asarray([(b - lo) / w for b in bps], dtype=np.float64)

    n_even = n_grid // 8 + 1
    with enable_x64(), jax.ensure_compile_time_eval():
        # Eager evaluation with two fixed shapes (the grid, and 64 points for the refinement):
        # eager JAX compiles each primitive once per shape and process, whereas jitting these
        # closures would compile anew for every prior.
        q = jnp.linspace(0.0, 1.0, n_grid + 1, dtype=jnp.float64)
        v_even = jnp.linspace(lo, hi, n_even, dtype=jnp.float64)

        def grid_eval():
            z = jnp.concatenate([prior.icdf(q), v_even])
            return z, prior.cdf(z)

        def small_eval(z):
            return prior.cdf(z), prior.pdf(z)

        def cdf_pdf(u):  # F and the density with respect to u, at v = lo + w·u
            u = np.atleast_1d(np.asarray(u, np.float64))
            out_F, out_f = [], []
            for k in range(0, len(u), 64):
                chunk = u[k : k + 64]
                z = np.pad(lo + w * chunk, (0, 64 - len(chunk)), mode="edge")
                F_, f_ = small_eval(jnp.asarray(z, jnp.float64))
                out_F.append(np.asarray(F_, np.float64)[: len(chunk)])
                out_f.append(np.asarray(f_, np.float64)[: len(chunk)])
            return np.clip(np.concatenate(out_F), 0.0, 1.0), w * np.concatenate(out_f)

        def M(u, s):  # −(1 − F)·u − s·F: H(F(v)) − s·F(v) in scaled units, up to a constant
            F = cdf_pdf(u)[0]
            return -(1.0 - F) * np.atleast_1d(np.asarray(u, np.float64)) - s * F

        def D(u, s):  # M'(u) = f_u(u)·(φ_u(u) − s) = f_u·(u − s) − (1 − F)
            F, f = cdf_pdf(u)
            with np.errstate(all="ignore"):
                d = f * (np.atleast_1d(np.asarray(u, np.float64)) - s) - (1.0 - F)
            d = np.where(np.isnan(d), 0.0, d)
            return np.clip(d, -1e300, 1e300)

        # --- grid hull ---------------------------------------------------------------------
        z, Fz = (np.asarray(x, np.float64) for x in grid_eval())
        Fb = cdf_pdf(bps_u)[0] if len(bps) else np.zeros(0)
        u = np.concatenate([(z - lo) / w, bps_u, [0.0, 1.0]])
        Fu = np.concatenate([Fz, Fb, [0.0, 1.0]])
        Fu = np.where(u <= 0.0, 0.0, np.where(u >= 1.0, 1.0, Fu))
        keep = np.isfinite(u) & (u >= 0.0) & (u <= 1.0)
        u, idx = np.unique(u[keep], return_index=True)
        F = np.maximum.accumulate(np.clip(Fu[keep][idx], 0.0, 1.0))
        Hs = -(1.0 - F) * u  # scaled H (I1) minus the constant low, as a function of the points u
        order = np.lexsort((Hs, F))
        hull = sorted(order[k] for k in _lower_hull(F[order], Hs[order]))  # hull vertices, by u

        tol = 1e-12
        candidates = []
        for i, j in zip(hull[:-1], hull[1:]):
            if j <= i + 1:
                continue
            slope = (Hs[j] - Hs[i]) / (F[j] - F[i])
            dev = Hs[i + 1 : j] - (Hs[i] + slope * (F[i + 1 : j] - F[i]))
            if dev.max() > tol:
                candidates.append((i, j, slope))

        # --- refinement --------------------------------------------------------------------
        def local_min(a, b, s):
            """min of M(·; s) on [a, b] and its argmin.

            Candidates: the bracket ends, the breakpoints inside, and every upward zero crossing of
            M' (a smooth tangency φ = s, or a jump of φ across s) located by brentq; interior sample
            points are only used to find the crossings (near a smooth minimum M is flat to rounding,
            so they must not compete with the root).
            """
            inner = bps_u[(bps_u > a) & (bps_u < b)]
            pts = np.unique(np.concatenate([np.linspace(a, b, 17), inner]))
            d = D(pts, s)
            cands = [np.asarray([a, b]), inner]
            for k in np.nonzero((d[:-1] < 0.0) & (d[1:] > 0.0))[0]:
                r = brentq(lambda x: float(D(x, s)[0]), pts[k], pts[k + 1], xtol=1e-16, rtol=8.9e-16)
                cands.append(np.asarray([r]))
            cands.append(pts[1:-1][d[1:-1] == 0.0])
            cands = np.concatenate(cands)
            m = M(cands, s)
            k = int(np.argmin(m))
            return float(m[k]), float(cands[k])

        K = 4
        n = len(u)
        out: list[Interval] = []
        for i, j, s0 in candidates:
            mid = (i + j) // 2
            A = (u[max(i - K, 0)], u[max(min(i + K, mid), i)])
            B = (u[min(max(j - K, mid), j)], u[min(j + K, n - 1)])

            def G(s):
                return local_min(*A, s)[0] - local_min(*B, s)[0]

            g0 = G(s0)
            if g0 == 0.0:
                s = s0
            else:
                step = max(2.0 * abs(g0) / max(F[j] - F[i], 1e-300), 1e-12)
                s_lo, s_hi = s0 - step, s0 + step
                for _ in range(60):
                    if G(s_lo) <= 0.0 <= G(s_hi):
                        break
                    step *= 4.0
                    s_lo, s_hi = s0 - step, s0 + step
                else:  # pragma: no cover - refinement failed; keep the grid estimate
                    s_lo = s_hi = None
                s = s0 if s_lo is None else brentq(G, s_lo, s_hi, xtol=1e-15, rtol=8.9e-16)
            ua, ub = local_min(*A, s)[1], local_min(*B, s)[1]
            if not ub > ua:
                continue
            va, vb = lo + w * ua, lo + w * ub
            for p in [lo, hi, *bps]:  # snap to exact support ends and breakpoints
                if abs(va - p) <= 1e-12 * w:
                    va = p
                if abs(vb - p) <= 1e-12 * w:
                    vb = p
            out.append((float(va), float(vb), float(lo + w * s)))
    return tuple(sorted(out))


# --------------------------------------------------------------------------------------------
# Concrete priors
# --------------------------------------------------------------------------------------------


class _IntervalPrior(Prior):
    """A prior whose support ``[lo, hi]`` is stored as two fields."""

    lo: float
    hi: float

    @property
    def low(self) -> float:
        return self.lo

    @property
    def high(self) -> float:
        return self.hi


class Uniform(_IntervalPrior):
    """Uniform on ``[low, high]``: F(v) = (v − low)/(high − low), φ(v) = 2v − high (regular)."""

    name: ClassVar[str] = "uniform"
    summary: ClassVar[str] = "uniform on [low, high]; keys low, high"

    def __init__(self, low: float = 0.0, high: float = 1.0):
        low, high = _number("uniform", "low", low), _number("uniform", "high", high)
        if not high > low:
            raise ConfigError(f"uniform prior needs low < high, got low={low}, high={high}")
        self.lo, self.hi = low, high
        self._ironing = ()  # regular

    def sample(self, key, shape):
        return jax.random.uniform(key, shape, minval=self.lo, maxval=self.hi)

    def cdf(self, v):
        return jnp.clip((v - self.lo) / (self.hi - self.lo), 0.0, 1.0)

    def pdf(self, v):
        inside = (v >= self.lo) & (v <= self.hi)
        return jnp.where(inside, 1.0 / (self.hi - self.lo), 0.0)

    def icdf(self, u):
        return self.lo + u * (self.hi - self.lo)

    def virtual_value(self, v):
        return 2.0 * v - self.hi

    def ironed_virtual_value(self, v):
        return self.virtual_value(v)

    def to_config(self):
        return {"dist": self.name, "low": self.lo, "high": self.hi}


class PowerLaw(_IntervalPrior):
    """Power law on ``[low, high]``: F(v) = x^a with x = (v − low)/(high − low), a > 0.

    f(v) = a·x^(a−1)/w with w = high − low, F⁻¹(u) = low + w·u^(1/a), and

        φ(v) = low + w·(x·(1 + 1/a) − x^(1−a)/a).

    φ' = (w/a)·((1 + a) − (1 − a)·x^(−a))·(1/w): for a ≥ 1 φ is increasing (regular); for a < 1 it
    decreases on x < ((1 − a)/(1 + a))^(1/a), and the prior is irregular. In quantiles (low = 0,
    w = 1) H(q) = −(1 − q)·q^(1/a); the hull is the tangent from (0, 0), touching at q_b = 1 − a, so

        φ̄ = −a·(1 − a)^((1−a)/a)   (scaled: low + w·that)   on [low, low + w·(1 − a)^(1/a)),

    and φ̄ = φ above. For a > 1, φ(low) = −∞ is returned as the most negative finite float of the
    dtype (so that 0·φ stays 0).
    """

    a: float
    name: ClassVar[str] = "power_law"
    summary: ClassVar[str] = "F(v) = ((v - low)/(high - low))^a on [low, high]; keys low, high, a (> 0)"

    def __init__(self, low: float = 0.0, high: float = 1.0, a: float = 1.0):
        low, high = _number("power_law", "low", low), _number("power_law", "high", high)
        a = _number("power_law", "a", a)
        if not high > low:
            raise ConfigError(f"power_law prior needs low < high, got low={low}, high={high}")
        if not a > 0:
            raise ConfigError(f"power_law prior needs a > 0, got a={a}")
        self.lo, self.hi, self.a = low, high, a
        w = high - low
        if a >= 1.0:
            self._ironing = ()
        else:
            vb = low + w * (1.0 - a) ** (1.0 / a)
            level = low + w * (-a * (1.0 - a) ** ((1.0 - a) / a))
            self._ironing = ((low, float(vb), float(level)),)

    def _x(self, v):
        return jnp.clip((v - self.lo) / (self.hi - self.lo), 0.0, 1.0)

    def cdf(self, v):
        return self._x(_as_float(v)) ** self.a

    def pdf(self, v):
        v = _as_float(v)
        x = self._x(v)
        inside = (v >= self.lo) & (v <= self.hi)
        return jnp.where(inside, self.a * x ** (self.a - 1.0) / (self.hi - self.lo), 0.0)

    def icdf(self, u):
        u = jnp.clip(_as_float(u), 0.0, 1.0)
        return jnp.clip(self.lo + (self.hi - self.lo) * u ** (1.0 / self.a), self.lo, self.hi)

    def virtual_value(self, v):
        v = _as_float(v)
        x = self._x(v)
        a = self.a
        tiny = jnp.finfo(v.dtype).min
        xs = jnp.where(x > 0, x, 1.0)
        phi_x = xs * (1.0 + 1.0 / a) - xs ** (1.0 - a) / a
        phi0 = jnp.where(a < 1.0, 0.0, jnp.where(a == 1.0, -1.0, tiny))  # the limit at x = 0
        phi_x = jnp.where(x > 0, phi_x, phi0)
        return jnp.maximum(self.lo + (self.hi - self.lo) * phi_x, tiny)

    def to_config(self):
        return {"dist": self.name, "low": self.lo, "high": self.hi, "a": self.a}


class TruncatedExponential(Prior):
    """Exponential with rate λ truncated to ``[0, high]`` (regular).

    With Z = 1 − e^(−λ·high):  F(v) = (1 − e^(−λv))/Z,  f(v) = λ·e^(−λv)/Z,
    F⁻¹(u) = −log(1 − u·Z)/λ,  and  φ(v) = v − (1 − e^(−λ(high − v)))/λ, with
    φ'(v) = 1 + e^(−λ(high − v)) > 0. Mean 1/λ − high·e^(−λ·high)/Z.
    """

    rate: float
    hi: float
    name: ClassVar[str] = "exponential"
    summary: ClassVar[str] = "exponential with rate > 0 truncated to [0, high]; keys rate, high"

    def __init__(self, rate: float = 1.0, high: float = 1.0):
        rate, high = _number("exponential", "rate", rate), _number("exponential", "high", high)
        if not rate > 0:
            raise ConfigError(f"exponential prior needs rate > 0, got rate={rate}")
        if not high > 0:
            raise ConfigError(f"exponential prior needs high > 0 (support [0, high]), got high={high}")
        self.rate, self.hi = rate, high
        self._ironing = ()  # regular

    @property
    def low(self) -> float:
        return 0.0

    @property
    def high(self) -> float:
        return self.hi

    @property
    def _z(self) -> float:
        return -math.expm1(-self.rate * self.hi)

    def cdf(self, v):
        v = jnp.clip(_as_float(v), 0.0, self.hi)
        return jnp.clip(-jnp.expm1(-self.rate * v) / self._z, 0.0, 1.0)

    def pdf(self, v):
        v = _as_float(v)
        inside = (v >= 0.0) & (v <= self.hi)
        return jnp.where(inside, self.rate * jnp.exp(-self.rate * jnp.clip(v, 0.0, self.hi)) / self._z, 0.0)

    def icdf(self, u):
        u = jnp.clip(_as_float(u), 0.0, 1.0)
        return jnp.clip(-jnp.log1p(-u * self._z) / self.rate, 0.0, self.hi)

    def virtual_value(self, v):
        v = _as_float(v)
        return v + jnp.expm1(-self.rate * (self.hi - v)) / self.rate

    def to_config(self):
        return {"dist": self.name, "rate": self.rate, "high": self.hi}


class UniformMixture(Prior):
    """Mixture: U[low1, high1] with probability ``weight``, else U[low2, high2].

    Support [low, high] = [min(low1, low2), max(high1, high2)]; the intervals may overlap or be
    disjoint. With breakpoints b_0 < … < b_m (the distinct interval ends), the density is constant,
    d_k, on each piece [b_k, b_{k+1}) (the last piece closed), so F is piecewise linear with
    F(b_k) = C_k and F⁻¹ is its exact piecewise-linear inverse. A piece with d_k = 0 is a gap
    (F flat): there ``icdf`` returns the gap's right end for u = F(gap) (the left end of the
    right neighbour piece), and ``pdf`` returns 0.

    Virtual value: φ(v) = v − (1 − F(v))/d_k on piece k, with the right-continuous density; inside
    a gap φ is *defined* as its limit from the right, φ(g_R). (This convention never reaches φ̄: a
    gap always lies inside an ironing interval ending at its right end g_R, module docstring.)
    The prior is irregular in general; φ̄ comes from the generic hull (:func:`compute_ironing`) with
    the breakpoints as exact contact candidates.
    """

    low1: float
    high1: float
    low2: float
    high2: float
    weight: float
    _b: tuple[float, ...]  # breakpoints b_0 < ... < b_m
    _c: tuple[float, ...]  # C_k = F(b_k)
    _d: tuple[float, ...]  # density on piece k
    _d_eff: tuple[float, ...]  # density used by φ on piece k (next piece's on a gap)
    _gap: tuple[float, ...]  # 1.0 on a gap piece (zero density), else 0.0 (no NaNs: modules compare equal)
    name: ClassVar[str] = "uniform_mixture"
    summary: ClassVar[str] = (
        "U[low1, high1] with probability weight, else U[low2, high2]; keys low1, high1, low2, high2, weight"
    )

    def __init__(self, low1: float, high1: float, low2: float, high2: float, weight: float):
        d = "uniform_mixture"
        low1, high1 = _number(d, "low1", low1), _number(d, "high1", high1)
        low2, high2 = _number(d, "low2", low2), _number(d, "high2", high2)
        weight = _number(d, "weight", weight)
        if not high1 > low1:
            raise ConfigError(f"uniform_mixture prior needs low1 < high1, got low1={low1}, high1={high1}")
        if not high2 > low2:
            raise ConfigError(f"uniform_mixture prior needs low2 < high2, got low2={low2}, high2={high2}")
        if not 0.0 < weight < 1.0:
            raise ConfigError(f"uniform_mixture prior needs 0 < weight < 1, got weight={weight}")
        self.low1, self.high1, self.low2, self.high2, self.weight = low1, high1, low2, high2, weight
        b = sorted({low1, high1, low2, high2})
        dens = []
        for left, right in zip(b[:-1], b[1:]):
            dk = 0.0
            if low1 <= left and right <= high1:
                dk += weight / (high1 - low1)
            if low2 <= left and right <= high2:
                dk += (1.0 - weight) / (high2 - low2)
            dens.append(dk)
        c = [0.0]
        for k, dk in enumerate(dens):
            c.append(c[-1] + dk * (b[k + 1] - b[k]))
        c = [ck / c[-1] for ck in c]
        c[-1] = 1.0
        d_eff, gap = [], []
        for k, dk in enumerate(dens):
            if dk > 0:
                d_eff.append(dk)
                gap.append(0.0)
            else:  # a gap is never the last piece and is followed by a piece of positive density
                d_eff.append(dens[k + 1])
                gap.append(1.0)
        self._b, self._c, self._d = tuple(b), tuple(c), tuple(dens)
        self._d_eff, self._gap = tuple(d_eff), tuple(gap)

    @property
    def low(self) -> float:
        return self._b[0]

    @property
    def high(self) -> float:
        return self._b[-1]

    def _breakpoints(self):
        return self._b[1:-1]

    def _piece(self, v):
        """Index k of the piece [b_k, b_{k+1}) containing v (last piece closed, clipped outside)."""
        return jnp.clip(jnp.searchsorted(_const(self._b, v), v, side="right") - 1, 0, len(self._d) - 1)

    def cdf(self, v):
        v = _as_float(v)
        return jnp.interp(v, _const(self._b, v), _const(self._c, v))

    def pdf(self, v):
        v = _as_float(v)
        inside = (v >= self.low) & (v <= self.high)
        return jnp.where(inside, _const(self._d, v)[self._piece(v)], 0.0)

    def icdf(self, u):
        u = jnp.clip(_as_float(u), 0.0, 1.0)
        pos = [k for k, dk in enumerate(self._d) if dk > 0]  # pieces carrying mass
        c0 = _const([self._c[k] for k in pos], u)
        b0 = _const([self._b[k] for k in pos], u)
        dk = _const([self._d[k] for k in pos], u)
        i = jnp.clip(jnp.searchsorted(c0, u, side="right") - 1, 0, len(pos) - 1)
        return jnp.clip(b0[i] + (u - c0[i]) / dk[i], self.low, self.high)

    def virtual_value(self, v):
        v = _as_float(v)
        k = self._piece(v)
        in_gap = _const(self._gap, v)[k] > 0
        z = jnp.where(in_gap, _const(self._b, v)[k + 1], v)  # inside a gap: evaluate at its right end
        return z - (1.0 - self.cdf(z)) / _const(self._d_eff, v)[k]

    def to_config(self):
        return {
            "dist": self.name,
            "low1": self.low1,
            "high1": self.high1,
            "low2": self.low2,
            "high2": self.high2,
            "weight": self.weight,
        }


class Discrete(Prior):
    """Finite support v_1 < … < v_K with masses p_k > 0 (atoms of zero mass are dropped).

    ``pdf`` is the probability mass (0 off the atoms), F(v) = P(V ≤ v), F⁻¹(u) = the smallest atom
    with F ≥ u. Discrete virtual value (e.g. Elkind 2007), with F_k = F(v_k):

        φ_k = v_k − (v_{k+1} − v_k)·(1 − F_k)/p_k,    φ_K = v_K,

    so that the revenue of a monotone allocation x is Σ_k p_k x_k φ_k. Ironing: φ̄_k is the slope,
    on (F_{k−1}, F_k], of the convex hull of the points (0, 0), (F_k, Σ_{j≤k} p_j φ_j), i.e. the
    p-weighted pool-adjacent-violators regression of (φ_k).

    Between atoms both ``virtual_value`` and ``ironed_virtual_value`` are right-continuous step
    functions: the value at the largest atom ≤ v (below the lowest atom: the lowest atom's value).
    So φ̄ is nondecreasing on all of [low, high] and bisection on it finds atom thresholds.
    At least two atoms of positive mass are required (a point mass has zero width).
    """

    values: tuple[float, ...]
    probs: tuple[float, ...]
    _cum: tuple[float, ...]
    _phi: tuple[float, ...]
    _phibar: tuple[float, ...]
    name: ClassVar[str] = "discrete"
    summary: ClassVar[str] = "finite support; keys values (list of numbers), probs (list, >= 0, summing to 1)"
    discrete: ClassVar[bool] = True

    def __init__(self, values: Sequence[float], probs: Sequence[float]):
        d = "discrete"
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, np.ndarray)):
            raise ConfigError(f"discrete prior: 'values' must be a list of numbers, got {values!r}")
        if isinstance(probs, (str, bytes)) or not isinstance(probs, (list, tuple, np.ndarray)):
            raise ConfigError(f"discrete prior: 'probs' must be a list of numbers, got {probs!r}")
        vals = [_number(d, f"values[{i}]", x) for i, x in enumerate(list(values))]
        ps = [_number(d, f"probs[{i}]", x) for i, x in enumerate(list(probs))]
        if len(vals) != len(ps):
            raise ConfigError(
                f"discrete prior needs as many probs as values, got {len(vals)} values and {len(ps)} probs"
            )
        if any(p < 0 for p in ps):
            raise ConfigError(f"discrete prior needs probs >= 0, got {ps}")
        total = math.fsum(ps)
        if abs(total - 1.0) > 1e-9:
            raise ConfigError(f"discrete prior needs probs summing to 1 (within 1e-9), got sum {total!r}")
        pairs = sorted(zip(vals, ps))
        for (v1, _), (v2, _) in zip(pairs[:-1], pairs[1:]):
            if v1 == v2:
                raise ConfigError(f"discrete prior needs distinct values, got {v1} twice")
        pairs = [(v, p / total) for v, p in pairs if p > 0]
        if len(pairs) < 2:
            raise ConfigError("discrete prior needs at least two values with positive probability")
        v = np.asarray([x for x, _ in pairs], np.float64)
        p = np.asarray([x for _, x in pairs], np.float64)
        cum = np.cumsum(p)
        cum[-1] = 1.0
        phi = v.copy()
        phi[:-1] = v[:-1] - (v[1:] - v[:-1]) * (1.0 - cum[:-1]) / p[:-1]
        self.values, self.probs = tuple(v.tolist()), tuple(p.tolist())
        self._cum, self._phi = tuple(cum.tolist()), tuple(phi.tolist())
        self._phibar = tuple(_pav(phi, p).tolist())

    @property
    def low(self) -> float:
        return self.values[0]

    @property
    def high(self) -> float:
        return self.values[-1]

    def atoms(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)

    def _count(self, v):
        """Number of atoms ≤ v."""
        return jnp.searchsorted(_const(self.values, v), v, side="right")

    def _step(self, table, v):
        v = _as_float(v)
        k = jnp.clip(self._count(v) - 1, 0, len(self.values) - 1)
        return _const(table, v)[k]

    def sample(self, key, shape):
        idx = jax.random.categorical(key, jnp.log(jnp.asarray(self.probs)), shape=tuple(shape))
        return jnp.asarray(self.values)[idx]

    def cdf(self, v):
        v = _as_float(v)
        return _const((0.0, *self._cum), v)[self._count(v)]

    def pdf(self, v):
        v = _as_float(v)
        k = self._count(v) - 1
        kc = jnp.clip(k, 0, len(self.values) - 1)
        hit = (k >= 0) & (_const(self.values, v)[kc] == v)
        return jnp.where(hit, _const(self.probs, v)[kc], 0.0)

    def icdf(self, u):
        u = _as_float(u)
        k = jnp.clip(jnp.searchsorted(_const(self._cum, u), u, side="left"), 0, len(self.values) - 1)
        return _const(self.values, u)[k]

    def virtual_value(self, v):
        return self._step(self._phi, v)

    def ironed_virtual_value(self, v):
        return self._step(self._phibar, v)

    def ironing_intervals(self) -> tuple[Interval, ...]:
        """Pooled blocks ``(first atom, last atom, level)`` of two or more atoms (closed, on atoms)."""
        out = []
        k, n = 0, len(self.values)
        while k < n:
            j = k
            while j + 1 < n and self._phibar[j + 1] == self._phibar[k]:
                j += 1
            if j > k:
                out.append((self.values[k], self.values[j], self._phibar[k]))
            k = j + 1
        return tuple(out)

    def to_config(self):
        return {"dist": self.name, "values": list(self.values), "probs": list(self.probs)}


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted pool-adjacent-violators: the nondecreasing fit of y with weights w (L2)."""
    blocks: list[list[float]] = []  # [weight, weighted sum, count]
    for yk, wk in zip(y.tolist(), w.tolist()):
        blocks.append([wk, wk * yk, 1])
        while len(blocks) >= 2 and blocks[-2][1] / blocks[-2][0] > blocks[-1][1] / blocks[-1][0]:
            wb, sb, nb = blocks.pop()
            blocks[-1][0] += wb
            blocks[-1][1] += sb
            blocks[-1][2] += nb
    out = []
    for wb, sb, nb in blocks:
        out += [sb / wb] * nb
    return np.asarray(out, np.float64)


PRIORS: dict[str, type[Prior]] = {
    cls.name: cls for cls in (Uniform, PowerLaw, TruncatedExponential, UniformMixture, Discrete)
}


def priors_from_list(value: Any, where: str, what: str) -> list[Prior]:
    """A non-empty list of prior tables → priors; ``what`` says what each entry is for."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of tables, one per {what}")
    return [prior_from_config(p, f"{where}.{k}") for k, p in enumerate(value)]


def prior_from_config(cfg: Any, where: str = "prior") -> Prior:
    """Build a prior from a config table such as ``{dist = "uniform", low = 0, high = 1}``."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where} must be a table like {{ dist = \"uniform\", low = 0.0, high = 1.0 }}")
    cfg = dict(cfg)
    dist = cfg.pop("dist", None)
    if dist is None:
        raise ConfigError(f"{where} has no 'dist'; choose one of: {', '.join(PRIORS)}")
    if not isinstance(dist, str) or dist not in PRIORS:
        raise ConfigError(f"{where}: unknown distribution {dist!r}; choose one of: {', '.join(PRIORS)}")
    cls = PRIORS[dist]
    try:
        return cls(**cfg)
    except TypeError as e:
        raise ConfigError(f"{where}: bad keys for {dist!r} prior ({e}); expected: {cls.summary}") from None
    except (ConfigError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
