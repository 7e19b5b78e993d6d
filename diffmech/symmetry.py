"""Measurements of symmetry (Bikhchandani–Mishra Definition 1) and rank preservation
(Definition 2) of any mechanism on sampled profiles, and the swap gain of Theorem 1's proof.

Convention (the paper's): for a permutation σ of the items, v^σ_j = v_{σ(j)}. A mechanism is
symmetric if q_i(v^σ) = q_{σ(i)}(v) and t(v^σ) = t(v) for every strict type v and every σ, and
rank preserving if q_i(v) ≥ q_j(v) whenever v_i > v_j. With several bidders, permutations act on
the items of every bidder at once, and rank preservation is checked bidder by bidder.

Each measurement returns plain floats: the share of profiles that violate the property by more
than ``tol``, and the mean and the largest violation.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

MAX_ALL_PERMUTATIONS = 6


def item_permutations(m: int, key=None, count: int = 24) -> np.ndarray:
    """All m! permutations for m ≤ 6, else ``count`` random ones (with the key), shape (P, m)."""
    if m <= MAX_ALL_PERMUTATIONS:
        return np.array(list(itertools.permutations(range(m))), dtype=np.int32)
    key = jax.random.PRNGKey(0) if key is None else key
    keys = jax.random.split(key, count)
    return np.stack([np.asarray(jax.random.permutation(k, m)) for k in keys]).astype(np.int32)


def _summary(per_profile: np.ndarray, tol: float) -> dict[str, float]:
    per_profile = np.asarray(per_profile, dtype=np.float64)
    return {
        "share": float(np.mean(per_profile > tol)),
        "mean": float(per_profile.mean()),
        "max": float(per_profile.max()) if per_profile.size else 0.0,
    }


def symmetry_gaps(mechanism, types: Float[Array, "batch agents m"], perms: np.ndarray) -> Float[Array, "batch"]:
    """Per profile, max over σ of max(|q(v^σ) − q(v)^σ|, |t(v^σ) − t(v)|), where q(v)^σ_j = q_{σ(j)}(v)."""
    b, n, m = types.shape
    base = mechanism(types)
    p = jnp.asarray(perms)
    permuted = jnp.moveaxis(types[:, :, p], 2, 0).reshape(len(perms) * b, n, m)
    out = mechanism(permuted)
    alloc = out.alloc.reshape(len(perms), b, n, m)
    expected = jnp.moveaxis(base.alloc[:, :, p], 2, 0)  # q(v)^σ
    gap_a = jnp.max(jnp.abs(alloc - expected), axis=(0, 2, 3))
    gap_t = jnp.max(jnp.abs(out.payments.reshape(len(perms), b, n) - base.payments[None]), axis=(0, 2))
    return jnp.maximum(gap_a, gap_t)


def rank_violations(mechanism, types: Float[Array, "batch agents m"], tol: float = 1e-9) -> Float[Array, "batch"]:
    """Per profile, max over bidders and item pairs with v_i > v_j + tol of max(0, q_j − q_i)."""
    q = mechanism(types).alloc
    higher = types[..., :, None] > types[..., None, :] + tol  # v_i > v_j
    shortfall = jnp.maximum(q[..., None, :] - q[..., :, None], 0.0)  # q_j − q_i
    return jnp.max(jnp.where(higher, shortfall, 0.0), axis=(1, 2, 3))


def symmetry_report(mechanism, types, tol: float = 1e-6, key=None) -> dict[str, float]:
    """Definition 1 on the sampled profiles: share violating by more than ``tol``, mean and max gap."""
    perms = item_permutations(types.shape[-1], key)
    return _summary(np.asarray(symmetry_gaps(mechanism, types, perms)), tol)


def rank_preservation_report(mechanism, types, tol: float = 1e-6) -> dict[str, float]:
    """Definition 2 on the sampled profiles: share violating by more than ``tol``, mean and max."""
    return _summary(np.asarray(rank_violations(mechanism, types)), tol)


def swap_gain(mechanism, setting, types: Float[Array, "batch 1 m"], i: int, j: int) -> Float[Array, "batch"]:
    """The buyer's gain from reporting her type with coordinates i and j swapped.

    For a symmetric mechanism this is (v_i − v_j)(q_j(v) − q_i(v)) (proof of Theorem 1), so IC
    forces rank preservation.
    """
    perm = np.arange(types.shape[-1])
    perm[[i, j]] = perm[[j, i]]
    truthful = setting.utility(types, mechanism(types))
    swapped = setting.utility(types, mechanism(types[..., perm]))
    return (swapped - truthful)[:, 0]


def n_permutations(m: int) -> int:
    return math.factorial(m) if m <= MAX_ALL_PERMUTATIONS else 24
