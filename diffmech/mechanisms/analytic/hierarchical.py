"""Hierarchical mechanisms (Border 1991; Deb and Pai, "Symmetric auctions", Section 4).

Index functions. Each bidder i has a nondecreasing index function I_i on her support
[low_i, high_i]: :class:`AffineIndex` I(v) = scale·v + shift (scale ≥ 0; the Vickrey index is
scale 1, shift 0, a flat subsidy v + s, a percentage subsidy s·v, a constant index scale 0) and
:class:`VirtualValueIndex` I(v) = φ̄(v), the ironed virtual value of the bidder's prior (Myerson's
optimal auction). Both evaluate in JAX (``__call__``, for the ex post mechanism) and in float64
numpy (``np_eval``, for the interim quantities).

Allocation (paper, "Hierarchical Allocations"):

    a_i(v) = 1{I_i(v_i) ≥ max(max_{j≠i} I_j(v_j), 0)} / #{j : I_j(v_j) = I_i(v_i)},            (H1)

the highest index wins if it is ≥ 0 (note ≥, unlike Myerson's > 0), ties split equally; ties are
an exact floating-point equality after the indices are computed (they have positive probability
on flats of I_i and with discrete priors).

Ex post payments (payment identity, the lowest type pays 0):

    p_i(v) = v_i a_i(v) − ∫_{low_i}^{v_i} a_i(z, v_−i) dz.                                      (H2)

This is Myerson's (M5) (:mod:`~diffmech.mechanisms.analytic.myerson`) with I_i in place of φ̄_i
and the ≥ 0 rule: with m = max(0, max_{j≠i} I_j), k = #{j ≠ i : I_j = m} and s = 1/(k + 1)
(also at m = 0: a bidder tied at index 0 with k others gets 1/(k + 1)), bidder i pays
s·z1 when tied and (1 − s)·z2 + s·z1 when she wins alone, with the thresholds
z1 = inf{z : I_i(z) ≥ m}, z2 = sup{z : I_i(z) ≤ m} found by the bisection shared with Myerson
(:func:`~diffmech.mechanisms.analytic.myerson.level_thresholds`). Reports outside a bidder's
support are clipped to it. DSIC and ex post IR hold by construction.

Interim quantities (float64 numpy; the paper's eqs. (Bid Space), (*) and (Payoff Equivalence)).
The index turns bidder j's prior F_j into a bid distribution G_j(b) = P(I_j(v_j) ≤ b) on the bid
space B_j ⊂ [I_j(low_j), I_j(high_j)], with G_j(b−) = P(I_j(v_j) < b); for a continuous prior

    G_j(b) = F_j(sup{z : I_j(z) ≤ b}),   G_j(b−) = F_j(inf{z : I_j(z) ≥ b}),                    (H3)

(generalised inverses by vectorised numpy bisection, 64 halvings), for a discrete prior a sum of
atom masses. G_j has an atom wherever I_j is flat on a set of positive prior mass. The interim
allocation of a bid b uses 1/(k + 1) = ∫_0^1 t^k dt: with independent tie indicators,

    A_i(b) = 1{b ≥ 0} ∫_0^1 Π_{j≠i} (G_j(b−) + t·(G_j(b) − G_j(b−))) dt,                        (H4)

a polynomial of degree n − 1 in t, integrated exactly by n-point Gauss–Legendre; then
a_i(v) = A_i(I_i(v)). Interim payments follow from payoff equivalence (the lowest type pays 0),

    p_i(v) = v a_i(v) − ∫_{low_i}^{v} a_i(z) dz,                                                 (H5)

and revenue is Σ_i E p_i(v_i), which for a continuous prior is, by Fubini,

    E p_i = ∫_{low_i}^{high_i} a_i(z)·(z f_i(z) − (1 − F_i(z))) dz                               (H6)

(for a discrete prior the finite sum Σ_k P(v_i = x_k) p_i(x_k)).

Quadrature method. a_i(z) = A_i(I_i(z)) is smooth between the points where (i) I_i crosses a level
at which some A_i is not smooth — 0 (the reserve), the ends I_j(low_j), I_j(high_j) of another
bidder's bid space, and I_j at (both sides of) the kinks, flat ends, density breakpoints and atoms
of another bidder (where G_j has a kink or an atom) — the crossings being
z1 = inf{I_i ≥ c} and z2 = sup{I_i ≤ c} of each level c; or (ii) bidder i's own index or prior is
not smooth (flat ends of I_i, density breakpoints, atoms). The integrals (H5) and (H6) are split at
all these points and each piece gets ``n_quad``-point Gauss–Legendre (16 by default: exact for
piecewise polynomials of degree ≤ 31, e.g. uniform priors with affine or virtual-value indices and
up to 20 bidders; otherwise the error of a 16-point rule on a smooth piece). (H5) for a batch of
values adds the cumulative integral up to the last split point below v and a Gauss rule on the
rest. Everything runs in float64 regardless of the ambient ``jax_enable_x64`` setting.
"""

from __future__ import annotations

import abc
import math
import numbers
from typing import Any, ClassVar, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..._compat import enable_x64
from ...errors import ConfigError
from ...outcome import Outcome
from ...priors import Prior
from ..base import Mechanism, check_options, float_dtype, require_single_item
from .myerson import index_auction, level_thresholds
from .public_goods import gauss_pieces

__all__ = ["Index", "AffineIndex", "VirtualValueIndex", "Hierarchical", "index_from_config"]

#: halvings of the numpy bisection: the bracket (high − low)/2^64 is below float64 resolution
N_BISECT = 64


# ----------------------------------------------------------------------------------- indices
class Index(eqx.Module):
    """A nondecreasing index function I: [low, high] → ℝ of one bidder.

    ``__call__`` evaluates in JAX in the input's dtype; ``np_eval`` in float64 numpy. ``kinks``
    lists the values inside the support where I may have a kink, a jump or the end of a flat (the
    quadrature of the interim quantities splits there); ``key`` identifies equal functions.
    """

    @abc.abstractmethod
    def __call__(self, v: Float[Array, "..."]) -> Float[Array, "..."]: ...

    @abc.abstractmethod
    def np_eval(self, v: np.ndarray) -> np.ndarray: ...

    def kinks(self) -> tuple[float, ...]:
        return ()

    @abc.abstractmethod
    def key(self) -> tuple: ...


class AffineIndex(Index):
    """I(v) = scale·v + shift with scale ≥ 0 (constant, equal to ``shift``, when scale = 0).

    Vickrey: (1, 0); flat subsidy: (1, s); percentage subsidy: (s, 0); Example 3 of the paper:
    I1 = v, I2 = v − 1; Example 2: equal constants.
    """

    scale: float
    shift: float

    def __init__(self, scale: float = 1.0, shift: float = 0.0):
        scale, shift = _finite("scale", scale), _finite("shift", shift)
        if scale < 0:
            raise ConfigError(f"affine index needs scale >= 0 (a nondecreasing index), got scale={scale}")
        self.scale, self.shift = scale, shift

    def __call__(self, v):
        v = jnp.asarray(v)
        if self.scale == 0.0:
            return jnp.full(v.shape, self.shift, dtype=float_dtype(v))
        return self.scale * v + jnp.asarray(self.shift, float_dtype(v))

    def np_eval(self, v):
        v = np.asarray(v, np.float64)
        if self.scale == 0.0:
            return np.full(v.shape, self.shift, np.float64)
        return self.scale * v + self.shift

    def key(self):
        return ("affine", self.scale, self.shift)


class VirtualValueIndex(Index):
    """I(v) = φ̄(v), the ironed virtual value of ``prior`` (Myerson 1981; :mod:`diffmech.priors`).

    Flat on each ironing interval (kinks at their ends; for a discrete prior a step function that
    is flat between atoms).
    """

    prior: Prior
    _kinks: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, prior: Prior):
        self.prior = prior
        pts = [float(x) for a, b, _ in prior.ironing_intervals() for x in (a, b)]
        self._kinks = tuple(sorted(set(pts)))

    def __call__(self, v):
        v = jnp.asarray(v)
        return jnp.asarray(self.prior.ironed_virtual_value(v), dtype=float_dtype(v))

    def np_eval(self, v):
        return _np_prior_call(self.prior, "ironed_virtual_value", v)

    def kinks(self):
        return self._kinks

    def key(self):
        return ("myerson", type(self.prior).__qualname__, repr(self.prior.to_config()))


#: jit-compiled float64 prior methods, keyed by (prior class, prior config, method name)
_JITTED: dict[tuple, Any] = {}


def _np_prior_call(prior: Prior, name: str, v) -> np.ndarray:
    """``prior.<name>(v)`` in float64 numpy. One jit-compiled function per prior and method, with
    inputs padded to a power of two (at least 256) so that only a few shapes are ever compiled
    (eager evaluation would compile every primitive for every new input size)."""
    v = np.asarray(v, np.float64)
    flat = v.ravel()
    size = max(256, 1 << max(flat.size - 1, 0).bit_length())
    padded = np.full(size, float(prior.low))
    padded[: flat.size] = flat
    key = (type(prior).__qualname__, repr(prior.to_config()), name)
    fn = _JITTED.get(key)
    if fn is None:
        fn = _JITTED[key] = jax.jit(getattr(prior, name))
    with enable_x64():
        out = np.asarray(fn(jnp.asarray(padded, jnp.float64)), np.float64)
    return out[: flat.size].reshape(v.shape)


def _finite(name: str, x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
        raise ConfigError(f"affine index: '{name}' must be a finite number, got {x!r}")
    return float(x)


INDEX_KINDS = ("affine", "vickrey", "myerson")


def index_from_config(spec: Any, prior: Prior, where: str = "mechanism.index") -> Index:
    """``"vickrey"``, ``"myerson"`` or a table ``{kind = "affine", scale, shift}`` /
    ``{kind = "vickrey"}`` / ``{kind = "myerson"}`` → an :class:`Index` for a bidder with ``prior``."""
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where} must be \"vickrey\", \"myerson\" or a table like {{ kind = \"affine\", scale = 1.0, shift = 0.0 }}, got {spec!r}"
        )
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in INDEX_KINDS:
        raise ConfigError(f"{where}: unknown index kind {kind!r}; choose one of: {', '.join(INDEX_KINDS)}")
    valid = ("scale", "shift") if kind == "affine" else ()
    unknown = sorted(set(spec) - set(valid))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} for index kind {kind!r}; valid: {', '.join(valid) or 'none'}"
        )
    try:
        if kind == "affine":
            return AffineIndex(spec.get("scale", 1.0), spec.get("shift", 0.0))
        if kind == "vickrey":
            return AffineIndex(1.0, 0.0)
        return VirtualValueIndex(prior)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


# ------------------------------------------------------------------------------- mechanism
class Hierarchical(Mechanism):
    """The hierarchical mechanism (I, p^h) of Deb and Pai, Section 4: eqs. (H1)–(H6).

    Attributes:
        priors: one bounded :class:`~diffmech.priors.Prior` per bidder.
        indices: one nondecreasing :class:`Index` per bidder.
        n_quad: Gauss–Legendre nodes per piece for the interim integrals (H5), (H6).
    """

    priors: tuple[Prior, ...]
    indices: tuple[Index, ...]
    n_quad: int = eqx.field(static=True)

    kind: ClassVar[str] = "hierarchical"
    summary: ClassVar[str] = (
        "highest index >= 0 wins, ties split, threshold payments (option index: vickrey | myerson | per-bidder tables)"
    )
    trainable: ClassVar[bool] = False
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    def __init__(self, priors: Sequence[Prior], indices: Sequence[Index], n_quad: int = 16):
        priors, indices = tuple(priors), tuple(indices)
        if not priors:
            raise ConfigError("hierarchical needs at least one bidder prior")
        if len(indices) != len(priors):
            raise ConfigError(f"hierarchical needs one index per bidder: got {len(indices)} for {len(priors)} bidders")
        for i, (p, idx) in enumerate(zip(priors, indices)):
            if not (np.isfinite(p.low) and np.isfinite(p.high) and p.high >= p.low):
                raise ConfigError(f"hierarchical needs bounded supports; bidder {i} has [{p.low}, {p.high}]")
            if not isinstance(idx, Index):
                raise ConfigError(f"hierarchical: index {i} must be an Index (AffineIndex or VirtualValueIndex), got {idx!r}")
        if not (isinstance(n_quad, int) and n_quad >= 1):
            raise ConfigError(f"hierarchical needs n_quad >= 1, got {n_quad!r}")
        self.priors, self.indices, self.n_quad = priors, indices, n_quad

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "Hierarchical":
        check_options(cls.kind, options, ("index",))
        require_single_item(setting, cls.kind)
        priors = getattr(setting, "priors", None)
        if getattr(setting, "kind", "") != "single_item" or priors is None:
            raise ConfigError(
                f"mechanism 'hierarchical' needs a single_item setting (one prior per bidder), not {getattr(setting, 'kind', type(setting).__name__)!r}"
            )
        priors = tuple(priors)
        if "index" not in options:
            raise ConfigError(
                "mechanism 'hierarchical' needs index = \"vickrey\", \"myerson\" or a list of one table per bidder "
                "like { kind = \"affine\", scale = 1.0, shift = 0.0 }"
            )
        spec = options["index"]
        if isinstance(spec, str):
            specs = [spec] * len(priors)
        elif isinstance(spec, list):
            if len(spec) != len(priors):
                raise ConfigError(
                    f"mechanism.index lists {len(spec)} indices for {len(priors)} bidders; give one table per bidder"
                )
            specs = spec
        else:
            raise ConfigError(
                f"mechanism.index must be \"vickrey\", \"myerson\" or a list of one table per bidder, got {spec!r}"
            )
        return cls(priors, [index_from_config(s, p, f"mechanism.index.{i}" if isinstance(spec, list) else "mechanism.index")
                            for i, (s, p) in enumerate(zip(specs, priors))])

    @property
    def n_agents(self) -> int:
        return len(self.priors)

    # ------------------------------------------------------------------ ex post (JAX)
    def _bounds(self, dtype):
        lo = jnp.asarray([p.low for p in self.priors], dtype=dtype)
        hi = jnp.asarray([p.high for p in self.priors], dtype=dtype)
        return lo, hi

    def index_values(self, v: Float[Array, "batch agents"]) -> Float[Array, "batch agents"]:
        """I_i(v[:, i]) for every bidder, in v's dtype (one call per distinct index function)."""
        v = jnp.asarray(v)
        dtype = float_dtype(v)
        groups: dict[tuple, list[int]] = {}
        for i, idx in enumerate(self.indices):
            groups.setdefault(idx.key(), []).append(i)
        if len(groups) == 1:
            return jnp.asarray(self.indices[0](v.astype(dtype)), dtype=dtype)
        cols: list[Any] = [None] * len(self.indices)
        for members in groups.values():
            vals = jnp.asarray(self.indices[members[0]](v[:, np.asarray(members)].astype(dtype)), dtype=dtype)
            for c, i in enumerate(members):
                cols[i] = vals[:, c]
        return jnp.stack(cols, axis=1)

    def thresholds(self, m: Float[Array, "batch agents"]):
        """(z1, z2) = (inf{z : I_i(z) ≥ m}, sup{z : I_i(z) ≤ m}) per bidder, by bisection."""
        lo, hi = self._bounds(m.dtype)
        return level_thresholds(self.index_values, m, lo, hi)

    def __call__(self, reports: Float[Array, "batch agents 1"]) -> Outcome:
        return index_auction(self, reports, self.index_values, sell_at_zero=True)  # (H1), (H2)

    # ------------------------------------------------------------------ interim (float64 numpy)
    def _np_index(self, i: int, v) -> np.ndarray:
        p = self.priors[i]
        return self.indices[i].np_eval(np.clip(np.asarray(v, np.float64), p.low, p.high))

    def _np_thresholds(self, i: int, c) -> tuple[np.ndarray, np.ndarray]:
        """(z1, z2) = (inf{z ∈ [lo, hi] : I_i(z) ≥ c}, sup{z : I_i(z) ≤ c}) by numpy bisection;
        z1 = high if I_i < c everywhere, z2 = low if I_i > c everywhere."""
        c = np.asarray(c, np.float64)
        lo, hi = float(self.priors[i].low), float(self.priors[i].high)
        a1, b1 = np.full(c.shape, lo), np.full(c.shape, hi)
        a2, b2 = a1.copy(), b1.copy()
        size = c.size
        for _ in range(N_BISECT):
            mid1 = a1 + 0.5 * (b1 - a1)
            mid2 = a2 + 0.5 * (b2 - a2)
            vals = self._np_index(i, np.concatenate([mid1.ravel(), mid2.ravel()]))
            ge = vals[:size].reshape(c.shape) >= c
            a1, b1 = np.where(ge, a1, mid1), np.where(ge, mid1, b1)
            le = vals[size:].reshape(c.shape) <= c
            a2, b2 = np.where(le, mid2, a2), np.where(le, b2, mid2)
        i_lo, i_hi = self._np_index(i, np.asarray([lo, hi]))
        z1 = np.where(i_lo >= c, lo, b1)
        z2 = np.where(i_hi <= c, hi, a2)
        return z1, z2

    def _np_cdf(self, i: int, z) -> np.ndarray:
        return np.clip(_np_prior_call(self.priors[i], "cdf", z), 0.0, 1.0)

    def _np_pdf(self, i: int, z) -> np.ndarray:
        return _np_prior_call(self.priors[i], "pdf", z)

    def _atoms(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(atoms, masses) of a discrete prior, None for a continuous one."""
        atoms = self.priors[i].atoms()
        if atoms is None:
            return None
        atoms = np.sort(np.asarray(atoms, np.float64))
        return atoms, np.diff(np.concatenate([[0.0], self._np_cdf(i, atoms)]))

    def bid_space(self, i: int) -> tuple[float, float]:
        """B_i's hull [I_i(low_i), I_i(high_i)] (the paper's (Bid Space))."""
        lo, hi = self._np_index(i, np.asarray([self.priors[i].low, self.priors[i].high]))
        return float(lo), float(hi)

    def _bid_cdf_pair(self, i: int, b) -> tuple[np.ndarray, np.ndarray]:
        """(G_i(b−), G_i(b)) of eq. (H3), from one bisection (or the atoms of a discrete prior)."""
        b = np.asarray(b, np.float64)
        disc = self._atoms(i)
        if disc is not None:
            atoms, masses = disc
            vals = self._np_index(i, atoms)
            below = (vals < b[..., None]).astype(np.float64) @ masses
            upto = (vals <= b[..., None]).astype(np.float64) @ masses
            return np.clip(below, 0.0, 1.0), np.clip(upto, 0.0, 1.0)
        z1, z2 = self._np_thresholds(i, b)
        return self._np_cdf(i, z1), self._np_cdf(i, z2)

    def bid_cdf(self, i: int, b, strict: bool = False) -> np.ndarray:
        """G_i(b) = P(I_i(v_i) ≤ b), or G_i(b−) = P(I_i(v_i) < b) if ``strict``, eq. (H3)."""
        below, upto = self._bid_cdf_pair(i, b)
        return below if strict else upto

    def inverse_index(self, i: int, b) -> np.ndarray:
        """The smallest value with index b, inf{v ∈ [low_i, high_i] : I_i(v) ≥ b}, for b in B_i."""
        return self._np_thresholds(i, b)[0]

    def allocation_at_bid(self, i: int, b) -> np.ndarray:
        """A_i(b) of eq. (H4): bidder i's interim allocation when her index is b."""
        b = np.asarray(b, np.float64)
        n = len(self.priors)
        t, w = np.polynomial.legendre.leggauss(n)
        t, w = (t + 1.0) / 2.0, w / 2.0  # n-point rule on [0, 1]: exact for degree ≤ 2n − 1
        prod = np.ones(t.shape + b.shape)
        for j in range(n):
            if j == i:
                continue
            below, upto = self._bid_cdf_pair(j, b)
            atom = upto - below
            prod = prod * (below + t.reshape(t.shape + (1,) * b.ndim) * atom)
        return np.where(b >= 0.0, np.tensordot(w, prod, axes=1), 0.0)

    def interim_allocation(self, i: int, v) -> np.ndarray:
        """a_i(v) = A_i(I_i(v)) (values clipped to the support, as the ex post mechanism does)."""
        return self.allocation_at_bid(i, self._np_index(i, v))

    def _value_breaks(self, i: int) -> np.ndarray:
        """low_i, high_i and the values where I_i or F_i may be non-smooth (kinks, flat ends,
        density breakpoints, atoms)."""
        p = self.priors[i]
        pts = [p.low, p.high, *self.indices[i].kinks(), *p._breakpoints()]
        atoms = p.atoms()
        if atoms is not None:
            pts += list(np.asarray(atoms, np.float64))
        pts = np.asarray(pts, np.float64)
        return np.unique(np.clip(pts, p.low, p.high))

    def _levels(self, j: int) -> np.ndarray:
        """Bid levels where G_j may have a kink or an atom: I_j at (both sides of) its breaks."""
        x = self._value_breaks(j)
        left = np.nextafter(x, -np.inf)
        return np.unique(np.concatenate([self._np_index(j, x), self._np_index(j, left[x > self.priors[j].low])]))

    def _cuts(self, i: int) -> np.ndarray:
        """Split points of the quadrature of a_i (module docstring, "Quadrature method")."""
        levels = [np.zeros(1)] + [self._levels(j) for j in range(len(self.priors)) if j != i]
        levels = np.unique(np.concatenate(levels))
        levels = levels[np.isfinite(levels)]
        z1, z2 = self._np_thresholds(i, levels)
        p = self.priors[i]
        return np.unique(np.clip(np.concatenate([self._value_breaks(i), z1, z2]), p.low, p.high))

    def _cumulative(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Split points c_0 < … < c_P and ∫_{low_i}^{c_k} a_i(z) dz at each."""
        cuts = self._cuts(i)
        if len(cuts) < 2:
            return cuts, np.zeros(1)
        nodes, wts = gauss_pieces(cuts, self.n_quad)
        pieces = (wts * self.interim_allocation(i, nodes)).reshape(len(cuts) - 1, -1).sum(axis=1)
        return cuts, np.concatenate([[0.0], np.cumsum(pieces)])

    def interim_payment(self, i: int, v) -> np.ndarray:
        """p_i(v) = v a_i(v) − ∫_{low_i}^{v} a_i(z) dz, eq. (H5), by piecewise Gauss–Legendre."""
        p = self.priors[i]
        v = np.clip(np.asarray(v, np.float64), p.low, p.high)
        cuts, cum = self._cumulative(i)
        if len(cuts) < 2:  # a point-mass support: the lowest type pays 0
            return np.zeros(v.shape)
        flat = v.ravel()
        k = np.clip(np.searchsorted(cuts, flat, side="right") - 1, 0, len(cuts) - 2)
        nodes, wts = gauss_pieces(np.stack([cuts[k], flat], axis=-1), self.n_quad)
        partial = (wts * self.interim_allocation(i, nodes)).sum(axis=-1)
        pay = flat * self.interim_allocation(i, flat) - (cum[k] + partial)
        return pay.reshape(v.shape)

    def payment_at_bid(self, i: int, b) -> np.ndarray:
        """p_i^h(I_i^{-1}(b)) for b in B_i (constant on flats of I_i, where a_i is constant)."""
        return self.interim_payment(i, self.inverse_index(i, b))

    def expected_payment(self, i: int) -> float:
        """E p_i(v_i): eq. (H6) for a continuous prior, the sum over atoms for a discrete one."""
        disc = self._atoms(i)
        if disc is not None:
            atoms, masses = disc
            return float(masses @ self.interim_payment(i, atoms))
        cuts = self._cuts(i)
        if len(cuts) < 2:
            return 0.0
        nodes, wts = gauss_pieces(cuts, self.n_quad)
        weight = nodes * self._np_pdf(i, nodes) - (1.0 - self._np_cdf(i, nodes))
        return float(np.sum(wts * self.interim_allocation(i, nodes) * weight))

    def revenue(self) -> float:
        """Σ_i E p_i(v_i), eq. (H6), in float64."""
        return float(sum(self.expected_payment(i) for i in range(len(self.priors))))
