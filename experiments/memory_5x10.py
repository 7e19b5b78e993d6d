"""Memory of the strong attack on 5 bidders × 10 items with 1,000 starting points (issue 8, item 3).

Runs ``diffmech.evaluate`` — truthful metrics, the strong attack (``eval.attack_starts`` random
starts + the truthful report per (profile, bidder), ``eval.attack_steps`` Adam steps each), the
training-regret estimate, the symmetry checks and the benchmarks — on an untrained RegretNet of the
shape of ``experiments/five_by_ten_additive.toml`` under the default memory budget
(``eval.memory_mb``), and reports the chunk the budget chose, the traced estimate of one attack
call, XLA's compiled memory analysis of that same call, the peak resident memory of the process
(``ru_maxrss``) and the wall time.

    nice python experiments/memory_5x10.py [--profiles 64] [--starts 1000] [--steps 100] [--memory-mb 2048]

Writes ``experiments/results/cpu/memory_5x10.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

import diffmech as dm
from diffmech import memory as M
from diffmech.config import EvalConfig, load_config, resolve
from diffmech.evaluate import _gradient_attack, attack_sizes

HERE = Path(__file__).resolve().parent


def rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def compiled_bytes(mechanism, setting, types, starts, steps, lr) -> dict | None:
    """XLA's memory analysis of one compiled call of the gradient attack at these shapes."""
    params, static = eqx.partition((mechanism, setting), eqx.is_array)
    f = jax.jit(lambda p, t, s: _gradient_attack(*eqx.combine(p, static), t, s, steps, lr))
    ma = f.lower(params, types, starts).compile().memory_analysis()
    if ma is None:
        return None
    return {k: int(getattr(ma, k)) for k in ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=int, default=64)
    ap.add_argument("--starts", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=None, help="attack steps (default: the config's eval.attack_steps)")
    ap.add_argument("--memory-mb", type=float, default=None, help="eval.memory_mb (default: the library default)")
    ap.add_argument("--out", default=str(HERE / "results" / "cpu" / "memory_5x10"))
    args = ap.parse_args()

    t_start = time.perf_counter()
    run = resolve(load_config(HERE / "five_by_ten_additive.toml"))
    base = run.eval
    changes = {"samples": args.profiles, "attack_starts": args.starts, "symmetry_samples": min(base.symmetry_samples, args.profiles)}
    if args.steps is not None:
        changes["attack_steps"] = args.steps
    if args.memory_mb is not None:
        changes["memory_mb"] = args.memory_mb
    cfg = EvalConfig(**{**dataclasses.asdict(base), **changes})
    setting = run.setting
    mechanism = run.build_mechanism(jax.random.PRNGKey(0))
    n, d = setting.n_agents, setting.n_items
    rss_before = rss_mib()

    # the chunk the budget chooses, the traced estimate and XLA's figure for that call
    types = setting.sample(jax.random.PRNGKey(cfg.seed), cfg.samples)
    size, _ = attack_sizes(mechanism, setting, types, None, cfg.attack_starts + 1, cfg)
    starts_of = lambda u: jax.ShapeDtypeStruct((u, cfg.attack_starts + 1, n, d), types.dtype)  # noqa: E731
    cost = M.unit_cost(_gradient_attack, lambda u: (mechanism, setting, M.shaped(types, u), starts_of(u), cfg.attack_steps, cfg.attack_lr))
    estimate = cost.fixed + size * cost.per_unit
    compiled = compiled_bytes(mechanism, setting, jnp.zeros((size, n, d), types.dtype),
                              jnp.zeros((size, cfg.attack_starts + 1, n, d), types.dtype), cfg.attack_steps, cfg.attack_lr)
    rss_probe = rss_mib()

    t0 = time.perf_counter()
    metrics = dm.evaluate(mechanism, setting, cfg, train_cfg=run.train, benchmarks=True)
    seconds = time.perf_counter() - t0
    peak = rss_mib()

    result = {
        "setting": "5 bidders x 10 items, additive, U[0,1]; untrained regretnet hidden " + str(run.mechanism_cfg["hidden"]),
        "command": "nice python experiments/memory_5x10.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        "device": f"{jax.devices()[0].platform} ({jax.device_count()} device(s)), jax {jax.__version__}, {platform.machine()}",
        "profiles": cfg.samples,
        "attack_starts": cfg.attack_starts,
        "attack_steps": cfg.attack_steps,
        "memory_mb": cfg.memory_mb,
        "profiles_per_call": size,
        "mechanism_evaluations_per_call": size * (cfg.attack_starts + 1) * n,
        "traced_estimate_mib_per_call": round(estimate / M.MIB, 1),
        "xla_compiled_mib_per_call": None if compiled is None else round(sum(compiled.values()) / M.MIB, 1),
        "xla_compiled": compiled,
        "rss_before_eval_mib": round(rss_before, 1),
        "rss_after_probe_mib": round(rss_probe, 1),
        "peak_rss_mib": round(peak, 1),
        "eval_seconds": round(seconds, 1),
        "seconds_per_profile": round(seconds / cfg.samples, 2),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "metrics": {k: metrics[k] for k in ("revenue", "regret_mean", "regret_max", "train_regret_mean", "ir_violation") if k in metrics},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("profiles × starts × bidders", f"{cfg.samples} × {cfg.attack_starts + 1} × {n}"),
        ("attack steps", cfg.attack_steps),
        ("eval.memory_mb", cfg.memory_mb),
        ("profiles per compiled call", size),
        ("traced estimate of one attack call (MiB)", result["traced_estimate_mib_per_call"]),
        ("XLA compiled memory of that call (MiB)", result["xla_compiled_mib_per_call"]),
        ("RSS before evaluation (MiB)", result["rss_before_eval_mib"]),
        ("peak RSS (MiB)", result["peak_rss_mib"]),
        ("evaluate() wall time (s)", result["eval_seconds"]),
        ("seconds per profile", result["seconds_per_profile"]),
    ]
    md = [f"# Strong attack, 5 × 10 additive, {cfg.attack_starts} starts: memory", "",
          f"`{result['command']}` on {result['device']}.", "", "| quantity | value |", "|---|---:|"]
    md += [f"| {k} | {v} |" for k, v in rows]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
