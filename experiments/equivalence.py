"""The equivalence experiment of issue 3 (Bikhchandani–Mishra, Theorem 2 and Lemma 2).

The same exchangeable prior is learned twice: in the heterogeneous-objects model by the
item-equivariant (symmetric) net, and in the identical-objects model by the ordered net
(q_1 ≥ q_2 ≥ … by construction). The script then

1. evaluates each in its own model (strong attack);
2. maps the ordered net to the heterogeneous model by its symmetric extension (Definition 3) and
   evaluates it there: by Lemma 2 its regret stays as small as in the identical model, and its
   revenue is the same;
3. maps the symmetric net to the identical model (restriction to sorted types) and measures its
   rank preservation (Definition 2), which Theorem 1 says an IC symmetric mechanism must have;
4. solves the exact grid LP in both models (the identical one has about n! times fewer types).

    python experiments/equivalence.py --items 2            # trains both (or loads runs/...)
    python experiments/equivalence.py --items 3 --samples 20000

Writes experiments/results/cpu/equivalence_<n>_items.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


import diffmech as dm
from diffmech import lp
from diffmech.config import EvalConfig
from diffmech.mechanisms.transforms import SymmetricExtension

HERE = Path(__file__).resolve().parent
NAMES = {2: "two", 3: "three"}


def _trained(config: Path, out: Path):
    if (out / "manifest.json").exists():
        ck = dm.load(out)
        seconds = ck.metrics.get("train_seconds") or (ck.history[-1]["time"] if ck.history else None)
        return ck.mechanism, ck.setting, seconds
    t0 = time.perf_counter()
    res = dm.train(str(config), out_dir=out, progress=True)
    return res.mechanism, res.run.setting, time.perf_counter() - t0


def _keep(m: dict) -> dict:
    keys = ("revenue", "revenue_se", "regret_mean", "regret_mean_se", "regret_max", "ir_violation_max",
            "feasibility_violation_max", "symmetry_violation_share", "rank_violation_share", "rank_violation_max")
    return {k: m[k] for k in keys if k in m}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, choices=(2, 3), default=2)
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--points", type=int, help="LP grid points per axis (default 20 for 2 items, 10 for 3)")
    ap.add_argument("--runs", default="runs", help="where the two training runs live (reused if present)")
    args = ap.parse_args()
    name = NAMES[args.items]
    runs = Path(args.runs)
    sym, het, sym_t = _trained(HERE / f"equivalence_{name}_items_symmetric.toml", runs / f"equivalence_{name}_items_symmetric")
    ordered, ident, ord_t = _trained(HERE / f"equivalence_{name}_items_ordered.toml", runs / f"equivalence_{name}_items_ordered")
    assert ident.heterogeneous().to_config() == het.to_config(), "the two configs must describe the same prior"
    cfg = EvalConfig(samples=args.samples)
    out: dict = {"items": args.items, "setting": het.describe(), "train_seconds": {"symmetric": sym_t, "ordered": ord_t}}
    out["symmetric_net_in_heterogeneous_model"] = _keep(dm.evaluate(sym, het, cfg))
    out["ordered_net_in_identical_model"] = _keep(dm.evaluate(ordered, ident, cfg))
    out["ordered_net_extended_to_heterogeneous_model"] = _keep(dm.evaluate(SymmetricExtension(ordered), het, cfg))
    out["symmetric_net_restricted_to_identical_model"] = _keep(dm.evaluate(sym, ident, cfg, benchmarks=False))
    points = args.points or (20 if args.items == 2 else 10)
    types, probs, _ = lp.grid_for_setting(het, points)
    both = lp.solve_both_models(types, probs)
    out["lp"] = {"points": points, **{k: v for k, v in both.items() if not isinstance(v, lp.MenuLP)}}
    r_sym = out["symmetric_net_in_heterogeneous_model"]["revenue"]
    r_ord = out["ordered_net_in_identical_model"]["revenue"]
    out["relative_revenue_difference"] = abs(r_sym - r_ord) / r_ord
    dest = HERE / "results" / "cpu" / f"equivalence_{args.items}_items.json"
    dest.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
