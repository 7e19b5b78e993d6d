"""Several devices: training, a vmapped sweep group and evaluation on 4 forced CPU devices give the
numbers of 1 device, with the batch really split over the 4; the single-device helpers are no-ops;
multi-host initialisation only when the launcher's variables say so, one-line errors otherwise.

Why 1 and 4 devices agree: data parallelism changes where each profile's terms are computed, not
what is computed (see :mod:`diffmech.parallel`). The only difference is the order of float32
summation in batch means: 4 partial sums and an all-reduce instead of one sum, a relative change
of at most about log2(B)·2⁻²⁴ ≈ 4e-7 (B = 64) in each reduction. Twenty Adam steps carry such differences into
the parameters at the same relative scale, as between a vmapped group and separate runs
(tests/test_sweep.py), so the same tolerances apply: curves rtol 2e-5 / atol 1e-6, parameters
rtol 1e-4 / atol 1e-6, evaluation metrics (means of per-profile values of those parameters)
rtol 1e-5 / atol 1e-6.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest

import diffmech as dm
import diffmech.parallel as par
from diffmech.errors import ConfigError


def measure(base: dict) -> dict:
    """Train ``base`` (one run), evaluate it, train a vmapped group of 2 seeds; return the numbers
    and the evidence of where things ran. Used in this process (1 device) and in a subprocess with
    4 forced devices."""
    import diffmech.sweep as S
    import diffmech.trainer as T
    from diffmech.evaluate import evaluate

    applied = []  # the sharding XLA gave each batch constrained in a training step, as traced
    placed = []  # (rows, partition spec) of each array placed for an evaluation kernel
    traces = []
    real_constrain, real_step, real_shard = par.constrain_batch, T._step_and_accumulate, par.shard_batch

    def spy(x):
        y = real_constrain(x)
        if y is not x:
            jax.debug.inspect_array_sharding(y, callback=lambda s: applied.append(str(s.spec)))
        return y

    def shard_spy(x):
        y = real_shard(x)
        placed.append([x.shape[0], str(y.sharding.spec)])
        return y

    def counted(*a):
        traces.append(1)
        return real_step(*a)

    par.constrain_batch, T._step_and_accumulate = spy, counted
    try:
        run = dm.resolve(base)
        res = dm.train(run, progress=False)
        par.shard_batch = shard_spy
        metrics = evaluate(res.mechanism, run.setting, run.eval, train_cfg=run.train, benchmarks=False)
        par.shard_batch = real_shard
        group = S.expand(base, 2, {})
        with tempfile.TemporaryDirectory() as d:
            swept = S.train_group(group, Path(d), progress=False)
    finally:
        par.constrain_batch, T._step_and_accumulate, par.shard_batch = real_constrain, real_step, real_shard
    x = jax.numpy.zeros((12, 3))
    return {
        "devices": jax.device_count(),
        "placed_batch": [s.data.shape[0] for s in par.shard_batch(x).addressable_shards],
        "placed_odd": [s.data.shape[0] for s in par.shard_batch(x[:10]).addressable_shards],
        "param_devices": len(jax.tree_util.tree_leaves(res.state.params)[0].sharding.device_set),
        "applied": applied,
        "placed": placed,
        "traces": len(traces),
        "history": [[h["loss"], h["revenue"], *h["regret"]] for h in res.history],
        "params": [np.asarray(p).ravel().tolist() for p in jax.tree_util.tree_leaves(res.state.params)],
        "metrics": {k: metrics[k] for k in ("revenue", "welfare", "regret_mean", "regret_max", "train_regret_mean", "ir_violation")},
        "sweep": [[[h["loss"], h["revenue"], *h["regret"]] for h in swept[r.name]["history"]] for r in group],
    }


BASE = {
    "setting": {"kind": "single_item", "prior": {"dist": "uniform", "low": 0.0, "high": 1.0}, "n_agents": 2},
    "mechanism": {"kind": "regretnet", "hidden": [16, 16]},
    "train": {"steps": 20, "batch": 64, "train_size": 256, "lr": 0.003, "log_every": 5, "ckpt_every": 10, "inner_steps": 5},
    # 198 profiles: not a multiple of 4, so evaluation chunks are padded to the device count; the
    # exhaustive grid attack and the gradient kernel of the training-time estimate run sharded
    # (the gradient refinement, the same kernel, is left out: one compilation less)
    "eval": {"samples": 198, "grid_points": 20, "attack_steps": 0},
}


def _launch(devices: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_parallel as t; "
            f"print(json.dumps(t.measure(t.BASE)))")
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_one_and_four_devices_agree():
    """Training (20 steps), evaluation and a vmapped group of 2 seeds on 4 forced CPU devices
    reproduce 1 device (tolerances in the module docstring); the 4-device run split every
    training batch over the 4 devices (batch axis, or the axis after the lanes in the sweep),
    kept the parameters on all 4, and compiled each training step once."""
    proc = _launch(4)
    # the 1-device reference here, side by side with the subprocess (or in its own where this
    # process was started with several devices)
    one = measure(BASE) if jax.device_count() == 1 else _result(_launch(1))
    four = _result(proc)
    assert one["devices"] == 1 and four["devices"] == 4
    assert one["placed_batch"] == [12] and one["applied"] == []  # one device: no sharding at all
    assert four["placed_batch"] == [3, 3, 3, 3] and four["placed_odd"] == [10] * 4  # 10 rows: replicated
    assert four["param_devices"] == 4
    # step: types (B, n, d) and misreports (B, starts, n, d) split on the batch axis; sweep: on the
    # axis after the lanes
    assert four["applied"] == ["P('data',)", "P('data',)", "P(None, 'data')", "P(None, 'data')"], four["applied"]
    # evaluation: every chunk padded to a multiple of 4 (198 → 200 profiles) and split 4 ways
    assert one["placed"] == [] and four["placed"] and all(n % 4 == 0 and spec == "P('data',)" for n, spec in four["placed"])
    assert 200 in [n for n, _ in four["placed"]], four["placed"]
    assert one["traces"] == four["traces"] == 2  # the single step and the vmapped step, once each
    np.testing.assert_allclose(four["history"], one["history"], rtol=2e-5, atol=1e-6)
    for a, b in zip(four["params"], one["params"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for key, value in one["metrics"].items():
        assert four["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    np.testing.assert_allclose(four["sweep"], one["sweep"], rtol=2e-5, atol=1e-6)
    # the sweep's first lane is the single run (same seed): vmapping and sharding together
    np.testing.assert_allclose(four["sweep"][0], one["history"], rtol=2e-5, atol=1e-6)


def test_helpers_do_nothing_on_one_device():
    if jax.device_count() != 1:
        pytest.skip("this process has several devices")
    x = jax.numpy.arange(6.0).reshape(3, 2)
    tree = {"a": x, "b": 1}
    assert par.shard_batch(x) is x and par.replicate(tree) is tree and par.constrain_batch(x) is x
    assert par.round_up(5) == 5 and par.data_mesh().axis_names == ("data",)
    kernel = par.over_batch(lambda t: t * 2, argnums=(0,))
    np.testing.assert_array_equal(kernel(x), x * 2)


def test_distributed_only_when_the_variables_say_so(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(par, "_initialized", False)
    assert par.initialize_distributed({}) is False and calls == []
    # a single-task Slurm job, and explicit opt-out, stay one process
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    assert par.distributed_spec(slurm) is None
    assert par.distributed_spec({**slurm, "SLURM_NTASKS": "4"}) == {}  # jax reads Slurm's variables itself
    explicit = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert par.distributed_spec({**explicit, "DIFFMECH_DISTRIBUTED": "0"}) is None
    assert par.initialize_distributed(explicit) is True
    assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}]
    assert par.initialize_distributed(explicit) is True and len(calls) == 1  # once per process
    bad = [
        ({"JAX_NUM_PROCESSES": "2"}, "JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID not"),
        ({**explicit, "JAX_PROCESS_ID": "2"}, "0 ≤ JAX_PROCESS_ID < JAX_NUM_PROCESSES"),
        ({**explicit, "JAX_NUM_PROCESSES": "two"}, "must be an integer"),
        ({**explicit, "JAX_COORDINATOR_ADDRESS": "10.0.0.1"}, "host:port"),
    ]
    for env, msg in bad:
        with pytest.raises(ConfigError, match=msg) as e:
            par.distributed_spec(env)
        assert "\n" not in str(e.value)


def test_cli_refuses_a_partial_set_in_one_line(monkeypatch, capsys):
    from diffmech.cli import main

    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.delenv("JAX_NUM_PROCESSES", raising=False)
    monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("diffmech: error: JAX_COORDINATOR_ADDRESS set but"), err
