"""Constraints and objectives: pure, jit-compatible functions of (mechanism, setting, samples).

Every function here takes the mechanism through its one call signature ``mechanism(reports)`` and
the setting through ``setting.utility`` / ``setting.values`` / ``setting.project``, so analytic and
neural mechanisms are measured alike. Per-agent quantities have shape ``(agents,)`` after averaging
over profiles.

Ex post regret (Dütting et al. 2019, eq. (2)): for profile v and agent i,

    rgt_i(v) = max_{v'_i} u_i(v_i; (v'_i, v_−i)) − u_i(v_i; v),

with u_i(v_i; b) = v_i·a_i(b) − p_i(b). Misreports are searched by projected gradient ascent
(vmapped over profiles × starting points × agents, ``lax.scan`` over steps) and, where the own type
is one-dimensional, exhaustively over a grid of own reports. Misreport arrays have shape
``(batch, starts, agents, dim)``: ``mis[b, s, i]`` is agent i's s-th candidate report at profile b.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from .mechanisms.base import Mechanism
from .settings.base import Setting


def truthful_utility(mechanism: Mechanism, setting: Setting, types: Float[Array, "batch agents dim"]):
    """u_i(v_i; v) for every profile and agent, shape ``(batch, agents)``."""
    return setting.utility(types, mechanism(types))


def deviation_profiles(types: Float[Array, "batch agents dim"], mis: Float[Array, "batch starts agents dim"]):
    """Profiles in which exactly one agent deviates.

    Returns ``(batch, starts, agents_i, agents_j, dim)``: row j of profile (b, s, i) is
    ``mis[b, s, i]`` when j = i and ``types[b, j]`` otherwise.
    """
    n = types.shape[1]
    eye = jnp.eye(n, dtype=bool)[:, :, None]
    return jnp.where(eye, mis[:, :, :, None, :], types[:, None, None, :, :])


def deviation_utility(mechanism: Mechanism, setting: Setting, types, mis):
    """u_i(v_i; (mis_i, v_−i)) for every profile, start and deviating agent: ``(batch, starts, agents)``."""
    b, s, n, d = mis.shape
    prof = deviation_profiles(types, mis).reshape(b * s * n, n, d)
    true = jnp.broadcast_to(types[:, None, None], (b, s, n, n, d)).reshape(b * s * n, n, d)
    u = setting.utility(true, mechanism(prof)).reshape(b, s, n, n)
    return jnp.diagonal(u, axis1=2, axis2=3)


def misreport_gain(mechanism: Mechanism, setting: Setting, types, mis, truthful=None):
    """Gain of each candidate misreport over truth-telling: ``(batch, starts, agents)``."""
    if truthful is None:
        truthful = truthful_utility(mechanism, setting, types)
    return deviation_utility(mechanism, setting, types, mis) - truthful[:, None, :]


def ascend_misreports(mechanism: Mechanism, setting: Setting, types, mis, steps: int, lr: float):
    """Projected gradient ascent on every misreport at once (Adam steps, ``lax.scan`` over steps).

    ``lr`` is relative to each agent's type range. Returns the final misreports and, per
    (profile, start, agent), the best gain seen at any step (the attack keeps the worst case it
    found, not the last iterate).
    """
    mechanism = jax.lax.stop_gradient(mechanism)
    lo, hi = setting.type_bounds()
    scale = jnp.asarray(hi - lo, mis.dtype)
    truthful = truthful_utility(mechanism, setting, types)
    opt = optax.adam(lr)

    def gain_sum(m):
        g = misreport_gain(mechanism, setting, types, m, truthful)
        return g.sum(), g

    def body(carry, _):
        m, state, best = carry
        (_, g), grad = jax.value_and_grad(gain_sum, has_aux=True)(m)
        best = jnp.maximum(best, g)
        upd, state = opt.update(-grad / scale, state)  # normalised ascent step
        m = setting.project(m + upd * scale)
        return (m, state, best), None

    best0 = jnp.full(mis.shape[:3], -jnp.inf, mis.dtype)
    (m, _, best), _ = jax.lax.scan(body, (mis, opt.init(mis), best0), None, length=steps)
    best = jnp.maximum(best, misreport_gain(mechanism, setting, types, m, truthful))
    return jax.lax.stop_gradient(m), best


def regret_from_misreports(mechanism: Mechanism, setting: Setting, types, mis) -> Float[Array, "agents"]:
    """Training-time regret: mean over profiles of max(0, best gain over the given misreports).

    Differentiable in the mechanism's parameters at fixed misreports.
    """
    gain = misreport_gain(mechanism, setting, types, mis)
    return jnp.mean(jnp.maximum(jnp.max(gain, axis=1), 0.0), axis=0)


def grid_gains(mechanism: Mechanism, setting: Setting, types, grid: Float[Array, "agents points dim"]):
    """Exhaustive attack over a grid of own reports: best gain and its report per (profile, agent).

    ``grid[i]`` are agent i's candidate reports. Returns ``(best_gain (batch, agents),
    best_report (batch, agents, dim))``.
    """
    b = types.shape[0]
    mis = jnp.broadcast_to(jnp.swapaxes(grid, 0, 1)[None], (b,) + jnp.swapaxes(grid, 0, 1).shape)
    gain = misreport_gain(mechanism, setting, types, mis.astype(types.dtype))
    arg = jnp.argmax(gain, axis=1)  # (batch, agents)
    best = jnp.max(gain, axis=1)
    n = types.shape[1]
    report = jnp.swapaxes(grid, 0, 1)[arg, jnp.arange(n)[None, :]]  # (batch, agents, dim)
    return best, report.astype(types.dtype)


def ir_violation(mechanism: Mechanism, setting: Setting, types) -> Float[Array, "batch agents"]:
    """Ex post IR shortfall max(0, −u_i(v_i; v)) at truthful reports (reservation utility 0)."""
    return jnp.maximum(-truthful_utility(mechanism, setting, types), 0.0)


def revenue(outcome) -> Float[Array, "batch"]:
    """Σ_i p_i per profile."""
    return jnp.sum(outcome.payments, axis=-1)


def welfare(setting: Setting, types, outcome) -> Float[Array, "batch"]:
    """Σ_i value_i per profile."""
    return jnp.sum(setting.values(types, outcome), axis=-1)
