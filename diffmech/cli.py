"""The ``diffmech`` command: demo, train, sweep, eval, compare, lp, purify, list.

Every user error is one line on stderr (``diffmech: error: ...``) with exit code 2; a training run
that diverges (non-finite loss) exits with code 3 and keeps its last good checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

from .errors import DiffmechError, TrainingDiverged

DEMO_CONFIG = """\
# diffmech demo: 2 bidders with iid U[0,1] values; optimum (Myerson) = 5/12
[setting]
kind = "single_item"
prior = { dist = "uniform", low = 0.0, high = 1.0 }
n_agents = 2

[mechanism]
kind = "monotone"

[train]
steps = 1500
batch = 512
lr = 0.003
log_every = 100
ckpt_every = 500

[eval]
samples = 10000
"""


DEMO_MARKER = ".diffmech-demo"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"diffmech: error: {message} (see 'diffmech {self.prog.split()[-1] if ' ' in self.prog else ''} --help')\n".replace("diffmech  --help", "diffmech --help"))


def _add_eval_flags(p):
    p.add_argument("--samples", type=int, help="number of evaluation profiles")
    p.add_argument("--attack-starts", type=int, help="random starting points of the gradient attack per (profile, agent)")
    p.add_argument("--attack-steps", type=int, help="gradient steps of the attack")
    p.add_argument("--grid-points", type=int, help="own reports tried exhaustively (one-dimensional types)")
    p.add_argument("--seed", type=int, help="seed of the evaluation samples and attack")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="diffmech", description="Differentiable mechanism design: learned auctions against analytic optima.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="train, evaluate and plot a learned auction on a small default setting")
    p.add_argument("--out", default="diffmech-demo", help="output directory (default: ./diffmech-demo)")
    p.add_argument("--steps", type=int, help="override the number of training steps")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("train", help="train the mechanism of a TOML config")
    p.add_argument("config")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (dotted, list indices allowed)")
    p.add_argument("--no-eval", action="store_true", help="skip the final strong evaluation")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("sweep", help="train seeds × a grid of hyperparameters, vmapped together where shapes agree")
    p.add_argument("config")
    p.add_argument("--seeds", type=int, default=1, help="seeds per grid point: train.seed, train.seed+1, ... (default 1)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of a config key to sweep (repeat for a product), e.g. --grid train.lr=0.001,0.003")
    p.add_argument("--out", help="sweep directory (default: runs/<config name>-sweep)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out; finished runs are not redone")
    p.add_argument("--steps", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key of every run")
    p.add_argument("--no-eval", action="store_true", help="skip the strong evaluation of each run")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("eval", help="evaluate a checkpoint directory or an analytic config")
    p.add_argument("target")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--plot", action="store_true", help="write figures next to the target")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    _add_eval_flags(p)

    p = sub.add_parser("compare", help="table of several mechanisms on common samples")
    p.add_argument("targets", nargs="+", help="checkpoint directories or analytic configs of the same setting")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", help="write a bar chart of the objective to this PNG path")
    _add_eval_flags(p)

    p = sub.add_parser("lp", help="exact optimum by LP: one buyer on a type grid (MILP if deterministic), public goods on a finite "
                       "type space, or the ex post feasibility oracle of an efficient (Ke) setting")
    p.add_argument("config", help="a config whose setting is multi_item with one buyer, identical_items, public_goods or efficient")
    p.add_argument("--points", type=int, help="grid points per value axis (default 20 for two items, 12 for three, fewer beyond)")
    p.add_argument("--deterministic", action="store_true", help="optimum over deterministic mechanisms (MILP)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser("purify", help="a deterministic mechanism with the interim allocations and transfers of a stochastic one "
                       "(Chen–He–Li–Sun), and what it preserved")
    p.add_argument("target", help="a checkpoint directory or an analytic config (social_choice, single_item or additive multi_item)")
    p.add_argument("--method", choices=("auto", "vertex", "dither"), default="auto",
                   help="vertex (finite or gridded types, Latin sub-types) or dither (continuous types); auto picks by the type space")
    p.add_argument("--R", type=int, dest="R", help="sub-types per type (vertex) or dither resolution (dither)")
    p.add_argument("--grid", type=int, help="quantile cells per continuous coordinate for the vertex method (default 20)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", help="directory to write the report to (purify.json, written atomically)")

    sub.add_parser("list", help="settings, mechanisms, priors and benchmarks")
    return parser


# ----------------------------------------------------------------------------- helpers


def _eval_cfg(base, args):
    from .config import EvalConfig

    changes = {}
    for flag, field in (("samples", "samples"), ("attack_starts", "attack_starts"), ("attack_steps", "attack_steps"), ("grid_points", "grid_points"), ("seed", "seed")):
        v = getattr(args, flag, None)
        if v is not None:
            changes[field] = v
    return EvalConfig(**{**dataclasses.asdict(base), **changes})


def _load_target(target: str, overrides=()):
    """A checkpoint directory → (mechanism, setting, Run, label); an analytic config likewise."""
    from .checkpoint import load
    from .config import apply_overrides, load_config, resolve

    path = Path(target)
    if path.is_dir():
        bad = [o for o in overrides if not o.strip().startswith("eval.")]
        if bad:
            raise DiffmechError(
                f"--set {bad[0]!r}: a checkpoint's setting and mechanism are fixed; only eval.* keys can be overridden"
            )
        ck = load(path)
        run = resolve(apply_overrides(ck.config, list(overrides)))
        return ck.mechanism, ck.setting, run, path.name
    run = resolve(apply_overrides(load_config(path), list(overrides)))
    if run.trainable:
        raise DiffmechError(
            f"{target}: mechanism {run.mechanism_cfg['kind']!r} must be trained first: "
            f"diffmech train {target} --out DIR, then diffmech eval DIR"
        )
    return run.build_mechanism(None), run.setting, run, run.mechanism_cfg["kind"]


def _fmt(x, se=None, digits=5):
    if x is None:
        return "-"
    s = f"{x:.{digits}f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
    if se is not None:
        s += f" ± {se:.1e}"
    return s


def format_metrics(metrics: dict, objective: str = "revenue", title: str = "") -> str:
    rows = [(objective, _fmt(metrics[objective], metrics.get(f"{objective}_se")))]
    if objective != "revenue" and "revenue" in metrics:
        rows.append(("revenue", _fmt(metrics["revenue"], metrics.get("revenue_se"))))
    if "welfare" in metrics:
        rows.append(("welfare", _fmt(metrics.get("welfare"), metrics.get("welfare_se"))))
    if "ir_slack_min" in metrics:  # Ke's efficient settings: ex post IR and BB, conservation
        rows += [(k, _fmt(metrics.get(k), metrics.get(f"{k}_se"))) for k in (
            "bb_residual", "ir_slack_min", "ir_slack_min_relative", "interim_regret_mean", "interim_regret_max",
            "epic_probability", "monotonicity_violation_max", "expected_delta", "sum_u_lowest", "conservation_gap")]
        if "interim_regret_inner_se_max" in metrics:
            rows.append(("interim_regret_inner_se_max", _fmt(metrics["interim_regret_inner_se_max"])))
        for name, val in metrics.get("benchmarks_ir_slack_min", {}).items():
            rows.append((f"benchmark {name}", f"ir_slack_min {val:+.5f}, bb_residual {metrics['benchmarks_bb_residual'][name]:.1e}"))
    elif "ex_post_ir_violation_rate" in metrics:  # symmetric auctions played in equilibrium
        rows += [("interim_regret_max", _fmt(metrics["interim_regret_max"]) + "   (best-response gain, off-space bids included)")]
        rows += [(k, _fmt(metrics[k])) for k in ("allocation_mismatch", "ex_post_ir_violation_rate", "losers_pay_rate", "condition_number")
                 if k in metrics]
    elif "interim_regret_mean" in metrics:
        rows += [
            ("budget_surplus", _fmt(metrics.get("budget_surplus"), metrics.get("budget_surplus_se"))),
            ("bb_residual", _fmt(metrics.get("bb_residual"))),
            ("interim_regret_mean", _fmt(metrics.get("interim_regret_mean"), metrics.get("interim_regret_mean_se"))),
            ("interim_regret_max", _fmt(metrics.get("interim_regret_max"))),
        ]
        if "interim_regret_inner_se_max" in metrics:
            rows.append(("interim_regret_inner_se_max", _fmt(metrics["interim_regret_inner_se_max"])))
    else:
        rows += [
            ("regret_mean", _fmt(metrics.get("regret_mean"), metrics.get("regret_mean_se"))),
            ("regret_max", _fmt(metrics.get("regret_max"))),
            ("train_regret_mean", _fmt(metrics.get("train_regret_mean"))),
        ]
    if "ir_slack_min" not in metrics and "ex_post_ir_violation_rate" not in metrics:
        rows += [("ir_violation", _fmt(metrics.get("ir_violation"))), ("ir_violation_max", _fmt(metrics.get("ir_violation_max")))]
    for key in ("feasibility_violation_max", "symmetry_violation_share", "rank_violation_share", "rank_violation_max"):
        if key in metrics:
            rows.append((key, _fmt(metrics[key])))
    for name, val in metrics.get("benchmarks", {}).items():
        row = _fmt(val, metrics.get("benchmarks_se", {}).get(name))
        if name in metrics.get("benchmarks_gap", {}):
            g, gse = metrics["benchmarks_gap"][name], metrics["benchmarks_gap_se"][name]
            row += f"   (gap {g:+.5f} ± {gse:.1e}, paired)"
        rows.append((f"benchmark {name}", row))
    width = max(len(r[0]) for r in rows)
    lines = [title] if title else []
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    att = metrics.get("attack", {})
    if "bid_grid" in metrics:
        lo, hi, step = metrics["bid_grid"]
        lines.append(f"  ({metrics.get('samples')} profiles; bids on [{lo:.3g}, {hi:.3g}] every {step:.3g}; {metrics.get('eval_seconds')} s)")
    elif "interim_method" in metrics:
        lines.append(
            f"  ({metrics['interim_method']} expectations: {metrics.get('samples')} profiles, {metrics.get('interim_types')} own types × "
            f"{metrics.get('interim_reports')} reports × {metrics.get('interim_inner_samples')} others profiles"
            f"{', ' + str(att.get('steps')) + ' ascent steps' if att.get('steps') else ''}; {metrics.get('eval_seconds')} s)"
        )
    else:
        lines.append(
            f"  ({metrics.get('samples')} profiles; attack: grid {att.get('grid_points')}, "
            f"{att.get('starts')} starts × {att.get('steps')} steps; {metrics.get('eval_seconds')} s)"
        )
    return "\n".join(lines)


def _write_figures(directory: Path, mechanism, setting, history, metrics):
    from . import plots
    from .mechanisms import mechanism_from_config

    written = []
    ref = {}
    labels = {"myerson": "Myerson", "public_lp": "LP optimum", "optimal_cutoff": "optimal cutoff", "first_best": "first best"}
    for key, label in labels.items():
        if key in metrics.get("benchmarks", {}):
            ref[label] = metrics["benchmarks"][key]
    if history:
        written.append(plots.plot_training(history, directory / "training.png", reference=ref or None))
    if setting.ic != "ex_post":
        return written
    if setting.n_agents == 2 and setting.type_dim == 1:
        reference = mechanism_from_config(setting, {"kind": "myerson"}) if "myerson" in setting.benchmark_names() else None
        written.append(plots.plot_maps(mechanism, setting, directory / "maps.png", reference=reference))
    elif setting.n_agents == 1 and setting.type_dim == 2:
        names = setting.benchmark_names()
        kind = next((k for k in ("manelli_vincent", "uniform_price", "bundle_price", "uniform_item_price") if k in names), None)
        reference = mechanism_from_config(setting, {"kind": kind}) if kind else None
        written.append(plots.plot_item_maps(mechanism, setting, directory / "maps.png", reference=reference))
    return written


def _finish_training(result, out: Path, do_eval: bool, progress: bool):
    from .checkpoint import atomic_write_json
    from .evaluate import evaluate

    metrics = {}
    if do_eval:
        metrics = evaluate(result.mechanism, result.run.setting, result.run.eval, train_cfg=result.run.train, progress=progress)
        metrics["train_seconds"] = round(result.seconds, 2)
        atomic_write_json(out / "metrics.json", metrics)
    figs = _write_figures(out, result.mechanism, result.run.setting, result.history, metrics)
    return metrics, figs


# ----------------------------------------------------------------------------- commands


def cmd_demo(args) -> int:
    from .config import apply_overrides, parse_toml, resolve
    from .trainer import train

    out = Path(args.out)
    if out.exists():
        if not out.is_dir() or not (out / DEMO_MARKER).exists():
            raise DiffmechError(f"{out} exists and was not written by 'diffmech demo'; choose another --out")
        shutil.rmtree(out)  # only ever a previous demo's output
    cfg = parse_toml(DEMO_CONFIG, "demo config")
    if args.steps is not None:
        cfg = apply_overrides(cfg, [f"train.steps={args.steps}"])
    run = resolve(cfg)
    print(f"diffmech demo: {run.setting.describe()}; mechanism {run.mechanism_cfg['kind']} (DSIC by construction)")
    out.mkdir(parents=True)
    (out / DEMO_MARKER).write_text("written by 'diffmech demo'; the next demo replaces this directory\n")
    result = train(run, out, progress=not args.no_progress)
    metrics, figs = _finish_training(result, out, True, not args.no_progress)
    print(f"trained {run.train.steps} steps in {result.seconds:.1f} s")
    print(format_metrics(metrics, run.setting.objective, title="learned mechanism (strong evaluation):"))
    print(f"optimum (Myerson, exact): {5 / 12:.5f}")
    print(f"checkpoint: {out}  figures: {', '.join(str(f) for f in figs)}")
    return 0


def cmd_train(args) -> int:
    from .config import apply_overrides, load_config, resolve
    from .trainer import train

    overrides = list(args.set)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    run = resolve(apply_overrides(load_config(args.config), overrides))
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    result = train(run, out, resume=args.resume, progress=not args.no_progress)
    metrics, figs = _finish_training(result, out, not args.no_eval, not args.no_progress)
    if metrics:
        print(format_metrics(metrics, run.setting.objective, title=f"{out} (strong evaluation):"))
    print(f"checkpoint: {out}")
    return 0


def cmd_sweep(args) -> int:
    from .config import apply_overrides, load_config
    from .sweep import parse_grid, run_sweep

    overrides = list(args.set)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    base = apply_overrides(load_config(args.config), overrides)
    out = Path(args.out) if args.out else Path("runs") / f"{Path(args.config).stem}-sweep"
    run_sweep(base, args.seeds, parse_grid(args.grid), out, resume=args.resume, evaluate_runs=not args.no_eval,
              progress=not args.no_progress)
    print((out / "results.md").read_text(), end="")
    print(f"sweep: {out} (results.csv, results.md, results.png; one run directory per run)")
    return 0


def cmd_eval(args) -> int:
    from .evaluate import evaluate

    mechanism, setting, run, label = _load_target(args.target, args.set)
    cfg = _eval_cfg(run.eval, args)
    metrics = evaluate(mechanism, setting, cfg, train_cfg=run.train, progress=not args.json)
    if args.plot:
        target = Path(args.target)
        directory = target if target.is_dir() else target.parent / (target.stem + "-eval")
        history = []
        if (directory / "history.json").exists():
            history = json.loads((directory / "history.json").read_text())
        metrics["figures"] = [str(p) for p in _write_figures(directory, mechanism, setting, history, metrics)]
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics(metrics, setting.objective, title=f"{label}: {setting.describe()}"))
        for f in metrics.get("figures", []):
            print(f"figure: {f}")
    return 0


def cmd_compare(args) -> int:
    from .evaluate import evaluate

    loaded = [_load_target(t) for t in args.targets]
    setting0 = loaded[0][1]
    for t, (_, s, _, _) in zip(args.targets, loaded):
        if s.to_config() != setting0.to_config():
            raise DiffmechError(f"{t} has a different setting from {args.targets[0]}; compare mechanisms of one setting")
    cfg = _eval_cfg(loaded[0][2].eval, args)
    rows = {}
    for t, (mech, s, run, label) in zip(args.targets, loaded):
        m = evaluate(mech, s, cfg, train_cfg=run.train, benchmarks=False)
        rows[label if label not in rows else t] = m
    obj = setting0.objective
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(k) for k in rows)
        print(f"{setting0.describe()}  ({cfg.samples} common profiles, seed {cfg.seed})")
        rk = "interim_regret" if "interim_regret_mean" in next(iter(rows.values())) else "regret"
        print(f"  {'mechanism':<{width}}  {obj:>20}  {rk + '_mean':>20}  {rk + '_max':>19}  {'ir_violation':>12}")
        for k, m in rows.items():
            print(f"  {k:<{width}}  {_fmt(m[obj], m[obj + '_se']):>20}  {m[rk + '_mean']:>20.2e}  {m[rk + '_max']:>19.2e}  {m['ir_violation']:>12.2e}")
    if args.plot:
        from .plots import plot_revenue_bars

        plot_revenue_bars({k: m[obj] for k, m in rows.items()}, Path(args.plot), errors={k: m[obj + "_se"] for k, m in rows.items()})
    return 0


def cmd_lp(args) -> int:
    from . import lp
    from .config import apply_overrides, load_config
    from .settings import setting_from_config

    raw = apply_overrides(load_config(args.config), list(args.set))
    setting = setting_from_config(raw.get("setting"))
    if setting.kind == "public_goods":
        return _public_lp(setting, args)
    if setting.kind == "efficient":
        return _efficient_lp(setting, args)
    if args.points is None:
        args.points = max(2, min(20, int(2000 ** (1.0 / setting.type_dim) + 1e-9)))
    if not 2 <= args.points <= 200:
        raise DiffmechError(f"--points must be between 2 and 200, got {args.points}")
    if setting.kind == "identical_items":
        hetero = setting.heterogeneous()
    elif setting.kind == "multi_item" and setting.n_agents == 1:
        hetero = setting
    else:
        raise DiffmechError("diffmech lp solves one-buyer problems: use a multi_item setting with n_agents = 1, or identical_items")
    types, probs, grid = lp.grid_for_setting(hetero, args.points)
    out: dict = {"setting": setting.describe(), "points": args.points, "grid": grid, "deterministic": args.deterministic}
    if hetero.valuation == "unit_demand":
        res = lp.solve_menu(types, probs, "unit_demand", args.deterministic)
        out.update(revenue=res.revenue, types=len(res.types), seconds=res.seconds,
                   symmetric=lp.symmetry_report(res)["symmetric"], rank_preserving=lp.rank_preservation_report(res)["rank_preserving"])
        menu = res.menu()
    elif hetero.exchangeable:
        both = lp.solve_both_models(types, probs, args.deterministic)
        out.update({k: v for k, v in both.items() if not isinstance(v, lp.MenuLP)})
        out["revenue"] = both["identical_revenue"] if setting.kind == "identical_items" else both["heterogeneous_revenue"]
        menu = both["identical" if setting.kind == "identical_items" else "heterogeneous"].menu()
    else:
        res = lp.solve_menu(types, probs, "additive", args.deterministic)
        out.update(revenue=res.revenue, types=len(res.types), seconds=res.seconds,
                   rank_preserving=lp.rank_preservation_report(res)["rank_preserving"])
        menu = res.menu()
    out["menu_size"] = len(menu)
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return 0
    kind = "deterministic (MILP)" if args.deterministic else "randomised (LP)"
    print(f"{out['setting']}: {kind} optimum on a {args.points}-point grid per axis ({grid})")
    for k, v in out.items():
        if k not in ("setting", "grid", "points", "deterministic"):
            print(f"  {k:<24} {v:.6f}" if isinstance(v, float) else f"  {k:<24} {v}")
    return 0


def _efficient_lp(setting, args) -> int:
    """``diffmech lp`` for Ke's settings: the largest worst-case ex post IR slack t* of interim IC,
    ex post budget-balanced payments for the efficient allocation on a grid (t* ≥ 0: an ex post
    socially efficient mechanism exists on the grid), and the continuum existence margin."""
    from .efficient_exact import existence_margin, expected_delta
    from .efficient_lp import feasibility_lp

    if args.deterministic:
        raise DiffmechError("--deterministic does not apply to efficient settings (the allocation is fixed); drop it")
    points = args.points or 40
    res = feasibility_lp(setting, points, nodes="gauss")
    out = {"setting": setting.describe(), "points": points, "t_star": res.t_star, "exists_on_grid": res.exists(),
           "expected_delta": expected_delta(setting), "existence_margin": existence_margin(setting),
           "grid_expected_delta": res.expected_delta, "lowest_utility_sum": res.lowest_utility_sum,
           "ic_violation": res.ic_violation, "budget_residual": res.budget_residual, "seconds": res.seconds}
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return 0
    print(f"{out['setting']}: ex post feasibility LP on {points} Gauss–Legendre types per agent")
    for k, v in out.items():
        if k not in ("setting", "points"):
            print(f"  {k:<20} {v:.6f}" if isinstance(v, float) else f"  {k:<20} {v}")
    return 0


def _public_lp(setting, args) -> int:
    """``diffmech lp`` for public goods: the exact optimum, the optimum without exclusion and the
    best separate provision on the finite type space, and the first best."""
    from .public_lp import solve_public_lp

    if args.deterministic:
        raise DiffmechError("--deterministic is not available for public_goods; drop it")
    out: dict = {"setting": setting.describe()}
    for name, restriction in (("optimum", "none"), ("no_exclusion", "no_exclusion"), ("separate_provision", "separate")):
        res = solve_public_lp(setting, restriction=restriction)
        out[name] = res.surplus
        out[f"{name}_seconds"] = res.seconds
        out["method"] = res.method
        out["first_best"] = res.first_best
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return 0
    print(f"{out['setting']}: exact surplus by LP over all incentive-feasible mechanisms ({out['method']} formulation)")
    for k, v in out.items():
        if k != "setting":
            print(f"  {k:<28} {v:.6f}" if isinstance(v, float) else f"  {k:<28} {v}")
    return 0


def format_purify_report(report: dict, title: str = "") -> str:
    """The purification report as an aligned key/value table (numbers like ``diffmech eval``)."""
    rows = []
    for k, v in report.items():
        if k == "warnings":
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a} {b}" for a, b in v.items())
        elif isinstance(v, list):
            v = " × ".join(str(x) for x in v)
        elif isinstance(v, float):
            v = _fmt(v)
        rows.append((k, "-" if v is None else str(v)))
    width = max(len(k) for k, _ in rows)
    lines = [title] if title else []
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines += [f"  warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


def cmd_purify(args) -> int:
    from .checkpoint import atomic_write_json
    from .purify import purify

    mechanism, setting, _, label = _load_target(args.target)
    res = purify(mechanism, setting, method=args.method, R=args.R, grid=args.grid)
    if args.out:
        atomic_write_json(Path(args.out) / "purify.json", res.report)
    if args.json:
        print(json.dumps(res.report, indent=2))
    else:
        print(format_purify_report(res.report, title=f"{label} purified ({res.report['method']}): {setting.describe()}"))
        if args.out:
            print(f"report: {Path(args.out) / 'purify.json'}")
    return 0


def cmd_list(args) -> int:
    from .mechanisms import MECHANISMS
    from .priors import PRIORS
    from .settings import SETTINGS

    print("settings:")
    for k, c in SETTINGS.items():
        print(f"  {k:<28} {c.summary}")
    print("mechanisms:")
    for k, c in MECHANISMS.items():
        tag = "transform" if c.__module__.endswith(".transforms") else ("neural" if c.trainable else "analytic")
        print(f"  {k:<28} [{tag}] {c.summary}")
    print("priors:")
    for k, c in PRIORS.items():
        print(f"  {k:<28} {c.summary}")
    print("benchmarks (evaluated beside every learned mechanism):")
    for k, c in SETTINGS.items():
        print(f"  {k:<28} {', '.join(c.benchmarks)}")
    print("  (multi_item: the item-wise Myerson, bundle, item-price or VCG rows that apply to its valuation, prior and bidders)")
    return 0


COMMANDS = {"demo": cmd_demo, "train": cmd_train, "sweep": cmd_sweep, "eval": cmd_eval, "compare": cmd_compare, "lp": cmd_lp, "purify": cmd_purify,
            "list": cmd_list}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .parallel import initialize_distributed

        initialize_distributed()  # joins a multi-host run when the launcher's variables say so
        return COMMANDS[args.command](args)
    except TrainingDiverged as e:
        print(f"diffmech: error: {e}", file=sys.stderr)
        return 3
    except DiffmechError as e:
        print(f"diffmech: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diffmech: interrupted; resume a training run with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
