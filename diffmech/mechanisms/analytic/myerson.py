"""Myerson's (1981) optimal auction for one item and independent, possibly asymmetric priors.

Allocation rule (Myerson 1981, Lemma 3 and Theorem 3, with ironing in §6). With φ̄_i the ironed
virtual value of bidder i's prior (see :mod:`diffmech.priors`),

    a_i(b) = 1{φ̄_i(b_i) = M(b)} · 1{M(b) > 0} / #{j : φ̄_j(b_j) = M(b)},   M(b) = max_j φ̄_j(b_j)   (M1)

i.e. the item goes to the bidder(s) with the highest ironed virtual value if that value is strictly
positive (the reserve of bidder i is where φ̄_i crosses 0) and ties are split evenly. Ties are found
with an exact floating-point equality *after* φ̄ has been computed: they have positive probability
on an ironed flat and with discrete priors, so they matter.

Payment rule (payment identity, Myerson 1981 eq. (4.4) with the lowest type paying 0):

    p_i(b) = b_i a_i(b) − ∫_{low_i}^{b_i} a_i(z, b_−i) dz.                                (M2)

Closed form of (M2). Fix b_−i and let m = max(0, max_{j≠i} φ̄_j(b_j)), k = #{j ≠ i : φ̄_j(b_j) = m}
and s = 1/(k+1) if m > 0, s = 0 if m = 0. Because φ̄_i is nondecreasing, (M1) as a function of
bidder i's own report z is the step function

    a_i(z) = 0 if φ̄_i(z) < m,   s if φ̄_i(z) = m,   1 if φ̄_i(z) > m.                          (M3)

(For m = 0 the item is never sold at φ̄ = 0, hence s = 0 there: allocation needs φ̄_i > 0, even if
other bidders also sit at φ̄ = 0.) With the thresholds

    z1 = inf{z ∈ [low_i, high_i] : φ̄_i(z) ≥ m},   z2 = sup{z ∈ [low_i, high_i] : φ̄_i(z) ≤ m}    (M4)

(z1 ≤ z2, and the set {φ̄_i = m} is the interval between them up to its end points, which do not
matter for the integral) one has ∫_{low_i}^{b} a_i(z) dz = s·(clip(b, z1, z2) − z1) + (b − z2)⁺, so
(M2) becomes

    p_i(b) = 0                       if φ̄_i(b_i) < m (or φ̄_i(b_i) = m = 0),
    p_i(b) = s·z1                    if φ̄_i(b_i) = m > 0   (tied; a_i = s),
    p_i(b) = (1 − s)·z2 + s·z1       if φ̄_i(b_i) > m       (sole winner; a_i = 1).          (M5)

With no tie possible at the threshold (s = 0 or z1 = z2) the winner pays z2, the smallest winning
bid; on an ironed flat tied with k others she pays the average of the flat's ends weighted by the
share. The thresholds (M4) are found by bisection on [low_i, high_i] (vectorised with
``lax.fori_loop``), using only the nondecreasing ``ironed_virtual_value``; after ``nmant + 11``
halvings (63 for float64, 34 for float32) the bracket is below the dtype's resolution. The payments
use min(z, b_i) so that p_i ≤ b_i a_i (IR) holds exactly despite bisection round-off.

Reports outside bidder i's support are first projected onto [low_i, high_i] (φ̄ is only defined
there); this keeps DSIC and IR for every true type in the support.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ...errors import ConfigError
from ...outcome import Outcome
from ...priors import Prior
from ..base import Mechanism, float_dtype, require_single_item


class Myerson(Mechanism):
    """Revenue-optimal single-item auction (Myerson 1981) for independent priors, eqs. (M1)–(M5).

    Attributes:
        priors: one :class:`~diffmech.priors.Prior` per bidder (bounded supports).
    """

    priors: tuple[Prior, ...]

    kind: ClassVar[str] = "myerson"
    summary: ClassVar[str] = "optimal auction: highest ironed virtual value > 0 wins, threshold payments"
    trainable: ClassVar[bool] = False
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    def __init__(self, priors):
        priors = tuple(priors)
        if not priors:
            raise ConfigError("myerson needs at least one bidder prior")
        for i, p in enumerate(priors):
            if not (np.isfinite(p.low) and np.isfinite(p.high) and p.high >= p.low):
                raise ConfigError(
                    f"myerson needs bounded supports; bidder {i} has [{p.low}, {p.high}]"
                )
        self.priors = priors

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "Myerson":
        if options:
            raise ConfigError(
                f"unknown option(s) for mechanism 'myerson': {', '.join(sorted(options))}; "
                "it takes none (the priors come from the setting)"
            )
        require_single_item(setting, cls.kind)
        priors = getattr(setting, "priors", None)
        if priors is None:
            raise ConfigError("mechanism 'myerson' needs a single_item setting (one prior per bidder)")
        return cls(priors)

    # ------------------------------------------------------------------ helpers
    def ironed_virtual_values(self, z: Float[Array, "batch agents"]) -> Float[Array, "batch agents"]:
        """φ̄_i(z[:, i]) for every bidder, in z's dtype (one call per distinct prior)."""
        n = len(self.priors)
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(self.priors):
            groups.setdefault(repr(p.to_config()), []).append(i)
        if len(groups) == 1:
            return jnp.asarray(self.priors[0].ironed_virtual_value(z), dtype=z.dtype)
        cols: list[Any] = [None] * n
        for idx in groups.values():
            vals = jnp.asarray(self.priors[idx[0]].ironed_virtual_value(z[:, np.asarray(idx)]), dtype=z.dtype)
            for c, i in enumerate(idx):
                cols[i] = vals[:, c]
        return jnp.stack(cols, axis=1)

    def _bounds(self, dtype):
        lo = jnp.asarray([p.low for p in self.priors], dtype=dtype)
        hi = jnp.asarray([p.high for p in self.priors], dtype=dtype)
        return lo, hi

    def thresholds(self, m: Float[Array, "batch agents"]):
        """(z1, z2) of eq. (M4) for every bidder i and level m[:, i], by bisection."""
        lo, hi = self._bounds(m.dtype)
        return level_thresholds(self.ironed_virtual_values, m, lo, hi)

    # ------------------------------------------------------------------ mechanism
    def __call__(self, reports: Float[Array, "batch agents 1"]) -> Outcome:
        return index_auction(self, reports, self.ironed_virtual_values, sell_at_zero=False)  # (M1)-(M5)


# ---------------------------------------------------------------------------- shared with others
def index_auction(mech, reports: Float[Array, "batch agents 1"], index, *, sell_at_zero: bool) -> Outcome:
    """The outcome of an index auction (Myerson, hierarchical) with threshold payments.

    Reports are clipped to each bidder's support [low_i, high_i] (``mech._bounds``), mapped by the
    nondecreasing ``index`` (batch, agents) → (batch, agents), and allocated and charged by
    :func:`threshold_outcome` with the thresholds ``mech.thresholds``.
    """
    reports = jnp.asarray(reports)
    dtype = float_dtype(reports)
    n = len(mech.priors)
    if reports.ndim != 3 or reports.shape[1] != n or reports.shape[2] != 1:
        raise ValueError(f"{mech.kind} expects reports of shape (batch, {n}, 1), got {reports.shape}")
    lo, hi = mech._bounds(dtype)
    b = jnp.clip(reports[..., 0].astype(dtype), lo, hi)
    alloc, pay = threshold_outcome(index(b), b, mech.thresholds, sell_at_zero=sell_at_zero)
    return Outcome(alloc=alloc[..., None], payments=pay)


def level_thresholds(index, m: Float[Array, "batch agents"], lo, hi):
    """(z1, z2) of eq. (M4) for a nondecreasing index map, by vectorised bisection.

    ``index`` maps reports z (shape (batch', agents), column i = bidder i) to index values of the
    same shape (Myerson: φ̄_i; a hierarchical mechanism: I_i); ``lo``, ``hi`` (agents,) are the
    support ends. For every bidder i and level m[:, i],

        z1 = inf{z ∈ [lo_i, hi_i] : index_i(z) ≥ m},   z2 = sup{z ∈ [lo_i, hi_i] : index_i(z) ≤ m},

    with z1 = hi_i if the index is below m everywhere and z2 = lo_i if it is above m everywhere.
    ``nmant + 11`` halvings (63 for float64, 34 for float32) take the bracket below the dtype's
    resolution; both searches share one ``index`` call per halving.
    """
    dtype = m.dtype
    lo = jnp.broadcast_to(lo, m.shape)
    hi = jnp.broadcast_to(hi, m.shape)
    n_iter = int(jnp.finfo(dtype).nmant) + 11
    half = jnp.asarray(0.5, dtype)

    def body(_, state):
        a1, b1, a2, b2 = state
        mid1 = a1 + half * (b1 - a1)
        mid2 = a2 + half * (b2 - a2)
        phi = index(jnp.concatenate([mid1, mid2], axis=0))
        phi1, phi2 = phi[: m.shape[0]], phi[m.shape[0]:]
        ge = phi1 >= m  # z1 = inf{index ≥ m}: keep [a1, b1] with index(a1) < m ≤ index(b1)
        a1, b1 = jnp.where(ge, a1, mid1), jnp.where(ge, mid1, b1)
        le = phi2 <= m  # z2 = sup{index ≤ m}: keep [a2, b2] with index(a2) ≤ m < index(b2)
        a2, b2 = jnp.where(le, mid2, a2), jnp.where(le, b2, mid2)
        return a1, b1, a2, b2

    a1, b1, a2, b2 = jax.lax.fori_loop(0, n_iter, body, (lo, hi, lo, hi))
    ends = index(jnp.concatenate([lo, hi], axis=0))
    phi_lo, phi_hi = ends[: m.shape[0]], ends[m.shape[0]:]
    z1 = jnp.where(phi_lo >= m, lo, b1)  # index ≥ m everywhere → z1 = low; nowhere → b1 stayed high
    z2 = jnp.where(phi_hi <= m, hi, a2)  # index ≤ m everywhere → z2 = high; nowhere → a2 stayed low
    return z1, z2


def threshold_outcome(
    phi: Float[Array, "batch agents"],
    b: Float[Array, "batch agents"],
    thresholds,
    *,
    sell_at_zero: bool,
) -> tuple[Float[Array, "batch agents"], Float[Array, "batch agents"]]:
    """Allocation (M1)/(M3) and threshold payments (M5) from index values ``phi`` at reports ``b``.

    m_i = max(0, max_{j≠i} phi_j), k_i = #{j ≠ i : phi_j = m_i}. With ``sell_at_zero=False``
    (Myerson, rule (M1): the item needs phi > 0) the tie share is s_i = 1/(k_i + 1) if m_i > 0 and
    0 if m_i = 0; with ``sell_at_zero=True`` (hierarchical allocations: the item goes to the highest
    phi if it is ≥ 0) s_i = 1/(k_i + 1) always, so at m_i = 0 a bidder tied at 0 with k_i others
    (k_i = 0 when all others are negative) gets 1/(k_i + 1). Then a_i = 1 if phi_i > m_i, s_i if
    phi_i = m_i (and the level is sold), 0 otherwise, and p_i is (M5) with the thresholds
    ``thresholds(m) = (z1, z2)`` of (M4), capped at b_i so that p_i ≤ b_i a_i exactly.
    """
    dtype = phi.dtype
    n = phi.shape[1]
    eye = jnp.eye(n, dtype=bool)
    others = jnp.where(eye[None], -jnp.inf, phi[:, None, :])  # (batch, i, j)
    m = jnp.maximum(others.max(axis=-1), jnp.zeros((), dtype))
    k = jnp.sum(others == m[..., None], axis=-1).astype(dtype)
    if sell_at_zero:
        sold = jnp.ones(m.shape, dtype=bool)
        s = (1.0 / (k + 1.0)).astype(dtype)
    else:
        sold = m > 0
        s = jnp.where(sold, 1.0 / (k + 1.0), 0.0).astype(dtype)

    wins = phi > m
    ties = (phi == m) & sold
    alloc = jnp.where(wins, jnp.ones((), dtype), jnp.where(ties, s, jnp.zeros((), dtype)))  # (M3)

    z1, z2 = thresholds(m)
    z1, z2 = jnp.minimum(z1, b), jnp.minimum(z2, b)
    pay = jnp.where(wins, (1.0 - s) * z2 + s * z1, jnp.where(ties, s * z1, jnp.zeros((), dtype)))  # (M5)
    return alloc, pay
