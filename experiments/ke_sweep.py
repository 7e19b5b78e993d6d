"""Ke: where do ex post socially efficient mechanisms stop existing? Two sweeps of one parameter.

``example3``  Example 3 (public good, v = θ(2x − x²), c = x², autarky reservation), θ ~ U[a, 1]:
              sweep the lower end a. Theory: existence stops at a* = 0.2029882, where
              E Δ(a) = Σ u(θ_low) = 2a²/(1 + a) (`experiments/ke_example3.toml`).
``partnership`` the linear partnership with shares (q, 1 − q), θ_i ~ U[0, 1], reservation = the
              value of the own share: sweep q. Interim IR existence (Cramton–Gibbons–Klemperer)
              stops at q = 1/2 − √3/6 = 0.2113; Ke's Proposition 7(i) claims that with ex post IR
              no q works (`experiments/ke_partnership.toml`).

For each parameter value this script
- trains learned budget-balanced payments on interim regret and ex post IR (the config, with the
  parameter set) and measures them (`diffmech.evaluate`: min ex post IR slack over a 201² grid of
  profiles and the quadrature profiles, interim regret by 1024-node quadrature);
- solves the LP feasibility oracle on an N-point Gauss–Legendre grid per agent
  (`diffmech.efficient_lp`), optionally also its crossing in the parameter by bisection;
- computes the continuum interim existence margin E Δ^# − Σ u(θ^#) (`diffmech.efficient_exact`),
  whose root is the interim-IR threshold (Krishna–Perry): ex post IR can only stop earlier.

The learned boundary is the midpoint between the largest value whose learned mechanism still
violates a constraint by more than ``TOL`` and the smallest value at which it violates none.

    python experiments/ke_sweep.py example3 [--steps 6000] [--grid 0.14,0.16,...] [--lp-n 40]
    python experiments/ke_sweep.py partnership [--lp-crossing 80]

Writes ``experiments/results/cpu/ke_<sweep>_sweep.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
from scipy.optimize import brentq

import diffmech as dm
from diffmech.config import EvalConfig, load_config, resolve
from diffmech.efficient_exact import existence_margin, existence_threshold
from diffmech.efficient_lp import feasibility_lp
from diffmech.trainer import train

HERE = Path(__file__).resolve().parent
TOL = 1e-3


def _set_low(raw: dict, a: float) -> None:
    raw["setting"]["prior"]["low"] = a


def _set_shares(raw: dict, q: float) -> None:
    raw["setting"]["shares"] = [q, 1.0 - q]


# name -> (config, parameter symbol, how to set it, default grid, interim-threshold bracket)
SWEEPS = {
    "example3": ("ke_example3.toml", "a", _set_low, "0.14,0.16,0.18,0.20,0.22,0.24,0.26", (0.0, 0.5)),
    "partnership": ("ke_partnership.toml", "q", _set_shares, "0.20,0.25,0.28,0.30,0.32,0.34,0.36,0.40,0.45,0.50", (0.0, 0.5)),
}


def config_at(sweep: str, value: float, steps: int | None = None):
    name, _, setter, _, _ = SWEEPS[sweep]
    raw = load_config(HERE / name)
    setter(raw, value)
    if steps is not None:
        raw["train"]["steps"] = steps
    return resolve(raw)


def run(sweep: str, value: float, steps: int, lp_n: int) -> dict:
    cfg = config_at(sweep, value, steps)
    res = train(cfg, progress=False)
    m = dm.evaluate(res.mechanism, cfg.setting, EvalConfig(interim_types=51, grid_points=201, interim_nodes=1024), benchmarks=False)
    lp = feasibility_lp(cfg.setting, lp_n, nodes="gauss")
    return {
        "value": value, "margin": existence_margin(cfg.setting), "lp_t_star": lp.t_star,
        "ir_slack_min": m["ir_slack_min"], "interim_regret_max": m["interim_regret_max"],
        "bb_residual": m["bb_residual"], "feasible": m["ir_slack_min"] >= -TOL and m["interim_regret_max"] <= TOL,
        "train_seconds": round(res.seconds, 1),
    }


def lp_crossing(sweep: str, n: int, lo: float, hi: float, tol: float = 1e-9) -> float:
    """The parameter where the LP's t* on an n-point grid first reaches 0 (t* ≤ 0 when the
    reservation binds at the lowest type, as in the partnership) or changes sign, by bisection."""
    f = lambda v: feasibility_lp(config_at(sweep, v).setting, n, nodes="gauss").t_star + tol  # noqa: E731
    return float(brentq(f, lo, hi, xtol=1e-4))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep", choices=sorted(SWEEPS))
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--grid", default=None, help="comma-separated parameter values")
    ap.add_argument("--lp-n", type=int, default=40)
    ap.add_argument("--lp-crossing", type=int, default=0, help="also bisect for the LP crossing on this many nodes")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    name, sym, _, default_grid, bracket = SWEEPS[args.sweep]
    rows = []
    for v in [float(x) for x in (args.grid or default_grid).split(",")]:
        rows.append(run(args.sweep, v, args.steps, args.lp_n))
        print(json.dumps(rows[-1]), flush=True)
    bad = [r["value"] for r in rows if not r["feasible"]]
    good = [r["value"] for r in rows if r["feasible"] and (not bad or r["value"] > max(bad))]
    boundary = (max(bad) + min(good)) / 2 if bad and good else None
    interim = existence_threshold(lambda v: config_at(args.sweep, v).setting, *bracket)
    crossing = lp_crossing(args.sweep, args.lp_crossing, *bracket) if args.lp_crossing else None
    out = {"sweep": args.sweep, "parameter": sym, "interim_threshold": interim, "learned_boundary": boundary,
           "lp_crossing": crossing, "lp_crossing_n": args.lp_crossing or None, "tol": TOL, "steps": args.steps,
           "lp_n": args.lp_n, "rows": rows, "devices": [str(d) for d in jax.devices()]}
    path = Path(args.out or HERE / "results" / "cpu" / f"ke_{args.sweep}_sweep")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=2))
    lines = [f"interim-IR threshold {sym} = {interim:.7f}; learned boundary = {boundary}; tolerance {TOL}"
             + (f"; LP crossing (N = {args.lp_crossing}) = {crossing:.4f}" if crossing is not None else ""), "",
             f"| {sym} | margin E Δ# − Σu | LP t* (N = {args.lp_n}) | learned min IR slack | learned interim regret max | feasible |",
             "|---:|---:|---:|---:|---:|:--:|"]
    for r in rows:
        lines.append(f"| {r['value']:.2f} | {r['margin']:+.5f} | {r['lp_t_star']:+.5f} | {r['ir_slack_min']:+.5f} | "
                     f"{r['interim_regret_max']:.1e} | {'yes' if r['feasible'] else 'no'} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
