"""Effect of bfloat16 network matmuls (issue 8, item 6) on revenue and regret.

The same RegretNet config (1 buyer, 2 items iid U[0, 1], additive; Manelli–Vincent optimum
(12 + 2√2)/27 = 0.549201; ``experiments/one_buyer_two_items_regretnet.toml`` with fewer steps) is
trained twice with the same seed, once with ``[mechanism] matmul_dtype = "float32"`` and once with
``"bfloat16"`` (bfloat16 operands, float32 accumulation; :mod:`diffmech.mechanisms.neural.precision`),
and each is evaluated by the standard evaluator (``diffmech.evaluate``: revenue on fresh profiles,
exhaustive-grid + gradient regret attack) in the precision it was trained in. On top, paired on the
evaluator's profiles: the revenue difference of the two trained mechanisms, and the revenue change when
each trained network is run in the other precision (the inference-only effect of the rounding).

On a CPU bfloat16 is not faster (XLA emulates it; it is slower): the point is the numerical effect.

    nice python experiments/precision.py                       # seeds 0 1, 4000 steps, 20000 eval profiles
    nice python experiments/precision.py --seeds 0 1 2 --steps 6000 --samples 50000

Trained runs are kept under runs/precision/ and reused by a second call.

Writes experiments/results/cpu/precision.{json,md} (or --out DIR).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import jax
import numpy as np

import diffmech as dm

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "one_buyer_two_items_regretnet.toml"
OPTIMUM = (12 + 2 * 2**0.5) / 27
MODES = ("float32", "bfloat16")


def _revenue_per_profile(mechanism, types) -> np.ndarray:
    return np.asarray(jax.jit(lambda x: mechanism(x).payments.sum(axis=-1))(types), np.float64)


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = a - b
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


def _in_mode(mechanism, run_other):
    """The trained parameters of ``mechanism`` in the skeleton of the other precision (same leaves)."""
    skeleton = run_other.build_mechanism(jax.random.PRNGKey(0))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(skeleton), jax.tree_util.tree_leaves(mechanism))


def _trained(run, out: Path):
    """Train ``run`` into ``out`` (or load it from there if it is complete): (mechanism, train seconds)."""
    if (out / "manifest.json").exists():
        ck = dm.load(out)
        return ck.mechanism, float(ck.history[-1]["time"])
    res = dm.train(run, out_dir=out, progress=False)
    return res.mechanism, res.seconds


def _one_seed(base: dict, seed: int, args) -> dict:
    runs, trained, metrics = {}, {}, {}
    for mode in MODES:
        cfg = dm.apply_overrides(base, [f'mechanism.matmul_dtype="{mode}"', f"train.steps={args.steps}", f"train.seed={seed}"])
        run = dm.resolve(cfg)
        mech, seconds = _trained(run, args.runs / f"{mode}_s{seed}_{args.steps}")
        ev = dataclasses.replace(run.eval, samples=args.samples)
        m = dm.evaluate(mech, run.setting, ev, train_cfg=run.train, benchmarks=False)
        m["train_seconds"] = round(seconds, 2)
        runs[mode], trained[mode], metrics[mode] = run, mech, m
        print(f"seed {seed} {mode}: revenue {m['revenue']:.5f} ± {m['revenue_se']:.5f}, regret {m['regret_mean']:.2e}, "
              f"train {m['train_seconds']} s", flush=True)
    # the bfloat16-trained network evaluated with float32 products: is its regret the network's or the rounding's?
    ev = dataclasses.replace(runs["float32"].eval, samples=args.samples)
    as32 = _in_mode(trained["bfloat16"], runs["float32"])
    metrics["bfloat16_trained_run_in_float32"] = dm.evaluate(as32, runs["float32"].setting, ev, train_cfg=runs["float32"].train,
                                                             benchmarks=False)
    # paired comparisons on the evaluator's profiles (same eval seed → the same types as the evaluation)
    k_types, _, _ = jax.random.split(jax.random.PRNGKey(ev.seed), 3)
    types = runs["float32"].setting.sample(k_types, ev.samples)
    rev = {mode: _revenue_per_profile(trained[mode], types) for mode in MODES}
    f32_in_bf16 = _revenue_per_profile(_in_mode(trained["float32"], runs["bfloat16"]), types)
    paired = {
        "trained_bfloat16_minus_float32": _paired(rev["bfloat16"], rev["float32"]),
        "inference_only_float32_net": _paired(f32_in_bf16, rev["float32"]),
        "inference_only_bfloat16_net": _paired(rev["bfloat16"], _revenue_per_profile(as32, types)),
    }
    out = {"metrics": metrics, "paired_revenue": {k: {"mean": v[0], "se": v[1]} for k, v in paired.items()}}
    out["paired_revenue"]["max_abs_revenue_change_float32_net"] = float(np.max(np.abs(f32_in_bf16 - rev["float32"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--runs", type=Path, default=HERE.parent / "runs" / "precision", help="trained runs (reused when complete)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cpu")
    args = ap.parse_args()

    base = dm.load_config(CONFIG)
    per_seed = {str(seed): _one_seed(base, seed, args) for seed in args.seeds}
    out = {
        "config": str(CONFIG.relative_to(HERE.parent)),
        "steps": args.steps,
        "seeds": args.seeds,
        "eval_samples": args.samples,
        "optimum": OPTIMUM,
        "device": f"{jax.devices()[0].platform}: {platform.processor() or platform.machine()}",
        "jax": jax.__version__,
        "runs": per_seed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision.json").write_text(json.dumps(out, indent=2) + "\n")

    lines = [
        "# bfloat16 network matmuls vs float32 (issue 8, item 6)",
        "",
        f"`{out['config']}` with `train.steps = {args.steps}`, the same seed in both modes; standard evaluator on {args.samples} "
        f"profiles (grid + gradient regret attack), each mechanism in the precision it was trained in (last row of a seed: "
        f"the bfloat16-trained weights run with float32 products). Optimum {OPTIMUM:.6f}. {out['device']}, jax {jax.__version__}; "
        "training times on a shared 2-core CPU.",
        "",
        "| seed | matmul_dtype | revenue ± se | optimum − revenue | regret_mean ± se | regret_max | train s (incl. compile) |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, res in per_seed.items():
        for mode in MODES + ("bfloat16_trained_run_in_float32",):
            m = res["metrics"][mode]
            label = "bfloat16 → run in float32" if mode not in MODES else mode
            secs = f"{m['train_seconds']:.1f}" if "train_seconds" in m else "-"
            lines.append(
                f"| {seed} | {label} | {m['revenue']:.5f} ± {m['revenue_se']:.5f} | {OPTIMUM - m['revenue']:+.5f} | "
                f"{m['regret_mean']:.2e} ± {m['regret_mean_se']:.1e} | {m['regret_max']:.2e} | {secs} |"
            )
    lines += ["", "Paired revenue differences on the same profiles (mean ± se):", ""]
    for seed, res in per_seed.items():
        pr = res["paired_revenue"]
        lines += [
            f"- seed {seed}: trained in bfloat16 − trained in float32: {pr['trained_bfloat16_minus_float32']['mean']:+.5f} ± "
            f"{pr['trained_bfloat16_minus_float32']['se']:.5f}; inference only (same weights, bfloat16 − float32 products): "
            f"float32-trained net {pr['inference_only_float32_net']['mean']:+.1e} ± {pr['inference_only_float32_net']['se']:.1e} "
            f"(largest change of one profile's revenue {pr['max_abs_revenue_change_float32_net']:.1e}), bfloat16-trained net "
            f"{pr['inference_only_bfloat16_net']['mean']:+.1e} ± {pr['inference_only_bfloat16_net']['se']:.1e}",
        ]
    lines.append("")
    (args.out / "precision.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
