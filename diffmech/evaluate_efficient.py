"""Evaluation of payment rules in Ke's efficient settings: interim IC, ex post IR, ex post BB.

Interim regret is measured exactly as for other interim settings
(:func:`diffmech.evaluate_interim.interim_regret_metrics`: quadrature over the other agent for
n = 2, Monte Carlo with common random numbers beyond, an exhaustive report grid per own type).
The ex post quantities are taken over the union of the setting's ex ante profiles (product
quadrature for n = 2, else ``samples`` draws) and an even, staggered grid of profiles
(``grid_points`` per agent for n = 2, fewer per agent beyond, at most 2^18 profiles; no two agents
on the same type, :func:`grid_profiles`), so that the worst profile is found rather than sampled; all
in chunks of profiles under ``eval.memory_mb`` (:func:`~diffmech.evaluate_interim.chunked_rows`). Metrics:

- ``surplus``: E S(θ) of the allocation played (the efficient one for every mechanism here);
- ``bb_residual``: max over profiles of |Σ_i M_i − c(x)| (ex post budget balance);
- ``ir_slack_min``: min over profiles and agents of v_i − M_i − u̲_i(θ_i) (≥ 0: ex post IR);
  ``ir_slack_min_relative``: the same divided by the expected gains from trade E[S − Σ u̲];
  ``ir_violation`` (E mean_i max(0, −slack_i)) and ``ir_violation_max``;
- ``interim_regret_mean`` / ``_max`` (+ standard errors, inner samples) and the interim IR of the
  truthful interim utilities is implied by ``ir_slack_min`` ≥ 0;
- ``epic_probability``: the probability that no agent gains ex post by a misreport on the report
  grid, with Ke's convention (Definition 4, "no veto power in payment") that a deviation counts
  only if it changes the deviator's allocation — a winner may not lower his payment while
  keeping the object (without it M1's probability is 0); standard error over profiles;
- ``monotonicity_violation_max``: the largest decrease of an agent's ex post payoff when her type
  rises by 1% of the support (Ke Definition 3; :func:`diffmech.interim.payoff_decrease`);
- ``expected_delta`` E Δ = Σ_i E S(θ̲_i, θ_−i) − (n−1) E S, ``sum_u_lowest`` Σ_i U_i(θ̲_i) (the
  interim utilities of the lowest types) and ``conservation_gap`` = their difference: Ke Lemma 3
  says Σ_i U_i(θ̲_i) ≤ E Δ for every IC, ex post BB mechanism, with equality for M1, M2(k) and AGV;
- ``benchmarks_ir_slack_min`` / ``benchmarks_bb_residual``: the same two numbers for the analytic
  mechanisms that apply (VCG is IR but not BB; AGV is BB but not ex post IR; M1–M3 are both).
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import interim as I
from .config import EvalConfig
from .evaluate import _mean_se as mean_se
from .evaluate_interim import _mean_se as mean_or_sum
from .evaluate_interim import _profiles, chunked_rows, interim_regret_metrics

#: the most profiles of the even grid of ex post checks
MAX_GRID_PROFILES = 1 << 18
#: profiles on which ex post incentive compatibility is checked
EPIC_PROFILES = 2000
#: gains below this count as no gain (float32 round-off)
TOL = 1e-6


@eqx.filter_jit
def _ex_post_rows(mechanism, setting, profiles):
    out = mechanism(profiles)
    slack = setting.ir_slack(profiles, out)
    gains = jnp.sum(setting.reservation_utility(profiles[..., 0]), axis=-1)
    return (setting.objective_value(profiles, out), setting.budget_residual(out), jnp.min(slack, axis=-1),
            jnp.mean(jnp.maximum(-slack, 0.0), axis=-1), setting.objective_value(profiles, out) - gains,
            jnp.max(I.payoff_decrease(mechanism, setting, profiles), axis=-1))


def grid_profiles(setting, points: int) -> jax.Array:
    """An even, staggered grid of profiles: ``points`` types per agent (fewer when n > 2, so that at
    most :data:`MAX_GRID_PROFILES` profiles are built), agent i's at θ̲_i + (k + (i+1)/(n+1))·h,
    h = (θ̄_i − θ̲_i)/points, so that no two agents ever report the same type: ties have
    probability zero under continuous priors, and a rule may split them any way it likes."""
    n = setting.n_agents
    per = max(2, min(points, int(math.floor(MAX_GRID_PROFILES ** (1.0 / n) + 1e-9))))
    lo, hi = (b[:, 0] for b in setting.type_bounds())
    frac = (np.arange(per)[None, :] + (np.arange(n)[:, None] + 1.0) / (n + 1.0)) / per
    axes = lo[:, None] + (hi - lo)[:, None] * frac  # (n, per)
    idx = np.array(list(itertools.product(range(per), repeat=n)), np.int32)
    return jnp.asarray(axes[np.arange(n)[None, :], idx][..., None], jnp.result_type(float))


@eqx.filter_jit
def _epic_rows(mechanism, setting, profiles, reports):
    """Per profile: 1 if no agent has a profitable deviation (on ``reports``) that changes her
    allocation, else 0."""
    p, n, d = profiles.shape
    r = reports.shape[1]
    base = mechanism(profiles)
    u0 = setting.utility(profiles, base)  # (P, n)
    x0 = base.alloc[..., 0]
    eye = jnp.eye(n, dtype=bool)[:, None, None, :, None]  # (i, 1, 1, n, 1)
    dev = jnp.where(eye, reports[:, None, :, None, :], profiles[None, :, None])  # (n, P, R, n, d)
    out = mechanism(dev.reshape(n * p * r, n, d))
    true = jnp.broadcast_to(profiles[None, :, None], dev.shape).reshape(n * p * r, n, d)
    u = setting.utility(true, out).reshape(n, p, r, n)
    x = out.alloc[..., 0].reshape(n, p, r, n)
    u_own = jnp.moveaxis(jnp.diagonal(u, axis1=0, axis2=3), -1, 0)  # (n, P, R)
    x_own = jnp.moveaxis(jnp.diagonal(x, axis1=0, axis2=3), -1, 0)
    counts = (u_own > u0.T[:, :, None] + TOL) & (jnp.abs(x_own - x0.T[:, :, None]) > 1e-9)
    return (~jnp.any(counts, axis=(0, 2))).astype(profiles.dtype)


def evaluate_efficient(mechanism, setting, cfg: EvalConfig | None = None, *, benchmarks: bool = True, progress: bool = False) -> dict[str, Any]:
    """Measure a payment rule of an ``efficient`` setting (module docstring)."""
    from .efficient_exact import expected_delta

    cfg = cfg or EvalConfig()
    t0 = time.perf_counter()
    method = I.expectation_method(setting)
    key = jax.random.PRNGKey(cfg.seed)
    k_prof, k_own, k_oth, k_rnd, k_epic = jax.random.split(key, 5)
    profiles, pw = _profiles(setting, cfg, method, k_prof)
    grid = grid_profiles(setting, cfg.grid_points)
    obj, bb, slack, viol, gains, mono = chunked_rows(_ex_post_rows, mechanism, setting, profiles, cfg, 1 + setting.n_agents)
    g_obj, g_bb, g_slack, _, _, g_mono = chunked_rows(_ex_post_rows, mechanism, setting, grid, cfg, 1 + setting.n_agents)

    metrics: dict[str, Any] = {"interim_method": method}
    metrics["surplus"], metrics["surplus_se"] = mean_or_sum(obj, pw)
    gain, _ = mean_or_sum(gains, pw)
    metrics["gains_from_trade"] = gain
    metrics["bb_residual"] = float(max(np.abs(bb).max(), np.abs(g_bb).max()))
    metrics["ir_slack_min"] = float(min(slack.min(), g_slack.min()))
    metrics["ir_slack_min_relative"] = metrics["ir_slack_min"] / gain if gain > 0 else float("nan")
    metrics["ir_violation"], metrics["ir_violation_se"] = mean_or_sum(viol, pw)
    metrics["ir_violation_max"] = max(0.0, -metrics["ir_slack_min"])
    metrics["monotonicity_violation_max"] = float(max(mono.max(), g_mono.max()))

    block, truthful, _, _, ascend = interim_regret_metrics(mechanism, setting, cfg, method, k_own, k_oth, k_rnd)
    metrics.update(block)
    # the evaluation's own-type grid starts at each agent's lowest type
    metrics["sum_u_lowest"] = float(np.sum(truthful[:, 0]))
    metrics["expected_delta"] = float(expected_delta(setting))
    metrics["conservation_gap"] = metrics["sum_u_lowest"] - metrics["expected_delta"]

    epic_prof = setting.sample(k_epic, min(cfg.samples, EPIC_PROFILES))
    reports = setting.attack_grid(min(cfg.grid_points, 201)).astype(epic_prof.dtype)
    epic = lambda m, s, p: (_epic_rows(m, s, p, reports),)  # noqa: E731
    ok = np.concatenate([np.asarray(r, np.float64) for r in
                         chunked_rows(epic, mechanism, setting, epic_prof, cfg, 1 + setting.n_agents * reports.shape[1])])
    metrics["epic_probability"], metrics["epic_probability_se"] = mean_se(ok)

    if benchmarks:
        from .mechanisms import mechanism_from_config

        slack_b, bb_b = {}, {}
        for name in setting.benchmark_names():
            bm = mechanism_from_config(setting, {"kind": name})
            rows = chunked_rows(_ex_post_rows, bm, setting, grid, cfg, 1 + setting.n_agents)
            slack_b[name], bb_b[name] = float(rows[2].min()), float(np.abs(rows[1]).max())
        metrics["benchmarks_ir_slack_min"], metrics["benchmarks_bb_residual"] = slack_b, bb_b
    metrics["samples"] = int(profiles.shape[0])
    metrics["grid_profiles"] = int(grid.shape[0])
    metrics["attack"] = {"grid_points": int(metrics["interim_reports"]), "steps": cfg.attack_steps if ascend else 0,
                         "lr": cfg.attack_lr, "seed": cfg.seed}
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 2)
    return metrics

