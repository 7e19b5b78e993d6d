"""Deb–Pai (2017): symmetric auctions that implement hierarchical mechanisms.

A hierarchical mechanism (I, p^h) gives the item to the highest index I_i(v_i) if it is ≥ 0 (ties
split equally) and charges the interim payments p_i^h(v_i) of payoff equivalence
(:class:`~diffmech.mechanisms.analytic.hierarchical.Hierarchical`). Bidder i's index has the
distribution G_i on her bid space B_i = [I_i(low_i), I_i(high_i)]. A symmetric auction implements it
when bidding σ_i = I_i is an equilibrium and, for every i and v_i,

    p_i^h(v_i) = ∫ p^s(I_i(v_i), b_−i) dG_−i(b_−i)                                               (★), (5)

(the allocation of "highest bid ≥ 0 wins" then equals a^h profile by profile).

Event payment rules (Observation 1, eqs. (7)–(9)). With symmetric events E_1, …, E_k of the
others' bids and numbers π_j(b) for every bid b,

    p^s(b, b_−) = Σ_j π_j(b) · w_j(b_−)                                                          (7)

gives bidder i the expected payment Σ_j π_j(b) G_−i(E_j) at bid b. Requiring it to equal

    p̃_i(b) = p_i^h(I_i⁻¹(b)) if b ∈ B_i,   P (the punishment, default max_i v̄_i) otherwise      (9)

for the k rows i of a full-rank k × k matrix M = [G_−i(E_j)] gives π(b) = M⁻¹ p̃(b) (eq. (8)). So
every bidder's expected payment at *every* bid is pinned: exactly p^h on her bid space (a bid
b' ∈ B_i ≠ I_i(v_i) is then a misreport I_i⁻¹(b') in the IC direct mechanism, which does not pay),
and P ≥ v̄_i off it (a bid outside B_i earns v·A − P ≤ 0, never more than the equilibrium utility,
which is ≥ 0 by interim IR).

Events used here (Appendix C). ``l = 0`` is the whole space (w = 1). An event of type l ≥ 1 with
cutoff β is "l randomly chosen of the n − 1 others bid ≤ β"; it is used in expectation over the
random choice, w(b_−) = C(#{others ≤ β}, l) / C(n − 1, l), and

    G_−i(E) = e_l({G_j(β)}_{j≠i}) / C(n − 1, l)                                                  (13)

with e_l the elementary symmetric polynomial. An event may count the others *strictly* below β
(G_j(β−) in (13)) and may be complemented (w → 1 − w, G_−i → 1 − G_−i).

Two bidders (Section 3, eq. (2)). Events "upper" {b_j ≥ b̂} and "lower" {b_j < b̂}:

    M = [[1 − G_2(b̂−), G_2(b̂−)], [1 − G_1(b̂−), G_1(b̂−)]],   M (π^u(b), π^l(b))ᵀ = (p̃_1(b), p̃_2(b))ᵀ,

det M = G_1(b̂−) − G_2(b̂−), so M is full rank iff G_1(b̂−) ≠ G_2(b̂−); the default b̂ maximises
|det M| = |G_1(b̂−) − G_2(b̂−)| on a grid of the bid range (the middle of the maximisers). Example 1 (v_1 ~ U[2,4], v_2 ~ U[1,2], virtual-value indices) at b̂ = 1 gives
π^u(b) = −b/2 and π^l(b) = 5b/2 + b²/4 on [0, 2].

n > 2 bidders. n events are chosen greedily among the whole space and type-l events (l = 1..n−1, β
on a grid over the bid spaces), each step adding the candidate that keeps the condition number of
the (rectangular) matrix smallest, followed by single swaps while they improve it.

Identical bid distributions (Theorem 1 (ii), Appendix A Step 3). Bidders with G_i = G_j cannot be
told apart by any symmetric rule: they get the same expected payment at every bid. The rows of M
are the distributionally unique bidders N_U (the first of each group), which is enough exactly when
every group's members pay the same at equal bids; otherwise :func:`symmetric_implementation`
refuses and :func:`theorem1` reports the least mean-squared interim payment mismatch: a symmetric
rule pays the whole group one q(b), the best is the group mean, and

    mismatch_i = E_{b~G_i}[(p̃_i(b) − q(b))²]   (0 for distributionally unique bidders).

Tabulation. π is computed in float64 at construction and stored as arrays: exactly at every
breakpoint (the bid-space endpoints, the atoms of the G_i and the reserve bid 0: the only bids where
p̃ can jump, since indices are continuous and A_i(b) = 1{b ≥ 0} E[…] jumps only at 0 and at the
others' atoms), and on a uniform grid
of ``n_grid`` nodes inside each segment between consecutive breakpoints (one-sided limits at the
segment ends), so the jax evaluation interpolates linearly *within* a segment and never across a
jump; bids outside all breakpoints get the constant π = M⁻¹ (P, …, P). The interpolation error on a
segment of width w is at most (w/(n_grid − 1))²/8 · max|π''|; at the nodes π is the float64 solve.
The atoms are the images of the index's flats (its ``kinks``), of a constant index and of a discrete
prior's atoms, each checked to carry mass.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..._compat import enable_x64
from ...errors import ConfigError
from ..symmetric_auction import IndexStrategy, PaymentRule, SymmetricAuction

__all__ = ["Event", "EventPaymentRule", "symmetric_implementation", "theorem1", "event_matrix"]

#: sup-distance below which two bid distributions count as equal
G_TOL = 1e-8
#: (relative) payment difference below which two bidders pay the same at equal bids
PAY_TOL = 1e-8


class Event(NamedTuple):
    """A symmetric event of the others' bids (module docstring).

    Attributes:
        l: 0 for the whole space, else the type l ≥ 1 ("l random others bid ≤ β").
        beta: the cutoff β (ignored for l = 0).
        strict: count others with bid < β instead of ≤ β.
        complement: the complementary event (w → 1 − w).
    """

    l: int
    beta: float = 0.0
    strict: bool = False
    complement: bool = False

    def label(self) -> str:
        if self.l == 0:
            return "whole space" if not self.complement else "empty"
        rel = "<" if self.strict else "<="
        txt = f"{self.l} random other(s) bid {rel} {self.beta:.6g}"
        return f"not({txt})" if self.complement else txt


def elementary_symmetric(x: np.ndarray, l: int) -> np.ndarray:
    """e_l of the last axis of ``x`` (e_0 = 1), by the product Π_j (1 + t x_j)."""
    x = np.asarray(x, np.float64)
    e = np.zeros(x.shape[:-1] + (l + 1,))
    e[..., 0] = 1.0
    for j in range(x.shape[-1]):
        e[..., 1:] = e[..., 1:] + x[..., j : j + 1] * e[..., :-1]
    return e[..., l]


def _weight_table(events, n: int) -> np.ndarray:
    """W[j, c] = w_j when c others are counted below the cutoff: C(c, l)/C(n − 1, l), or 1 − that."""
    W = np.zeros((len(events), n))
    for j, ev in enumerate(events):
        row = np.asarray([math.comb(c, ev.l) / math.comb(n - 1, ev.l) for c in range(n)], np.float64)
        W[j] = 1.0 - row if ev.complement else row
    return W


class EventPaymentRule(PaymentRule):
    """p^s(b, b_−) = Σ_j π_j(b) w_j(b_−) (Observation 1, eq. (7)) with π tabulated on bids.

    Attributes (arrays are float64 numpy, cast to the bids' dtype when evaluated):
        breakpoints: ``(K,)`` sorted bids where p̃ may jump (bid-space endpoints, atoms of the G_i).
        point_values: ``(K, E)`` π exactly at each breakpoint.
        segment_values: ``(max(K − 1, 1), m, E)`` π on m uniform nodes of each open segment
            (the end nodes hold the one-sided limits).
        outside_values: ``(E,)`` π for bids below or above every breakpoint.
        betas, strict, weight_table: the events' cutoffs, strictness and W[j, c] (``_weight_table``).
        events: the :class:`Event` descriptions (static).
        matrix: M = [G_−i(E_j)] for the rows ``bidders`` (static, tuple of rows).
        condition_number: cond₂(M) (static).
        bidders: the rows of M, the distributionally unique bidders N_U (static).
    """

    breakpoints: np.ndarray
    point_values: np.ndarray
    segment_values: np.ndarray
    outside_values: np.ndarray
    betas: np.ndarray
    strict: np.ndarray
    weight_table: np.ndarray
    events: tuple = eqx.field(static=True)
    matrix: tuple = eqx.field(static=True)
    condition_number: float = eqx.field(static=True)
    bidders: tuple = eqx.field(static=True)

    def pi(self, b: Float[Array, "..."]) -> Float[Array, "... E"]:
        """π(b) for every event: the breakpoint value, in-segment linear interpolation, or the
        constant outside value."""
        b = jnp.asarray(b)
        dt = b.dtype
        E = jnp.asarray(self.breakpoints, dt)
        K = E.shape[0]
        seg = jnp.asarray(self.segment_values, dt)
        m = seg.shape[1]
        k = jnp.searchsorted(E, b, side="right") - 1  # −1 … K − 1
        at_point = (k >= 0) & (b == E[jnp.clip(k, 0, K - 1)])
        inside = (b >= E[0]) & (b <= E[-1])
        ks = jnp.clip(k, 0, max(K - 2, 0))
        left, right = E[ks], E[jnp.minimum(ks + 1, K - 1)]
        width = jnp.where(right > left, right - left, jnp.ones((), dt))
        t = jnp.clip((b - left) / width, 0.0, 1.0) * (m - 1)
        j = jnp.clip(jnp.floor(t).astype(jnp.int32), 0, m - 2)
        frac = (t - j.astype(dt))[..., None]
        interp = seg[ks, j] * (1.0 - frac) + seg[ks, j + 1] * frac
        point = jnp.asarray(self.point_values, dt)[jnp.clip(k, 0, K - 1)]
        out = jnp.broadcast_to(jnp.asarray(self.outside_values, dt), interp.shape)
        return jnp.where(at_point[..., None], point, jnp.where(inside[..., None], interp, out))

    def weights(self, others: Float[Array, "... m"]) -> Float[Array, "... E"]:
        """w_j(b_−) for every event: W[j, #{others ≤ β_j}] (or < β_j for strict events)."""
        others = jnp.asarray(others)
        dt = others.dtype
        beta = jnp.asarray(self.betas, dt)
        below = jnp.where(
            jnp.asarray(self.strict)[:, None], others[..., None, :] < beta[:, None], others[..., None, :] <= beta[:, None]
        )
        count = jnp.sum(below, axis=-1)  # (..., E)
        W = jnp.asarray(self.weight_table, dt)
        return W[jnp.arange(W.shape[0]), count]

    def __call__(self, own: Float[Array, " batch"], others: Float[Array, "batch m"]) -> Float[Array, " batch"]:
        own = jnp.asarray(own)
        others = jnp.asarray(others, own.dtype)
        return jnp.sum(self.pi(own) * self.weights(others), axis=-1)

    def outer(self, own: Float[Array, " B"], others: Float[Array, "S m"]) -> Float[Array, "B S"]:
        """p^s(own[b], others[s]) for all pairs: π(own) · w(others)ᵀ."""
        own = jnp.asarray(own)
        return self.pi(own) @ self.weights(jnp.asarray(others, own.dtype)).T


# ------------------------------------------------------------------------------------------------
# float64 construction (numpy, at build time)
# ------------------------------------------------------------------------------------------------


def _matrix_from_cdfs(G: np.ndarray, events, rows) -> np.ndarray:
    """M = [G_−i(E_j)] (eq. (13)) from ``G[:, j]`` = (G_1, …, G_n) at event j's cutoff (G(β−) for
    strict events)."""
    n = G.shape[0]
    M = np.zeros((len(rows), len(events)))
    for c, ev in enumerate(events):
        if ev.l == 0:
            col = np.ones(len(rows))
        else:
            others = np.stack([np.delete(G[:, c], i) for i in rows])  # (rows, n − 1)
            col = elementary_symmetric(others, ev.l) / math.comb(n - 1, ev.l)
        M[:, c] = 1.0 - col if ev.complement else col
    return M


def event_matrix(h, events, rows) -> np.ndarray:
    """M = [G_−i(E_j)] for the bidders ``rows`` and the events ``events`` (eq. (13)); each G_j is
    evaluated once at all cutoffs (one call for ≤, one for <)."""
    betas = np.asarray([ev.beta for ev in events], np.float64)
    strict = np.asarray([ev.strict for ev in events], bool)
    G = np.zeros((h.n_agents, len(events)))
    for j in range(h.n_agents):
        if np.any(~strict):
            G[j, ~strict] = h.bid_cdf(j, betas[~strict])
        if np.any(strict):
            G[j, strict] = h.bid_cdf(j, betas[strict], strict=True)
    return _matrix_from_cdfs(G, events, rows)


def _cond(M: np.ndarray) -> float:
    """cond₂ of a (possibly rectangular) matrix: σ_max/σ_min (inf if rank-deficient)."""
    s = np.linalg.svd(M, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else math.inf


def _gauss_quantile_nodes(n_panels: int = 512, order: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre nodes and weights on (0, 1)."""
    t, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(0.0, 1.0, n_panels + 1)
    a, b = edges[:-1, None], edges[1:, None]
    return (a + (b - a) * (t + 1) / 2).ravel(), ((b - a) * w / 2).ravel()


def _scan_atoms(h, i: int, grid: int = 1025, tol: float = 1e-12) -> list[float]:
    """Atoms of G_i found without knowing the index: grid points with G(x) − G(x−) > tol, and in
    every grid cell with open mass the point where G crosses half that mass (64 vectorised bisection
    steps, so it lands on the jump itself when an atom carries most of the cell's mass), kept if it
    carries mass > tol. Atoms lighter than a cell's continuous mass may be missed."""
    lo, hi = (float(x) for x in h.bid_space(i))
    x = np.linspace(lo, hi, grid)
    G, Gs = h.bid_cdf(i, x), h.bid_cdf(i, x, strict=True)
    found = list(x[(G - Gs) > tol])
    open_mass = Gs[1:] - G[:-1]
    cells = np.nonzero(open_mass > tol)[0]
    if len(cells):
        a, c = x[cells].copy(), x[cells + 1].copy()
        target = G[cells] + 0.5 * open_mass[cells]
        for _ in range(64):
            mid = a + 0.5 * (c - a)
            up = h.bid_cdf(i, mid) >= target
            a, c = np.where(up, a, mid), np.where(up, mid, c)
        mass = h.bid_cdf(i, c) - h.bid_cdf(i, c, strict=True)
        found += list(c[mass > tol])
    return found


class _Construction:
    """The float64 quantities of one hierarchical mechanism, each computed once (the hierarchical
    mechanism's interim methods cost one bisection per call, so calls are batched)."""

    N_G = 4097  # grid of the bid range for G comparisons, cutoffs and event candidates
    BETA_STRIDE = 64  # event cutoffs: every 64th grid point (65 points) plus the breakpoints

    def __init__(self, h):
        self.h = h
        self.n = h.n_agents
        self.spaces = np.asarray([[float(x) for x in h.bid_space(i)] for i in range(self.n)], np.float64)
        self.lo, self.hi = float(self.spaces[:, 0].min()), float(self.spaces[:, 1].max())
        self.scale = 1.0 + float(np.max(np.abs(self.spaces)))
        self.atoms = [self._atoms(i) for i in range(self.n)]
        self.breakpoints = self._breakpoints()
        self.grid = np.unique(np.concatenate([np.linspace(self.lo, self.hi, self.N_G), self.breakpoints]))
        self.G = np.stack([h.bid_cdf(i, self.grid) for i in range(self.n)])  # (n, X)
        self.Gs = np.stack([h.bid_cdf(i, self.grid, strict=True) for i in range(self.n)])

    # -- atoms and breakpoints ------------------------------------------------------------------
    def _atoms(self, i: int, tol: float = 1e-12) -> list[float]:
        """The atoms of G_i, the bids c with G_i(c) − G_i(c−) > tol.

        An atom is the image of a set of values of positive mass on which I_i is constant: a flat
        of the index (its ends are among ``index.kinks()``), a constant index, or an atom of a
        discrete prior. So the candidates are I_i (and its left limit) at the support ends, the
        index's kinks, the prior's breakpoints and atoms, each kept if it carries mass. An index
        without ``kinks`` is scanned instead (:func:`_scan_atoms`)."""
        h = self.h
        lo, hi = self.spaces[i]
        if not hi > lo:
            return [float(lo)]
        index, prior = h.indices[i], h.priors[i]
        if not hasattr(index, "kinks"):
            return _scan_atoms(h, i, tol=tol)
        x = [prior.low, prior.high, *index.kinks(), *prior._breakpoints()]
        if prior.atoms() is not None:
            x += list(np.asarray(prior.atoms(), np.float64))
        x = np.clip(np.asarray(x, np.float64), prior.low, prior.high)
        x = np.concatenate([x, np.maximum(np.nextafter(x, -np.inf), prior.low)])
        c = np.unique(np.asarray(index.np_eval(x), np.float64))
        mass = h.bid_cdf(i, c) - h.bid_cdf(i, c, strict=True)
        return [float(v) for v in c[mass > tol]]

    def _breakpoints(self) -> np.ndarray:
        """Sorted bids where some p̃_i may jump: the bid-space endpoints, the atoms of the G_j
        (A_i jumps at another bidder's atom, and p_i^h(I_i⁻¹(·)) jumps across a flat of I_i) and
        the reserve bid 0 (A_i(b) = 0 below it); points closer than 1e-12·scale are merged."""
        atoms = {a for lst in self.atoms for a in lst}
        pts = set(self.spaces.ravel().tolist()) | atoms
        if self.lo < 0.0 < self.hi:
            pts.add(0.0)
        merged: list[float] = []
        for p in sorted(pts):
            if not merged or p - merged[-1] > 1e-12 * self.scale:
                merged.append(p)
        return np.asarray(merged, np.float64)

    # -- Theorem 1 ------------------------------------------------------------------------------
    def payment_gap(self, i: int, j: int, grid: int = 2049) -> float:
        """max |p_i^h(I_i⁻¹(b)) − p_j^h(I_j⁻¹(b))| over a grid of the common bids and atoms."""
        lo, hi = max(self.spaces[i, 0], self.spaces[j, 0]), min(self.spaces[i, 1], self.spaces[j, 1])
        if hi < lo:
            return 0.0
        atoms = [a for a in self.atoms[i] + self.atoms[j] if lo <= a <= hi]
        x = np.unique(np.concatenate([np.linspace(lo, hi, grid), atoms]))
        return float(np.max(np.abs(np.asarray(self.h.payment_at_bid(i, x)) - np.asarray(self.h.payment_at_bid(j, x)))))

    def analyse(self, mismatch: bool = True) -> dict[str, Any]:
        """Pairs (equal G? payment gap), groups of identical G, N_U, implementability and (if
        ``mismatch``) the least mean-squared mismatch."""
        n = self.n
        pairs, parent = [], list(range(n))

        def find(a):
            while parent[a] != a:
                a = parent[a]
            return a

        for i in range(n):
            for j in range(i + 1, n):
                dist = float(max(np.abs(self.G[i] - self.G[j]).max(), np.abs(self.Gs[i] - self.Gs[j]).max()))
                equal = dist < G_TOL
                gap = self.payment_gap(i, j) if equal else None
                ok = (not equal) or gap <= PAY_TOL * self.scale
                pairs.append({"i": i, "j": j, "equal_G": equal, "sup_distance": dist, "payment_gap": gap, "ok": ok})
                if equal:
                    parent[find(j)] = find(i)
        groups: dict[int, list[int]] = {}
        for i in range(n):
            groups.setdefault(find(i), []).append(i)
        group_list = sorted(groups.values())
        return {
            "pairs": pairs,
            "groups": group_list,
            "unique_bidders": tuple(sorted(g[0] for g in group_list)),
            "implementable": all(p["ok"] for p in pairs),
            "mismatch": self.mismatch(group_list) if mismatch else None,
        }

    def mismatch(self, groups) -> np.ndarray:
        """E_{b~G_i}[(p̃_i(b) − q(b))²], q = the group mean, as ∫_0^1 … du over quantiles with
        b = I_i(F_i⁻¹(u)) (composite Gauss–Legendre, 128 panels × 8 nodes; one payment_at_bid call
        per group member on the bids of the whole group)."""
        h = self.h
        u, w = _gauss_quantile_nodes(128, 8)
        out = np.zeros(self.n)
        for g in groups:
            if len(g) < 2:
                continue
            bids = []
            for i in g:
                with enable_x64(), jax.ensure_compile_time_eval():
                    v = np.asarray(h.priors[i].icdf(jnp.asarray(u, jnp.float64)), np.float64)
                bids.append(np.asarray(h.indices[i].np_eval(v), np.float64))
            b = np.concatenate(bids)
            pays = np.stack(
                [np.asarray(h.payment_at_bid(j, np.clip(b, self.spaces[j, 0], self.spaces[j, 1]))) for j in g]
            ).reshape(len(g), len(g), len(u))  # (payer j, bids of member i, node)
            q = pays.mean(axis=0)
            for r, i in enumerate(g):
                out[i] = float(np.sum(w * (pays[r, r] - q[r]) ** 2))
        return out

    # -- events ---------------------------------------------------------------------------------
    def _cdfs_at(self, events) -> np.ndarray:
        """(n, E) G_j at each event's cutoff (from the cached grid when the cutoff lies on it)."""
        out = np.zeros((self.n, len(events)))
        for c, ev in enumerate(events):
            k = np.searchsorted(self.grid, ev.beta)
            if k < len(self.grid) and self.grid[k] == ev.beta:
                out[:, c] = (self.Gs if ev.strict else self.G)[:, k]
            else:
                out[:, c] = [float(self.h.bid_cdf(j, np.asarray([ev.beta]), strict=ev.strict)[0]) for j in range(self.n)]
        return out

    def choose_events(self, rows, cutoff) -> tuple[list[Event], np.ndarray]:
        """One whole-space column for a single row; upper/lower at b̂ for two bidders (b̂ maximises
        |G_1(b̂−) − G_2(b̂−)| on the grid, the middle of the maximisers); for n > 2 greedy over the
        whole space and type-l events (l = 1..n−1, 65 cutoffs plus the breakpoints), then single
        swaps while they lower cond(M)."""
        n, m = self.n, len(rows)
        if m == 1:
            events = [Event(0)]
        elif n == 2:
            if cutoff is None:
                d = np.abs(self.Gs[0] - self.Gs[1])
                best = np.nonzero(d >= d.max() - 1e-12)[0]
                cutoff = float(self.grid[best[len(best) // 2]])
            events = [Event(1, float(cutoff), strict=True, complement=True), Event(1, float(cutoff), strict=True)]
        else:
            if cutoff is not None:
                raise ConfigError(f"cutoff applies to two bidders only (Section 3); with {n} bidders leave cutoff=None")
            betas = np.unique(np.concatenate([np.linspace(self.lo, self.hi, self.N_G)[:: self.BETA_STRIDE], self.breakpoints]))
            cands = [Event(0)] + [Event(l, float(b)) for l in range(1, n) for b in betas]
            C = _matrix_from_cdfs(self._cdfs_at(cands), cands, rows)
            chosen = [0]
            while len(chosen) < m:
                scores = [_cond(C[:, chosen + [c]]) if c not in chosen else math.inf for c in range(len(cands))]
                chosen.append(int(np.argmin(scores)))
            best = _cond(C[:, chosen])
            for _ in range(3):
                improved = False
                for pos in range(m):
                    for c in range(len(cands)):
                        if c in chosen:
                            continue
                        trial = chosen[:pos] + [c] + chosen[pos + 1 :]
                        val = _cond(C[:, trial])
                        if val < best * (1 - 1e-9):
                            chosen, best, improved = trial, val, True
                if not improved:
                    break
            events = [cands[c] for c in chosen]
        return events, _matrix_from_cdfs(self._cdfs_at(events), events, rows)

    # -- payment tables -------------------------------------------------------------------------
    def p_tilde_tables(self, rows, n_grid: int, P: float) -> tuple[np.ndarray, np.ndarray]:
        """p̃ (eq. (9)) for the bidders ``rows``: ``(rows, K)`` at the breakpoints (membership in
        the closed bid space) and ``(rows, K − 1, n_grid)`` on the segment nodes (membership: the
        bid space covers the segment; the two end nodes moved 1e-12·max(|a|, |b|, 1) inside, so
        they hold the one-sided limits). One payment_at_bid call per bidder."""
        bps, K = self.breakpoints, len(self.breakpoints)
        t = np.linspace(0.0, 1.0, n_grid)
        xs = np.zeros((max(K - 1, 0), n_grid))
        for k in range(K - 1):
            a, b = bps[k], bps[k + 1]
            xs[k] = a + t * (b - a)
            nudge = 1e-12 * max(abs(a), abs(b), 1.0)
            xs[k, 0], xs[k, -1] = a + nudge, b - nudge  # one-sided limits at the segment ends
        point = np.full((len(rows), K), P)
        seg = np.full((len(rows), max(K - 1, 0), n_grid), P)
        for r, i in enumerate(rows):
            lo, hi = self.spaces[i]
            at = (lo <= bps) & (bps <= hi)
            cover = (lo <= bps[:-1]) & (bps[1:] <= hi)
            x = np.concatenate([bps[at], xs[cover].ravel()])
            if not len(x):
                continue
            pay = np.asarray(self.h.payment_at_bid(i, np.clip(x, lo, hi)), np.float64)
            point[r, at] = pay[: at.sum()]
            seg[r, cover] = pay[at.sum() :].reshape(-1, n_grid)
        return point, seg


def theorem1(h) -> dict[str, Any]:
    """Theorem 1 for a hierarchical mechanism ``h`` (float64, at construction).

    Returns a dict with
        ``pairs``: for every pair i < j, ``equal_G`` (sup-distance of G_i, G_j, and of G_i(·−),
        G_j(·−), below 1e-8 on a 4097-point grid of the bid range plus the breakpoints),
        ``sup_distance``, ``payment_gap`` (max |p_i^h(I_i⁻¹(b)) − p_j^h(I_j⁻¹(b))| over common bids,
        only when equal) and ``ok`` (condition (i) or (ii) holds);
        ``groups`` (bidders with identical G), ``unique_bidders`` (N_U), ``implementable``;
        ``mismatch``: per bidder, E_{b~G_i}[(p̃_i(b) − q(b))²] with q the group mean (composite
        Gauss–Legendre on quantiles, 1024 nodes; 0 for distributionally unique bidders);
        ``events``, ``matrix`` (M on N_U for the default events) and its ``condition_number``.
    """
    con = _Construction(h)
    info = con.analyse()
    events, M = con.choose_events(info["unique_bidders"], None)
    info["events"], info["matrix"], info["condition_number"] = events, M, _cond(M)
    return info


def symmetric_implementation(
    h, cutoff: float | None = None, punishment: float | None = None, *, n_grid: int = 2049
) -> SymmetricAuction:
    """A symmetric auction implementing the hierarchical mechanism ``h`` (Observation 1, eq. (9)).

    ``cutoff`` is b̂ of the two-bidder rule (default: argmax |G_1(b̂−) − G_2(b̂−)|); ``punishment``
    is P of eq. (9) (default max_i v̄_i; a smaller P may make bids off a bidder's space profitable);
    ``n_grid`` nodes per segment tabulate π. Refuses with a
    ConfigError when Theorem 1 fails. Returns ``SymmetricAuction(rule, IndexStrategy(h), 0.0)``;
    the rule carries the events, M, its condition number and N_U.
    """
    n = h.n_agents
    if n < 1:
        raise ConfigError("symmetric_implementation needs at least one bidder")
    if not isinstance(n_grid, int) or n_grid < 2:
        raise ConfigError(f"n_grid must be an integer >= 2 (nodes per segment), got {n_grid!r}")
    con = _Construction(h)
    info = con.analyse(mismatch=False)
    for p in info["pairs"]:
        if not p["ok"]:
            raise ConfigError(
                f"no symmetric implementation: bidders {p['i']} and {p['j']} have the same bid distribution "
                f"(G_i = G_j) but pay differently at equal bids (gap {p['payment_gap']:.3g}), so Theorem 1 fails; "
                "change the indices or randomise over implementable mechanisms (Deb-Pai Section 4)"
            )
    P = max(float(pr.high) for pr in h.priors) if punishment is None else float(punishment)
    rows = info["unique_bidders"]
    events, M = con.choose_events(rows, cutoff)
    cond = _cond(M)
    if not math.isfinite(cond) or cond > 1e12:
        raise ConfigError(
            f"the event matrix M is singular (condition number {cond:.3g}); "
            + ("choose a cutoff where G_1(b-) and G_2(b-) differ" if cutoff is not None else "the bid distributions are too close")
        )
    Minv = np.linalg.inv(M)
    point_p, seg_p = con.p_tilde_tables(rows, n_grid, P)
    K = len(con.breakpoints)
    point = (Minv @ point_p).T  # (K, E): π = M⁻¹ p̃, eq. (8)
    seg = np.einsum("er,rsm->sme", Minv, seg_p) if K > 1 else np.broadcast_to(point[:1][None], (1, n_grid, len(events))).copy()
    rule = EventPaymentRule(
        breakpoints=con.breakpoints,
        point_values=point,
        segment_values=seg,
        outside_values=Minv @ np.full(len(rows), P),
        betas=np.asarray([ev.beta for ev in events], np.float64),
        strict=np.asarray([ev.strict for ev in events], bool),
        weight_table=_weight_table(events, n),
        events=tuple(events),
        matrix=tuple(tuple(float(x) for x in row) for row in M),
        condition_number=cond,
        bidders=tuple(int(i) for i in rows),
    )
    return SymmetricAuction(rule=rule, strategy=IndexStrategy(h), reserve=0.0)
