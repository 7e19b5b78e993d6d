"""Sweeps: every combination of a hyperparameter grid × K seeds, trained in vmapped groups.

``diffmech sweep CONFIG --seeds K --grid key=v1,v2 ...`` expands the base config into runs
(:func:`expand`). Runs whose compiled training step is the same function of different arrays form a
*group* (:func:`group_runs`) and train together: their states and training sets are stacked on a
leading axis and one ``jax.vmap``-ed, jit-compiled step advances all of them
(:func:`diffmech.trainer.fit` with ``lanes = K``). What may differ inside a group:

- ``train.seed`` (initialisation, training set, misreport starts), ``train.lr`` (a state leaf:
  the optimizer runs at unit rate), ``train.rho`` and ``train.lambda_init`` (the dual state);
- the priors, where the setting reads them only through the sampled training set and the type
  bounds (``Setting.priors_via_data``: single item, multi-item, identical items) and the bounds
  agree.

Everything else (network shapes, batch, steps, method, setting shape) splits the groups, which are
trained one after another. Each run gets a standard run directory ``OUT/<name>`` (weights, config,
history, metrics), so ``diffmech eval OUT/<name>`` works on it; the group's stacked resume state
lives in ``OUT/groups/<id>/resume``. A sweep killed midway resumes with ``--resume``: finished
runs are not redone, a group continues from its last checkpoint, a trained group is only evaluated.

The results table (``results.csv``, ``results.md``, ``results.png``) gives mean ± standard
deviation over seeds for every grid point.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import tomli_w

from .checkpoint import atomic_write_json, atomic_write_text, load_resume, read_json, save_published, save_resume
from .config import Run, _parse_value, parse_toml, resolve, set_value
from .errors import ConfigError
from .trainer import _record, fit, init_run

#: [train] keys that may differ between runs trained in one vmapped group
VMAPPED_TRAIN_KEYS = ("seed", "lr", "rho", "lambda_init")
PRIOR_KEYS = ("prior", "priors", "item_priors", "good_priors")
#: metrics tabulated (mean ± sd over seeds), where the evaluation reports them
TABLE_METRICS = ("revenue", "surplus", "welfare", "regret_mean", "regret_max", "interim_regret_max", "ir_violation",
                 "ir_violation_max", "bb_residual", "budget_surplus", "train_seconds")


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its grid values (without the seed), its seed and its resolved config."""

    name: str
    values: dict
    seed: int
    run: Run


# ----------------------------------------------------------------------------- expansion


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["train.lr=1e-3,3e-3", "mechanism.hidden=[64,64],[128,128]"]`` → ``{key: [values]}``.

    The right-hand side is read as the items of a TOML array (so lists and strings work), and
    failing that as comma-separated TOML values or plain strings (``setting.prior.dist=uniform,beta``).
    """
    grid: dict[str, list] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r} must look like key=v1,v2,..., e.g. --grid train.lr=0.001,0.003")
        key, rhs = (part.strip() for part in item.split("=", 1))
        if not key or not rhs:
            raise ConfigError(f"--grid {item!r} needs a key and at least one value")
        if key == "train.seed":
            raise ConfigError("--grid train.seed: seeds are set by --seeds K (seeds base, base+1, ..., base+K−1)")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one --grid")
        try:
            values = parse_toml(f"v = [{rhs}]")["v"]
        except ConfigError:
            values = [_parse_value(v.strip()) for v in rhs.split(",")]
        if len(values) == 0:
            raise ConfigError(f"--grid {item!r} has no values")
        grid[key] = values
    return grid


def _short(v) -> str:
    """A value as it reads in a run's name: lists joined by 'x' ([64, 64] → 64x64), tables by their
    values (a prior {dist = "power_law", low = 0, high = 1, a = 2} → power_law-0-1-2)."""
    if isinstance(v, list):
        return "x".join(_short(x) for x in v)
    if isinstance(v, dict):
        return "-".join(_short(x) for x in v.values())
    return str(v).lower() if isinstance(v, bool) else str(v)


def _slug(values: dict, seed: int) -> str:
    parts = [f"{key}={_short(v)}" for key, v in values.items()] + [f"seed={seed}"]
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", "_".join(parts)).strip("-")


def expand(base: dict, seeds: int, grid: dict[str, list]) -> list[SweepRun]:
    """Every combination of the grid's values × ``seeds`` seeds (the config's ``train.seed`` and the
    ones after it), each resolved and validated (a bad value names the run it breaks)."""
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"--seeds must be a positive integer, got {seeds!r}")
    base_seed = base.get("train", {}).get("seed", 0) if isinstance(base.get("train"), dict) else 0
    if not isinstance(base_seed, int) or isinstance(base_seed, bool) or base_seed < 0:
        raise ConfigError(f"train.seed must be a non-negative integer, got {base_seed!r}")
    runs = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        for k in range(seeds):
            seed = base_seed + k
            name = _slug(values, seed)
            cfg = copy.deepcopy(base)
            try:
                for key, v in {**values, "train.seed": seed}.items():
                    set_value(cfg, key, copy.deepcopy(v), where=f"--grid {key}")
                run = resolve(cfg)
            except ConfigError as e:
                raise ConfigError(f"sweep run {name}: {e}") from None
            runs.append(SweepRun(name, values, seed, run))
    return runs


# ----------------------------------------------------------------------------- grouping


def signature(run: Run) -> str:
    """What a run's compiled training step depends on besides its arrays: runs with equal
    signatures can share one vmapped step (the mechanisms' static parts are checked as well)."""
    cfg = copy.deepcopy(run.config)
    cfg.pop("eval", None)
    if getattr(run.mechanism_class, "played_in_equilibrium", False):
        return json.dumps(cfg, sort_keys=True)  # trained by its own loop: one run per group
    for key in VMAPPED_TRAIN_KEYS:
        cfg["train"].pop(key, None)
    if run.setting.priors_via_data:
        for key in PRIOR_KEYS:
            cfg["setting"].pop(key, None)
        lo, hi = run.setting.type_bounds()
        cfg["setting"]["type_bounds"] = [np.asarray(lo).tolist(), np.asarray(hi).tolist()]
    return json.dumps(cfg, sort_keys=True)


def group_runs(runs: list[SweepRun]) -> list[list[SweepRun]]:
    """Runs in groups that train together, in order of first appearance; learned symmetric
    auctions (trained with their bidding strategies by their own loop) are groups of one."""
    groups: dict[str, list[SweepRun]] = {}
    for r in runs:
        key = signature(r.run)
        if getattr(r.run.mechanism_class, "played_in_equilibrium", False):
            key += r.name
        groups.setdefault(key, []).append(r)
    return list(groups.values())


def group_id(group: list[SweepRun]) -> str:
    return hashlib.sha256("\n".join(r.name for r in group).encode()).hexdigest()[:12]


def _same_static(trainers) -> bool:
    first = trainers[0]
    return all(eqx.tree_equal(first.static, t.static) is True and t.names == first.names for t in trainers[1:])


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _lane(tree, i: int):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


# ----------------------------------------------------------------------------- training a group


def train_group(group: list[SweepRun], out: Path, *, progress: bool = True) -> dict[str, dict]:
    """Train the runs of one group together (one vmapped step), resuming from ``out/groups/<id>``
    if it holds a state. Writes each run's directory ``out/<name>``. Returns, per run name,
    ``{"status": "trained" | "diverged", "train_seconds": ..., "mechanism": ...}``."""
    gdir = out / "groups" / group_id(group)
    inits = [init_run(r.run) for r in group]
    trainers = [t for t, _, _ in inits]
    if not _same_static(trainers):  # a mechanism built differently from its config: train apart
        results: dict[str, dict] = {}
        for r in group:
            results.update(train_group([r], out, progress=progress))
        return results
    trainer = trainers[0]
    data = jnp.stack([d for _, d, _ in inits])
    state = _stack([s for _, _, s in inits])
    configs = [r.run.to_toml() for r in group]
    histories: list[list] = [[] for _ in group]
    diverged = [False] * len(group)
    spent = [0.0]  # seconds trained before a resume
    if (gdir / "resume" / "state.json").exists():
        state, meta = load_resume(gdir, state)
        step = int(meta["step"])
        diverged = list(meta["diverged"])
        spent[0] = float(meta["seconds"])
        saved = read_json(gdir / "histories.json", "sweep histories")
        histories = [[h for h in saved[i] if h["step"] <= step] for i in range(len(group))]
    else:
        atomic_write_json(gdir / "group.json", {"runs": [r.name for r in group]})
    for r, cfg in zip(group, configs):
        (out / r.name).mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / r.name / "config.toml", cfg)

    def on_record(done, host, nonfinite, elapsed):
        for i, r in enumerate(group):
            if diverged[i]:
                continue
            rec = _record(trainer, _lane(host, i), done, spent[0] + elapsed)
            if bool(nonfinite[i]) or not np.isfinite(rec["loss"]):
                diverged[i] = True
                print(f"diffmech sweep: {r.name}: training diverged before step {done} (non-finite loss); the other runs go on")
                continue
            histories[i].append(rec)

    def on_checkpoint(done, state):
        # the group's histories and state first (the authority on resume), then each run's files
        atomic_write_json(gdir / "histories.json", histories)
        save_resume(gdir, state, {"step": done, "diverged": diverged, "seconds": spent[0] + (time.perf_counter() - t0)})
        for i, r in enumerate(group):
            if diverged[i]:
                continue
            save_published(out / r.name, trainer.mechanism(_lane(state.params, i)), configs[i], seed=r.seed, step=done)
            atomic_write_json(out / r.name / "history.json", histories[i])

    t0 = time.perf_counter()
    desc = f"group {group_id(group)} ({len(group)} runs)"
    state, seconds = fit(trainer, state, data, lanes=len(group), on_record=on_record, on_checkpoint=on_checkpoint,
                         progress=progress, desc=desc)
    total = spent[0] + seconds
    return {
        r.name: {"status": "diverged" if diverged[i] else "trained", "train_seconds": round(total, 2),
                 "group_size": len(group), "mechanism": trainer.mechanism(_lane(state.params, i)), "history": histories[i]}
        for i, r in enumerate(group)
    }


def _train_alone(r: SweepRun, out: Path, progress: bool) -> dict[str, dict]:
    """A run that cannot be vmapped (learned symmetric auctions): the ordinary trainer."""
    from .errors import TrainingDiverged
    from .trainer import train

    directory = out / r.name
    resume = (directory / "resume" / "state.json").exists()
    try:
        result = train(r.run, directory, resume=resume, progress=progress)
    except TrainingDiverged as e:
        print(f"diffmech sweep: {r.name}: {e}")
        return {r.name: {"status": "diverged", "train_seconds": None, "group_size": 1}}
    return {r.name: {"status": "trained", "train_seconds": round(result.seconds, 2), "group_size": 1,
                     "mechanism": result.mechanism, "history": result.history}}


# ----------------------------------------------------------------------------- the sweep


def _row(r: SweepRun, info: dict, metrics: dict, objective: str) -> dict:
    row = {"name": r.name, **{k: _short(v) for k, v in r.values.items()}, "seed": r.seed, "status": info["status"],
           "group_size": info["group_size"], "objective": objective}
    for key in TABLE_METRICS:
        if key == "train_seconds":
            row[key] = info["train_seconds"]
        elif key in metrics and isinstance(metrics[key], (int, float)):
            row[key] = metrics[key]
    return row


def run_sweep(base: dict, seeds: int, grid: dict[str, list], out: str | Path, *, resume: bool = False,
              evaluate_runs: bool = True, progress: bool = True) -> list[dict]:
    """Train (and evaluate) every run of the sweep; returns one result row per run and writes
    ``out/results.{json,csv,md,png}``. See the module docstring for grouping and resuming."""
    from .evaluate import evaluate

    if jax.process_count() > 1:
        raise ConfigError("diffmech sweep runs on one host (each host would write the same run files); start it with "
                          "DIFFMECH_DISTRIBUTED=0, or run one sweep per host with different --out")
    out = Path(out)
    runs = expand(base, seeds, grid)
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("two sweep runs have the same name; give each --grid key distinct values")
    spec = {"config": tomli_w.dumps(base), "seeds": seeds, "grid": grid}
    if (out / "sweep.json").exists():
        if not resume:
            raise ConfigError(f"{out} already holds a sweep; pass --resume to continue it or choose another --out")
        if read_json(out / "sweep.json", "sweep description") != spec:
            raise ConfigError(f"{out} holds a different sweep (config, seeds or grid differ); use the same ones or a new --out")
    elif resume:
        raise ConfigError(f"nothing to resume in {out}; run without --resume to start a sweep")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; choose another --out")
    else:
        atomic_write_json(out / "sweep.json", spec)
    rows: dict[str, dict] = {}
    if (out / "results.json").exists():
        rows = {row["name"]: row for row in read_json(out / "results.json", "sweep results")}
    groups = group_runs(runs)
    print(f"diffmech sweep: {len(runs)} runs in {len(groups)} group(s) of sizes {', '.join(str(len(g)) for g in groups)}"
          + (f"; {len(rows)} already finished" if rows else ""))
    for group in groups:
        todo = [r for r in group if r.name not in rows]
        if not todo:
            continue
        if len(group) == 1 and getattr(group[0].run.mechanism_class, "played_in_equilibrium", False):
            trained = _train_alone(group[0], out, progress)
        else:
            trained = train_group(group, out, progress=progress)
        for r in todo:
            info = trained[r.name]
            metrics: dict[str, Any] = {}
            if info["status"] == "trained" and evaluate_runs:
                metrics = evaluate(info["mechanism"], r.run.setting, r.run.eval, train_cfg=r.run.train, progress=False)
                metrics["train_seconds"] = info["train_seconds"]
                atomic_write_json(out / r.name / "metrics.json", metrics)
            rows[r.name] = _row(r, info, metrics, r.run.setting.objective)
            atomic_write_json(out / "results.json", [rows[n] for n in names if n in rows])
    ordered = [rows[n] for n in names]
    write_tables(ordered, list(grid), out)
    return ordered


# ----------------------------------------------------------------------------- tables


def summarise(rows: list[dict], keys: list[str]) -> list[dict]:
    """Mean and standard deviation (ddof = 1; 0 for one seed) over the seeds of each grid point,
    counting only runs that trained."""
    points: dict[tuple, list[dict]] = {}
    for row in rows:
        points.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    summary = []
    for point, members in points.items():
        ok = [m for m in members if m["status"] == "trained"]
        entry: dict[str, Any] = {**dict(zip(keys, point)), "seeds": len(members), "diverged": len(members) - len(ok)}
        for metric in TABLE_METRICS:
            vals = np.array([m[metric] for m in ok if m.get(metric) is not None], dtype=float)
            if vals.size:
                entry[metric] = float(vals.mean())
                entry[f"{metric}_sd"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
        summary.append(entry)
    return summary


def write_tables(rows: list[dict], keys: list[str], out: Path) -> list[dict]:
    """``results.csv`` (per grid point: mean and sd of each metric), ``results.md`` (mean ± sd) and
    ``results.png`` (objective and regret per grid point, error bars = sd over seeds)."""
    summary = summarise(rows, keys)
    metrics = [m for m in TABLE_METRICS if any(m in s for s in summary)]
    columns = [*keys, "seeds", "diverged"] + [c for m in metrics for c in (m, f"{m}_sd")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for s in summary:
        writer.writerow(s)
    atomic_write_text(out / "results.csv", buf.getvalue())
    head = [*keys, "seeds", "diverged", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [str(s.get(k)) for k in keys] + [str(s["seeds"]), str(s["diverged"])]
        cells += [f"{s[m]:.4g} ± {s[m + '_sd']:.2g}" if m in s else "–" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    if summary and rows:
        from .plots import plot_sweep

        plot_sweep(summary, keys, rows[0]["objective"], out / "results.png")
    return summary
