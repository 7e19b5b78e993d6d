"""Second-price (Vickrey) auctions with an anonymous reserve, VCG, and the best anonymous reserve.

Rule (Vickrey 1961). With bids b and reserve r ≥ 0: the bidders with the highest bid win if that bid
is ≥ r, ties split evenly; a winner's price is

    price_i = max(r, max_{j≠i} b_j),                                                     (S1)

and her (expected) payment is a_i · price_i. This is the threshold payment of the monotone rule
"win iff b_i ≥ max(r, max_{j≠i} b_j)", so it is DSIC and ex post IR.

Expected revenue for independent priors F_i (price ≥ 0, so revenue = ∫_0^∞ P(price > t) dt): for
t < r, P(price > t) = P(sale) = P(v_(1) ≥ r); for t ≥ r, P(price > t) = P(v_(2) > t). Hence

    Rev(r) = r · (1 − Π_i F_i(r⁻)) + ∫_r^H P(v_(2) > t) dt,                              (S2)
    P(v_(2) > t) = 1 − Π_i F_i(t) − Σ_i (1 − F_i(t)) Π_{j≠i} F_j(t),                     (S3)

with H = max_i high_i and F(r⁻) = P(v < r) (differs from F(r) at an atom: a bid equal to the
reserve wins). The integral is split at every prior's low/high and atom, so each piece has a
smooth (for discrete priors: constant) integrand and ``scipy.integrate.quad`` is accurate to
~1e-12. Supports need not start at 0 (the integrand is 1 below the second-lowest ``low``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy import integrate, optimize

from ..._compat import enable_x64
from ...errors import ConfigError
from ...outcome import Outcome
from ...priors import Prior
from ..base import Mechanism, float_dtype, require_single_item


def _parse_reserve(options: dict[str, Any], kind: str) -> float:
    options = dict(options)
    reserve = options.pop("reserve", 0.0)
    if options:
        raise ConfigError(
            f"unknown option(s) for mechanism {kind!r}: {', '.join(sorted(options))}; the only option is 'reserve'"
        )
    if isinstance(reserve, bool) or not isinstance(reserve, (int, float)) or not math.isfinite(reserve) or reserve < 0:
        raise ConfigError(f"mechanism.reserve must be a finite number ≥ 0, got {reserve!r}")
    return float(reserve)


def highest_bidders(reports: Float[Array, "batch agents 1"], reserve: float):
    """Bids (batch, agents) and the allocation that gives the item to the highest bid ≥ reserve,
    ties split evenly: a_i = 1{b_i = max_j b_j ≥ r} / #{j : b_j = max_j b_j}."""
    reports = jnp.asarray(reports)
    dtype = float_dtype(reports)
    b = reports[..., 0].astype(dtype)
    top = b.max(axis=1, keepdims=True)
    winners = (b == top) & (top >= jnp.asarray(reserve, dtype))
    count = jnp.maximum(winners.sum(axis=1, keepdims=True), 1).astype(dtype)
    return b, jnp.where(winners, 1.0 / count, 0.0).astype(dtype)


def _no_options(options: dict[str, Any], kind: str, why: str) -> None:
    if options:
        raise ConfigError(f"unknown option(s) for mechanism {kind!r}: {', '.join(sorted(options))}; it takes none ({why})")


class SecondPrice(Mechanism):
    """Second-price auction with an anonymous reserve, eq. (S1).

    Attributes:
        reserve: anonymous reserve price r ≥ 0 (option ``reserve``, default 0).
    """

    reserve: float = 0.0

    kind: ClassVar[str] = "second_price"
    summary: ClassVar[str] = "second-price (Vickrey) auction with an anonymous reserve (option: reserve)"
    trainable: ClassVar[bool] = False
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "SecondPrice":
        require_single_item(setting, cls.kind)
        return cls(reserve=_parse_reserve(options, cls.kind))

    def __call__(self, reports: Float[Array, "batch agents 1"]) -> Outcome:
        b, alloc = highest_bidders(reports, self.reserve)
        eye = jnp.eye(b.shape[1], dtype=bool)
        competing = jnp.where(eye[None], -jnp.inf, b[:, None, :]).max(axis=-1)  # max_{j≠i} b_j
        price = jnp.maximum(jnp.asarray(self.reserve, b.dtype), competing)
        pay = alloc * price
        return Outcome(alloc=alloc[..., None], payments=pay)


class VCG(SecondPrice):
    """Vickrey–Clarke–Groves mechanism (for multi_item settings see :meth:`from_config`).

    With one item, VCG allocates efficiently (to a highest bidder) and charges the winner the
    externality she imposes, i.e. the highest competing bid: exactly the second-price auction with
    reserve 0 (Clarke 1971; Groves 1973). Takes no options.
    """

    kind: ClassVar[str] = "vcg"
    summary: ClassVar[str] = "VCG (one item: second price; additive items: second price per item; unit demand: over matchings)"

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> Mechanism:
        """One item: this class (second price, no reserve). A ``multi_item`` setting: for additive
        values a second-price auction per item (welfare separates over items); for unit demand VCG
        over all partial matchings — the affine maximiser with unit weights and no boosts
        (:class:`~diffmech.mechanisms.neural.affine_maximizer.MultiItemVCG`)."""
        if getattr(setting, "kind", "") == "multi_item":
            from ..neural.affine_maximizer import multi_item_vcg  # here: that module imports this one

            _no_options(options, cls.kind, "VCG is the affine maximiser with unit weights and no boosts")
            return multi_item_vcg(setting)
        if getattr(setting, "kind", "") == "efficient":  # Ke eq. (1), pivot at the lowest type
            from .ke_generic import EfficientVCG

            return EfficientVCG.from_config(setting, options, key)
        _no_options(options, cls.kind, "for one item VCG is the second-price auction without reserve")
        require_single_item(setting, cls.kind)
        return cls(reserve=0.0)


class BestReserveSecondPrice(SecondPrice):
    """Second-price auction whose anonymous reserve maximises expected revenue (S2) for the priors.

    ``from_config`` computes the reserve with :func:`best_anonymous_reserve` from the setting's
    priors; it takes no options.
    """

    kind: ClassVar[str] = "second_price_best_reserve"
    summary: ClassVar[str] = "second-price auction with the revenue-maximising anonymous reserve"

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "BestReserveSecondPrice":
        _no_options(options, cls.kind, "the reserve is optimised for the setting's priors")
        require_single_item(setting, cls.kind)
        priors = getattr(setting, "priors", None)
        if priors is None:
            raise ConfigError(f"mechanism {cls.kind!r} needs a single_item setting (one prior per bidder)")
        reserve, _ = best_anonymous_reserve(priors)
        return cls(reserve=reserve)


# ---------------------------------------------------------------------- exact expected revenue


class _OrderStats:
    """float64 evaluators of Π F_i(r⁻) and of P(v_(2) > t) (S3) for independent priors."""

    def __init__(self, priors: Sequence[Prior]):
        self.priors = tuple(priors)
        if not self.priors:
            raise ValueError("need at least one prior")
        self.high = max(float(p.high) for p in self.priors)
        atoms = [p.atoms() for p in self.priors]
        self.atoms = [None if a is None else np.sort(np.asarray(a, dtype=np.float64)) for a in atoms]
        pts = [float(p.low) for p in self.priors] + [float(p.high) for p in self.priors]
        for a in self.atoms:
            if a is not None:
                pts.extend(a.tolist())
        self.breaks = np.unique(np.asarray(pts, dtype=np.float64))
        with enable_x64():
            self._cdfs = jax.jit(self._cdfs_impl)
            self._survival2 = jax.jit(self._survival2_impl)

    def _cdfs_impl(self, t):
        return jnp.stack([jnp.asarray(p.cdf(t), jnp.float64) for p in self.priors], axis=0)

    def _survival2_impl(self, t):
        F = jnp.clip(self._cdfs_impl(t), 0.0, 1.0)  # (n, ...)
        n = F.shape[0]
        all_below = jnp.prod(F, axis=0)
        exactly_one_above = jnp.zeros_like(all_below)
        for i in range(n):
            others = jnp.prod(jnp.concatenate([F[:i], F[i + 1:]], axis=0), axis=0) if n > 1 else jnp.ones_like(all_below)
            exactly_one_above = exactly_one_above + (1.0 - F[i]) * others
        return 1.0 - all_below - exactly_one_above

    def cdf_values(self, t) -> np.ndarray:
        with enable_x64():
            return np.asarray(self._cdfs(jnp.asarray(t, jnp.float64)))

    def survival2(self, t: float) -> float:
        with enable_x64():
            return float(self._survival2(jnp.asarray(t, jnp.float64)))

    def prob_sale(self, r) -> np.ndarray:
        """P(max_i v_i ≥ r) = 1 − Π_i F_i(r⁻), vectorised over r."""
        r = np.atleast_1d(np.asarray(r, dtype=np.float64))
        F = np.clip(self.cdf_values(r), 0.0, 1.0)  # (n, len(r))
        for i, a in enumerate(self.atoms):
            if a is None:
                continue
            # F(r⁻) = F(largest atom < r), or 0 if there is none
            idx = np.searchsorted(a, r, side="left") - 1
            prev = a[np.maximum(idx, 0)]
            Fprev = np.clip(self.cdf_values(prev)[i], 0.0, 1.0)
            F[i] = np.where(idx >= 0, Fprev, 0.0)
        return 1.0 - np.prod(F, axis=0)

    def integral(self, a: float, b: float) -> float:
        """∫_a^b P(v_(2) > t) dt, split at every low/high/atom."""
        if b <= a:
            return 0.0
        inner = self.breaks[(self.breaks > a) & (self.breaks < b)]
        edges = np.concatenate([[a], inner, [b]])
        total = 0.0
        for lo, hi in zip(edges[:-1], edges[1:]):
            if hi > lo:
                val, _ = integrate.quad(self.survival2, lo, hi, epsabs=1e-14, epsrel=1e-12, limit=200)
                total += val
        return total


def second_price_revenue(priors: Sequence[Prior], reserve: float = 0.0) -> float:
    """Exact expected revenue (S2) of the second-price auction with anonymous reserve ``reserve``.

    Computed in float64 (priors' ``cdf`` under :func:`~diffmech._compat.enable_x64`) by adaptive
    quadrature split at every support end point and atom; accurate to ~1e-12 for smooth priors.
    """
    reserve = float(reserve)
    if reserve < 0:
        raise ValueError("reserve must be ≥ 0 (revenue formula assumes prices ≥ 0)")
    st = _OrderStats(priors)
    return _revenue(st, reserve)


def _revenue(st: _OrderStats, r: float, tail_from: float | None = None, tail: float = 0.0) -> float:
    upper = st.high if tail_from is None else tail_from
    return float(r * st.prob_sale(r)[0] + st.integral(max(r, 0.0), upper) + tail)


def best_anonymous_reserve(priors: Sequence[Prior], n_grid: int = 257) -> tuple[float, float]:
    """Revenue-maximising anonymous reserve of the second-price auction, and its revenue (S2).

    Evaluates (S2) exactly on a grid of ``n_grid`` points over [0, max_i high_i] augmented with every
    prior's low/high and atoms (where the revenue can have kinks or jumps), then refines around the
    best grid point with ``scipy.optimize.minimize_scalar`` (bounded, xatol 1e-12) on the
    neighbouring grid cells and keeps the better of the two. Returns ``(reserve, revenue)``.
    """
    st = _OrderStats(priors)
    grid = np.unique(np.concatenate([np.linspace(0.0, st.high, n_grid), st.breaks[st.breaks >= 0]]))
    grid = grid[grid <= st.high]
    # tails[k] = ∫_{grid[k]}^{H} P(v_(2) > t) dt, by exact integration over each cell
    cells = np.array([st.integral(a, b) for a, b in zip(grid[:-1], grid[1:])])
    tails = np.concatenate([np.cumsum(cells[::-1])[::-1], [0.0]])
    revs = grid * st.prob_sale(grid) + tails
    k = int(np.argmax(revs))
    best_r, best_rev = float(grid[k]), float(revs[k])
    lo, hi = float(grid[max(k - 1, 0)]), float(grid[min(k + 1, len(grid) - 1)])
    if hi > lo:
        tail_hi = float(tails[min(k + 1, len(grid) - 1)])
        res = optimize.minimize_scalar(
            lambda r: -_revenue(st, float(r), tail_from=hi, tail=tail_hi),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-12},
        )
        r_opt = float(res.x)
        rev_opt = _revenue(st, r_opt)
        if rev_opt > best_rev:
            best_r, best_rev = r_opt, rev_opt
    return best_r, best_rev
