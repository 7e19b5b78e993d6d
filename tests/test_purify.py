"""Tests of diffmech.purify: deterministic equivalents of stochastic mechanisms.

Source: Chen, He, Li & Sun, "Equivalence of stochastic and deterministic mechanisms" (CHLS;
/work/shared/papers/chen-he-li-sun-stochastic-deterministic.txt), Example 1 (Section 3.1),
Theorem 1, Section 5.2 (support); reference values from /work/shared/REFERENCES.md
("Example 1 … interim win probability of the 4×4 deterministic equivalent, both agents:
(3/4, 3/4, 1/4, 1/4) by quarter; ex ante surplus 5/8 in both"). Every other reference number is
derived by hand in the test's docstring or computed here by an independent formula.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmech._compat import enable_x64
from diffmech.errors import ConfigError
from diffmech.purify import dither_choice, interim_moments, latin_split, vertex_purify

# --------------------------------------------------------------------------------------------
# Helpers (independent of the module: explicit two-agent formulas)
# --------------------------------------------------------------------------------------------


def _interim2(q, p1, p2):
    """Two agents: Q_1(t_1, k) = Σ_{t_2} p_2 q(t_1, t_2, k), Q_2(t_2, k) = Σ_{t_1} p_1 q(t_1, t_2, k)."""
    return (q * p2[None, :, None]).sum(1), (q * p1[:, None, None]).sum(0)


def _moments2(q, p1, p2, r1, r2):
    """Two agents: M_1(t_1, k, m) = Σ_{t_2} p_2 q r_1, M_2(t_2, k, m) = Σ_{t_1} p_1 q r_2."""
    return (q[..., None] * r1 * p2[None, :, None, None]).sum(1), (q[..., None] * r2 * p1[:, None, None, None]).sum(0)


def _dense_rank_minus_p(q, p1, p2, r1=None, r2=None):
    """rank(A) − P of the purification LP on the support of q, A built densely by loops."""
    T1, T2, K = q.shape
    cols = [(a, b, k) for a in range(T1) for b in range(T2) for k in range(K) if q[a, b, k] > 0]
    r1 = np.ones((1, T2, K, 1)) if r1 is None else np.concatenate([np.ones((1, T2, K, 1)), r1], -1)
    r2 = np.ones((T1, 1, K, 1)) if r2 is None else np.concatenate([np.ones((T1, 1, K, 1)), r2], -1)
    M1, M2 = r1.shape[-1], r2.shape[-1]
    A = np.zeros((T1 * T2 + T1 * K * M1 + T2 * K * M2, len(cols)))
    for c, (a, b, k) in enumerate(cols):
        A[a * T2 + b, c] = 1.0
        for m in range(M1):
            A[T1 * T2 + (a * K + k) * M1 + m, c] = p2[b] * r1[0, b, k, m]
        for m in range(M2):
            A[T1 * T2 + T1 * K * M1 + (b * K + k) * M2 + m, c] = p1[a] * r2[a, 0, k, m]
    return np.linalg.matrix_rank(A) - T1 * T2


def _random_instance(rng, T=20, K=3, zeros=0.0):
    q = rng.dirichlet(np.ones(K), size=(T, T))
    if zeros:
        mask = rng.random((T, T, K)) < zeros
        mask[..., 0] = False  # every row keeps an alternative
        q = np.where(mask, 0.0, q)
        q /= q.sum(-1, keepdims=True)
    return q, rng.dirichlet(np.ones(T)), rng.dirichlet(np.ones(T))


# --------------------------------------------------------------------------------------------
# 1. CHLS Example 1
# --------------------------------------------------------------------------------------------

# CHLS Example 1, 2 × 2 cell mechanism; agent index 0 = [0, 1/2) ("low"), 1 = [1/2, 1] ("high");
# alternatives (bidder 1, bidder 2). Same cell: 1/2 each; different cells: the high bidder.
EX1 = np.array([[[0.5, 0.5], [0.0, 1.0]], [[1.0, 0.0], [0.5, 0.5]]])
# The same with a "nobody" alternative first (never used): (nobody, bidder 1, bidder 2).
EX1_NOBODY = np.concatenate([np.zeros((2, 2, 1)), EX1], -1)

# CHLS's printed 4 × 4 table (Section 3.1), agent 1 wins = 1. Its rows (agent 1) and columns
# (agent 2) are listed in DECREASING value order: [3/4, 1], [2/4, 3/4), [1/4, 2/4), [0, 1/4).
PAPER_4X4_AGENT1_WINS = np.array(
    [
        [1, 0, 1, 1],
        [0, 1, 1, 1],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
    ]
)


@pytest.mark.parametrize("q, bidder1", [(EX1, 0), (EX1_NOBODY, 1)])
def test_example1_latin_split_is_the_papers_table(q, bidder1):
    """latin_split(Example 1, R = 2) is CHLS's printed 4×4 table.

    Our enlarged index is t·R + s in increasing value order (0 = [0, 1/4), …, 3 = [3/4, 1]); the
    paper lists quarters in decreasing order, so its table is ours flipped on both axes. Interim
    win probabilities: a row of the paper's table averages four equally likely columns, e.g. its
    first row (1, 0, 1, 1) gives 3/4. By hand, rows/columns in the paper's order give
    (3/4, 3/4, 1/4, 1/4) for both agents — REFERENCES.md's list is in the paper's decreasing
    order — i.e. (1/4, 1/4, 3/4, 3/4) in increasing value order, as in the stochastic mechanism
    (high: ½·½ + ½·1 = 3/4, low: ½·0 + ½·½ = 1/4).
    """
    half = np.full(2, 0.5)
    ls = latin_split(q, [half, half])
    assert ls.R == 2 and ls.exact and ls.table.shape == (4, 4)
    agent1_wins = (ls.table == bidder1).astype(int)
    np.testing.assert_array_equal(np.flip(agent1_wins, (0, 1)), PAPER_4X4_AGENT1_WINS)
    assert set(np.unique(ls.table)) <= {bidder1, bidder1 + 1}  # "nobody" (zero probability) never chosen
    p1 = agent1_wins.mean(1)  # agent 1's quarter, other's quarter uniform
    p2 = (1 - agent1_wins).mean(0)
    for wins in (p1, p2):
        np.testing.assert_allclose(wins, [0.25, 0.25, 0.75, 0.75], atol=1e-12)  # increasing order
        np.testing.assert_allclose(wins[::-1], [0.75, 0.75, 0.25, 0.25], atol=1e-12)  # REFERENCES order
    np.testing.assert_allclose(ls.probs[0], np.full(4, 0.25), atol=0)
    assert ls.interim_error < 1e-12


def test_example1_surplus_five_eighths():
    """Ex ante surplus E[value of the winner] = 5/8 for both mechanisms (REFERENCES.md).

    Values are uniform within cells, so E[v_i · 1{i wins}] over a cell is (cell probability) ×
    (winning probability) × (mean of v_i's interval): half-cell means 1/4, 3/4; quarter means
    1/8, 3/8, 5/8, 7/8. By hand (stochastic): HH, HL, LH give 3/4 each, LL 1/4, so
    (3·3/4 + 1/4)/4 = 5/8.
    """
    half_means = np.array([0.25, 0.75])
    stochastic = sum(
        0.25 * (EX1[a, b, 0] * half_means[a] + EX1[a, b, 1] * half_means[b]) for a in range(2) for b in range(2)
    )
    ls = latin_split(EX1, [np.full(2, 0.5)] * 2)
    quarter_means = np.array([1, 3, 5, 7]) / 8
    w1 = (ls.table == 0).astype(float)
    deterministic = np.sum((w1 * quarter_means[:, None] + (1 - w1) * quarter_means[None, :]) / 16)
    assert abs(stochastic - 5 / 8) < 1e-12
    assert abs(deterministic - 5 / 8) < 1e-12


def test_example1_vertex_cannot_purify_atoms():
    """On the 2 × 2 atoms the LP has the single point q: Q_1(low, bidder 1) = ½ q̃(L, L, 1) + ½·0
    must be 1/4, forcing q̃(L, L) = (½, ½), likewise q̃(H, H) (support fixes the off-diagonal
    cells). So vertex_purify returns q with its 2 fractional profiles — why latin_split exists."""
    res = vertex_purify(EX1, [np.full(2, 0.5)] * 2)
    np.testing.assert_allclose(res.q_tilde, EX1, atol=1e-12)
    assert res.n_fractional == 2 and res.n_deterministic == 2
    assert res.n_fractional <= res.fractional_bound == 3  # (K − 1)(T_1 + T_2 − 1) = 1·3


def test_example1_dither_exact_on_continuous_types():
    """Example 1 on U[0, 1] types through dither_choice with R = 2 is exact.

    q is constant on the cells of width 1/2, so given v_1 the dither u = (frac(2v_1) +
    frac(2v_2)) mod 1 is uniform and independent of v_2's cell: agent 1 of a high type wins with
    probability ½·½ + ½·1 = 3/4, a low type 1/4 (same for agent 2 by symmetry).

    Quadrature: own types v = (j + ½)/64, so frac(2v) is an odd multiple of 1/32; the other's
    integrand jumps where u crosses 0 or ½ or at v_2 = ½, i.e. at multiples of 1/64, which are
    cell boundaries of the 1024-point midpoint grid: the midpoint rule is exact there.
    """

    @jax.jit
    def interim(own, oth):
        a, b = jnp.broadcast_arrays(own[:, None], oth[None, :])
        cell = lambda v: (v >= 0.5).astype(jnp.int32)  # noqa: E731
        d1 = dither_choice(jnp.asarray(EX1)[cell(a), cell(b)], jnp.stack([a, b], -1), 2)  # agent 1 own
        d2 = dither_choice(jnp.asarray(EX1)[cell(b), cell(a)], jnp.stack([b, a], -1), 2)  # agent 2 own
        return d1[..., 0].mean(1), d2[..., 1].mean(1), d1.sum(-1)

    with enable_x64():
        own = (jnp.arange(64) + 0.5) / 64
        w1, w2, total = interim(own, (jnp.arange(1024) + 0.5) / 1024)
        want = np.where(np.asarray(own) >= 0.5, 0.75, 0.25)
        np.testing.assert_allclose(np.asarray(w1), want, atol=1e-12)
        np.testing.assert_allclose(np.asarray(w2), want, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(total), 1.0)


# --------------------------------------------------------------------------------------------
# 2. Vertex purification of random mechanisms (2 agents × 3 alternatives × 20 types)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, zeros", [(0, 0.0), (1, 0.3)])
def test_vertex_purify_random_private_values(seed, zeros):
    """Random q (Dirichlet rows, optionally 30% zeros), random priors: the vertex keeps both
    agents' interim allocations to 1e-9, never leaves the support, and has at most rank(A) − P
    fractional profiles (rank from an independently built dense A), itself ≤ the structural
    bound (K − 1)(T_1 + T_2 − 1) = 2·39 = 78. A vertex has at most rank(A) positive entries."""
    rng = np.random.default_rng(seed)
    q, p1, p2 = _random_instance(rng, zeros=zeros)
    res = vertex_purify(q, [p1, p2], seed=seed)
    qt = res.q_tilde
    for got, want in zip(_interim2(qt, p1, p2), _interim2(q, p1, p2)):
        np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)
    assert np.all(qt >= 0) and np.allclose(qt.sum(-1), 1.0, atol=1e-12)
    assert res.support_preserved and not np.any((q == 0) & (qt > 0))
    det = np.any(qt == 1.0, -1)
    assert res.n_deterministic == det.sum() and res.n_fractional == 400 - det.sum()
    rank_bound = _dense_rank_minus_p(q, p1, p2)
    assert res.fractional_bound == 78
    assert res.n_fractional <= rank_bound <= 78
    assert np.count_nonzero(qt) <= rank_bound + 400  # vertex: independent columns
    assert res.max_moment_error < 1e-9
    # followed by latin_split: irrational vertex entries → R = max_r with rounding, error < 1/R,
    # checked from the enlarged table independently, sub-type by sub-type
    ls = latin_split(qt, [p1, p2], max_r=32)
    assert ls.R == 32 and not ls.exact and ls.table.shape == (640, 640)
    onehot = np.eye(3)[ls.table]
    Q1, Q2 = _interim2(onehot, *ls.probs)
    T1, T2 = _interim2(qt, p1, p2)
    err = max(np.abs(Q1 - np.repeat(T1, 32, 0)).max(), np.abs(Q2 - np.repeat(T2, 32, 0)).max())
    assert abs(err - ls.interim_error) < 1e-12 and err < 1 / 32
    assert not np.any((np.repeat(np.repeat(qt, 32, 0), 32, 1) == 0) & (onehot > 0))  # support


def test_vertex_then_latin_exact_when_rational():
    """Uniform priors p = 1/20 and q in multiples of 1/6: the vertex entries are rationals with
    small denominators, so latin_split finds an exact R (the lcm) and the enlarged deterministic
    table keeps every interim allocation to 1e-9, aggregated over sub-types and per sub-type."""
    rng = np.random.default_rng(5)
    T, K = 20, 3
    q = rng.multinomial(6, np.ones(K) / K, size=(T, T)) / 6.0
    p = np.full(T, 1 / T)
    res = vertex_purify(q, [p, p], seed=2)
    ls = latin_split(res.q_tilde, [p, p], max_r=60)
    assert ls.exact and 2 <= ls.R <= 60
    frac = res.q_tilde[(res.q_tilde > 0) & (res.q_tilde < 1)]
    np.testing.assert_allclose(frac * ls.R, np.rint(frac * ls.R), atol=1e-9)  # multiples of 1/R
    onehot = np.eye(K)[ls.table]
    want = _interim2(q, p, p)
    for got, w in zip(_interim2(onehot, *ls.probs), want):
        np.testing.assert_allclose(got, np.repeat(w, ls.R, 0), atol=1e-9, rtol=0)  # per sub-type
        np.testing.assert_allclose(got.reshape(T, ls.R, K).mean(1), w, atol=1e-9, rtol=0)  # aggregated
    assert ls.interim_error < 1e-9


def test_vertex_purify_interdependent_moments():
    """Random moment tables r_1(t_2, k, m), r_2(t_1, k, m), M = 2 (functions of v_−i, CHLS Definition 1): the vertex
    keeps the interim allocations and both moments to 1e-9; fractional profiles ≤ rank(A) − P ≤
    Σ_i T_i(K·3 − 1) − (K − 1) = 318 (3 moments with r ≡ 1)."""
    rng = np.random.default_rng(7)
    q, p1, p2 = _random_instance(rng)
    r1 = rng.normal(size=(1, 20, 3, 2))
    r2 = rng.normal(size=(20, 1, 3, 2))
    res = vertex_purify(q, [p1, p2], [r1, r2])
    qt = res.q_tilde
    for got, want in zip(_interim2(qt, p1, p2), _interim2(q, p1, p2)):
        np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)
    for got, want in zip(_moments2(qt, p1, p2, r1, r2), _moments2(q, p1, p2, r1, r2)):
        np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)
    for got, want in zip(interim_moments(qt, [p1, p2], [r1, r2]), _moments2(q, p1, p2, r1, r2)):
        np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)
    assert res.fractional_bound == 318
    assert res.n_fractional <= _dense_rank_minus_p(q, p1, p2, r1, r2) <= 318
    assert res.support_preserved and res.n_deterministic > 0


def test_latin_split_keeps_interdependent_moments_per_subtype():
    """Sub-types are payoff-irrelevant (r ignores s), so when q is a multiple of 1/R (here 1/6)
    every interim moment of (t_i, s_i) equals that of t_i: checked with random r, M = 2."""
    rng = np.random.default_rng(11)
    T, K = 5, 3
    q = rng.multinomial(6, np.ones(K) / K, size=(T, T)) / 6.0
    p1, p2 = rng.dirichlet(np.ones(T)), rng.dirichlet(np.ones(T))
    r1, r2 = rng.normal(size=(1, T, K, 2)), rng.normal(size=(T, 1, K, 2))
    ls = latin_split(q, [p1, p2])
    assert ls.exact and ls.R in (1, 2, 3, 6) and 6 % ls.R == 0
    R = ls.R

    def big(r):  # the enlarged table of r: constant over sub-types (payoff-irrelevant)
        for axis in (0, 1):
            r = np.repeat(r, R, axis) if r.shape[axis] > 1 else r
        return r

    onehot = np.eye(K)[ls.table]
    got = _moments2(onehot, *ls.probs, big(r1), big(r2))
    for g, w in zip(got, _moments2(q, p1, p2, r1, r2)):
        np.testing.assert_allclose(g, np.repeat(w, R, 0), atol=1e-9, rtol=0)


def test_interim_moments_three_agents():
    """interim_moments against a direct sum over all profiles (3 agents, 2, 3, 4 types)."""
    rng = np.random.default_rng(3)
    T, K = (2, 3, 4), 3
    q = rng.dirichlet(np.ones(K), size=T)
    probs = [rng.dirichlet(np.ones(t)) for t in T]
    got = interim_moments(q, probs)
    for i in range(3):
        want = np.zeros((T[i], K))
        for t in np.ndindex(*T):
            w = np.prod([probs[j][t[j]] for j in range(3) if j != i])
            want[t[i]] += w * q[t]
        np.testing.assert_allclose(got[i], want, atol=1e-12)


# --------------------------------------------------------------------------------------------
# 3. Dither on continuous types: error falls like 1/R
# --------------------------------------------------------------------------------------------


def _softmax_q(v):
    """Smooth single-item rule on (v_1, v_2) ∈ [0, 1]²: softmax of (0, 3v_1, 3v_2) over
    (nobody, bidder 1, bidder 2)."""
    logits = jnp.concatenate([jnp.zeros(v.shape[:-1] + (1,), v.dtype), 3.0 * v], -1)
    return jax.nn.softmax(logits, -1)


@partial(jax.jit, static_argnums=(1, 2))
def _dither_error(R, n_other, n_own):
    """max over both agents, own types (j + ½)/n_own and alternatives of |Q̃_i − Q_i|, the interim
    allocations of the dithered and the stochastic rule, each by the midpoint rule over the other's
    U[0, 1] type (quantile = value)."""
    own = (jnp.arange(n_own) + 0.5) / n_own
    oth = (jnp.arange(n_other) + 0.5) / n_other
    a, b = jnp.broadcast_arrays(own[:, None], oth[None, :])
    errs = []
    for v in (jnp.stack([a, b], -1), jnp.stack([b, a], -1)):  # agent 1 own, agent 2 own
        lot = _softmax_q(v)
        errs.append(jnp.max(jnp.abs(dither_choice(lot, v, R).mean(1) - lot.mean(1))))
    return jnp.max(jnp.stack(errs))


def test_dither_error_falls_like_one_over_r():
    """The dithered rule's interim error is ~ c/R (dither_choice's docstring: ≤ (5/2)L(n − 1)/R).

    Here C_k(v) are partial sums of softmax(0, 3v_1, 3v_2); each ∂C_k/∂v_j is ±3 p_a p_b with
    p_a + p_b ≤ 1, so |∂C_k/∂v_j| ≤ 3/4 = L and the bound is 1.875/R. The first-order error does
    not cancel (see the docstring), so error·R stays in a band and log error vs log R has slope
    ≈ −1. Quadrature: 2^14-point midpoint grid in the other's quantile (deterministic); its error
    on the piecewise-constant dithered integrand is O(#jumps/2^14), below 10% of the signal.
    """
    Rs = np.array([4, 8, 16, 32, 64])
    errs = np.array([float(_dither_error(int(R), 1 << 14, 64)) for R in Rs])
    assert np.all(np.diff(errs) < 0), errs
    assert np.all(errs <= 1.875 / Rs), errs
    scaled = errs * Rs
    assert scaled.max() / scaled.min() < 1.5, scaled
    slope = np.polyfit(np.log(Rs), np.log(errs), 1)[0]
    assert abs(slope + 1.0) < 0.3, slope


def test_dither_support_guard_and_jit():
    """Exactly one alternative, never one with zero probability — also when the lottery sums to
    slightly less than 1 and u is close to 1 — and jit gives the same answer."""
    lot = jnp.array([[0.0, 0.3, 0.7 - 1e-6, 0.0], [0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0]])
    quant = jnp.array([[0.4999999, 0.4999999], [0.2, 0.9], [0.99, 0.99]])
    for R in (1, 3):
        d = dither_choice(lot, quant, R)
        assert np.all(np.asarray(d.sum(-1)) == 1.0)
        assert np.all(np.asarray(lot)[np.asarray(d) > 0] > 0)
        np.testing.assert_array_equal(np.asarray(jax.jit(dither_choice)(lot, quant, R)), np.asarray(d))
    # R = 1, row 1: u = frac(0.2) + frac(0.9) mod 1 = 0.1 < 0.5 → alternative 0
    assert int(jnp.argmax(dither_choice(lot, quant, 1)[1])) == 0


# --------------------------------------------------------------------------------------------
# 4. Bad input
# --------------------------------------------------------------------------------------------


def test_bad_input_raises_config_error():
    p = [np.full(2, 0.5)] * 2
    bad_rows = EX1.copy()
    bad_rows[0, 0] = [0.5, 0.6]
    with pytest.raises(ConfigError, match="not stochastic"):
        vertex_purify(bad_rows, p)
    with pytest.raises(ConfigError, match="negative"):
        interim_moments(np.stack([EX1[..., 0] + 0.5, -0.5 + EX1[..., 1]], -1), p)
    with pytest.raises(ConfigError, match="shape"):
        latin_split(EX1[:, :1], p)
    with pytest.raises(ConfigError, match="sums to"):
        vertex_purify(EX1, [np.array([0.5, 0.6]), np.full(2, 0.5)])
    with pytest.raises(ConfigError, match="one 1-D probability vector per agent"):
        interim_moments(EX1, np.full(2, 0.5))
    with pytest.raises(ConfigError, match="own type"):
        vertex_purify(EX1, p, [np.arange(8.0).reshape(2, 2, 2, 1), np.ones((2, 2, 2, 1))])
    with pytest.raises(ConfigError, match="at least two agents"):
        latin_split(np.array([[0.5, 0.5], [1.0, 0.0]]), [np.full(2, 0.5)])
    with pytest.raises(ConfigError, match="batch shape"):
        dither_choice(jnp.ones((3, 2)) / 2, jnp.ones((4, 2)) / 2, 2)
    with pytest.raises(ConfigError, match="max_r"):
        latin_split(EX1, p, max_r=0)
