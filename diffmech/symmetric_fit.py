"""Fit a learned symmetric payment rule to a hierarchical mechanism (Deb–Pai, issue 6 part 4a).

Deb–Pai's implementation condition (eq. (5)): with every bidder j bidding her index
b_j = I_j(v_j), a symmetric rule p^s implements the hierarchical mechanism (I, p^h) when

    m_i(v_i) := E_{v_−i}[ p^s(I_i(v_i), I_−i(v_−i)) ] − p_i^h(v_i) = 0    for every i and v_i.   (5)

The fit minimises the mean squared interim mismatch

    L(p^s) = Σ_i E_{v_i}[ m_i(v_i)² ].

The square of an expectation has no unbiased plug-in estimator from one draw; with K ≥ 2
independent draws of the others' values per own type and d_k = p^s(I_i(v_i), b_−^{(k)}) − p_i^h(v_i),
the U-statistic

    (1/(K(K−1))) Σ_{k≠k'} d_k d_{k'} = ((Σ_k d_k)² − Σ_k d_k²) / (K(K−1))

has expectation m_i(v_i)² exactly (independent draws: E[d_k d_k'] = E[d_k] E[d_k'] for k ≠ k').
The plain mean of d_k² would add the variance of p^s over the others' bids, which pulls the rule
toward payments that do not depend on the others' bids, the opposite of what Deb–Pai need.

Own types are drawn from a fixed table of N quantile midpoints per bidder (u = (k + ½)/N,
v = F_i^{-1}(u)), whose target payments p_i^h(v) are computed once in float64 by the hierarchical
mechanism's quadrature; the others' values are sampled afresh each step. One jitted step covers
every bidder at once (a static gather builds each bidder's others' bids; no Python loop over
bidders or samples).

:func:`interim_mismatch` measures the result deterministically: for each bidder, the mean squared
mismatch over the quantile table with the others integrated on a quantile-midpoint grid. When two
bidders have the same bid distribution and different payments at equal indices (Theorem 1 fails,
Example 3), no symmetric rule gets below the floor that :func:`~diffmech.mechanisms.analytic.deb_pai.theorem1`
reports (1/12 per bidder in Example 3).
"""

from __future__ import annotations

import itertools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from .errors import ConfigError
from .mechanisms.symmetric_auction import IndexStrategy, others_index


def _own_table(h, n_table: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bidder: quantile-midpoint values (n, N), their index bids and target payments p_i^h."""
    u = (np.arange(n_table) + 0.5) / n_table
    vals = np.stack([np.asarray(p.icdf(jnp.asarray(u)), dtype=np.float64) for p in h.priors])
    target = np.stack([np.asarray(h.interim_payment(i, vals[i]), dtype=np.float64) for i in range(h.n_agents)])
    return u, vals, target


def _sample_values(priors, key: PRNGKeyArray, shape: tuple[int, ...]) -> jax.Array:
    """Independent values, shape ``shape + (n,)`` (bidder j's column from priors[j])."""
    keys = jax.random.split(key, len(priors))
    return jnp.stack([p.sample(k, shape) for p, k in zip(priors, keys)], axis=-1)


def mismatch_terms(rule, own_bids: jax.Array, target: jax.Array, others_bids: jax.Array) -> jax.Array:
    """Per (bidder, own type), the unbiased estimate of m_i(v_i)² from K draws of the others.

    own_bids, target: (n, B); others_bids: (n, B, K, n − 1). Returns (n, B).
    """
    n, B, K, m = others_bids.shape
    own = jnp.broadcast_to(own_bids[..., None], (n, B, K)).reshape(-1)
    pay = rule(own, others_bids.reshape(-1, m)).reshape(n, B, K)
    d = pay - target[..., None]
    return (jnp.sum(d, -1) ** 2 - jnp.sum(d * d, -1)) / (K * (K - 1))


def fit_payment_rule(rule, h, *, key: PRNGKeyArray, steps: int = 3000, lr: float = 3e-3, batch: int = 256,
                     others_draws: int = 8, n_table: int = 1024, log_every: int = 0) -> tuple[Any, list[dict]]:
    """Train ``rule`` (a :class:`~diffmech.mechanisms.symmetric_auction.PaymentRule` with array
    leaves) so that index bidding in the symmetric auction reproduces the interim payments of the
    hierarchical mechanism ``h`` (module docstring). Returns the fitted rule and a history of the
    per-bidder loss estimates (every ``log_every`` steps and at the end)."""
    if others_draws < 2:
        raise ConfigError(f"others_draws must be at least 2 (the unbiased estimator needs two draws), got {others_draws}")
    if steps < 1 or batch < 1:
        raise ConfigError(f"steps and batch must be positive, got steps={steps}, batch={batch}")
    n = h.n_agents
    if n < 2:
        raise ConfigError("a symmetric payment rule needs at least two bidders")
    _, vals, target = _own_table(h, n_table)
    strategy = IndexStrategy(h)
    own_bids_table = jnp.asarray(np.asarray(strategy(jnp.asarray(vals.T)), dtype=np.float64).T, jnp.float32)  # (n, N)
    target_table = jnp.asarray(target, jnp.float32)
    idx = others_index(n)
    priors = h.priors
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
    params, static = eqx.partition(rule, eqx.is_inexact_array)
    state = opt.init(params)

    def loss_fn(params, key):
        k1, k2 = jax.random.split(key)
        pick = jax.random.randint(k1, (n, batch), 0, n_table)
        own = jnp.take_along_axis(own_bids_table, pick, axis=1)
        tgt = jnp.take_along_axis(target_table, pick, axis=1)
        others_vals = _sample_values(priors, k2, (n, batch, others_draws))  # (n, B, K, n): bidder i's draws
        bids = strategy(others_vals.reshape(-1, n)).reshape(n, batch, others_draws, n)
        # bidder i's opponents are the columns idx[i] of her own draws
        others_bids = jnp.take_along_axis(bids, jnp.asarray(idx)[:, None, None, :], axis=3)
        per = mismatch_terms(eqx.combine(params, static), own, tgt, others_bids).mean(axis=1)  # (n,)
        return per.sum(), per

    @eqx.filter_jit
    def step(params, state, key):
        (_, per), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, key)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, per

    history = []
    for t in range(steps):
        params, state, per = step(params, state, jax.random.fold_in(key, t))
        if (log_every and (t + 1) % log_every == 0) or t + 1 == steps:
            history.append({"step": t + 1, "mismatch": [float(x) for x in per]})
    return eqx.combine(params, static), history


def interim_mismatch(rule, h, *, n_table: int = 512, others_nodes: int = 256, chunk: int = 64) -> np.ndarray:
    """Per bidder, E_{v_i}[(E_{v_−i} p^s(I_i(v_i), I_−i(v_−i)) − p_i^h(v_i))²]: the own types on
    ``n_table`` quantile midpoints, the others on a product grid of ``others_nodes`` quantile
    midpoints per opponent (``others_nodes^(n−1)`` profiles; keep it small for n > 3)."""
    n = h.n_agents
    _, vals, target = _own_table(h, n_table)
    strategy = IndexStrategy(h)
    own_bids = np.asarray(strategy(jnp.asarray(vals.T)), dtype=np.float64).T  # (n, N)
    u = (np.arange(others_nodes) + 0.5) / others_nodes
    q = np.stack([np.asarray(p.icdf(jnp.asarray(u)), dtype=np.float64) for p in h.priors])  # (n, M)
    out = np.zeros(n)
    outer = eqx.filter_jit(lambda r, own, oth: r.outer(own, oth))
    for i in range(n):  # a handful of bidders; each is one chunked, jitted evaluation
        opp = [j for j in range(n) if j != i]
        grid = np.array(list(itertools.product(*[range(others_nodes)] * (n - 1))))
        prof = np.zeros((len(grid), n))
        for c, j in enumerate(opp):
            prof[:, j] = q[j, grid[:, c]]
        bids = np.asarray(strategy(jnp.asarray(prof)))[:, opp]
        means = []
        for s in range(0, n_table, chunk):
            pay = outer(rule, jnp.asarray(own_bids[i, s:s + chunk], jnp.float32), jnp.asarray(bids, jnp.float32))
            means.append(np.asarray(pay, dtype=np.float64).mean(axis=1))
        out[i] = float(np.mean((np.concatenate(means) - target[i]) ** 2))
    return out
