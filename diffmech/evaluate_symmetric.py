"""Evaluation of auctions played in equilibrium rather than truthfully (Deb–Pai symmetric auctions).

A :class:`~diffmech.mechanisms.symmetric_auction.SymmetricAuction` is Bayes–Nash, not dominant
strategy: a bidder's regret is the best-response gain of :func:`~diffmech.equilibrium.check_equilibrium`,
per (bidder, value), over a bid grid that includes bids outside every bid space. The metrics map
onto the library's names:

- ``interim_regret_max`` / ``interim_regret_per_bidder``: the largest best-response gain over the
  value grid (``eval.interim_types`` values per bidder), bids every
  (bid range)/``eval.grid_points``, the others integrated on ``max(eval.interim_nodes, 2^14)``
  quantile nodes;
- ``revenue`` ± ``revenue_se``: Monte Carlo on ``eval.samples`` value profiles (seed ``eval.seed``);
- ``allocation_mismatch``: the fraction of those profiles where the winner differs from the target
  hierarchical mechanism's;
- ``ex_post_ir_violation_rate``, ``losers_pay_rate``: how often a bidder pays more than her value
  of the outcome, and how often a loser pays (Deb–Pai Section 5);
- ``benchmarks``: revenue of the setting's benchmarks (Myerson, second price, second price with
  the best anonymous reserve) on the same profiles.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from .config import EvalConfig
from .equilibrium import check_equilibrium


def _bid_range(mechanism, setting) -> tuple[float, float]:
    h = mechanism.target
    if h is not None:
        spaces = np.asarray([h.bid_space(i) for i in range(h.n_agents)], dtype=np.float64)
        return float(spaces[:, 0].min()), float(spaces[:, 1].max())
    bids = np.asarray(mechanism.strategy(setting.sample(jax.random.PRNGKey(0), 4096)[..., 0]))
    return float(bids.min()), float(bids.max())


def evaluate_symmetric(mechanism, setting, cfg: EvalConfig, *, benchmarks: bool = True, progress: bool = False) -> dict[str, Any]:
    """The metrics of the module docstring for a symmetric auction and its strategies."""
    t0 = time.perf_counter()
    lo, hi = _bid_range(mechanism, setting)
    step = (hi - lo) / cfg.grid_points if hi > lo else 1.0 / cfg.grid_points
    key = jax.random.PRNGKey(cfg.seed)
    res = check_equilibrium(mechanism, setting.priors, mechanism.target, bid_step=step, n_values=cfg.interim_types,
                            samples=cfg.samples, key=key, n_nodes=max(cfg.interim_nodes, 2**14))
    metrics: dict[str, Any] = {
        "revenue": res["revenue"],
        "revenue_se": res["revenue_se"],
        "interim_regret_max": res["br_gain_max"],
        "interim_regret_per_bidder": [float(g) for g in res["br_gain"]],
        "best_response_worst": res["br_worst"],
        "ex_post_ir_violation_rate": res["ir_violation_rate"],
        "losers_pay_rate": res["losers_pay_rate"],
    }
    if "allocation_mismatch" in res:
        metrics["allocation_mismatch"] = res["allocation_mismatch"]
    cond = getattr(mechanism.rule, "condition_number", None)
    if cond is not None:
        metrics["condition_number"] = float(cond)
    if benchmarks:
        from .evaluate import objective_on
        from .mechanisms import mechanism_from_config

        types = np.stack([np.asarray(p.sample(k, (cfg.samples,))) for p, k in zip(setting.priors, jax.random.split(key, setting.n_agents))], axis=1)[..., None]
        bench, bench_se = {}, {}
        for name in setting.benchmark_names():
            vals = objective_on(mechanism_from_config(setting, {"kind": name}), setting, jax.numpy.asarray(types), cfg)
            bench[name], bench_se[name] = float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(vals.size))
        metrics["benchmarks"], metrics["benchmarks_se"] = bench, bench_se
    metrics["samples"] = cfg.samples
    metrics["bid_grid"] = list(res["bid_grid"])
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 2)
    return metrics
