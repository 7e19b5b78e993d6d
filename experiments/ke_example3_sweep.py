"""Ke Example 3: where do ex post socially efficient mechanisms stop existing as the lower end a of
θ ~ U[a, 1] falls? Theory: at a* = 0.2029882 (E Δ(a) = Σ u(θ_low) = 2a²/(1 + a)).

For each a this script
- trains learned budget-balanced payments (``experiments/ke_example3.toml`` with
  ``setting.prior.low = a``) and measures them (`diffmech.evaluate`: min ex post IR slack over a
  201² grid of profiles and the quadrature profiles, interim regret by 1024-node quadrature);
- solves the LP feasibility oracle on an N-point grid per agent (`diffmech.efficient_lp`);
- computes the continuum existence margin E Δ^# − Σ u(θ^#) (`diffmech.efficient_exact`).

The learned boundary is the midpoint between the largest a whose learned mechanism still
violates a constraint by more than ``TOL`` and the smallest a at which it violates none.

    python experiments/ke_example3_sweep.py [--steps 6000] [--grid 0.14,0.16,...] [--lp-n 40]

Writes ``experiments/results/cpu/ke_example3_sweep.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

import diffmech as dm
from diffmech.config import EvalConfig, load_config, resolve
from diffmech.efficient_exact import example3_threshold, existence_margin
from diffmech.efficient_lp import feasibility_lp
from diffmech.trainer import train

HERE = Path(__file__).resolve().parent
TOL = 1e-3


def run(a: float, steps: int, lp_n: int) -> dict:
    raw = load_config(HERE / "ke_example3.toml")
    raw["setting"]["prior"]["low"] = a
    raw["train"]["steps"] = steps
    cfg = resolve(raw)
    res = train(cfg, progress=False)
    seconds = res.seconds
    m = dm.evaluate(res.mechanism, cfg.setting, EvalConfig(interim_types=51, grid_points=201, interim_nodes=1024), benchmarks=False)
    lp = feasibility_lp(cfg.setting, lp_n, nodes="gauss")
    return {
        "a": a, "margin": existence_margin(cfg.setting), "lp_t_star": lp.t_star,
        "ir_slack_min": m["ir_slack_min"], "interim_regret_max": m["interim_regret_max"],
        "bb_residual": m["bb_residual"], "feasible": m["ir_slack_min"] >= -TOL and m["interim_regret_max"] <= TOL,
        "train_seconds": round(seconds, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--grid", default="0.14,0.16,0.18,0.20,0.22,0.24,0.26")
    ap.add_argument("--lp-n", type=int, default=40)
    ap.add_argument("--out", default=str(HERE / "results" / "cpu" / "ke_example3_sweep"))
    args = ap.parse_args()
    rows = []
    for a in [float(x) for x in args.grid.split(",")]:
        rows.append(run(a, args.steps, args.lp_n))
        print(json.dumps(rows[-1]), flush=True)
    bad = [r["a"] for r in rows if not r["feasible"]]
    good = [r["a"] for r in rows if r["feasible"] and (not bad or r["a"] > max(bad))]
    boundary = (max(bad) + min(good)) / 2 if bad and good else None
    a_star = example3_threshold()
    out = {"a_star": a_star, "learned_boundary": boundary, "tol": TOL, "steps": args.steps, "lp_n": args.lp_n,
           "rows": rows, "devices": [str(d) for d in jax.devices()]}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=2))
    lines = [f"a* = {a_star:.7f}; learned boundary = {boundary}; tolerance {TOL}", "",
             "| a | margin E Δ# − Σu | LP t* (N = %d) | learned min IR slack | learned interim regret max | feasible |" % args.lp_n,
             "|---:|---:|---:|---:|---:|:--:|"]
    for r in rows:
        lines.append(f"| {r['a']:.2f} | {r['margin']:+.5f} | {r['lp_t_star']:+.5f} | {r['ir_slack_min']:+.5f} | "
                     f"{r['interim_regret_max']:.1e} | {'yes' if r['feasible'] else 'no'} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
