"""Compile time of each benchmark kernel, one per process call: python experiments/compile_times.py KERNEL."""
import sys
import time

import equinox as eqx
import jax

sys.path.insert(0, "experiments")
import bench  # noqa: E402

import diffmech as dm  # noqa: E402
from diffmech import constraints as C  # noqa: E402

which = sys.argv[1]
n, b = 2, int(sys.argv[2]) if len(sys.argv) > 2 else 256
mech_cfg = {"kind": "regretnet", "hidden": [100, 100, 100]} if which.startswith("rn") else {"kind": "monotone"}
run = dm.resolve({"setting": bench._setting_cfg(n), "mechanism": mech_cfg})
mech = run.build_mechanism(jax.random.PRNGKey(0))
params, static = eqx.partition(mech, eqx.is_array)
s = run.setting
types = s.sample(jax.random.PRNGKey(1), b)
grid = s.attack_grid(1000).astype(types.dtype)
t = time.perf_counter()
if which.endswith("gridbar"):
    def g_(p, t_, g):
        mech = eqx.combine(p, static)
        bsz = t_.shape[0]
        mis = jax.numpy.broadcast_to(jax.numpy.swapaxes(g, 0, 1)[None], (bsz,) + jax.numpy.swapaxes(g, 0, 1).shape)
        gain = jax.lax.optimization_barrier(C.misreport_gain(mech, s, t_, mis))
        return jax.numpy.max(gain, axis=1)
    jax.jit(g_).lower(params, types, grid).compile()
elif which.endswith("minmaxbar"):
    import diffmech.mechanisms.neural.monotone as M
    orig = M._minmax_value
    M._minmax_value = jax.jit(lambda x, w, b: jax.numpy.min(jax.lax.optimization_barrier(jax.numpy.max(x[..., None, None] * w[:, None] + b[:, None], axis=-1)), axis=-1))
    f = jax.jit(lambda p, t_, g: C.grid_gains(eqx.combine(p, static), s, t_, g)[0])
    f.lower(params, types, grid).compile()
elif which.endswith("grid"):
    f = jax.jit(lambda p, t_, g: C.grid_gains(eqx.combine(p, static), s, t_, g)[0])
    f.lower(params, types, grid).compile()
elif which.endswith("fwd"):
    f = jax.jit(lambda p, t_: eqx.combine(p, static)(t_).payments)
    f.lower(params, types).compile()
else:
    starts = s.sample(jax.random.PRNGKey(2), b).reshape(b, 1, n, 1)
    f = jax.jit(lambda p, t_, m: C.ascend_misreports(eqx.combine(p, static), s, t_, m, 25, 0.05)[1])
    f.lower(params, types, starts).compile()
print(f"{which} b={b}: compile {time.perf_counter() - t:.1f} s", flush=True)
