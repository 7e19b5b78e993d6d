"""Purification: a deterministic mechanism with the interim allocations of a stochastic one.

Chen, He, Li & Sun, "Equivalence of stochastic and deterministic mechanisms" (CHLS below),
Theorem 1: with I ≥ 2 agents, independent atomless types and separable payoffs

    u_i^k(v) = Σ_m w_im^k(v_i) · r_im^k(v_−i)                                   (CHLS, Definition 1)

every allocation rule q (a lottery q(v) over K alternatives at each profile v) has a deterministic
rule q̃ with the same interim moments

    M_i(v_i, k, m) = E_{v_−i}[ q^k(v_i, v_−i) · r_im^k(v_−i) ]     for all i, v_i, k, m,       (*)

(CHLS eqs. (3)–(4) in the proof of Theorem 1, Appendix A.2), hence (transfers kept) the same
interim allocations (r ≡ 1), interim utilities, BIC, revenue and surplus. The paper's eq. (4)
also matches the moments of the other agents' r_j (j ≠ i) and every alternative, and its eq. (1)
conditions on every coalition (for Remark 3); the conclusions of Theorem 1 only use (*), the
moments that enter agent i's own interim utility, and that is what is matched here. The proof purifies with the *other* agents' dispersed information ("mutual
purification"); this module makes the construction computable in two ways.

Finite (grid) type spaces, :func:`vertex_purify` then :func:`latin_split`.
  On a finite space q is a table (T_1, …, T_n, K) and (*) is a finite system of linear equations
  in q̃. The set {q̃ ≥ 0, Σ_k q̃(t, ·) = 1, (*) holds, q̃ = 0 off the support of q} is a polytope
  containing q; its vertices have few positive entries, so most profiles come out deterministic
  (:func:`vertex_purify`). A finite space has atoms, so full purification can fail there (CHLS
  Section 5.3, Example 3; one agent: q̃ = q is the only point). The remaining fractional profiles
  are resolved as in CHLS Example 1: split every type into R equally likely payoff-irrelevant
  sub-types and pick the alternative from the cyclic ("Latin") pattern (Σ_i s_i) mod R
  (:func:`latin_split`); the result is deterministic on the enlarged space.

Continuous (atomless) types, :func:`dither_choice`.
  The same pattern with the sub-type replaced by the fractional part of R·F_i(v_i): the
  alternative is chosen by u = (Σ_i frac(R F_i(v_i))) mod 1 against the cumulative lottery, with
  interim error O(1/R).

Support (CHLS Section 5.2): both constructions only ever select alternatives k with q^k(v) > 0,
so a stochastic rule that implements a social goal pointwise keeps doing so.

Mechanisms and settings, :func:`purify`. The array-level functions above applied to a
mechanism of a social-choice, single-item or additive multi-item setting (auctions through the
auction map: alternatives = assignments, outcomes = product lotteries): the vertex method reads the
mechanism's table on a finite (or gridded) type space and returns a deterministic table mechanism
on the space enlarged by payoff-irrelevant sub-types (:func:`latin_counts`, the compact form of
:func:`latin_split` for any R); the dither wraps the mechanism. Both keep the transfers profile by
profile and report what was preserved (:mod:`diffmech.purified`). On finite spaces the result is
exact when the vertex's entries have small denominators; for generic real lotteries (a learned
mechanism) a finite split matches interim allocations only up to a lattice error of order
p_−i/R (see :mod:`diffmech.purified` for why no finite split can be exact in general).

Conventions: a finite type space of agent i is given by probs (T_i,) summing to 1, agents
independent; profiles are in C order over (t_1, …, t_n); moment tables r_i have shape
(T_1, …, T_n, K, M_i) (or any shape broadcastable to it) and must not depend on t_i
(CHLS Definition 1: r_im^k is a function of v_−i only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from .errors import ConfigError

__all__ = [
    "VertexPurification",
    "LatinSplit",
    "LatinCounts",
    "Purification",
    "interim_moments",
    "vertex_purify",
    "latin_split",
    "latin_counts",
    "dither_choice",
    "purify",
]

#: largest enlarged table (cells Π_i T_i·R) that :func:`latin_split` builds
MAX_ENLARGED_CELLS = 1 << 22
#: entries within this of 0 or 1 are snapped to 0 or 1
_SNAP = 1e-12


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_probs(probs) -> list[np.ndarray]:
    if isinstance(probs, np.ndarray) and probs.ndim == 1:
        raise ConfigError("probs must be a sequence with one 1-D probability vector per agent, not a single vector")
    try:
        probs = [np.asarray(p, dtype=np.float64) for p in probs]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"probs must be a sequence of 1-D probability vectors, one per agent ({e})") from None
    if not probs:
        raise ConfigError("probs is empty; give one probability vector per agent")
    for i, p in enumerate(probs):
        if p.ndim != 1 or p.size == 0:
            raise ConfigError(f"probs[{i}] must be a non-empty 1-D vector, got shape {p.shape}")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ConfigError(f"probs[{i}] must be finite and non-negative")
        if abs(float(p.sum()) - 1.0) > 1e-9:
            raise ConfigError(f"probs[{i}] sums to {float(p.sum()):.12g}, not 1; normalise it first")
    return [p / p.sum() for p in probs]


def _check_table(q, probs) -> tuple[np.ndarray, list[np.ndarray]]:
    """Validated float64 copies: q (T_1, …, T_n, K) stochastic, probs normalised."""
    probs = _check_probs(probs)
    q = np.asarray(q, dtype=np.float64)
    n = len(probs)
    shape = tuple(p.size for p in probs)
    if q.ndim != n + 1 or q.shape[:n] != shape or q.shape[-1] < 1:
        raise ConfigError(f"q must have shape (T_1, …, T_n, K) = {shape + ('K',)} for {n} agents, got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ConfigError("q must be finite; it has nan or inf entries")
    if np.any(q < -1e-12):
        raise ConfigError(f"q has negative entries (min {q.min():.3g}); every row must be a lottery over the K alternatives")
    rows = q.sum(-1)
    worst = float(np.max(np.abs(rows - 1.0)))
    if worst > 1e-9:
        bad = np.unravel_index(int(np.argmax(np.abs(rows - 1.0))), rows.shape)
        raise ConfigError(f"q is not stochastic: row {tuple(int(x) for x in bad)} sums to {rows[bad]:.12g}; every profile's lottery must sum to 1")
    return np.clip(q, 0.0, None), probs


def _check_moments(moments, q: np.ndarray, n: int) -> list[np.ndarray] | None:
    """Moment tables broadcast to (T_1, …, T_n, K, M_i), checked not to depend on t_i."""
    if moments is None:
        return None
    if isinstance(moments, np.ndarray) or len(moments) != n:
        raise ConfigError(f"moments must be a sequence of {n} arrays (one per agent) of shape (T_1, …, T_n, K, M)")
    out = []
    for i, r in enumerate(moments):
        r = np.asarray(r, dtype=np.float64)
        if r.ndim != n + 2:
            raise ConfigError(f"moments[{i}] must have shape (T_1, …, T_n, K, M) = {q.shape + ('M',)}, got {r.shape}")
        try:
            r = np.broadcast_to(r, q.shape + (r.shape[-1],))
        except ValueError:
            raise ConfigError(f"moments[{i}] of shape {r.shape} does not broadcast to {q.shape + ('M',)}") from None
        if not np.all(np.isfinite(r)):
            raise ConfigError(f"moments[{i}] must be finite")
        if r.shape[i] > 1 and np.max(np.ptp(r, axis=i)) > 1e-12 * (1.0 + np.max(np.abs(r))):
            raise ConfigError(f"moments[{i}] depends on agent {i}'s own type; r_i must be a function of the others' types only (CHLS Definition 1)")
        out.append(r)
    return out


# --------------------------------------------------------------------------------------------
# Interim moments
# --------------------------------------------------------------------------------------------


def _others_weight(probs: list[np.ndarray], i: int) -> np.ndarray:
    """p_−i(t_−i) broadcast over the profile axes (size 1 on axis i)."""
    n = len(probs)
    w = np.ones((1,) * n)
    for j, p in enumerate(probs):
        if j != i:
            w = w * p.reshape((1,) * j + (-1,) + (1,) * (n - j - 1))
    return w


def interim_moments(q, probs, moments=None) -> list[np.ndarray]:
    """Interim allocations Q_i (T_i, K) or interim moments M_i (T_i, K, M_i), one per agent.

    Q_i(t_i, k) = Σ_{t_−i} p_−i(t_−i) q(t, k),
    M_i(t_i, k, m) = Σ_{t_−i} p_−i(t_−i) q(t, k) r_i(t, k, m)      (CHLS (*), finite version),

    with p_−i = Π_{j≠i} p_j (independent types). One einsum per agent; no loop over profiles.

    Args:
        q: (T_1, …, T_n, K) lotteries over K alternatives (rows ≥ 0 summing to 1).
        probs: n probability vectors (T_i,).
        moments: None, or n moment tables r_i broadcastable to (T_1, …, T_n, K, M_i).
    """
    q, probs = _check_table(q, probs)
    return _interim(q, probs, _check_moments(moments, q, len(probs)))


def _interim(q: np.ndarray, probs: list[np.ndarray], moments: list[np.ndarray] | None) -> list[np.ndarray]:
    n = len(probs)
    axes = list(range(n + 1))  # profile axes 0..n-1, alternative axis n
    out = []
    for i in range(n):
        operands: list = [q, axes]
        for j, p in enumerate(probs):
            if j != i:
                operands += [p, [j]]
        if moments is None:
            out.append(np.einsum(*operands, [i, n], optimize=True))
        else:
            operands += [moments[i], axes + [n + 1]]
            out.append(np.einsum(*operands, [i, n, n + 1], optimize=True))
    return out


# --------------------------------------------------------------------------------------------
# Vertex purification (finite types)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VertexPurification:
    """A vertex q̃ of the purification polytope and what it achieved.

    Attributes:
        q_tilde: (T_1, …, T_n, K), entries within 1e-12 of 0/1 snapped.
        n_deterministic: profiles where q̃ puts probability 1 on one alternative.
        n_fractional: the other profiles.
        fractional_bound: the structural bound Σ_i T_i(K·M_i − 1) − (n − 1)(K − 1) on
            ``n_fractional`` (M_i counts the constant moment; see :func:`vertex_purify`).
        max_moment_error: max |M_i(q̃) − M_i(q)| over agents, types, alternatives and moments
            (the allocation moment r ≡ 1 included).
        support_preserved: q̃(t, k) > 0 only where q(t, k) > 0.
    """

    q_tilde: np.ndarray
    n_deterministic: int
    n_fractional: int
    fractional_bound: int
    max_moment_error: float
    support_preserved: bool


def _with_allocation(q: np.ndarray, n: int, moments: list[np.ndarray] | None) -> list[np.ndarray]:
    """Each agent's moment tables with the constant moment r ≡ 1 (the allocation) first."""
    ones = np.ones(q.shape + (1,))
    if moments is None:
        return [ones] * n
    return [np.concatenate([ones, r], axis=-1) for r in moments]


def _equality_system(q: np.ndarray, probs: list[np.ndarray], moments: list[np.ndarray], support: np.ndarray):
    """Sparse A, b of the purification LP on the variables q̃(t, k), (t, k) in the support.

    Rows: P row sums Σ_k q̃(t, k) = 1, then for each agent i the T_i·K·M_i rows
    Σ_{t_−i} p_−i(t_−i) r_i(t, k, m) q̃(t, k) = M_i(t_i, k, m), row index (t_i·K + k)·M_i + m.
    Built in COO form from index arithmetic (no loop over profiles); empty rows are dropped.
    """
    n = len(probs)
    T = q.shape[:n]
    K = q.shape[-1]
    P = math.prod(T)
    idx = np.flatnonzero(support.ravel())
    prof, alt = np.divmod(idx, K)
    t = np.unravel_index(prof, T)
    target = _interim(q, probs, moments)
    r_parts, c_parts, v_parts, b_parts = [prof], [np.arange(idx.size)], [np.ones(idx.size)], [np.ones(P)]
    offset = P
    for i in range(n):
        Mi = moments[i].shape[-1]
        w = np.ones(idx.size)
        for j, p in enumerate(probs):
            if j != i:
                w = w * p[t[j]]
        data = w[:, None] * moments[i].reshape(P * K, Mi)[idx]  # (nnz, M_i)
        rows = offset + (t[i] * K + alt)[:, None] * Mi + np.arange(Mi)
        r_parts.append(rows.ravel())
        c_parts.append(np.repeat(np.arange(idx.size), Mi))
        v_parts.append(data.ravel())
        b_parts.append(target[i].ravel())
        offset += T[i] * K * Mi
    rows = np.concatenate(r_parts)
    cols = np.concatenate(c_parts)
    vals = np.concatenate(v_parts)
    b = np.concatenate(b_parts)
    keep = vals != 0.0
    A = sparse.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(offset, idx.size))
    nonempty = np.diff(A.indptr) > 0
    return A[nonempty], b[nonempty], idx, b[~nonempty]


def vertex_purify(q, probs, moments=None, *, objective=None, seed: int = 0, tol: float = 1e-9) -> VertexPurification:
    """A basic (vertex) solution q̃ of the purification LP of q on a finite type space.

    The LP (finite form of CHLS Theorem 1 with the support condition of Section 5.2):

        q̃(t, k) ≥ 0,   Σ_k q̃(t, k) = 1                        for every profile t,
        Σ_{t_−i} p_−i(t_−i) r_i(t, k, m) q̃(t, k) = M_i(t_i, k, m)  for all i, t_i, k, m,
        q̃(t, k) = 0   wherever q(t, k) = 0                      (support preservation),

    where the moments always include r ≡ 1, so the interim allocations Q_i are kept, and M_i are
    the interim moments of q itself (q is feasible). It is solved by HiGHS dual simplex
    (``scipy.optimize.linprog(method="highs-ds")``), which returns a basic solution, with a random
    linear objective c ~ U[0, 1) (seeded), so the optimal vertex is generic (unique with
    probability 1).

    Why most profiles are deterministic: at a vertex the columns of the positive entries are
    linearly independent, so #{q̃(t, k) > 0} ≤ rank(A). Every profile has at least one positive
    entry and a fractional profile at least two, so

        #fractional profiles ≤ rank(A) − P
                             ≤ Σ_i T_i (K·M_i − 1) − (n − 1)(K − 1),

    because each agent's Σ_k of the r ≡ 1 rows repeats the row sums (T_i dependencies) and the
    ex ante probability of each alternative, Σ_{t_i} p_i Q_i(t_i, k), is the same for every agent
    ((n − 1)(K − 1) more). With private values (M_i = 1): (K − 1)(Σ_i T_i − n + 1), against
    P = Π_i T_i profiles.

    After the solve, entries within 1e-12 of 0 or 1 are snapped, the positive entries are
    re-solved by least squares on their (independent) columns if the residual exceeds 1e-12, and
    the moments are re-verified to ``tol``.

    Args:
        q: (T_1, …, T_n, K) stochastic table.
        probs: n probability vectors (T_i,).
        moments: None (private values: only Q_i), or n moment tables r_i broadcastable to
            (T_1, …, T_n, K, M_i) that do not depend on t_i.
        objective: optional (T_1, …, T_n, K) cost to minimise instead of the random one (then the
            optimum may be a face; dual simplex still returns one of its vertices).
        seed: seed of the random objective.
        tol: largest accepted moment error.
    """
    q, probs = _check_table(q, probs)
    n = len(probs)
    K = q.shape[-1]
    r = _with_allocation(q, n, _check_moments(moments, q, n))
    support = q > 0.0
    A, b, idx, dropped = _equality_system(q, probs, r, support)
    if dropped.size and np.max(np.abs(dropped)) > tol:  # pragma: no cover - q is feasible
        raise ConfigError("purification LP is infeasible on the support of q; check q and the moment tables")
    if objective is None:
        c = np.random.default_rng(seed).random(idx.size)
    else:
        objective = np.asarray(objective, dtype=np.float64)
        if objective.shape != q.shape or not np.all(np.isfinite(objective)):
            raise ConfigError(f"objective must be a finite array of shape {q.shape}, like q")
        c = objective.ravel()[idx]
    res = linprog(
        c,
        A_eq=A,
        b_eq=b,
        bounds=(0.0, None),
        method="highs-ds",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    if res.status != 0 or res.x is None:
        raise ConfigError(f"HiGHS did not solve the purification LP (status {res.status}: {' '.join(str(res.message).split())}); check q and the moment tables")
    x = np.where(np.abs(res.x) < _SNAP, 0.0, np.clip(res.x, 0.0, None))
    if np.max(np.abs(A @ x - b)) > 1e-12:  # polish the basic entries on their own columns
        pos = np.flatnonzero(x > 0)
        sol = np.linalg.lstsq(A[:, pos].toarray(), b, rcond=None)[0] if pos.size * A.shape[0] <= 1 << 24 else None
        if sol is not None and np.all(sol > -_SNAP):
            x = np.zeros_like(x)
            x[pos] = np.clip(sol, 0.0, None)
    x = np.where(np.abs(x) < _SNAP, 0.0, x)
    x = np.where(np.abs(x - 1.0) < _SNAP, 1.0, x)
    qt = np.zeros(q.size)
    qt[idx] = x
    qt = qt.reshape(q.shape)
    err = max(float(np.max(np.abs(a - e))) for a, e in zip(_interim(qt, probs, r), _interim(q, probs, r)))
    if err > tol:
        raise ConfigError(f"vertex purification lost accuracy: interim moment error {err:.3g} > tol {tol:.3g}; rescale the moment tables or raise tol")
    det = np.any(qt == 1.0, axis=-1)
    n_det = int(det.sum())
    bound = sum(T_i * (K * ri.shape[-1] - 1) for T_i, ri in zip(q.shape[:n], r)) - (n - 1) * (K - 1)
    return VertexPurification(
        q_tilde=qt,
        n_deterministic=n_det,
        n_fractional=int(det.size - n_det),
        fractional_bound=int(bound),
        max_moment_error=err,
        support_preserved=bool(np.all(support | (qt == 0.0))),
    )


# --------------------------------------------------------------------------------------------
# Latin split of the remaining fractional profiles (finite types)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatinSplit:
    """A deterministic mechanism on the enlarged type space (types × R sub-types).

    Attributes:
        table: int array (T_1·R, …, T_n·R): the index of the chosen alternative; sub-type s of
            type t of agent i sits at index t·R + s.
        probs: the enlarged priors, p_i(t)/R at t·R + s.
        R: sub-types per type.
        interim_error: max over agents, enlarged types (t_i, s_i) and alternatives of
            |Q̃_i(t_i, s_i, k) − Q_i(t_i, k)| with Q_i the interim allocation of the input table;
            0 up to rounding when ``exact``, else ≤ 1/R.
        exact: every entry of the input was a multiple of 1/R (no rounding was needed).
    """

    table: np.ndarray
    probs: list[np.ndarray]
    R: int
    interim_error: float
    exact: bool


def _denominator(x: float) -> int | None:
    """Denominator of x as a fraction with denominator ≤ 10⁶, if that is x to 1e-12."""
    f = Fraction(x).limit_denominator(10**6)
    return f.denominator if abs(float(f) - x) <= 1e-12 else None


def _largest_remainder(q: np.ndarray, R: int) -> np.ndarray:
    """Integers N(t, k) ≥ 0 with Σ_k N(t, k) = R and |N/R − q| < 1/R (largest remainder method).

    N = ⌊R q⌋ plus one unit to the entries with the largest remainders R q − ⌊R q⌋. The number
    of units to hand out is the sum of the remainders, which is smaller than the number of
    positive remainders, so an entry with q = 0 never receives one (support is preserved).
    """
    scaled = R * q
    base = np.floor(scaled + 1e-9)  # multiples of 1/R read from float stay exact
    rem = np.clip(scaled - base, 0.0, None)
    units = np.rint(R - base.sum(-1)).astype(np.int64)  # (…,)
    order = np.argsort(-rem, axis=-1, kind="stable")
    rank = np.argsort(order, axis=-1, kind="stable")  # position of each entry in the order
    return (base + (rank < units[..., None])).astype(np.int64)


def latin_split(q_tilde, probs, *, max_r: int = 64) -> LatinSplit:
    """Deterministic on an enlarged space: split each type into R payoff-irrelevant sub-types.

    Every type t_i of every agent becomes R equally likely sub-types s_i ∈ {0, …, R − 1}
    (probability p_i(t_i)/R each; payoffs do not depend on s). At (t, s) the rule picks the
    alternative k whose cumulative interval [C_{k−1}(t), C_k(t)) contains ((Σ_i s_i) mod R)/R,
    C(t) = cumsum of q̃(t, ·) — the cyclic ("Latin") pattern of CHLS Example 1, which is this
    construction with a 2 × 2 table and R = 2.

    Exactness. Fix agent i and (t_i, s_i). The others' sub-types are independent and uniform on
    {0, …, R − 1}, so (Σ_j s_j) mod R is uniform on {0, …, R − 1} given s_i (n ≥ 2 needed), and
    independent of t_−i. So given (t_i, s_i, t_−i) alternative k is chosen with probability
    #{m : m/R ∈ [C_{k−1}, C_k)}/R = q̃(t, k) whenever every q̃(t, k) is a multiple of 1/R; the
    interim allocation (and every interim moment r_i(t_−i), which ignores s) of (t_i, s_i) equals
    that of t_i under q̃, sub-type by sub-type.

    R is the lcm of the denominators of the fractional entries (recovered with
    ``Fraction(x).limit_denominator(10**6)`` and verified to 1e-12). If those are not all
    recovered, or the lcm exceeds ``max_r`` (or the enlarged table would exceed
    ``MAX_ENLARGED_CELLS``), R is the largest allowed value and each row is rounded to multiples
    of 1/R by the largest remainder method (rows still sum to 1, zero entries stay zero); then the
    per-entry change is < 1/R and so is the reported interim error. Only alternatives with
    q̃(t, k) > 0 are ever chosen.

    Args:
        q_tilde: (T_1, …, T_n, K) stochastic table (typically ``vertex_purify(...).q_tilde``).
        probs: n ≥ 2 probability vectors (T_i,).
        max_r: the largest number of sub-types per type.
    """
    q, probs = _check_table(q_tilde, probs)
    n = len(probs)
    if n < 2:
        raise ConfigError("latin_split needs at least two agents: with one agent the sub-type pattern cannot average out (CHLS need I ≥ 2)")
    if not isinstance(max_r, (int, np.integer)) or max_r < 1:
        raise ConfigError(f"max_r must be a positive integer, got {max_r!r}")
    T = q.shape[:n]
    K = q.shape[-1]
    P = math.prod(T)
    r_cap = 1
    while math.prod(t * (r_cap + 1) for t in T) <= MAX_ENLARGED_CELLS:
        r_cap += 1
    r_max = int(min(max_r, r_cap))
    frac = q[(q > _SNAP) & (q < 1.0 - _SNAP)]
    R, exact = 1, True
    for x in np.unique(frac):
        d = _denominator(float(x))
        if d is None:
            exact = False
            break
        R = math.lcm(R, d)
        if R > r_max:
            exact = False
            break
    if not exact:
        R = r_max
    counts = _largest_remainder(q, R)  # (T…, K) integers summing to R per row
    cum = np.cumsum(counts, axis=-1)  # N_k = R·C_k
    m = np.arange(R)
    choice = (cum[..., None, :] <= m[:, None]).sum(-1)  # (T…, R): the k with N_{k−1} ≤ m < N_k
    ssum = np.zeros((R,) * n, dtype=np.int64)
    for i in range(n):  # n small; vectorised over sub-profiles
        ssum = ssum + np.arange(R).reshape((1,) * i + (R,) + (1,) * (n - i - 1))
    mod = ssum % R  # (R,)*n
    big = np.take_along_axis(
        choice.reshape((P, R)), np.broadcast_to(mod.reshape(1, -1), (P, R**n)), axis=1
    ).reshape(T + (R,) * n)
    perm = [a for i in range(n) for a in (i, n + i)]  # (t_1, s_1, t_2, s_2, …)
    table = big.transpose(perm).reshape(tuple(t * R for t in T))
    eprobs = [np.repeat(p / R, R) for p in probs]
    # achieved interim error, sub-type by sub-type, from the enlarged table itself
    onehot = np.zeros(table.shape + (K,))
    np.put_along_axis(onehot, table[..., None], 1.0, axis=-1)
    target = _interim(q, probs, None)
    got = _interim(onehot, eprobs, None)
    err = max(float(np.max(np.abs(g - np.repeat(t_, R, axis=0)))) for g, t_ in zip(got, target))
    return LatinSplit(table=table, probs=eprobs, R=int(R), interim_error=err, exact=bool(exact))


# --------------------------------------------------------------------------------------------
# Latin counts: the rounding behind a compact Latin split (finite types, any R)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatinCounts:
    """The integer table of a Latin split, without the enlarged table itself.

    Attributes:
        counts: int64 (T_1, …, T_n, K), N(t, k) ≥ 0 with Σ_k N(t, k) = R; the deterministic
            rule on the enlarged space picks at (t, s) the k with N_{k−1}(t) ≤ (Σ_i s_i) mod R <
            N_k(t) (cumulative counts), so every sub-type's interim allocation is that of N/R.
        R: sub-types per type.
        exact: N/R = q̃ (every entry of q̃ is a multiple of 1/R, up to 1e-9).
        rounding: ``"exact"``, ``"milp"`` (the error-minimising rounding) or
            ``"largest_remainder"``.
        interim_error: max over agents, types, alternatives (and moments) of the interim error
            |Σ_{t−i} p_−i r_i (N/R − q̃)|, allocation rows (r ≡ 1) included.
    """

    counts: np.ndarray
    R: int
    exact: bool
    rounding: str
    interim_error: float


def _exact_lcm(q: np.ndarray, r_max: int) -> int | None:
    """The lcm of the denominators of the fractional entries of q, if all are recovered (≤ 10⁶,
    to 1e-12) and the lcm is ≤ r_max; else None."""
    R = 1
    for x in np.unique(q[(q > _SNAP) & (q < 1.0 - _SNAP)]):
        d = _denominator(float(x))
        if d is None:
            return None
        R = math.lcm(R, d)
        if R > r_max:
            return None
    return R


def _interim_rows(q_shape, probs, moments, R, idx):
    """Sparse (rows, entries) matrix of the interim moments of the entries ``idx`` (flat indices of
    (t, k)), each divided by R: row ((i, t_i, k, m)) = p_−i(t_−i) r_i(t, k, m) / R."""
    n = len(probs)
    T, K = q_shape[:n], q_shape[-1]
    prof, alt = np.divmod(idx, K)
    t = np.unravel_index(prof, T)
    rows, cols, vals, offset = [], [], [], 0
    for i in range(n):  # n small; vectorised over entries
        r = moments[i]
        Mi = r.shape[-1]
        w = np.ones(idx.size) / R
        for j, p in enumerate(probs):
            if j != i:
                w = w * p[t[j]]
        data = w[:, None] * r.reshape(-1, Mi)[idx]
        rows.append((offset + (t[i] * K + alt)[:, None] * Mi + np.arange(Mi)).ravel())
        cols.append(np.repeat(np.arange(idx.size), Mi))
        vals.append(data.ravel())
        offset += T[i] * K * Mi
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(offset, idx.size))


def _regret_parts(q: np.ndarray, probs, payoffs: np.ndarray, transfers):
    """Per agent: U_i(t_a, r_b) = Σ_{t−i} p_−i [Σ_k q((b, t−i), k) u_i^k(a, t−i)] − T_i(b) as (T_i, T_i),
    and the pieces to differentiate it in q: the own-first payoff table (T_i, P/T_i, K) and p_−i."""
    n = len(probs)
    out = []
    for i in range(n):  # one vectorised block per agent
        others = [p for j, p in enumerate(probs) if j != i]
        w = np.ones(1)
        for p in others:
            w = np.multiply.outer(w, p).ravel()
        ui = np.moveaxis(payoffs[..., i, :], i, 0).reshape(len(probs[i]), -1, q.shape[-1])
        qi = np.moveaxis(q, i, 0).reshape(len(probs[i]), -1, q.shape[-1])
        U = np.einsum("ark,brk,r->ab", ui, qi, w) - np.asarray(transfers[i], np.float64)[None, :]
        out.append((U, ui, w))
    return out


def _regret_excess(counts, R, probs, payoffs, transfers, parts0) -> float:
    """max over agents and types of (regret of N/R) − (regret of q̃), the interim regret added by rounding."""
    worst = -np.inf
    for (U0, _, _), (U1, _, _) in zip(parts0, _regret_parts(counts / R, probs, payoffs, transfers)):
        reg0 = U0.max(1) - np.diag(U0)
        reg1 = U1.max(1) - np.diag(U1)
        worst = max(worst, float(np.max(reg1 - reg0)))
    return worst


def _regret_rows(q_shape, probs, R, idx, parts0):
    """Sparse rows (i, a, b), b ≠ a, of U_i^N(a, b) − U_i^N(a, a) as a linear function of the
    rounding x on the entries ``idx`` (coefficients p_−i u_i^k(a, t−i)/R), and the constant part
    from q̃ minus the regret of q̃ at a (so row ≤ 0 means: no regret added at a)."""
    n = len(probs)
    T, K = q_shape[:n], q_shape[-1]
    prof, alt = np.divmod(idx, K)
    t = np.unravel_index(prof, T)
    rows, cols, vals, consts, offset = [], [], [], [], 0
    for i, (U0, ui, w) in enumerate(parts0):  # one vectorised block per agent
        Ti = T[i]
        own = t[i]
        rest = np.ravel_multi_index(tuple(t[j] for j in range(n) if j != i), tuple(T[j] for j in range(n) if j != i)) if n > 1 else np.zeros_like(own)
        coef = w[rest][None, :] * ui[:, rest, alt] / R  # (a, entry): weight of x_e in U(a, own_e)
        a = np.arange(Ti)[:, None]
        e = np.arange(idx.size)[None, :]
        # + coef[a, e] in rows (a, own_e), a ≠ own_e; − coef[own_e, e] in rows (own_e, b), b ≠ own_e
        m1 = a != own[None, :]
        r1 = (offset + a * Ti + own[None, :])[m1]
        c1 = np.broadcast_to(e, m1.shape)[m1]
        v1 = coef[m1]
        b = np.arange(Ti)[:, None]
        m2 = b != own[None, :]
        r2 = (offset + own[None, :] * Ti + b)[m2]
        c2 = np.broadcast_to(e, m2.shape)[m2]
        v2 = -np.broadcast_to(coef[own, np.arange(idx.size)][None, :], m2.shape)[m2]
        rows += [r1, r2]
        cols += [c1, c2]
        vals += [v1, v2]
        reg0 = U0.max(1) - np.diag(U0)
        consts.append((U0 - np.diag(U0)[:, None] - reg0[:, None]).ravel())  # ≤ 0 at q̃
        offset += Ti * Ti
    A = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(offset, idx.size))
    return A, np.concatenate(consts)


def latin_counts(q_tilde, probs, R: int | None = None, *, max_r: int = 64, moments=None, payoffs=None, transfers=None,
                 time_limit: float = 10.0) -> LatinCounts:
    """Integer counts N(t, k) with Σ_k N = R whose Latin split (sub-types s_i ∈ {0, …, R − 1},
    choice by (Σ_i s_i) mod R, see :func:`latin_split`) is as close as possible to q̃ in interim terms.

    R: the given value, else the lcm of the denominators of q̃'s fractional entries when that is
    at most ``max_r`` (then N = R q̃ exactly), else ``max_r``.

    Rounding when R q̃ is not integral. Write R q̃ = B + ρ, B = ⌊R q̃⌋, ρ ∈ [0, 1); then
    N = B + x with x(t, k) ∈ {0, 1}, x = 0 where ρ = 0 (so q̃ = 0 stays 0: support), and
    Σ_k x(t, k) = u(t) := Σ_k ρ(t, k) (an integer). The interim error of agent i's type t_i is

        E_i(t_i, k, m) = Σ_{t−i} p_−i(t_−i) r_i(t, k, m) (x − ρ)(t, k) / R.

    With ``payoffs`` u_i^k(t) ``(T_1, …, T_n, n, K)`` and interim ``transfers`` T_i (n arrays), the
    interim regret the rounding adds is controlled too: with U_i(a, b) the interim utility of type a
    reporting b (transfers fixed), the rows

        D_i(a, b) = U_i^N(a, b) − U_i^N(a, a) − reg_i(a) ≤ z · max|u|,   reg_i(a) = max_b U_i^q̃(a, b) − U_i^q̃(a, a),

    (linear in x) bound the regret added at every type by z·max|u|. The rounding minimises z
    subject to |E| ≤ z (and the D rows): a MILP solved by HiGHS within ``time_limit`` seconds. Its
    LP relaxation is solved by x = ρ with value 0, so only the incumbent matters; the
    largest-remainder rounding (x = 1 on the u(t) largest ρ of each profile) is the fallback, and
    the MILP's result is kept only if its objective max(|E|, added regret / max|u|) is smaller. Each
    fractional profile contributes at most p_−i/R to a row, so the error is below 1/R; it cannot be
    made 0 in general: with uniform sub-types each enlarged interim allocation is a multiple of
    Π_{j≠i} p_j / R when the p_j are equal (the grid), while the target Q_i(t_i, k) is any real number.

    Args:
        q_tilde: (T_1, …, T_n, K) stochastic table.
        probs: n probability vectors.
        R: sub-types per type, or None (see above).
        max_r: the largest R chosen automatically.
        moments: None or n moment tables (as in :func:`vertex_purify`), added to the rounding's rows.
        payoffs, transfers: optional, to bound the added interim regret (see above).
        time_limit: seconds for the MILP (0 skips it).
    """
    q, probs = _check_table(q_tilde, probs)
    n = len(probs)
    if n < 2:
        raise ConfigError("a Latin split needs at least two agents: with one agent the sub-type pattern cannot average out (CHLS need I ≥ 2)")
    r_all = _with_allocation(q, n, _check_moments(moments, q, n))
    if R is None:
        if not isinstance(max_r, (int, np.integer)) or isinstance(max_r, bool) or max_r < 1:
            raise ConfigError(f"max_r must be a positive integer, got {max_r!r}")
        R = _exact_lcm(q, int(max_r)) or int(max_r)
    elif not isinstance(R, (int, np.integer)) or isinstance(R, bool) or R < 1:
        raise ConfigError(f"R must be a positive integer, got {R!r}")
    R = int(R)
    regret = payoffs is not None
    if regret:
        payoffs = np.asarray(payoffs, np.float64)
        if payoffs.shape != q.shape[:n] + (n, q.shape[-1]) or transfers is None or len(transfers) != n:
            raise ConfigError(f"payoffs must have shape {q.shape[:n] + (n, q.shape[-1])} and transfers be n = {n} arrays")
        parts0 = _regret_parts(q, probs, payoffs, transfers)
        umax = max(float(np.max(np.abs(payoffs))), 1e-300)
    scaled = R * q
    base = np.floor(scaled + 1e-9)
    rem = np.clip(scaled - base, 0.0, None)
    rem = np.where(rem < 1e-9, 0.0, rem)
    target = _interim(q, probs, r_all)

    def error(counts):
        got = _interim(counts / R, probs, r_all)
        return max(float(np.max(np.abs(g - t))) for g, t in zip(got, target))

    def score(counts):
        e = error(counts)
        if regret:
            e = max(e, _regret_excess(counts, R, probs, payoffs, transfers, parts0) / umax)
        return e

    if not np.any(rem > 0):
        counts = base.astype(np.int64)
        return LatinCounts(counts, R, True, "exact", error(counts))
    best = _largest_remainder(q, R)
    best_score, how = score(best), "largest_remainder"
    if time_limit and time_limit > 0:
        idx = np.flatnonzero(rem.ravel() > 0)
        units = np.rint(R - base.sum(-1)).ravel().astype(np.int64)  # u(t) per profile
        prof = idx // q.shape[-1]
        used, inv = np.unique(prof, return_inverse=True)
        nv = idx.size
        rho = rem.ravel()[idx]
        A_eq = sparse.csr_matrix((np.ones(nv), (inv, np.arange(nv))), shape=(used.size, nv + 1))
        A = _interim_rows(q.shape, probs, r_all, R, idx)
        c0 = A @ rho
        z = sparse.csr_matrix(np.ones((A.shape[0], 1)))
        blocks = [sparse.hstack([A, -z]), sparse.hstack([A, z])]
        lo = [np.full(A.shape[0], -np.inf), c0]
        hi = [c0, np.full(A.shape[0], np.inf)]
        if regret:  # D = const + A_r (x − ρ) ≤ z·umax
            A_r, const = _regret_rows(q.shape, probs, R, idx, parts0)
            keep = np.diff(A_r.indptr) > 0
            A_r, const = A_r[keep], const[keep]
            blocks.append(sparse.hstack([A_r, sparse.csr_matrix(np.full((A_r.shape[0], 1), -umax))]))
            lo.append(np.full(A_r.shape[0], -np.inf))
            hi.append(A_r @ rho - const)
        cost = np.zeros(nv + 1)
        cost[-1] = 1.0
        res = milp(
            cost,
            constraints=[LinearConstraint(A_eq, units[used], units[used]),
                         LinearConstraint(sparse.vstack(blocks).tocsr(), np.concatenate(lo), np.concatenate(hi))],
            integrality=np.concatenate([np.ones(nv), [0.0]]),
            bounds=Bounds(np.zeros(nv + 1), np.concatenate([np.ones(nv), [np.inf]])),
            options={"time_limit": float(time_limit)},
        )
        if res.x is not None:
            x = np.rint(res.x[:nv]).astype(np.int64)
            counts = base.astype(np.int64).ravel()
            counts[idx] += x
            counts = counts.reshape(q.shape)
            if np.all(counts.sum(-1) == R) and np.all(counts >= 0):
                sc = score(counts)
                if sc < best_score:
                    best, best_score, how = counts, sc, "milp"
    return LatinCounts(best.astype(np.int64), R, False, how, error(best))


# --------------------------------------------------------------------------------------------
# Dither (continuous, atomless types)
# --------------------------------------------------------------------------------------------


def dither_choice(lottery: Float[Array, "*batch K"], quantiles: Float[Array, "*batch n"], R) -> Float[Array, "*batch K"]:
    """One-hot deterministic choice from a lottery by the dither u = (Σ_i frac(R·F_i(v_i))) mod 1.

    At a profile v with lottery q(v) and cumulative C_k = q^1 + … + q^k, the chosen alternative is
    the first k with u < C_k (C_K is guarded against rounding: if u ≥ C_K the last alternative
    with positive probability is chosen). An alternative with q^k(v) = 0 has C_k = C_{k−1} and is
    never chosen (support preservation, CHLS Section 5.2). jit / vmap friendly; R may be a
    Python int or a traced scalar.

    Why the interim error is O(1/R). Write x_j = F_j(v_j) ~ U[0, 1] (atomless F_j) and
    x_j = (c_j + f_j)/R with cell c_j = ⌊R x_j⌋ and f_j = frac(R x_j). For an integer R, c_j is
    uniform on {0, …, R − 1} and f_j ~ U[0, 1) independently of it. Fix agent i, its type v_i and
    the others' cells c; then u = (frac(R x_i) + Σ_{j≠i} f_j) mod 1 ~ U[0, 1) exactly (n ≥ 2),
    independent of c. Let y(c) be the cell midpoint and suppose every C_k(v_i, ·) is L-Lipschitz
    in the others' quantiles in the ℓ1 norm; within a cell |C_k(x) − C_k(y)| ≤ δ := L(n − 1)/(2R).

    * Choosing with the midpoint lottery q(v_i, y(c)) instead would give exactly
      E_c[q^k(v_i, y(c))], since u is uniform given c.
    * The two choices differ only if u lies between C_k(x) and C_k(y) or between C_{k−1}(x) and
      C_{k−1}(y), an event inside {|u − C_k(y)| ≤ δ} ∪ {|u − C_{k−1}(y)| ≤ δ} of probability
      ≤ 4δ = 2L(n − 1)/R given c.
    * |E_c q^k(v_i, y(c)) − E_x q^k(v_i, x)| ≤ 2L · E‖x − y(c)‖_1 = L(n − 1)/(2R) (q^k is
      2L-Lipschitz, mean distance to the midpoint 1/(4R) per coordinate).

    So the dithered interim allocation Q̃_i(v_i, k) differs from Q_i(v_i, k) = E q^k(v_i, v_−i) by at
    most (5/2)·L(n − 1)/R, for every v_i. The rate is sharp: with n = 2, inside a cell
    u = (a + f_j) mod 1 (a = frac(R x_i)) moves together with x_j = (c_j + f_j)/R, so k is chosen
    on a set of f_j of measure |I_k(y)| + [∂_j C_k·(h(C_k) − ½) − ∂_j C_{k−1}·(h(C_{k−1}) − ½)]/R
    + o(1/R), h(C) = (C − a) mod 1, against the cell average |I_k(y)| + o(1/R) of q^k (midpoint y);
    the difference depends on the own type through a and does not average out. If q is constant
    on the cells of width 1/R in every quantile (CHLS Example 1 with R = 2), L = 0 in each cell
    and the dither is exact.

    Args:
        lottery: (…, K) lotteries (non-negative, summing to 1).
        quantiles: (…, n) F_i(v_i) ∈ [0, 1] of each agent's own type, same batch shape.
        R: the dither resolution, a positive integer.
    """
    lottery = jnp.asarray(lottery)
    quantiles = jnp.asarray(quantiles)
    if lottery.ndim < 1 or quantiles.ndim < 1 or lottery.shape[:-1] != quantiles.shape[:-1]:
        raise ConfigError(f"lottery (…, K) and quantiles (…, n) need the same batch shape, got {lottery.shape} and {quantiles.shape}")
    if quantiles.shape[-1] < 2:
        raise ConfigError("the dither needs at least two agents' quantiles; with one agent randomisation cannot be purified")
    if isinstance(R, (int, np.integer)) and R < 1:
        raise ConfigError(f"R must be a positive integer, got {R!r}")
    K = lottery.shape[-1]
    lot = jnp.clip(lottery, 0.0, None)
    dtype = jnp.result_type(lot.dtype, quantiles.dtype, float)
    u = jnp.mod(jnp.sum(jnp.mod(jnp.asarray(R, dtype) * quantiles.astype(dtype), 1.0), axis=-1), 1.0)
    cum = jnp.cumsum(lot.astype(dtype), axis=-1)
    k = jnp.sum(cum <= (u * cum[..., -1])[..., None], axis=-1)  # the first k with u·C_K < C_k
    last = K - 1 - jnp.argmax(jnp.flip(lot > 0, axis=-1), axis=-1)  # last positive alternative
    k = jnp.minimum(k, last)
    return jax.nn.one_hot(k, K, dtype=lottery.dtype if jnp.issubdtype(lottery.dtype, jnp.floating) else dtype)


# --------------------------------------------------------------------------------------------
# Mechanisms and settings: purify()
# --------------------------------------------------------------------------------------------

#: the warning every purification carries (CHLS Theorem 1 is an interim statement)
NOT_PRESERVED = "dominant-strategy IC and ex post IR are not preserved: only interim quantities are"

METHODS = ("auto", "vertex", "dither")


@dataclass(frozen=True)
class Purification:
    """A deterministic mechanism with (approximately) the interim allocations of a stochastic one.

    Attributes:
        mechanism: the deterministic mechanism (one-hot outcomes, the original transfers).
        setting: the setting it is defined on — for the vertex method the enlarged finite
            social-choice setting (every type with R payoff-irrelevant sub-types), for the dither
            the original setting.
        report: what was preserved and what was not (:func:`purify`).
    """

    mechanism: object
    setting: object
    report: dict = field(default_factory=dict)


def purify(mechanism, setting, *, method: str = "auto", R: int | None = None, grid: int | None = None, key=None,
           eval_cfg=None, error_nodes: int | None = None, time_limit: float = 10.0) -> Purification:
    """A deterministic mechanism with the same transfers and (up to the reported error) the same
    interim allocations as ``mechanism`` (CHLS Theorem 1 made computable).

    Settings: ``social_choice`` (finite or continuous types, linear or separable payoffs),
    ``single_item`` and ``multi_item`` with additive values, through the auction map — an
    alternative is an assignment of every good to a bidder or to nobody, K = (n + 1)^m, and an
    auction outcome is the product lottery with its marginals
    (:func:`~diffmech.settings.social_choice.lottery_from_alloc`), which additive bidders value
    exactly like the outcome. Unit-demand and public-goods settings are refused
    (:mod:`diffmech.purified`).

    Methods:

    - ``"vertex"`` (finite types; continuous ones on a grid of ``grid`` quantile-cell midpoints per
      coordinate, default 20, with the cell masses as probabilities — the purified mechanism then
      lives on that grid): the mechanism's table q on every profile → :func:`vertex_purify` (a
      vertex of the LP of equal interim allocations and moments, few fractional profiles) →
      :func:`latin_counts` (R sub-types per type; exact when the vertex's entries are multiples
      of 1/R, else an error-minimising rounding) → a deterministic table mechanism on the enlarged
      social-choice setting whose types are (t_i, s_i/R), payoffs ignoring the extra coordinate,
      transfers t_i(t, s) = t_i(t).
    - ``"dither"`` (atomless types): the alternative is chosen from the mechanism's own lottery
      by u = (Σ_i frac(R·F_i(v_i1))) mod 1, F_i the CDF of agent i's prior for the first
      coordinate of her type (:func:`dither_choice`); payments are the mechanism's. Interim error
      O(1/R).
    - ``"auto"``: vertex on finite type spaces (or when ``grid`` is given), dither on continuous ones.

    The report (a dict of plain numbers) holds: the interim allocation error (max over agents,
    own types — every sub-type — and alternatives), interim regret and interim IR violation
    before and after (exact sums on finite spaces; the library's interim evaluation
    (:func:`~diffmech.evaluate_interim.evaluate_interim`) on continuous ones, with its grid),
    ex ante surplus and revenue before and after — revenue on the same profiles, from
    payments that are identical profile by profile, so ``revenue_change`` is exactly 0.0 —,
    support preservation (every chosen alternative had positive probability), the counts of the
    construction, ex post regret and ex post IR before and after (to show that they are not
    kept), and ``warnings``.

    Args:
        mechanism: any mechanism of ``setting``.
        setting: the setting (see above).
        method: ``"auto"``, ``"vertex"`` or ``"dither"``.
        R: sub-types per type (vertex; default: the exact lcm if small, else the most the
            social-choice type limit allows) or the dither resolution (default 64).
        grid: quantile cells per continuous coordinate (vertex only).
        key: PRNG key of the random sub-types and samples used by the checks (default key 0).
        eval_cfg: :class:`~diffmech.config.EvalConfig` of the continuous-type evaluation
            (default :data:`diffmech.purified.PURIFY_EVAL`).
        error_nodes: stratified quantile nodes for the other agent in the dither's interim
            allocation error (default :data:`diffmech.purified.ERROR_NODES`).
        time_limit: seconds for the rounding MILP of the vertex method.
    """
    from . import purified

    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    view = purified.choice_view(setting)
    if method == "auto":
        method = "vertex" if view.finite or grid is not None else "dither"
    if method == "vertex":
        return purified.purify_vertex(mechanism, view, R=R, grid=grid, key=key, time_limit=time_limit)
    if grid is not None:
        raise ConfigError("grid applies to the vertex method only; drop it or use method='vertex'")
    return purified.purify_dither(mechanism, view, R=R, key=key, eval_cfg=eval_cfg, error_nodes=error_nodes)
