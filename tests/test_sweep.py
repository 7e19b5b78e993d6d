"""Sweeps: vmapped groups reproduce separate runs, grouping rules, resume without redoing work,
tables, one-line errors; the training loop compiles once and syncs with the host only to log."""

import json

import equinox as eqx
import jax
import numpy as np
import pytest

import diffmech as dm
import diffmech.sweep as S
import diffmech.trainer as T
from diffmech.errors import ConfigError

BASE = {
    "setting": {"kind": "single_item", "prior": {"dist": "uniform", "low": 0.0, "high": 1.0}, "n_agents": 2},
    "mechanism": {"kind": "regretnet", "hidden": [16, 16]},
    "train": {"steps": 20, "batch": 64, "train_size": 256, "lr": 0.003, "log_every": 5, "ckpt_every": 10, "inner_steps": 5},
    "eval": {"samples": 500, "grid_points": 50, "attack_steps": 5},
}
UNIFORM = {"dist": "uniform", "low": 0.0, "high": 1.0}
POWER = {"dist": "power_law", "low": 0.0, "high": 1.0, "a": 2.0}


def _base(**train):
    cfg = json.loads(json.dumps(BASE))
    cfg["train"].update(train)
    return cfg


def _params(mech):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(mech, eqx.is_inexact_array))]


def _curve(history):
    return np.array([[h["loss"], h["revenue"], *h["regret"], *h["lam"]["regret"]] for h in history])


def test_vmapped_group_matches_separate_runs(tmp_path):
    """Seeds, learning rates and priors (same bounds) in one vmapped step give, run by run, the
    metrics and weights of separate runs (float32 tolerance)."""
    runs = S.expand(_base(), 2, {"train.lr": [0.001, 0.003], "setting.prior": [UNIFORM, POWER]})
    assert [len(g) for g in S.group_runs(runs)] == [8]
    group = [r for r in runs if (r.values["train.lr"] == 0.001) != (r.values["setting.prior"] == POWER) or r.seed == 1][:3]
    together = S.train_group(group, tmp_path, progress=False)
    priors = set()
    for r in group:
        alone = dm.train(r.run, progress=False)
        mine = together[r.name]
        assert mine["status"] == "trained"
        np.testing.assert_allclose(_curve(mine["history"]), _curve(alone.history), rtol=2e-5, atol=1e-6)
        for a, b in zip(_params(mine["mechanism"]), _params(alone.mechanism)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        assert dm.load(tmp_path / r.name).manifest["step"] == 20  # a standard run directory per run
        priors.add(r.run.setting.priors[0].name)
    assert priors == {"uniform", "power_law"}


def test_grouping_splits_what_changes_the_compiled_step():
    uniform02 = {"dist": "uniform", "low": 0.0, "high": 2.0}
    runs = S.expand(_base(), 1, {"setting.prior": [UNIFORM, POWER, uniform02], "mechanism.hidden": [[8], [16, 16]]})
    groups = S.group_runs(runs)
    # priors with bounds [0, 1] share a group; [0, 2] and another network shape do not
    assert sorted(len(g) for g in groups) == [1, 1, 2, 2]
    for g in groups:
        assert len({json.dumps(r.run.config["mechanism"]) for r in g}) == 1
    batch = S.expand(_base(), 1, {"train.batch": [32, 64]})
    assert len(S.group_runs(batch)) == 2
    # an interim setting reads its prior inside the step (quadrature): priors split its groups
    pg = {"setting": {"kind": "public_goods", "n_agents": 2, "n_goods": 1, "cost": 1.0, "prior": UNIFORM},
          "mechanism": {"kind": "public_simple"},
          "train": {"steps": 5}}
    pg_runs = S.expand(pg, 2, {"setting.prior": [UNIFORM, POWER]})
    assert sorted(len(g) for g in S.group_runs(pg_runs)) == [2, 2]


def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path, monkeypatch):
    """Two groups (two network shapes × 2 seeds). A kill in the second group's training after its
    first checkpoint; the resume trains only the second group, from that checkpoint, and ends
    with the weights of an uninterrupted sweep."""
    grid = {"mechanism.hidden": [[8], [16]]}
    base = _base()
    calls, real_train_group, real_publish = [], S.train_group, S.save_published

    def recording(group, out, progress=True):
        calls.append([r.name for r in group])
        return real_train_group(group, out, progress=progress)

    def publish_then_die(directory, *args, **kw):
        real_publish(directory, *args, **kw)
        if "hidden=16_" in str(directory) and kw["step"] == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(S, "train_group", recording)
    monkeypatch.setattr(S, "save_published", publish_then_die)
    with pytest.raises(KeyboardInterrupt):
        S.run_sweep(base, 2, grid, tmp_path / "sw", evaluate_runs=False, progress=False)
    first = [r["name"] for r in json.loads((tmp_path / "sw" / "results.json").read_text())]
    assert len(first) == 2 and all("hidden=8_" in n for n in first)
    with pytest.raises(ConfigError, match="--resume"):
        S.run_sweep(base, 2, grid, tmp_path / "sw", evaluate_runs=False, progress=False)
    with pytest.raises(ConfigError, match="different sweep"):
        S.run_sweep(base, 3, grid, tmp_path / "sw", resume=True, evaluate_runs=False, progress=False)

    monkeypatch.setattr(S, "save_published", real_publish)
    calls.clear()
    resumed_from = []
    real_fit = S.fit

    def fit_spy(trainer, state, data, **kw):
        resumed_from.append(int(np.max(np.asarray(state.step))))
        return real_fit(trainer, state, data, **kw)

    monkeypatch.setattr(S, "fit", fit_spy)
    rows = S.run_sweep(base, 2, grid, tmp_path / "sw", resume=True, evaluate_runs=False, progress=False)
    assert len(calls) == 1 and all("hidden=16_" in n for n in calls[0]) and resumed_from == [10]
    assert [r["status"] for r in rows] == ["trained"] * 4
    fresh = S.run_sweep(base, 2, {"mechanism.hidden": [[16]]}, tmp_path / "fresh", evaluate_runs=False, progress=False)
    for a, b in zip(rows[2:], fresh):
        got, want = dm.load(tmp_path / "sw" / a["name"]), dm.load(tmp_path / "fresh" / b["name"])
        for x, y in zip(_params(got.mechanism), _params(want.mechanism)):
            np.testing.assert_array_equal(x, y)
        history = json.loads((tmp_path / "sw" / a["name"] / "history.json").read_text())
        assert [h["step"] for h in history] == [5, 10, 15, 20]


def test_summary_is_mean_and_sd_over_seeds_of_runs_that_trained(tmp_path):
    rows = [
        {"name": "a0", "train.lr": "0.1", "seed": 0, "status": "trained", "revenue": 1.0, "regret_max": 0.1, "train_seconds": 3.0, "objective": "revenue"},
        {"name": "a1", "train.lr": "0.1", "seed": 1, "status": "trained", "revenue": 2.0, "regret_max": 0.3, "train_seconds": 3.0, "objective": "revenue"},
        {"name": "a2", "train.lr": "0.1", "seed": 2, "status": "diverged", "objective": "revenue"},
        {"name": "b0", "train.lr": "0.2", "seed": 0, "status": "trained", "revenue": 5.0, "regret_max": 0.2, "train_seconds": 4.0, "objective": "revenue"},
    ]
    summary = S.write_tables(rows, ["train.lr"], tmp_path)
    a, b = summary
    assert (a["seeds"], a["diverged"]) == (3, 1)
    assert a["revenue"] == pytest.approx(1.5) and a["revenue_sd"] == pytest.approx(np.std([1.0, 2.0], ddof=1))
    assert b["revenue_sd"] == 0.0 and b["regret_max"] == 0.2
    md = (tmp_path / "results.md").read_text()
    assert "| 0.1 | 3 | 1 | 1.5 ± 0.71 |" in md
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("train.lr,seeds,diverged,revenue,revenue_sd") and len(csv_lines) == 3
    assert (tmp_path / "results.png").stat().st_size > 0


def test_grid_parsing_and_errors():
    assert S.parse_grid(["train.lr=1e-3,3e-3", "mechanism.hidden=[8],[16, 16]", "mechanism.activation=tanh,relu"]) == {
        "train.lr": [1e-3, 3e-3], "mechanism.hidden": [[8], [16, 16]], "mechanism.activation": ["tanh", "relu"]}
    for bad, msg in [("train.lr", "key=v1,v2"), ("train.seed=1,2", "--seeds"), ("=1", "key")]:
        with pytest.raises(ConfigError, match=msg):
            S.parse_grid([bad])
    with pytest.raises(ConfigError, match="sweep run train.lr=-1.0_seed=0: train.lr must be a positive"):
        S.expand(_base(), 1, {"train.lr": [-1.0]})


def test_cli_sweep_errors_are_one_line(tmp_path, capsys):
    from diffmech.cli import main

    cfg = tmp_path / "c.toml"
    import tomli_w

    cfg.write_text(tomli_w.dumps(_base()))
    for args in (["--grid", "train.lr"], ["--seeds", "0"], ["--resume"], ["--grid", "setting.prior.dist=nosuch"]):
        assert main(["sweep", str(cfg), "--out", str(tmp_path / "o"), *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("diffmech: error:"), err
    assert not (tmp_path / "o").exists()  # nothing written for a sweep that cannot start


def test_training_step_compiles_once_and_syncs_only_to_log(monkeypatch):
    """No retracing after warm-up, single and vmapped; no implicit device→host transfer in the
    loop (explicit ones happen only every log_every steps)."""
    traces = []
    real = T._step_and_accumulate

    def counted(trainer, state, data, acc):
        traces.append(1)
        return real(trainer, state, data, acc)

    monkeypatch.setattr(T, "_step_and_accumulate", counted)
    run = dm.resolve(_base(steps=30, log_every=10))
    with jax.transfer_guard_device_to_host("disallow"):
        res = dm.train(run, progress=False)
    assert len(traces) == 1 and len(res.history) == 3
    traces.clear()
    group = S.expand(_base(steps=30, log_every=10), 3, {})
    inits = [T.init_run(r.run) for r in group]
    trainer = inits[0][0]
    state = S._stack([s for _, _, s in inits])
    data = np.stack([np.asarray(d) for _, d, _ in inits])
    records = []
    with jax.transfer_guard_device_to_host("disallow"):
        T.fit(trainer, state, jax.numpy.asarray(data), lanes=3, on_record=lambda *a: records.append(a[0]),
              on_checkpoint=lambda *a: None, progress=False)
    assert len(traces) == 1 and records == [10, 20, 30]
