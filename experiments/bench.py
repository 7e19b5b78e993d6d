"""Throughput benchmark: regret attack and training step against a large matrix product.

    python experiments/bench.py [--size small|large] [--json PATH] [--markdown PATH]

For each kernel it prints the throughput in profile-misreport evaluations per second (one
evaluation = the mechanism run on one profile in which one agent misreports) and, for dense
networks, the achieved FLOP/s counted by hand (2 FLOPs per multiply-add of the network, a backward
pass as twice a forward; XLA's cost model counts a loop's body once, so it undercounts the attack's
block loop and the inner ascent), next to the FLOP/s of a large float32 matrix product measured in
the same run, so that the ratio is meaningful on a shared, noisy machine. It also times K runs
trained together (vmap, as ``diffmech sweep`` does) against one run, and one training step on 1, 2
and 4 devices (forced host devices on a CPU). Every timing is the median of several runs after a warm-up (compilation
excluded).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import diffmech as dm
from diffmech.evaluate import _grid_attack
from diffmech.trainer import make_trainer, training_data


def _time(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))  # warm-up / compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_matmul(n):
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    t = _time(f, a, b)
    return {"kernel": f"matmul {n}x{n} float32", "seconds": t, "flops_per_s": 2 * n**3 / t}


def _setting_cfg(n):
    return {"kind": "single_item", "prior": {"dist": "uniform", "low": 0.0, "high": 1.0}, "n_agents": n}


def bench_attack(mech_cfg, n, batch, grid_points, label):
    run = dm.resolve({"setting": _setting_cfg(n), "mechanism": mech_cfg})
    mech = run.build_mechanism(jax.random.PRNGKey(0))
    params, static = eqx.partition(mech, eqx.is_array)
    setting = run.setting
    types = setting.sample(jax.random.PRNGKey(1), batch)
    grid = setting.attack_grid(grid_points).astype(types.dtype)

    def f(p, t, g):  # the evaluator's kernel (profiles attacked in cache-sized blocks)
        return _grid_attack(eqx.combine(p, static), setting, t, g)[0]

    t = _time(jax.jit(f), params, types, grid)
    evals = batch * grid_points * n
    # FLOPs counted by hand for dense networks: 2 per multiply-add, one forward per evaluation
    # (XLA's cost model counts the body of the kernel's block loop once, so it cannot be used)
    macs = dense_macs(mech) if mech_cfg["kind"] == "regretnet" else 0
    return {
        "kernel": f"grid attack, {label}, {n} bidders, {batch} profiles x {grid_points} reports",
        "seconds": t,
        "evals_per_s": evals / t,
        "flops_per_s": 2 * macs * evals / t if macs else None,
    }


def bench_train_step(mech_cfg, n, batch, label, inner_steps=25):
    cfg = {
        "setting": _setting_cfg(n),
        "mechanism": mech_cfg,
        "train": {"batch": batch, "train_size": batch * 8, "inner_steps": inner_steps},
    }
    run = dm.resolve(cfg)
    mech = run.build_mechanism(jax.random.PRNGKey(0))
    trainer = make_trainer(run, mech)
    data = training_data(run, jax.random.PRNGKey(1))
    state = trainer.init(mech, jax.random.PRNGKey(2), data)
    step = eqx.filter_jit(trainer.step)

    def run_step(s):
        return step(s, data)[0].params

    t = _time(run_step, state)
    # evaluations: truthful batch + (inner ascent steps + final regret) misreports per agent
    has_regret = "regret" in trainer.names
    evals = batch * (1 + (n * run.train.train_starts * (inner_steps + 1) if has_regret else 0))
    # FLOPs by hand for dense networks (XLA's cost model counts a loop's body once): every
    # evaluation is a forward and a backward pass (3 forwards), 2 FLOPs per multiply-add
    macs = dense_macs(mech) if mech_cfg["kind"] == "regretnet" else 0
    flops = 3 * 2 * macs * evals
    return {
        "kernel": f"train step, {label}, {n} bidders, batch {batch}" + (f", {inner_steps} inner steps" if has_regret else ""),
        "seconds": t,
        "evals_per_s": evals / t,
        "flops_per_s": flops / t if flops else None,
    }


def dense_macs(mechanism) -> int:
    """Multiply-adds of one forward pass of a dense network: one per weight-matrix entry (the
    issue's count: 2 FLOPs per multiply-add; a backward pass counts as twice a forward)."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(mechanism, eqx.is_inexact_array))
    return int(sum(x.size for x in leaves if x.ndim == 2))


def bench_seeds(config_path, k, batch):
    """One training step of K runs vmapped together (``diffmech sweep``'s groups) against one run's
    step; K single runs cost K times one run's step."""
    import functools

    from diffmech import sweep as S
    from diffmech import trainer as T

    base = dm.config.load_config(config_path)
    base["train"].update(batch=batch, train_size=batch * 8)
    runs = S.expand(base, k, {})
    inits = [T.init_run(r.run) for r in runs]
    trainer = inits[0][0]
    zeros = T._zero_sums(trainer, jnp.float32)
    one = eqx.filter_jit(functools.partial(T._step_and_accumulate, trainer))
    many = eqx.filter_jit(jax.vmap(functools.partial(T._step_and_accumulate, trainer)))
    state1, data1 = inits[0][2], inits[0][1]
    stacked = S._stack([s for _, _, s in inits])
    data = jnp.stack([d for _, d, _ in inits])
    acc = jax.tree_util.tree_map(lambda z: jnp.broadcast_to(z, (k, *z.shape)), zeros)
    t1 = _time(lambda: one(state1, data1, zeros)[0].params, repeats=20)
    tk = _time(lambda: many(stacked, data, acc)[0].params, repeats=20)
    label = f"train step, {Path(config_path).stem}, batch {batch}"
    return [
        {"kernel": label + ": one run", "seconds": t1},
        {"kernel": label + f": {k} runs vmapped", "seconds": tk, "cost_vs_one": tk / t1},
        {"kernel": label + f": {k} runs one after another (K × one)", "seconds": k * t1, "cost_vs_one": float(k)},
    ]


def bench_devices(counts=(1, 2, 4), large=False):
    """One RegretNet training step on 1, 2 and 4 devices (data parallel: the batch split over a
    mesh, parameters replicated). On a CPU the devices are forced with
    ``--xla_force_host_platform_device_count`` and share the same cores (correctness, not speed);
    on a machine with that many accelerators they are real. Each count runs in a subprocess."""
    import os
    import subprocess
    import sys

    rows = []
    for d in counts:
        env = dict(os.environ)
        if jax.default_backend() == "cpu":
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={d}").strip()
        elif d > jax.device_count():
            continue
        code = ("import json, sys; sys.path.insert(0, %r); import bench, jax; "
                "r = bench.bench_train_step({'kind': 'regretnet', 'hidden': [100, 100, 100]}, 2, %d, 'regretnet 3x100'); "
                "r['devices'] = jax.device_count(); print('JSON' + json.dumps(r))") % (str(Path(__file__).parent), 8192 if large else 512)
        if jax.default_backend() != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(d))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("JSON")), None)
        if line is None:
            rows.append({"kernel": f"train step on {d} device(s): failed ({out.stderr.strip().splitlines()[-1:]})", "seconds": float("nan")})
            continue
        r = json.loads(line[4:])
        r["kernel"] += f", {r['devices']} device(s)"
        rows.append(r)
    t1 = rows[0]["seconds"] if rows else None
    for r in rows[1:]:
        if t1:
            r["cost_vs_one"] = r["seconds"] / t1
    return rows


def _public_goods(n):
    cfg = {"setting": {"kind": "public_goods", "n_agents": n, "n_goods": 2, "cost_per_agent": 1.25,
                       "prior": {"dist": "discrete", "values": [1.0, 3.0], "probs": [0.6, 0.4]}},
           "mechanism": {"kind": "public_simple", "symmetry": "anonymous", "hidden": [64, 64]}}
    run = dm.resolve(cfg)
    return run.setting, run.build_mechanism(jax.random.PRNGKey(0))


def bench_interim(n=4, repeats=3):
    """The exact interim-utility table U[i, k, r] (n agents, K = 4 types, every report) as one
    compiled kernel, against Python loops that call the same compiled mechanism: (a) a loop over
    agents, own types and reports with the others' profiles batched, (b) a loop over every
    (agent, type, report, others' profile). Returns three rows; the loops' rows carry the
    kernel's speed-up over them."""
    from diffmech import interim as I

    setting, mech = _public_goods(n)
    nodes = I.exact_nodes(setting)
    others, w = I.others_profiles(nodes)
    own = nodes.points
    kernel = eqx.filter_jit(lambda m, o, ot, ww: I.interim_utility(m, setting, o, o, ot, ww))
    t_kernel = _time(kernel, mech, own, others, w, repeats=repeats)
    atoms = np.asarray(own[0])
    big_k, s = atoms.shape[0], others.shape[1]
    util = eqx.filter_jit(lambda m, prof, true: setting.utility(true, m(prof)))
    prof0 = jnp.zeros((s, n, 2))
    jax.block_until_ready(util(mech, prof0, prof0))
    single = jnp.zeros((1, n, 2))
    jax.block_until_ready(util(mech, single, single))
    oth = np.asarray(others)
    wts = np.asarray(w)

    def batched_loop():
        out = np.zeros((n, big_k, big_k))
        for i in range(n):
            for k in range(big_k):
                for r in range(big_k):
                    prof = np.insert(oth[i], i, atoms[r], axis=1)
                    true = prof.copy()
                    true[:, i] = atoms[k]
                    u = np.asarray(util(mech, jnp.asarray(prof, jnp.float32), jnp.asarray(true, jnp.float32)))[:, i]
                    out[i, k, r] = float(np.dot(wts[i], u))
        return out

    def full_loop():
        out = np.zeros((n, big_k, big_k))
        for i in range(n):
            for k in range(big_k):
                for r in range(big_k):
                    total = 0.0
                    for q in range(s):
                        prof = np.insert(oth[i, q], i, atoms[r], axis=0)[None]
                        true = prof.copy()
                        true[0, i] = atoms[k]
                        u = np.asarray(util(mech, jnp.asarray(prof, jnp.float32), jnp.asarray(true, jnp.float32)))[0, i]
                        total += wts[i, q] * float(u)
                    out[i, k, r] = total
        return out

    ref = np.asarray(kernel(mech, own, others, w))
    t0 = time.perf_counter()
    loop_a = batched_loop()
    t_a = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop_b = full_loop()
    t_b = time.perf_counter() - t0
    err = max(float(np.abs(loop_a - ref).max()), float(np.abs(loop_b - ref).max()))
    evals = n * big_k * s  # profiles the kernel evaluates (all reports of all agents)
    label = f"interim table, public_simple 2x64, n={n}, K={big_k}, all {big_k} reports, {s} others' profiles"
    return [
        {"kernel": label + ": one compiled kernel", "seconds": t_kernel, "evals_per_s": evals / t_kernel, "max_abs_diff": err},
        {"kernel": "same: Python loop over (agent, type, report), others batched", "seconds": t_a, "evals_per_s": n * big_k * big_k * s / t_a, "speedup_of_kernel": t_a / t_kernel},
        {"kernel": "same: Python loop over (agent, type, report, others' profile)", "seconds": t_b, "evals_per_s": n * big_k * big_k * s / t_b, "speedup_of_kernel": t_b / t_kernel},
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("small", "large"), default="small", help="small: CPU-sized; large: GPU-sized")
    p.add_argument("--json", help="write results as JSON here")
    p.add_argument("--markdown", help="write a Markdown table here")
    args = p.parse_args(argv)
    large = args.size == "large"
    dev = jax.devices()[0]
    results = [bench_matmul(8192 if large else 2048)]
    rn = {"kind": "regretnet", "hidden": [100, 100, 100]}
    mono = {"kind": "monotone"}
    b = 4096 if large else 256
    results.append(bench_attack(rn, 2, b, 1000, "regretnet 3x100"))
    results.append(bench_attack(mono, 2, b, 1000, "monotone"))
    results.append(bench_attack(rn, 2, 4 * b if large else 4096, 1000, "regretnet 3x100"))
    results.append(bench_train_step(rn, 2, 8192 if large else 512, "regretnet 3x100"))
    results.append(bench_train_step(mono, 2, 8192 if large else 512, "monotone"))
    results.extend(bench_interim(4))
    here = Path(__file__).parent
    results.extend(bench_seeds(here / "one_buyer_two_items_regretnet.toml", 8, 128 if not large else 1024))
    results.extend(bench_devices(large=large))
    mm = results[0]["flops_per_s"]
    for r in results[1:]:
        if r.get("flops_per_s") is None:
            continue
        r["fraction_of_matmul"] = r["flops_per_s"] / mm if r.get("flops_per_s") else None
    meta = {"device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}", "devices": jax.device_count(), "jax": jax.__version__, "python": platform.python_version(), "size": args.size}
    lines = [
        f"device: {meta['device']} ({meta['devices']} device(s)), jax {meta['jax']}",
        "",
        "| kernel | time (ms) | evaluations/s | GFLOP/s | of matmul | kernel speed-up | time vs one run / one device |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ev = f"{r['evals_per_s']:.3g}" if r.get("evals_per_s") else "-"
        gf = f"{r['flops_per_s'] / 1e9:.1f}" if r.get("flops_per_s") else "-"
        frac = f"{100 * r['fraction_of_matmul']:.1f}%" if r.get("fraction_of_matmul") else "-"
        up = f"{r['speedup_of_kernel']:.0f}x" if r.get("speedup_of_kernel") else "-"
        cost = f"{r['cost_vs_one']:.2f}x" if r.get("cost_vs_one") else "-"
        lines.append(f"| {r['kernel']} | {1e3 * r['seconds']:.2f} | {ev} | {gf} | {frac} | {up} | {cost} |")
    table = "\n".join(lines)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
