"""The binary 2-good table of Fang–Norman: learned symmetric simple mechanisms against the exact LP.

    python experiments/public_goods_table.py [--agents 2 3 4 5] [--steps N] [--out runs/public_goods]
                                             [--json PATH] [--markdown PATH]

For each n it trains `experiments/public_goods_binary.toml` with `setting.n_agents = n` (exact
interim expectations), evaluates the result exactly, and tabulates its surplus, interim regret,
interim IR violation and budget residual beside the LP optimum, the best separate provision and
the first best on the same (exact) expectations. Runs that already have a `metrics.json` are not
trained again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import diffmech as dm
from diffmech.cli import _finish_training
from diffmech.config import apply_overrides, load_config

CONFIG = Path(__file__).with_name("public_goods_binary.toml")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, nargs="+", default=[2, 3, 4, 5])
    p.add_argument("--steps", type=int)
    p.add_argument("--out", default="runs/public_goods")
    p.add_argument("--json")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    rows = []
    for n in args.agents:
        out = Path(args.out) / f"n{n}"
        overrides = [f"setting.n_agents={n}"] + ([f"train.steps={args.steps}"] if args.steps else [])
        if not (out / "metrics.json").exists():
            run = dm.resolve(apply_overrides(load_config(CONFIG), overrides))
            res = dm.train(run, out, resume=(out / "resume").exists())
            _finish_training(res, out, do_eval=True, progress=False)  # metrics.json and figures, as `diffmech train`
        m = json.loads((out / "metrics.json").read_text())
        b = m["benchmarks"]
        rows.append({"n": n, "learned": m["surplus"], "lp": b["public_lp"], "separate": b["separate_provision"],
                     "first_best": b["first_best"], "gap_to_lp": (m["surplus"] - b["public_lp"]) / b["public_lp"],
                     "interim_regret_max": m["interim_regret_max"], "interim_regret_mean": m["interim_regret_mean"],
                     "ir_violation_max": m["ir_violation_max"], "bb_residual": m["bb_residual"], "train_seconds": m.get("train_seconds")})
    lines = ["| n | learned | LP optimum | gap | separate | first best | interim regret max | IR viol. max | BB residual | train (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['learned']:.5f} | {r['lp']:.6f} | {100 * r['gap_to_lp']:+.2f}% | {r['separate']:.6f} | "
                     f"{r['first_best']:.6f} | {r['interim_regret_max']:.1e} | {r['ir_violation_max']:.1e} | {r['bb_residual']:.1e} | {r['train_seconds']} |")
    table = "\n".join(lines)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
