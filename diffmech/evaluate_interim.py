"""Evaluation of mechanisms in interim (Bayesian) settings: exact, quadrature or Monte Carlo.

How the expectations are taken (``interim_method`` in the metrics):

- ``exact``: a finite type space. Every own type, every report in the type space, every profile
  of the others weighted by its probability; surplus and budget summed over all K^n profiles.
  Nothing is estimated, so no standard errors.
- ``quadrature``: continuous types and n = 2. The other agent's type is integrated with
  ``interim_nodes`` Gauss–Legendre nodes in quantile space (2048 by default, fewer per good for
  several goods, at most 16384 in all: a mechanism with a jump, such as a cutoff rule, is integrated
  to about 1e-4); own types are an even grid
  of ``interim_types`` points (when M ≤ 2); reports are the setting's exhaustive grid of
  ``grid_points`` reports (spacing 0.001 of the support for one good), then — with two goods,
  where the grid is coarser — ``attack_steps`` steps of gradient ascent from the best one.
  Deterministic: no maximum over noisy estimates. Ex ante quantities (surplus, budget) use the
  product rule over both agents for one good; with more quantile dimensions (several goods, or a
  common weight) they are sampled (``samples`` profiles) and carry standard errors.
- the same for n = 1 (the others' expectation is one empty profile) and for types that mix atoms with
  a payoff-irrelevant continuous coordinate (a dithered social choice): the setting then gives the
  nodes itself — own types, other agent and ex ante profiles every atom × the midpoint rule in u
  (``own_type_nodes``, ``quadrature``) — the reports are its exhaustive grid (every atom × a fine
  grid in u', ``exhaustive_attack``: no gradient ascent, which would leave the atoms), and own
  types that differ only in the irrelevant coordinate share one best response
  (:func:`payoff_classes`).
- ``monte_carlo``: continuous types, n > 2. ``interim_samples`` profiles of the others drawn once
  and shared by every own type and report (common random numbers). The maximum over reports of
  noisy estimates is biased upward; the metrics report the inner standard error of the gain at
  the chosen report (``interim_regret_inner_se_max``) and the number of inner samples.

Metrics: ``surplus`` (E Σ_j ρ^j(Σ_i η_i^j θ_i^j − C^j)), ``revenue`` (E Σ_i t_i), ``welfare``,
``cost`` (E Σ_j ρ^j C^j), ``budget_surplus`` (E Σ t − E cost), ``bb_residual`` (ex ante:
max(0, E cost − E Σ t); ex post: max over profiles |Σ_i t_i − Σ_j ρ^j C^j|),
``interim_regret_mean`` (mean over agents and own types — probability-weighted on a finite type
space — of the best gain found), ``interim_regret_max``, ``ir_violation`` / ``ir_violation_max``
(interim shortfall max(0, −U_i(θ_i, θ_i))), ``feasibility_violation_max``, ``benchmarks``.

Memory: every kernel runs in chunks sized under ``eval.memory_mb`` (:mod:`diffmech.memory`) — ex
ante rows by profiles, best responses by reports (and by own types too when one report for every
own type is already over the budget), truthful utilities, gradient ascent and the inner-sample
gains by own types. The chunking changes no number beyond float32 round-off.
"""

from __future__ import annotations

import math
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import interim as I
from . import memory as M
from .config import EvalConfig
from .evaluate import _mean_se as mean_se
from .evaluate import keep_better


def _own_types(setting, cfg: EvalConfig, key) -> I.Nodes:
    """Own types whose interim regret is measured on a continuous type space: the setting's even
    product grid of about ``interim_types`` points when it has one (M ≤ 2), else samples; a setting
    may give its own weighted nodes (``setting.own_type_nodes``, e.g. atoms × midpoints in u)."""
    own = getattr(setting, "own_type_nodes", lambda k: None)(cfg.interim_types)
    if own is not None:
        dtype = jnp.result_type(float)
        return I.Nodes(jnp.asarray(own[0], dtype), jnp.asarray(own[1], dtype))
    grid = setting.attack_grid(cfg.interim_types)
    if grid is None:
        return I.sample_nodes(setting, key, cfg.interim_types)
    grid = jnp.asarray(grid, jnp.result_type(float))
    return I.Nodes(grid, jnp.full(grid.shape[:2], 1.0 / grid.shape[1], grid.dtype))


def _quadrature_nodes(setting, cfg: EvalConfig, copies: int, limit: int = I.MAX_PRODUCT) -> I.Nodes:
    """Gauss–Legendre nodes, ``interim_nodes`` per quantile (per good, plus the common taste with
    a common weight) halved until ``copies`` agents' product has at most ``limit`` points (counting
    the nodes the setting returns, which also enumerate atoms when it mixes atoms and quantiles)."""
    per = cfg.interim_nodes
    while per ** (setting.quantile_dim * copies) > limit and per > 2:
        per //= 2
    nodes = I.quadrature_nodes(setting, per)
    while nodes.points.shape[1] ** copies > limit and per > 2:
        per //= 2
        nodes = I.quadrature_nodes(setting, per)
    return nodes


def _others(setting, cfg: EvalConfig, method: str, key):
    if method == "exact":
        return I.others_profiles(I.exact_nodes(setting))
    if method == "quadrature":  # at most 16384 nodes for the other agent
        return I.others_profiles(_quadrature_nodes(setting, cfg, 1, I.MAX_PRODUCT // 4))
    return I.sampled_others(setting, key, cfg.interim_samples)


def _profiles(setting, cfg: EvalConfig, method: str, key):
    """Profiles and weights for ex ante quantities; ``None`` weights mean Monte Carlo (equal)."""
    if method == "exact":
        return I.product_profiles(I.exact_nodes(setting))
    if method == "quadrature" and setting.quantile_dim * setting.n_agents <= 2:
        return I.product_profiles(_quadrature_nodes(setting, cfg, setting.n_agents))
    # a product rule in more dimensions would have a handful of nodes per axis for integrands
    # that jump where provision switches: sample instead, and report the standard error
    prof = setting.sample(key, cfg.samples)
    return prof, None


@eqx.filter_jit
def _table(mechanism, setting, own, reports, others, weights):
    return I.interim_utility(mechanism, setting, own, reports, others, weights)


@eqx.filter_jit
def _truthful(mechanism, setting, own, others, weights):
    """U_i(θ_k, θ_k) for every agent and own type, ``(agents, K)``."""
    f = lambda o: I.interim_utility(mechanism, setting, o[:, None], o[:, None], others, weights)[:, 0, 0]
    return jax.vmap(f, in_axes=1, out_axes=1)(own)


def _pad_types(x, size: int):
    """``x`` ``(agents, k, ...)`` padded along the own-type axis to ``size`` by repeating its last entry."""
    if x.shape[1] == size:
        return x
    return jnp.concatenate([x, jnp.repeat(x[:, -1:], size - x.shape[1], axis=1)], axis=1)


def over_own_types(kernel, mechanism, setting, per_type: tuple, rest: tuple, cfg: EvalConfig, evals_per_type: int):
    """``kernel(mechanism, setting, *per_type, *rest)`` in chunks of own types (axis 1 of every
    array of ``per_type``; the last chunk padded) sized under ``cfg.memory_mb``; every output has
    the own types on axis 1 and is concatenated along it."""
    k = per_type[0].shape[1]
    size = M.units_per_call(kernel, lambda u: (mechanism, setting, *[M.shaped(x, u, 1) for x in per_type], *rest), k, cfg, evals_per_type)
    outs = []
    for a in range(0, k, size):
        res = kernel(mechanism, setting, *[_pad_types(x[:, a : a + size], size) for x in per_type], *rest)
        outs.append(jax.tree_util.tree_map(lambda y: y[:, : min(size, k - a)], res))
    return jax.tree_util.tree_map(lambda *ys: jnp.concatenate(ys, axis=1), *outs)


def best_reports(mechanism, setting, own, reports, others, weights, cfg: EvalConfig, split: bool = True):
    """Best report per (agent, own type) among ``reports`` and its utility, in chunks of reports
    sized under ``cfg.memory_mb`` — and of own types too when one report for every own type is
    already over the budget."""
    n, s = others.shape[:2]
    k = own.shape[1]
    cost = M.unit_cost(_table, lambda u: (mechanism, setting, own, M.shaped(reports, u, 1), others, weights))
    if split and k > 1 and cost.units(M.budget_bytes(cfg)) == 0:
        one = M.shaped(reports, 1, 1)
        k_cost = M.unit_cost(_table, lambda u: (mechanism, setting, M.shaped(own, u, 1), one, others, weights))
        size = max(1, min(k, k_cost.units(M.budget_bytes(cfg))))
        firsts = range(0, k, size)
        parts = [best_reports(mechanism, setting, _pad_types(own[:, a : a + size], size), reports, others, weights, cfg, split=False)
                 for a in firsts]
        cut = [tuple(x[:, : min(size, k - a)] for x in part) for part, a in zip(parts, firsts)]
        return tuple(jnp.concatenate(xs, axis=1) for xs in zip(*cut))
    per = M.clamp(cost.units(M.budget_bytes(cfg)), reports.shape[1], cfg, n * s)
    best_u = best_r = None
    for a in range(0, reports.shape[1], per):
        piece = reports[:, a : a + per]
        if piece.shape[1] < per:  # pad to one compiled shape
            piece = jnp.concatenate([piece, jnp.repeat(piece[:, -1:], per - piece.shape[1], axis=1)], axis=1)
        u = _table(mechanism, setting, own, piece, others, weights)  # (n, K, per)
        arg = jnp.argmax(u, axis=-1)
        u_best = jnp.max(u, axis=-1)
        r_best = jnp.take_along_axis(piece[:, None, :, :], arg[..., None, None], axis=2)[:, :, 0]
        best_u, best_r = keep_better(best_u, best_r, u_best, r_best)
    return best_u, best_r


@eqx.filter_jit
def _ascend(mechanism, setting, own, start, others, weights, steps: int, lr: float):
    """Gradient ascent of U_i(θ_k, r) over each (agent, own type)'s report r (Adam, projected);
    returns the best utility seen and its report."""
    mechanism = jax.lax.stop_gradient(mechanism)
    lo, hi = setting.type_bounds()
    lo_, hi_ = jnp.asarray(lo[:, None, :], start.dtype), jnp.asarray(hi[:, None, :], start.dtype)
    scale = hi_ - lo_
    opt = optax.adam(lr)

    def util(r):  # r: (n, K, d) → (n, K)
        f = lambda o, rr: I.interim_utility(mechanism, setting, o[:, None], rr[:, None], others, weights)[:, 0, 0]
        return jax.vmap(f, in_axes=(1, 1), out_axes=1)(own, r)

    def body(carry, _):
        r, st, best_u, best_r = carry
        (_, uu), grad = jax.value_and_grad(lambda x: (lambda u: (u.sum(), u))(util(x)), has_aux=True)(r)
        better = uu > best_u
        best_u = jnp.where(better, uu, best_u)
        best_r = jnp.where(better[..., None], r, best_r)
        upd, st = opt.update(-grad / scale, st)
        r = jnp.clip(r + upd * scale, lo_, hi_)
        return (r, st, best_u, best_r), None

    u0 = util(start)
    (r, _, best_u, best_r), _ = jax.lax.scan(body, (start, opt.init(start), u0, start), None, length=steps)
    return best_u, best_r


@eqx.filter_jit
def _gain_samples(mechanism, setting, own, report, others):
    """Per-sample gains u_i(θ_k; (r*_ik, θ_−i^s)) − u_i(θ_k; (θ_k, θ_−i^s)): ``(agents, K, S)``."""

    def one(o, r):  # o, r: (n, d)
        pair = jnp.stack([r, o], axis=1)  # reports (n, 2, d)
        u = I.utility_samples(mechanism, setting, o[:, None], pair, others)[:, 0]  # (n, 2, S)
        return u[:, 0] - u[:, 1]

    return jax.vmap(one, in_axes=(1, 1), out_axes=1)(own, report)


@eqx.filter_jit
def _ex_ante_rows(mechanism, setting, profiles):
    out = mechanism(profiles)
    return (
        setting.objective_value(profiles, out),
        jnp.sum(out.payments, axis=-1),
        jnp.sum(setting.values(profiles, out), axis=-1),
        setting.provision_cost(out),
        setting.feasibility_violation(out),
    )


def chunked_rows(fn, mechanism, setting, profiles, cfg: EvalConfig, evals_per_profile: int = 1) -> list[np.ndarray]:
    """The per-profile columns ``fn(mechanism, setting, part)`` over ``profiles``, evaluated in
    parts sized under ``cfg.memory_mb`` (the last one padded to the same compiled shape), float64;
    ``evals_per_profile`` mechanism evaluations per profile for the optional cap ``cfg.chunk``."""
    cols = None
    size = M.units_per_call(fn, lambda u: (mechanism, setting, M.shaped(profiles, u)), profiles.shape[0], cfg, evals_per_profile)
    for a in range(0, profiles.shape[0], size):
        part = profiles[a : a + size]
        pad = size - part.shape[0]
        if pad:
            part = jnp.concatenate([part, jnp.repeat(part[-1:], pad, axis=0)])
        rows = [np.asarray(r, np.float64)[: size - pad] for r in fn(mechanism, setting, part)]
        cols = [[r] for r in rows] if cols is None else [c + [r] for c, r in zip(cols, rows)]
    return [np.concatenate(c) for c in cols]


def _ex_ante(mechanism, setting, profiles, weights, cfg: EvalConfig):
    return chunked_rows(_ex_ante_rows, mechanism, setting, profiles, cfg)


def _mean_se(x, w):
    """Monte Carlo mean and standard error (``w`` None), or the exact weighted sum (se 0)."""
    if w is None:
        return mean_se(x)
    return float(np.sum(np.asarray(w, np.float64) * np.asarray(x, np.float64))), 0.0


def payoff_classes(setting, own):
    """Own types that differ only in payoff-irrelevant coordinates (``setting.payoff_relevant``,
    e.g. the dither u_i of a social choice) have the same U_i(θ, r) for every report r, so the best
    response is computed once per class: representatives ``(agents, C, dim)`` and each own type's
    class ``(agents, K)`` — or ``(own, None)`` when the setting has no such coordinates."""
    relevant = getattr(setting, "payoff_relevant", lambda x: None)(np.asarray(own, np.float64))
    if relevant is None:
        return own, None
    reps, classes = [], []
    for i in range(relevant.shape[0]):  # construction-time numpy, one agent at a time
        _, first, inv = np.unique(relevant[i], axis=0, return_index=True, return_inverse=True)
        reps.append(np.asarray(own)[i, first])
        classes.append(inv.reshape(-1))
    c = max(len(r) for r in reps)
    reps = np.stack([np.concatenate([r, np.repeat(r[-1:], c - len(r), axis=0)]) for r in reps])
    return jnp.asarray(reps, own.dtype), np.stack(classes)


def interim_regret_metrics(mechanism, setting, cfg: EvalConfig, method: str, k_own, k_oth, k_rnd):
    """Interim regret of every agent at the evaluation's own types (module docstring): the metrics
    ``interim_regret_*``, ``train_interim_regret_mean``, inner-sample counts, and the truthful
    interim utilities U_i(θ_k, θ_k) ``(agents, K)``, the own types' weights ``(K,)``, the reports
    tried and whether gradient ascent ran."""
    metrics: dict[str, Any] = {}
    others, ow = _others(setting, cfg, method, k_oth)
    grid = None
    if method == "exact":
        nodes = I.exact_nodes(setting)
        own, own_w = nodes.points, np.asarray(nodes.weights[0], np.float64)
        reports = nodes.points
    else:
        nodes = _own_types(setting, cfg, k_own)
        own, own_w = nodes.points, np.asarray(nodes.weights[0], np.float64)
        grid = setting.attack_grid(cfg.grid_points)
        if grid is None:
            extra = jnp.swapaxes(setting.sample(k_rnd, max(1, cfg.attack_starts) * 64), 0, 1)
            reports = jnp.concatenate([own, extra.astype(own.dtype)], axis=1)
        else:
            reports = jnp.concatenate([own, grid.astype(own.dtype)], axis=1)
    # gradient refinement where the report grid is coarse (two goods) or absent (more goods)
    # (none where the setting's grid is exhaustive over atoms, which ascent would leave)
    ascend = (method != "exact" and cfg.attack_steps > 0 and not (grid is not None and setting.type_dim == 1)
              and not getattr(setting, "exhaustive_attack", False))
    s = others.shape[1]
    truthful = np.asarray(over_own_types(_truthful, mechanism, setting, (own,), (others, ow), cfg, setting.n_agents * s), np.float64)
    reps, classes = (own, None) if method == "exact" else payoff_classes(setting, own)
    best_u, best_r = best_reports(mechanism, setting, reps, reports, others, ow, cfg)
    if method == "exact":
        train_u = best_u
    else:
        train_u, _ = best_reports(mechanism, setting, reps, own, others, ow, cfg)
        if classes is not None:  # back from one representative per class to every own type
            take = lambda x: jnp.take_along_axis(x, jnp.asarray(classes).reshape(classes.shape + (1,) * (x.ndim - 2)), axis=1)
            best_u, best_r, train_u = take(best_u), take(best_r), take(train_u)
        if ascend:
            best_u, best_r = keep_better(best_u, best_r, *over_own_types(_ascend, mechanism, setting, (own, best_r), (others, ow, cfg.attack_steps, cfg.attack_lr),
                                                                           cfg, setting.n_agents * s))
    gains = np.maximum(np.asarray(best_u, np.float64) - truthful, 0.0)  # (n, K)
    per_type = gains.mean(axis=0)  # mean over agents
    metrics["interim_regret_mean"] = float(np.sum(own_w * per_type))
    metrics["interim_regret_mean_se"] = 0.0 if method == "exact" else float(per_type.std(ddof=1) / math.sqrt(per_type.size))
    metrics["interim_regret_max"] = float(gains.max())
    train_gain = np.maximum(np.asarray(train_u, np.float64) - truthful, 0.0).mean(axis=0)
    metrics["train_interim_regret_mean"] = float(np.sum(own_w * train_gain))
    if method == "monte_carlo":
        samples = np.asarray(over_own_types(_gain_samples, mechanism, setting, (own, best_r), (others,), cfg, 2 * setting.n_agents * s),
                             np.float64)  # (n, K, S)
        inner_se = samples.std(axis=-1, ddof=1) / math.sqrt(samples.shape[-1])
        metrics["interim_regret_inner_se_max"] = float(inner_se.max())
        metrics["interim_regret_inner_se_mean"] = float(inner_se.mean())
    metrics["interim_inner_samples"] = int(others.shape[1])
    metrics["interim_types"] = int(own.shape[1])
    metrics["interim_reports"] = int(reports.shape[1])
    return metrics, truthful, own_w, reports, ascend


def evaluate_interim(mechanism, setting, cfg: EvalConfig | None = None, *, benchmarks: bool = True, progress: bool = False) -> dict[str, Any]:
    """Measure ``mechanism`` on an interim setting (module docstring)."""
    cfg = cfg or EvalConfig()
    t0 = time.perf_counter()
    method = I.expectation_method(setting)
    key = jax.random.PRNGKey(cfg.seed)
    k_prof, k_own, k_oth, k_rnd = jax.random.split(key, 4)
    profiles, pw = _profiles(setting, cfg, method, k_prof)
    obj, rev, wel, cost, infeasible = _ex_ante(mechanism, setting, profiles, pw, cfg)
    metrics: dict[str, Any] = {"interim_method": method}
    metrics["surplus"], metrics["surplus_se"] = _mean_se(obj, pw)
    metrics["revenue"], metrics["revenue_se"] = _mean_se(rev, pw)
    metrics["welfare"], metrics["welfare_se"] = _mean_se(wel, pw)
    metrics["cost"], metrics["cost_se"] = _mean_se(cost, pw)
    metrics["budget_surplus"], metrics["budget_surplus_se"] = _mean_se(rev - cost, pw)
    if setting.budget == "ex_post":
        metrics["bb_residual"] = float(np.max(np.abs(rev - cost)))
    else:
        metrics["bb_residual"] = max(0.0, -metrics["budget_surplus"])
    metrics["feasibility_violation_max"] = float(infeasible.max())

    # interim regret and IR
    block, truthful, own_w, reports, ascend = interim_regret_metrics(mechanism, setting, cfg, method, k_own, k_oth, k_rnd)
    metrics.update(block)
    short = np.maximum(-truthful, 0.0)
    metrics["ir_violation"] = float(np.sum(own_w * short.mean(axis=0)))
    metrics["ir_violation_max"] = float(short.max())

    if benchmarks:
        from .mechanisms import mechanism_from_config

        bench, bench_se, gap, gap_se = {}, {}, {}, {}
        for name in setting.benchmark_names():
            bm = mechanism_from_config(setting, {"kind": name})
            values = _ex_ante(bm, setting, profiles, pw, cfg)[0]
            bench[name], bench_se[name] = _mean_se(values, pw)
            gap[name], gap_se[name] = _mean_se(obj - values, pw)
        metrics["benchmarks"], metrics["benchmarks_se"] = bench, bench_se
        metrics["benchmarks_gap"], metrics["benchmarks_gap_se"] = gap, gap_se
    metrics["samples"] = int(profiles.shape[0])
    metrics["attack"] = {"grid_points": int(reports.shape[1]), "steps": cfg.attack_steps if ascend else 0,
                         "lr": cfg.attack_lr, "seed": cfg.seed}
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 2)
    return metrics
