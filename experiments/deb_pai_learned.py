"""Deb–Pai: learn a symmetric auction and the bidders' strategies for revenue (issue 6 parts 4b, 6).

Part ``a`` — two bidders, v1 ~ U[0,1], v2 ~ U[0,2]:
- Myerson's revenue exactly (`Hierarchical(..., myerson).revenue()`, = 31/48 = E max(2v1 − 1, 2v2 − 2, 0));
- the second price auction with the best anonymous reserve: R(r) = r(1 − F1(r)F2(r)) + ∫_r^2 (1 − F1)(1 − F2),
  maximised over r by a grid plus bounded Brent search (closed form: R = 5/12 + 3r²/4 − 2r³/3 on [0, 1],
  r(1 − r/2) on [1, 2], so r* = 3/4 and R* = 107/192);
- the learned symmetric auction (`diffmech.symmetric_train.train_symmetric`: a reserve-gated
  `SeparablePayment` rule and `MonotoneStrategy` bids), from (i) a cold start (truthful bids, random
  rule) and (ii) a warm start (bids at the virtual values, the rule fitted to Myerson's interim payments
  by `fit_payment_rule`). Each is measured by its training estimate (`estimate`: the training
  estimator on a large draw, soft at the final τ and hard), by `check_equilibrium` (hard allocation,
  bid grid of step 0.005 with off-space bids, 2^14 quantile nodes; revenue by Monte Carlo on 2^20
  profiles) and by a deterministic revenue (midpoint rule, 4096 × 4096 value pairs).
  The issue's bar: revenue within 1% of Myerson's, best-response regret ≤ 1e-3, above the second
  price auction with the best anonymous reserve.

Part ``expost`` — the ex post IR trade-off, by default on Deb–Pai Example 1 (v1 ~ U[2,4], v2 ~ U[1,2],
Myerson revenue 13/6, which has no symmetric ex post IR implementation: condition C1 fails, Section 5)
or on U[0,1] vs U[0,2] (``--instance u01_u02``): the warm start with a winner-split rule
(`SeparablePayment(winner=True)`, so losers' and winners' payments can differ), trained with ex post
IR penalty weights w ∈ {0, 0.1, 1, 10}; with w > 0 the learner trades revenue (and possibly regret)
for fewer profiles where a loser pays or a winner pays above her value. Reports revenue, the
violation rate, the losers-pay rate and the best-response regret of each.

    python experiments/deb_pai_learned.py a [--steps-cold 12000] [--steps-warm 6000] [--others 2048] [--out PATH]
    python experiments/deb_pai_learned.py expost [--instance example1] [--steps 3000]
    python experiments/deb_pai_learned.py runs RUN_DIR [RUN_DIR ...] [--out PATH]

Part ``runs`` — checkpoints of ``diffmech train experiments/deb_pai_u01_u02_learned.toml --seed S``
(the warm start through the command line): each run's strong evaluation (``metrics.json``, written
by ``diffmech train``: best-response gains on a bid grid with off-space bids, Monte Carlo revenue)
plus the deterministic revenue (midpoint rule, 4096 × 4096), the verdict against the bar, and the
mean ± standard deviation over the runs; writes ``deb_pai_learned_runs.{json,md}``.

Writes ``experiments/results/cpu/deb_pai_learned.json`` (part a) and
``experiments/results/cpu/deb_pai_learned_expost.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, optimize

from diffmech.equilibrium import check_equilibrium
from diffmech.mechanisms.analytic.hierarchical import Hierarchical, VirtualValueIndex
from diffmech.mechanisms.neural.bid_strategy import MonotoneStrategy
from diffmech.priors import Uniform
from diffmech.revenue import myerson_revenue
from diffmech.mechanisms.neural.symmetric_payment import SeparablePayment
from diffmech.symmetric_train import estimate, train_symmetric, warm_start

OUT = Path(__file__).resolve().parent / "results" / "cpu"
PRIORS = (Uniform(0.0, 1.0), Uniform(0.0, 2.0))

# training settings shared by the runs (see train_symmetric); per-run overrides below
COMMON = dict(batch=256, others=2048, deviations=256, margin=0.25, update_every=50, rho_max=1e4)
COLD = dict(lr=1e-3, strategy_lr=5e-3, temperature=(0.05, 0.001), lam0=20.0, rho0=20.0, rho_growth=1.05, straight_through=0.2,
            straight_through_strategy_lr=0.0)
WARM = dict(lr=1e-3, strategy_lr=1e-5, temperature=(0.01, 0.001), lam0=100.0, rho0=100.0, rho_growth=1.05, straight_through=1.0)
EXPOST = dict(lr=1e-3, strategy_lr=1e-3, temperature=(0.01, 0.001), lam0=100.0, rho0=100.0, rho_growth=1.05, straight_through=1.0)
RULE = dict(hidden=(64, 64), features=8, activation="relu")
FIT = dict(steps=1500, batch=256, others_draws=8, lr=3e-3)


def spa_reserve_revenue(priors, r: float) -> float:
    """Second price with anonymous reserve r, two bidders: the price is max(second value, r) when
    the highest value is ≥ r, so R(r) = r·P(max ≥ r) + ∫_r^∞ P(min > t) dt (quadrature)."""
    F = [lambda t, p=p: float(np.clip((t - p.low) / (p.high - p.low), 0.0, 1.0)) for p in priors]
    top = max(p.high for p in priors)
    tail, _ = integrate.quad(lambda t: (1 - F[0](t)) * (1 - F[1](t)), r, top, points=[p.high for p in priors if r < p.high < top], limit=200)
    return r * (1 - F[0](r) * F[1](r)) + tail


def best_anonymous_reserve(priors) -> tuple[float, float]:
    """argmax_r R(r): the best of a 2001-point grid, refined by bounded Brent search around it."""
    top = max(p.high for p in priors)
    grid = np.linspace(0.0, top, 2001)
    vals = np.array([spa_reserve_revenue(priors, r) for r in grid])
    k = int(np.argmax(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(lambda r: -spa_reserve_revenue(priors, r), bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    return float(res.x), float(-res.fun)


def quadrature_revenue(auction, priors, n: int = 4096, chunk: int = 256) -> float:
    """Σ_i E_{v_i} E_{v_j} p^s(σ_i(v_i), σ_j(v_j)) by the midpoint rule on n × n value pairs (two
    bidders; the hard auction, so the reserve gate's and the winner term's jumps cost O(1/n))."""
    u = (np.arange(n) + 0.5) / n
    vals = jnp.stack([jnp.asarray(p.icdf(jnp.asarray(u))) for p in priors], axis=1)
    bids = auction.strategy(vals)  # (n, 2)
    outer = eqx.filter_jit(lambda r, own, oth: r.outer(own, oth).mean(axis=1))
    total = 0.0
    for i in range(2):
        oth = bids[:, 1 - i][:, None]
        pays = [np.asarray(outer(auction.rule, bids[s : s + chunk, i], oth), np.float64) for s in range(0, n, chunk)]
        total += float(np.concatenate(pays).mean())
    return total


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def measure(auction, priors, h, hist, train_s: float, tau_final: float, key) -> dict:
    k1, k2, k3 = jax.random.split(key, 3)
    soft = estimate(auction, priors, key=k1, temperature=tau_final, batch=1024, others=4096, deviations=1024)
    hard = estimate(auction, priors, key=k1, temperature=None, batch=1024, others=4096, deviations=1024)
    t0 = time.time()
    chk = check_equilibrium(auction, priors, h, key=k2, bid_step=0.005, samples=2**20)
    check_s = time.time() - t0
    strip = lambda e: {k: v for k, v in e.items() if k not in ("regret_values", "values")}
    v = jnp.stack([jnp.linspace(p.low, p.high, 11) for p in priors], axis=1)
    return {
        "train_seconds": train_s,
        "training_estimate_last_step": {k: hist[-1][k] for k in ("revenue", "regret", "regret_max", "ir", "ex_post", "ex_post_rate", "tau")},
        "training_estimate_soft": strip(soft),
        "training_estimate_hard": strip(hard),
        "check_equilibrium": {k: chk[k] for k in ("br_gain_max", "br_gain", "br_worst", "revenue", "revenue_se", "ir_violation_rate",
                                                  "losers_pay_rate", "allocation_mismatch", "bid_grid")},
        "check_seconds": check_s,
        "revenue_quadrature": quadrature_revenue(auction, priors),
        "bids_at_values": {"values": np.asarray(v).T, "bids": np.asarray(auction.strategy(v)).T},
        "multipliers": {"lam": hist[-1]["lam"], "mu": hist[-1]["mu"], "rho": hist[-1]["rho"]},
    }


def _verdict(rec: dict, myerson: float, spa: float) -> dict:
    rev = rec["revenue_quadrature"]
    gain = rec["check_equilibrium"]["br_gain_max"]
    return {"revenue_within_1pct_of_myerson": abs(rev - myerson) <= 0.01 * myerson,
            "revenue_gap_to_myerson": (rev - myerson) / myerson,
            "br_regret_at_most_1e-3": gain <= 1e-3,
            "beats_spa_best_anonymous_reserve": rev > spa}


def part_a(args) -> dict:
    h = Hierarchical(PRIORS, [VirtualValueIndex(p) for p in PRIORS])
    out = {"priors": [p.to_config() for p in PRIORS], "myerson_revenue": h.revenue(),
           "myerson_revenue_check": myerson_revenue(PRIORS), "myerson_closed_form": 31 / 48}
    r, rev = best_anonymous_reserve(PRIORS)
    out["spa_best_anonymous_reserve"] = {"reserve": r, "revenue": rev, "closed_form": {"reserve": 0.75, "revenue": 107 / 192}}
    out["spa_no_reserve"] = spa_reserve_revenue(PRIORS, 0.0)
    out["settings"] = {"common": COMMON, "cold": COLD, "warm": WARM, "rule": RULE, "fit": FIT,
                       "steps_cold": args.steps_cold, "steps_warm": args.steps_warm}
    key = jax.random.PRNGKey(args.seed)
    runs = {}
    if args.steps_cold:
        rule = SeparablePayment(0.0, 2.0, key=jax.random.fold_in(key, 1), **RULE)
        t0 = time.time()
        auction, hist = train_symmetric(PRIORS, rule, MonotoneStrategy(PRIORS, 16), key=jax.random.fold_in(key, 2),
                                        steps=args.steps_cold, log_every=max(args.steps_cold // 20, 1), **COMMON, **COLD)
        rec = measure(auction, PRIORS, h, hist, time.time() - t0, COLD["temperature"][1], jax.random.fold_in(key, 3))
        rec["history"] = hist
        runs["cold"] = rec
        print("cold", json.dumps(_clean({k: rec[k] for k in ("train_seconds", "revenue_quadrature")} | {"check": rec["check_equilibrium"]["br_gain_max"]})), flush=True)
    if args.steps_warm:
        t0 = time.time()
        rule = SeparablePayment(-2.0, 2.0, key=jax.random.fold_in(key, 4), **RULE)
        rule, strategy = warm_start(h, rule, key=jax.random.fold_in(key, 5), n_knots=16, **FIT)
        fit_s = time.time() - t0
        from diffmech.mechanisms.symmetric_auction import SymmetricAuction
        start = SymmetricAuction(rule=rule, strategy=strategy)
        chk0 = check_equilibrium(start, PRIORS, h, key=jax.random.fold_in(key, 6), samples=2**18)
        t0 = time.time()
        auction, hist = train_symmetric(PRIORS, rule, strategy, key=jax.random.fold_in(key, 7), steps=args.steps_warm,
                                        log_every=max(args.steps_warm // 20, 1), **COMMON, **WARM)
        rec = measure(auction, PRIORS, h, hist, time.time() - t0, WARM["temperature"][1], jax.random.fold_in(key, 8))
        rec["fit_seconds"] = fit_s
        rec["warm_start_before_training"] = {k: chk0[k] for k in ("br_gain_max", "br_gain", "br_worst", "revenue", "revenue_se")}
        rec["history"] = hist
        runs["warm"] = rec
        print("warm", json.dumps(_clean({k: rec[k] for k in ("train_seconds", "revenue_quadrature")} | {"check": rec["check_equilibrium"]["br_gain_max"]})), flush=True)
    for name, rec in runs.items():
        rec["verdict"] = _verdict(rec, out["myerson_revenue"], rev)
    out["runs"] = runs
    return out


INSTANCES = {"example1": ((Uniform(2.0, 4.0), Uniform(1.0, 2.0)), (0.0, 4.0)), "u01_u02": (PRIORS, (-2.0, 2.0))}


def part_expost(args) -> dict:
    priors, (lo, hi) = INSTANCES[args.instance]
    h = Hierarchical(priors, [VirtualValueIndex(p) for p in priors])
    key = jax.random.PRNGKey(args.seed)
    rule = SeparablePayment(lo, hi, key=jax.random.fold_in(key, 1), winner=True, **RULE)
    t0 = time.time()
    rule, strategy = warm_start(h, rule, key=jax.random.fold_in(key, 2), n_knots=16, **FIT)
    out = {"instance": args.instance, "priors": [p.to_config() for p in priors], "myerson_revenue": h.revenue(),
           "fit_seconds": time.time() - t0, "settings": {"common": COMMON, "expost": EXPOST, "rule": RULE | {"winner": True},
                                                         "fit": FIT, "steps": args.steps}, "runs": {}}
    for w in args.weights:
        t0 = time.time()
        auction, hist = train_symmetric(priors, rule, strategy, key=jax.random.fold_in(key, 3), steps=args.steps,
                                        ex_post_ir_weight=w, log_every=max(args.steps // 10, 1), **COMMON, **EXPOST)
        rec = measure(auction, priors, h, hist, time.time() - t0, EXPOST["temperature"][1], jax.random.fold_in(key, 4))
        rec["history"] = hist
        out["runs"][str(w)] = rec
        c = rec["check_equilibrium"]
        print(f"w={w}: revenue {rec['revenue_quadrature']:.4f}, violation rate {c['ir_violation_rate']:.4f}, "
              f"losers pay {c['losers_pay_rate']:.4f}, br gain {c['br_gain_max']:.4g}", flush=True)
    return out


def part_runs(args) -> dict:
    from diffmech.checkpoint import load

    h = Hierarchical(PRIORS, [VirtualValueIndex(p) for p in PRIORS])
    myerson = h.revenue()
    _, spa = best_anonymous_reserve(PRIORS)
    rows = {}
    for d in args.dirs:
        ck = load(d)
        m = ck.metrics
        rec = {"seed": ck.manifest.get("seed"), "steps": ck.manifest.get("step"), "train_seconds": m.get("train_seconds"),
               "revenue_quadrature": quadrature_revenue(ck.mechanism, PRIORS), "revenue_mc": m["revenue"], "revenue_mc_se": m["revenue_se"],
               "myerson_mc_same_profiles": m.get("benchmarks", {}).get("myerson"),
               "check_equilibrium": {"br_gain_max": m["interim_regret_max"], "br_gain": m["interim_regret_per_bidder"],
                                     "ir_violation_rate": m["ex_post_ir_violation_rate"], "losers_pay_rate": m["losers_pay_rate"]}}
        rec["verdict"] = _verdict(rec, myerson, spa)
        rows[str(d)] = rec
        print(d, json.dumps(_clean({k: rec[k] for k in ("revenue_quadrature", "verdict")})), flush=True)
    revs = np.array([r["revenue_quadrature"] for r in rows.values()])
    gains = np.array([r["check_equilibrium"]["br_gain_max"] for r in rows.values()])
    out = {"config": "experiments/deb_pai_u01_u02_learned.toml", "myerson_revenue": myerson, "spa_best_anonymous_reserve": spa,
           "runs": rows, "summary": {"revenue_mean": revs.mean(), "revenue_std": revs.std(ddof=1) if len(revs) > 1 else 0.0,
                                      "br_gain_max_mean": gains.mean(), "br_gain_max_worst": gains.max(),
                                      "runs_meeting_the_bar": int(sum(all(v for k, v in r["verdict"].items() if k != "revenue_gap_to_myerson")
                                                                      for r in rows.values()))}}
    lines = ["| run | seed | train s | revenue (quadrature) | vs Myerson | Monte Carlo (2^18) | best-response gain max | ex post IR violations | meets the bar |",
             "|---|---:|---:|---:|---:|---:|---:|---:|:--:|"]
    for d, r in rows.items():
        v = r["verdict"]
        ok = v["revenue_within_1pct_of_myerson"] and v["br_regret_at_most_1e-3"] and v["beats_spa_best_anonymous_reserve"]
        lines.append(f"| {d} | {r['seed']} | {r['train_seconds']:.0f} | {r['revenue_quadrature']:.5f} | {100 * v['revenue_gap_to_myerson']:+.2f}% | "
                     f"{r['revenue_mc']:.4f} ± {r['revenue_mc_se']:.4f} | {r['check_equilibrium']['br_gain_max']:.2e} | "
                     f"{r['check_equilibrium']['ir_violation_rate']:.3f} | {'yes' if ok else 'no'} |")
    sm = out["summary"]
    lines.append(f"\nmean ± sd over {len(rows)} runs: revenue {sm['revenue_mean']:.5f} ± {sm['revenue_std']:.5f} "
                 f"(Myerson {myerson:.6f}; second price with the best anonymous reserve {spa:.6f}); worst best-response gain {sm['br_gain_max_worst']:.2e}")
    out["markdown"] = "\n".join(lines)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("a", "expost", "runs"))
    ap.add_argument("dirs", nargs="*", help="part runs: checkpoint directories")
    ap.add_argument("--steps-cold", type=int, default=12000)
    ap.add_argument("--steps-warm", type=int, default=6000)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 1.0, 10.0])
    ap.add_argument("--instance", choices=sorted(INSTANCES), default="example1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--others", type=int, default=None, help="override the others' profiles per step (S)")
    ap.add_argument("--out", type=str, default=None)
    args = ap.parse_args()
    if args.others:
        COMMON["others"] = args.others
    t0 = time.time()
    res = {"a": part_a, "expost": part_expost, "runs": part_runs}[args.part](args)
    res["total_seconds"] = time.time() - t0
    res["machine"] = {"platform": platform.platform(), "jax": jax.__version__, "devices": str(jax.devices())}
    OUT.mkdir(parents=True, exist_ok=True)
    path = Path(args.out) if args.out else OUT / {"a": "deb_pai_learned.json", "expost": "deb_pai_learned_expost.json",
                                                    "runs": "deb_pai_learned_runs.json"}[args.part]
    path.write_text(json.dumps(_clean(res), indent=1))
    if "markdown" in res:
        path.with_suffix(".md").write_text(f"python experiments/deb_pai_learned.py runs {' '.join(args.dirs)}\n\n{res['markdown']}\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
