"""Issue 8's sweep bar: 3 priors × 4 seeds for 2 bidders, single item, trained by ``diffmech sweep``
(one vmapped group of 12 runs), against 3 single runs (one per prior) one after another.

    python experiments/sweep_priors.py [--config experiments/two_bidders_uniform.toml] [--steps N]
        [--batch B] [--out experiments/results/cpu/sweep_priors]

Both sides include compilation (what a user waits for) and exclude evaluation (the sweep trains
4 times as many runs; evaluating them is a separate cost, reported by ``diffmech sweep`` in
``train_seconds`` / ``eval_seconds``). The three priors share the support [0, 1]: uniform, power
law F(v) = v² and an exponential with rate 2 truncated at 1. Times are measured in one process,
one after the other, on the same machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import jax

import diffmech as dm
from diffmech.config import load_config
from diffmech.sweep import run_sweep

PRIORS = [
    {"dist": "uniform", "low": 0.0, "high": 1.0},
    {"dist": "power_law", "low": 0.0, "high": 1.0, "a": 2.0},
    {"dist": "exponential", "rate": 2.0, "high": 1.0},
]


def main(argv=None):
    here = Path(__file__).parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(here / "two_bidders_uniform.toml"))
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--out", default=str(here / "results" / "cpu" / "sweep_priors"))
    args = p.parse_args(argv)
    base = load_config(args.config)
    base.setdefault("train", {})
    if args.steps:
        base["train"]["steps"] = args.steps
    if args.batch:
        base["train"]["batch"] = args.batch
        base["train"]["train_size"] = max(args.batch, base["train"].get("train_size", 16384) // args.batch * args.batch)
    base["train"]["ckpt_every"] = base["train"].get("steps", 2000)

    t0 = time.perf_counter()
    singles = []
    for prior in PRIORS:
        cfg = copy.deepcopy(base)
        cfg["setting"]["prior"] = prior
        t = time.perf_counter()
        dm.train(dm.resolve(cfg), progress=False)
        singles.append(time.perf_counter() - t)
    t_singles = time.perf_counter() - t0

    tmp = Path(tempfile.mkdtemp(prefix="sweep-priors-"))
    try:
        t = time.perf_counter()
        rows = run_sweep(base, args.seeds, {"setting.prior": PRIORS}, tmp / "sweep", evaluate_runs=False, progress=False)
        t_sweep = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dev = jax.devices()[0]
    result = {
        "config": str(args.config), "steps": base["train"].get("steps"), "batch": base["train"].get("batch"),
        "runs_in_sweep": len(rows), "groups": len({r["group_size"] for r in rows}),
        "three_single_runs_seconds": round(t_singles, 2), "single_run_seconds": [round(x, 2) for x in singles],
        "sweep_seconds": round(t_sweep, 2), "sweep_over_singles": round(t_sweep / t_singles, 3),
        "device": f"{dev.platform} ({jax.device_count()} device(s))", "jax": jax.__version__, "python": platform.python_version(),
    }
    md = (f"Sweep of {len(PRIORS)} priors x {args.seeds} seeds ({len(rows)} runs, one vmapped group) vs {len(PRIORS)} single runs, "
          f"{result['steps']} steps, batch {result['batch']}, {result['device']}, jax {jax.__version__}:\n\n"
          "| what | seconds (incl. compilation) |\n|---|---:|\n"
          f"| 3 single runs, one after another | {t_singles:.1f} |\n"
          f"| sweep, {len(rows)} runs | {t_sweep:.1f} |\n"
          f"| ratio sweep / singles | {t_sweep / t_singles:.2f} |\n")
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(md)


if __name__ == "__main__":
    main()
