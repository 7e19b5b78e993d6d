"""Learned monotone bidding strategies for symmetric auctions (Deb–Pai, issue 6 part 4b).

Mathematics. Bidder i has K knots t_{i,0} < … < t_{i,K−1} evenly spaced on her support
[low_i, high_i] and bids

    σ_i(v) = c_i + Σ_{k=0}^{K−2} softplus(w_{ik}) · (clip(v, t_{i,k}, t_{i,k+1}) − t_{i,k}),

a continuous piecewise-linear function with slope s_{ik} = softplus(w_{ik}) > 0 on
[t_{i,k}, t_{i,k+1}], so σ_i is strictly increasing on the support (and constant outside it, where no
value lies). At the knots σ_i(t_{i,0}) = c_i and σ_i(t_{i,k+1}) − σ_i(t_{i,k}) = s_{ik}(t_{i,k+1} − t_{i,k}),
so (c_i, s_i) are the knot values in disguise. All bidders are evaluated in one vectorised call:
``(batch, n)`` values against the ``(n, K − 1)`` segment table (no loop over bidders).

Strict monotonicity makes the bid distribution G_i(b) = F_i(σ_i⁻¹(b)) continuous, so in the auction
"highest bid ≥ r wins" the interim allocation A_i(b) = 1{b ≥ r} Π_{j≠i} G_j(b) jumps only at the
reserve r.

Initialisation from an index (:meth:`MonotoneStrategy.init`). For a hierarchical mechanism with index
functions I_i, the parameters solve the bound-constrained least squares problem

    min_{c_i, s_i ≥ s_min} Σ_m (σ_i(x_m) − I_i(x_m))²

on M = 8(K − 1) + 1 evenly spaced points x_m of the support (which include the knots); σ_i is linear
in (c_i, s_i) with design row [1, clip(x_m, t_k, t_{k+1}) − t_k]_k, solved by
``scipy.optimize.lsq_linear`` in float64, then w = softplus⁻¹(s) = s + log(−expm1(−s)). An affine
index with positive slope lies in the model class, so the fit is exact (residual 0 up to rounding);
for a piecewise-linear index with kinks at the knots too. Flat pieces of an ironed index get the
smallest slope s_min (> 0, so σ stays strictly increasing).
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ...errors import ConfigError
from ..symmetric_auction import Strategy

__all__ = ["MonotoneStrategy", "inverse_softplus"]


def inverse_softplus(s: np.ndarray) -> np.ndarray:
    """w with softplus(w) = s, for s > 0 (float64): w = s + log(1 − e^{−s})."""
    s = np.asarray(s, np.float64)
    return s + np.log(-np.expm1(-s))


def _supports(priors) -> tuple[tuple[float, ...], tuple[float, ...]]:
    lows, highs = [], []
    for i, p in enumerate(priors):
        lo, hi = float(p.low), float(p.high)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ConfigError(f"MonotoneStrategy needs bounded supports with high > low; bidder {i} has [{lo}, {hi}]")
        lows.append(lo)
        highs.append(hi)
    return tuple(lows), tuple(highs)


class MonotoneStrategy(Strategy):
    """σ_i(v) = c_i + Σ_k softplus(w_ik)(clip(v, t_ik, t_i,k+1) − t_ik) per bidder (module docstring).

    Attributes:
        offset: ``(n,)`` the bids c_i at the lowest values.
        raw_slopes: ``(n, K − 1)`` the w_ik (slopes softplus(w_ik)).
        lows, highs: the supports (static); the knots are ``n_knots`` evenly spaced points on each.
    """

    offset: Float[Array, " n"]
    raw_slopes: Float[Array, "n k"]
    lows: tuple[float, ...] = eqx.field(static=True)
    highs: tuple[float, ...] = eqx.field(static=True)
    n_knots: int = eqx.field(static=True)

    def __init__(self, priors: Sequence, n_knots: int = 16, *, scale: float = 1.0, shift: float = 0.0,
                 offset=None, slopes=None):
        """Bidders with ``priors``; affine start σ_i(v) = scale·v + shift (default: truthful bids),
        or explicit ``offset`` ``(n,)`` and positive ``slopes`` ``(n, n_knots − 1)``."""
        self.lows, self.highs = _supports(priors)
        if not isinstance(n_knots, int) or n_knots < 2:
            raise ConfigError(f"MonotoneStrategy needs n_knots >= 2 (an integer), got {n_knots!r}")
        self.n_knots = n_knots
        n = len(self.lows)
        if n < 1:
            raise ConfigError("MonotoneStrategy needs at least one bidder")
        if offset is None or slopes is None:
            if not scale > 0:
                raise ConfigError(f"MonotoneStrategy needs scale > 0 (strictly increasing bids), got {scale!r}")
            offset = scale * np.asarray(self.lows) + shift
            slopes = np.full((n, n_knots - 1), float(scale))
        offset = np.asarray(offset, np.float64).reshape(n)
        slopes = np.asarray(slopes, np.float64)
        if slopes.shape != (n, n_knots - 1) or not np.all(slopes > 0) or not np.all(np.isfinite(slopes)):
            raise ConfigError(f"MonotoneStrategy needs positive finite slopes of shape ({n}, {n_knots - 1})")
        dtype = jnp.result_type(float)
        self.offset = jnp.asarray(offset, dtype)
        self.raw_slopes = jnp.asarray(inverse_softplus(slopes), dtype)

    def knots(self, dtype=None) -> Float[Array, "n K"]:
        """The ``(n, K)`` knot table t_ik = low_i + (high_i − low_i) k/(K − 1)."""
        dtype = dtype or jnp.result_type(float)
        u = jnp.linspace(0.0, 1.0, self.n_knots, dtype=dtype)
        lo, hi = jnp.asarray(self.lows, dtype), jnp.asarray(self.highs, dtype)
        return lo[:, None] + (hi - lo)[:, None] * u[None, :]

    def slopes(self) -> Float[Array, "n k"]:
        return jax.nn.softplus(self.raw_slopes)

    def __call__(self, values: Float[Array, "batch n"]) -> Float[Array, "batch n"]:
        values = jnp.asarray(values)
        dtype = jnp.result_type(values.dtype, self.offset.dtype)
        t = self.knots(dtype)
        seg = jnp.clip(values.astype(dtype)[..., None], t[:, :-1], t[:, 1:]) - t[:, :-1]  # (batch, n, K − 1)
        return self.offset.astype(dtype) + jnp.sum(self.slopes().astype(dtype) * seg, axis=-1)

    def bid_range(self) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """(σ_i(low_i), σ_i(high_i)): the ends of each bidder's bid space."""
        t = self.knots(self.offset.dtype)
        top = self.offset + jnp.sum(self.slopes() * (t[:, 1:] - t[:, :-1]), axis=-1)
        return self.offset, top

    @classmethod
    def init(cls, h, n_knots: int = 16, *, min_slope: float = 1e-3, n_fit: int | None = None) -> "MonotoneStrategy":
        """Fit every bidder's σ_i to the index I_i of the hierarchical mechanism ``h`` by bounded
        least squares (module docstring); slopes ≥ ``min_slope``."""
        if not min_slope > 0:
            raise ConfigError(f"min_slope must be positive (strictly increasing bids), got {min_slope!r}")
        from scipy.optimize import lsq_linear

        lows, highs = _supports(h.priors)
        if len(h.indices) != len(lows):
            raise ConfigError("MonotoneStrategy.init needs one index per bidder")
        n_fit = n_fit or 8 * (n_knots - 1) + 1
        offsets, slopes = [], []
        for i, (lo, hi) in enumerate(zip(lows, highs)):  # construction-time float64 numerics, once per bidder
            t = np.linspace(lo, hi, n_knots)
            x = np.linspace(lo, hi, n_fit)
            y = np.asarray(h.indices[i].np_eval(x), np.float64)
            design = np.concatenate([np.ones((n_fit, 1)), np.clip(x[:, None], t[:-1], t[1:]) - t[:-1]], axis=1)
            bounds = (np.r_[-np.inf, np.full(n_knots - 1, min_slope)], np.full(n_knots, np.inf))
            sol = lsq_linear(design, y, bounds=bounds, method="bvls", tol=1e-14)
            offsets.append(sol.x[0])
            slopes.append(sol.x[1:])
        return cls(h.priors, n_knots, offset=np.asarray(offsets), slopes=np.asarray(slopes))
