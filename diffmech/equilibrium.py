"""Numerical equilibrium check of a symmetric auction played by a strategy profile.

For a :class:`~diffmech.mechanisms.symmetric_auction.SymmetricAuction` with payment rule p^s,
reserve r and strategies σ, bidder i's interim allocation and payment when she bids b against the
others' equilibrium bids are

    A_i(b) = E_{v_−i}[a^s(b, σ_−i(v_−i))],    P_i(b) = E_{v_−i}[p^s(b, σ_−i(v_−i))],

and σ is a (Bayes–Nash) equilibrium iff for every value v of every bidder

    gain_i(v) = max_b [v A_i(b) − P_i(b)] − [v A_i(σ_i(v)) − P_i(σ_i(v))]  ≤  0.

Here the maximum runs over a bid grid of step ``bid_step`` that extends a quarter of the width of
the union of the bid spaces (plus one step) beyond it on both sides, so off-support bids are
deviations too, plus the rule's ``breakpoints`` if it has any (where its payment may jump) and the
float64 neighbours on both sides of each, together with the equilibrium bids themselves (so gain ≥ 0 and a positive gain is a
profitable deviation up to quadrature error); v runs over ``n_values`` evenly spaced values of the
support. The expectation over v_−i uses deterministic quantile nodes: the midpoints
(k + 1/2)/S of S = ``n_nodes`` cells for one other bidder; for more others the first S points of
the unscrambled Sobol sequence shifted by 1/(2S) (a (t, m, s)-net whose one-dimensional projections
are exactly the midpoint grid), mapped through each other bidder's F_j⁻¹ and σ_j. For the event
rules of :mod:`~diffmech.mechanisms.analytic.deb_pai` played in nondecreasing strategies, every
integrand is π(b) times a combination of indicators of anchored boxes in quantile space ("b_j ≤ β"
is "u_j ≤ G_j(β)", and so are the allocation's "b_j < b", "b_j = b"), so the quadrature error is of
the order of the net's star discrepancy (≤ 1/(2S) for one other bidder). Bids are processed in chunks
with ``jax.lax.map`` so memory stays O(chunk · S · (n − 1)).

Revenue and ex post properties come from Monte Carlo on ``samples`` value profiles drawn with
``key``: revenue E Σ_i p_i and its standard error; with a ``target`` mechanism the fraction of
profiles whose allocation differs from the target's by more than 1e-6; the rate of (profile, bidder)
pairs with p_i > v_i a_i + 1e-9 (ex post IR violations) and of losers (a_i = 0) who pay more than
1e-9.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .errors import ConfigError
from .mechanisms.symmetric_auction import SymmetricAuction, allocation_against, others_index


def quantile_nodes(n_others: int, n_nodes: int = 2**14) -> np.ndarray:
    """``(S, n_others)`` deterministic quantile nodes: midpoints for one coordinate, the shifted
    unscrambled Sobol net (S rounded up to a power of two) for more."""
    if n_others == 1:
        return ((np.arange(n_nodes) + 0.5) / n_nodes)[:, None]
    from scipy.stats import qmc

    m = int(np.ceil(np.log2(max(n_nodes, 2))))
    pts = qmc.Sobol(d=n_others, scramble=False).random_base2(m)
    return pts + 0.5 / 2**m


@eqx.filter_jit
def _strategy_bids(auction: SymmetricAuction, priors, values, others_u):
    """Equilibrium bids: ``own[k, i]`` = σ_i(values[k, i]) and ``others[i, s]`` = the bids of the
    bidders other than i at the quantile node ``others_u[s]`` (one strategy call each)."""
    n = len(priors)
    dtype = values.dtype
    own = auction.strategy(values)
    oth = others_index(n)  # (n, n − 1)
    lows = jnp.asarray([p.low for p in priors], dtype)
    S = others_u.shape[0]
    prof = jnp.broadcast_to(lows, (n, S, n))
    for i in range(n):  # n small, static: the others' values at the nodes, bidder i at her low
        cols = [jnp.asarray(priors[j].icdf(others_u[:, c]), dtype) for c, j in enumerate(oth[i])]
        if cols:
            prof = prof.at[i, :, oth[i]].set(jnp.stack(cols, axis=0))
    bids = auction.strategy(prof.reshape(n * S, n)).reshape(n, S, n)
    return own, jnp.take_along_axis(bids, jnp.asarray(oth)[:, None, :], axis=2)


@eqx.filter_jit
def _interim_tables(auction: SymmetricAuction, bids, other_bids, chunk: int):
    """A(b), P(b) for every bid (padded to a multiple of ``chunk``), averaged over the nodes."""
    reserve = jnp.asarray(auction.reserve, bids.dtype)

    def one(own):  # own: (chunk,)
        shape = (own.shape[0], other_bids.shape[0])
        a = allocation_against(jnp.broadcast_to(own[:, None], shape), jnp.broadcast_to(other_bids[None], shape + other_bids.shape[1:]), reserve)
        p = auction.rule.outer(own, other_bids)
        return a.mean(axis=1), p.mean(axis=1)

    A, P = jax.lax.map(one, bids.reshape(-1, chunk))
    return A.reshape(-1), P.reshape(-1)


@eqx.filter_jit
def _gains(values, A, P, n_grid: int):
    """gain(v_k) = max_b U(v_k, b) − U(v_k, σ(v_k)); the equilibrium bids sit after the grid."""
    U = values[:, None] * A[None] - P[None]
    k = jnp.arange(values.shape[0])
    eq = U[k, n_grid + k]
    best = jnp.argmax(U, axis=1)
    return U.max(axis=1) - eq, best


@eqx.filter_jit
def _monte_carlo(auction, target, values):
    out = auction(values[..., None])
    a, p = out.alloc[..., 0], out.payments
    res = {
        "revenue_samples": p.sum(axis=1),
        "alloc_mean": a.mean(axis=0),
        "payment_mean": p.mean(axis=0),
        "ir_violation_rate": jnp.mean(p > values * a + 1e-9),
        "losers_pay_rate": jnp.mean((a == 0) & (p > 1e-9)),
    }
    if target is not None:
        ta = target(values[..., None]).alloc[..., 0]
        res["allocation_mismatch"] = jnp.mean(jnp.any(jnp.abs(a - ta) > 1e-6, axis=1))
    return res


def check_equilibrium(
    auction: SymmetricAuction,
    priors,
    target=None,
    *,
    bid_step: float = 0.005,
    n_values: int = 201,
    samples: int = 2**16,
    key: PRNGKeyArray,
    n_nodes: int = 2**14,
    chunk: int = 32,
) -> dict[str, Any]:
    """Best-response gains, revenue and ex post properties of ``auction`` (module docstring).

    Returns a dict: ``br_gain_max`` (max over bidders and values), ``br_gain`` (per bidder),
    ``br_worst`` (per bidder: value, equilibrium bid, best grid bid, gain at the worst value),
    ``revenue``, ``revenue_se``, ``alloc_mean`` and ``payment_mean`` (per bidder, Monte Carlo),
    ``ir_violation_rate``, ``losers_pay_rate`` and, with ``target``, ``allocation_mismatch``.
    ``n_nodes`` quantile nodes for the others' values, ``chunk`` bids per ``lax.map`` step (memory
    O(chunk · n_nodes · (n − 1))). Runs in the default float dtype (float64 under ``enable_x64``).
    """
    priors = tuple(priors)
    n = len(priors)
    if not isinstance(auction, SymmetricAuction):
        raise ConfigError(f"check_equilibrium needs a SymmetricAuction, got {type(auction).__name__}")
    if not bid_step > 0 or n_values < 1 or samples < 2 or n_nodes < 1 or chunk < 1:
        raise ConfigError("check_equilibrium needs bid_step > 0, n_values >= 1, samples >= 2, n_nodes >= 1, chunk >= 1")
    dtype = jnp.result_type(float)
    nodes = quantile_nodes(n - 1, n_nodes) if n > 1 else np.zeros((1, 0))

    # equilibrium bids of every bidder on its value grid; the bid grid spans their union and more
    vgrid = jnp.stack([jnp.linspace(p.low, p.high, n_values, dtype=dtype) for p in priors], axis=1)  # (K, n)
    own_bids, other_bids = _strategy_bids(auction, priors, vgrid, jnp.asarray(nodes, dtype))
    own_np = np.asarray(own_bids)
    lo, hi = float(own_np.min()), float(own_np.max())
    pad = (0.25 * (hi - lo) if hi > lo else 1.0) + bid_step
    grid = np.arange(lo - pad, hi + pad + 0.5 * bid_step, bid_step)
    jumps = np.asarray(getattr(auction.rule, "breakpoints", np.zeros(0)), np.dtype(dtype))
    if jumps.size:  # where the rule's payment may jump: the point and both sides of it
        grid = np.concatenate([grid, jumps, np.nextafter(jumps, -np.inf), np.nextafter(jumps, np.inf)])

    gains, worst = np.zeros(n), []
    for i in range(n):
        bids = np.concatenate([grid, own_np[:, i]])
        total = -(-len(bids) // chunk) * chunk
        bids_p = jnp.asarray(np.pad(bids, (0, total - len(bids)), mode="edge"), dtype)
        A, P = _interim_tables(auction, bids_p, other_bids[i], chunk)
        A, P = A[: len(bids)], P[: len(bids)]
        g, best = _gains(vgrid[:, i], A, P, len(grid))
        g, best = np.asarray(g), np.asarray(best)
        k = int(np.argmax(g))
        gains[i] = float(g[k])
        worst.append(
            {"value": float(vgrid[k, i]), "equilibrium_bid": float(own_np[k, i]), "best_bid": float(bids[best[k]]), "gain": float(gains[i])}
        )

    keys = jax.random.split(key, n)
    values = jnp.stack([jnp.asarray(p.sample(k, (samples,)), dtype) for p, k in zip(priors, keys)], axis=1)
    mc = _monte_carlo(auction, target, values)
    rev = np.asarray(mc.pop("revenue_samples"), np.float64)
    out = {
        "br_gain_max": float(gains.max()),
        "br_gain": gains,
        "br_worst": worst,
        "bid_grid": (float(grid.min()), float(grid.max()), float(bid_step)),
        "revenue": float(rev.mean()),
        "revenue_se": float(rev.std(ddof=1) / np.sqrt(samples)),
    }
    for name, val in mc.items():
        arr = np.asarray(val, np.float64)
        out[name] = float(arr) if arr.ndim == 0 else arr
    return out
