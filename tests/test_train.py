"""Training: learning happens, runs are reproducible, checkpoints resume, divergence is caught."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech.config import EvalConfig
from diffmech.errors import CheckpointError, TrainingDiverged

BASE = {
    "setting": {"kind": "single_item", "prior": {"dist": "uniform", "low": 0.0, "high": 1.0}, "n_agents": 2},
    "mechanism": {"kind": "regretnet", "hidden": [32, 32]},
    "train": {"steps": 40, "batch": 128, "train_size": 1024, "lr": 0.003, "log_every": 10, "ckpt_every": 20, "inner_steps": 5},
}
QUICK_EVAL = EvalConfig(samples=1000, grid_points=200, attack_steps=20)


def _cfg(**train):
    cfg = json.loads(json.dumps(BASE))
    cfg["train"].update(train)
    return cfg


def _leaves(mech):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(mech, eqx.is_inexact_array))]


def test_monotone_net_revenue_rises_toward_myerson():
    """Deb–Pai Example 1 (U[2,4], U[1,2]); the optimum is 13/6."""
    cfg = _cfg(steps=300, lr=0.01, batch=256, train_size=4096)
    cfg["setting"] = {"kind": "single_item", "priors": [{"dist": "uniform", "low": 2.0, "high": 4.0}, {"dist": "uniform", "low": 1.0, "high": 2.0}]}
    cfg["mechanism"] = {"kind": "monotone", "groups": 3, "units": 3, "quad_nodes": 32}
    run = dm.resolve(cfg)
    before = dm.evaluate(run.build_mechanism(jax.random.PRNGKey(0)), run.setting, QUICK_EVAL, benchmarks=False)
    res = dm.train(run)
    after = dm.evaluate(res.mechanism, run.setting, QUICK_EVAL, benchmarks=False)
    se = before["revenue_se"] + after["revenue_se"]
    assert after["revenue"] > before["revenue"] + 2 * se
    assert after["revenue"] < 13 / 6 + 4 * after["revenue_se"]  # cannot beat the optimum (DSIC)
    assert after["regret_mean"] < 1e-3


def test_regretnet_regret_falls_under_the_augmented_lagrangian():
    run = dm.resolve(_cfg(steps=300, lambda_init=5.0, lambda_every=50, lr=0.003))
    init = run.build_mechanism(jax.random.PRNGKey(0))
    before = dm.evaluate(init, run.setting, QUICK_EVAL, benchmarks=False)
    res = dm.train(run)
    after = dm.evaluate(res.mechanism, run.setting, QUICK_EVAL, benchmarks=False)
    assert after["regret_mean"] < 0.5 * before["regret_mean"]
    # the multipliers moved: λ += ρ·rgt every 50 steps
    assert all(x > 5.0 for x in res.history[-1]["lam"]["regret"])


def test_same_seed_same_numbers_different_seed_different():
    a = dm.train(dm.resolve(_cfg(steps=15)))
    b = dm.train(dm.resolve(_cfg(steps=15)))
    c = dm.train(dm.resolve(_cfg(steps=15, seed=1)))
    for x, y in zip(_leaves(a.mechanism), _leaves(b.mechanism)):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(_leaves(a.mechanism), _leaves(c.mechanism)))


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full = dm.train(dm.resolve(_cfg(steps=40)), tmp_path / "full")
    dm.train(dm.resolve(_cfg(steps=20)), tmp_path / "split")
    resumed = dm.train(dm.resolve(_cfg(steps=40)), tmp_path / "split", resume=True)
    for x, y in zip(_leaves(full.mechanism), _leaves(resumed.mechanism)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert [r["step"] for r in resumed.history] == [10, 20, 30, 40]
    ck = dm.load(tmp_path / "split")
    assert ck.manifest["step"] == 40
    out = ck.mechanism(jnp.full((3, 2, 1), 0.7))
    ref = resumed.mechanism(jnp.full((3, 2, 1), 0.7))
    np.testing.assert_allclose(out.payments, ref.payments, rtol=1e-6)


def test_resume_refuses_a_different_config_and_an_existing_run(tmp_path):
    dm.train(dm.resolve(_cfg(steps=20)), tmp_path / "r")
    with pytest.raises(dm.ConfigError, match="different config"):
        dm.train(dm.resolve(_cfg(steps=40, lr=0.01)), tmp_path / "r", resume=True)
    with pytest.raises(dm.ConfigError, match="--resume"):
        dm.train(dm.resolve(_cfg(steps=40)), tmp_path / "r")
    with pytest.raises(CheckpointError, match="nothing to resume"):
        dm.train(dm.resolve(_cfg(steps=40)), tmp_path / "empty", resume=True)


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL a training process after its first checkpoint, then resume it to completion."""
    cfg_path = tmp_path / "c.toml"
    import tomli_w

    cfg = _cfg(steps=100000, ckpt_every=10, log_every=10)
    cfg_path.write_text(tomli_w.dumps(cfg))
    out = tmp_path / "run"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        [sys.executable, "-m", "diffmech.cli", "train", str(cfg_path), "--out", str(out), "--no-progress", "--no-eval"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "resume" / "state.json").exists():
            time.sleep(0.2)
        time.sleep(1.0)  # let it get into the middle of later steps or saves
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (out / "resume" / "state.json").exists(), proc.stderr.read().decode()
    ck = dm.load(out)  # the checkpoint on disk is consistent despite the kill
    killed_at = ck.manifest["step"]
    assert killed_at >= 10
    res = dm.train(dm.resolve(_cfg(steps=killed_at + 20, ckpt_every=10, log_every=10)), out, resume=True)
    assert int(res.state.step) == killed_at + 20
    assert dm.load(out).manifest["step"] == killed_at + 20


class _Blowup(dm.Mechanism):
    """Test mechanism whose revenue grows with θ until payments become sqrt(negative) = NaN."""

    theta: jax.Array
    kind = "blowup"
    trainable = True
    dsic_by_construction = True
    ir_by_construction = True

    def __call__(self, reports):
        alloc = jnp.full(reports.shape[:2] + (1,), 0.5)
        pay = reports[..., 0] * alloc[..., 0] * (1.0 - jnp.sqrt(1.0 - self.theta))
        return dm.Outcome(alloc=alloc, payments=pay)

    @classmethod
    def from_config(cls, setting, options, key=None):
        return cls(jnp.zeros(()))


def test_nan_is_caught_and_last_good_checkpoint_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(dm.MECHANISMS, "blowup", _Blowup)
    cfg = _cfg(steps=200, ckpt_every=10, log_every=10, lr=0.03)
    cfg["mechanism"] = {"kind": "blowup"}
    with pytest.raises(TrainingDiverged, match="non-finite") as err:
        dm.train(dm.resolve(cfg), tmp_path / "r")
    msg = str(err.value)
    assert "\n" not in msg and "last good checkpoint" in msg
    ck = dm.load(tmp_path / "r")  # the last good checkpoint is intact and finite
    assert 0 < ck.manifest["step"] < 200
    assert np.isfinite(float(ck.mechanism.theta)) and float(ck.mechanism.theta) < 1.0
    # the command line reports it on one line with exit code 3
    import tomli_w
    from diffmech.cli import main

    path = tmp_path / "c.toml"
    path.write_text(tomli_w.dumps(cfg))
    capsys.readouterr()
    assert main(["train", str(path), "--out", str(tmp_path / "cli"), "--no-progress"]) == 3
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and "diverged" in err_lines[0]


def test_tampered_and_truncated_checkpoints_are_rejected(tmp_path):
    dm.train(dm.resolve(_cfg(steps=20)), tmp_path / "r")
    weights = tmp_path / "r" / "weights.eqx"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or was modified"):
        dm.load(tmp_path / "r")
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum"):
        dm.load(tmp_path / "r")
    weights.write_bytes(data)
    cfg = tmp_path / "r" / "config.toml"
    cfg.write_text(cfg.read_text().replace("32", "33"))
    with pytest.raises(CheckpointError, match="config.toml"):
        dm.load(tmp_path / "r")
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        dm.load(tmp_path / "nowhere")


def test_weights_that_match_the_checksum_but_not_the_config_are_rejected(tmp_path):
    """A consistent manifest over weights of the wrong shape still fails with a clear error."""
    from diffmech.checkpoint import deserialise, serialise

    run = dm.resolve(_cfg())
    small = run.build_mechanism(jax.random.PRNGKey(0))
    other = dm.resolve(json.loads(json.dumps({**BASE, "mechanism": {"kind": "regretnet", "hidden": [8]}})))
    with pytest.raises(CheckpointError, match="does not match"):
        deserialise(serialise(other.build_mechanism(jax.random.PRNGKey(0))), small, "weights")


def test_training_step_compiles_once(monkeypatch):
    """The jitted step is traced once; later steps reuse the compiled code (no retracing)."""
    from diffmech.trainer import Trainer

    traces = []
    original = Trainer.step

    def counting_step(self, state, data):
        traces.append(1)  # runs only while tracing
        return original(self, state, data)

    monkeypatch.setattr(Trainer, "step", counting_step)
    dm.train(dm.resolve(_cfg(steps=30, log_every=5)))
    assert len(traces) == 1


def test_manifest_cannot_point_outside_the_checkpoint(tmp_path):
    dm.train(dm.resolve(_cfg(steps=20)), tmp_path / "r")
    path = tmp_path / "r" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["staged_weights"] = "../../etc/passwd"
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="unexpected staged file"):
        dm.load(tmp_path / "r")
