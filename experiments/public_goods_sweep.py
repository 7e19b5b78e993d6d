"""Bundling against separate provision as the number of agents grows (Fang–Norman).

    python experiments/public_goods_sweep.py [--max-n 12] [--json PATH] [--markdown PATH]

The binary 2-good instance of the Fang–Norman table (θ_i^j ∈ {1, 3}, P(3) = 0.4, iid over goods and
agents, C(n) = 1.25·n per good): for each n the exact optimum over all incentive-feasible
mechanisms (bundling and exclusion allowed), the optimum without exclusion, the best separate
provision (each good its own mechanism and budget) and the first best, all by LP on the finite type
space (the anonymous type-count LP, exact; `diffmech.public_lp`). Learned mechanisms for n = 2..5
come from `diffmech train experiments/public_goods_binary.toml --set setting.n_agents=N`.
"""

from __future__ import annotations

import argparse
import json

import diffmech as dm
from diffmech.public_lp import solve_public_lp


def setting(n: int):
    cfg = {"kind": "public_goods", "n_agents": n, "n_goods": 2, "cost_per_agent": 1.25,
           "prior": {"dist": "discrete", "values": [1.0, 3.0], "probs": [0.6, 0.4]}}
    return dm.setting_from_config(cfg)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-n", type=int, default=12)
    p.add_argument("--json")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    rows = []
    for n in range(2, args.max_n + 1):
        s = setting(n)
        best = solve_public_lp(s, method="counts")
        sep = solve_public_lp(s, restriction="separate", method="counts")
        nox = solve_public_lp(s, restriction="no_exclusion", method="counts")
        rows.append({"n": n, "first_best": best.first_best, "optimum": best.surplus, "no_exclusion": nox.surplus,
                     "separate": sep.surplus, "bundling_gain": best.surplus - sep.surplus,
                     "bundling_gain_share": (best.surplus - sep.surplus) / best.surplus if best.surplus else 0.0,
                     "seconds": best.seconds + sep.seconds + nox.seconds})
    lines = ["| n | first best | optimum | no exclusion | separate provision | bundling gain | LP time (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['first_best']:.6f} | {r['optimum']:.6f} | {r['no_exclusion']:.6f} | {r['separate']:.6f} | "
                     f"{r['bundling_gain']:.6f} ({100 * r['bundling_gain_share']:.2f}%) | {r['seconds']:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
