"""Device meshes for data parallelism: one mesh axis ``"data"`` over all devices.

Training and evaluation are data parallel. A batch of B profiles is split along its leading axis
into D equal blocks, one per device (``NamedSharding(mesh, P("data"))``); parameters, optimizer
state, multipliers and the training set are replicated (``P()``). Every quantity the code computes
is a mean or a per-profile value, so for a mean over the batch

    (1/B) Σ_b f(x_b) = (1/D) Σ_d (D/B) Σ_{b ∈ block d} f(x_b),

and likewise for its gradient: XLA's SPMD partitioner computes the per-block sums on their devices
and inserts the all-reduce. Sharding never changes what is computed, only where; results on D
devices differ from one device only by the order of floating-point summation.

Every helper here is a no-op on one device (the single-device path issues no sharding call at all)
and falls back to replication, without error, when the leading dimension is not a multiple of the
device count. :func:`initialize_distributed` joins several processes (hosts) into one JAX system when
the launcher set the usual environment variables; the mesh then spans the devices of all hosts.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .errors import ConfigError

AXIS = "data"


# ----------------------------------------------------------------------------- the mesh


@functools.cache
def data_mesh() -> Mesh:
    """A one-axis mesh named ``"data"`` over ``jax.devices()`` (all hosts' devices)."""
    return Mesh(jax.devices(), (AXIS,))


def device_count() -> int:
    return jax.device_count()


def is_parallel() -> bool:
    """Whether there is more than one device (else every helper below returns its input)."""
    return jax.device_count() > 1


def batch_sharding() -> NamedSharding:
    return NamedSharding(data_mesh(), P(AXIS))


def replicated_sharding() -> NamedSharding:
    return NamedSharding(data_mesh(), P())


def _divisible(x) -> bool:
    return getattr(x, "ndim", 0) >= 1 and x.shape[0] % jax.device_count() == 0


def _put(x, sharding: NamedSharding):
    """``x`` (the same value on every process) placed with ``sharding``; across several processes
    each one supplies the blocks of its own devices."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


# ----------------------------------------------------------------------------- placement


def shard_batch(x):
    """``x`` split along its leading (batch) axis over the devices; replicated if that axis is not a
    multiple of the device count; ``x`` itself on one device."""
    if not is_parallel():
        return x
    return _put(x, batch_sharding() if _divisible(x) else replicated_sharding())


def replicate(tree):
    """Every array leaf of ``tree`` copied to all devices; ``tree`` itself on one device."""
    if not is_parallel():
        return tree
    sharding = replicated_sharding()
    return jax.tree_util.tree_map(lambda x: _put(x, sharding) if _is_array(x) else x, tree)


def constrain_batch(x):
    """Inside ``jit``: ``x`` split along its leading axis (``with_sharding_constraint``), or
    replicated if that axis is not a multiple of the device count. Under ``vmap`` the constraint
    applies to the unbatched shape, i.e. to the axis after the mapped one."""
    if not is_parallel():
        return x
    return jax.lax.with_sharding_constraint(x, batch_sharding() if _divisible(x) else replicated_sharding())


def constrain_replicated(tree):
    """Inside ``jit``: every array leaf of ``tree`` replicated on all devices."""
    if not is_parallel():
        return tree
    sharding = replicated_sharding()
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, sharding) if _is_array(x) else x, tree)


def round_up(size: int) -> int:
    """The smallest multiple of the device count ≥ ``size``."""
    d = jax.device_count()
    return -(-size // d) * d


@functools.cache
def _gather_fn():
    return jax.jit(lambda tree: tree, out_shardings=replicated_sharding())


def over_batch(fn: Callable, argnums: tuple[int, ...]) -> Callable:
    """``fn`` (a compiled kernel whose outputs all have the profile axis first) run data parallel:
    the arguments at ``argnums`` (profile axis first, all of one length m) are padded to a multiple
    of the device count by repeating their last row and sharded along that axis; the outputs are
    gathered (replicated on every device, so that every host can read them) and cut back to m rows.
    On one device, ``fn`` itself."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        if not is_parallel():
            return fn(*args, **kwargs)
        m = args[argnums[0]].shape[0]
        size = round_up(m)
        args = list(args)
        for i in argnums:
            x = args[i]
            if size > m:
                x = jax.numpy.concatenate([x, jax.numpy.repeat(x[-1:], size - m, axis=0)], axis=0)
            args[i] = shard_batch(x)
        out = _gather_fn()(fn(*args, **kwargs))
        return jax.tree_util.tree_map(lambda y: y[:m] if size > m else y, out)

    return wrapped


# ----------------------------------------------------------------------------- several hosts

_EXPLICIT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
# what jax.distributed.initialize() detects by itself (jax/_src/clusters): Slurm (srun) and Open MPI (mpirun)
_SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
_OMPI = ("OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK")
_initialized = False


def _int_var(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"environment variable {name}={env[name]!r} must be an integer") from None


def distributed_spec(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """How to join the processes described by ``env`` (default ``os.environ``): None to stay one
    process, else the keyword arguments of ``jax.distributed.initialize`` (empty when jax detects
    the cluster itself).

    - explicit: ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0), ``JAX_NUM_PROCESSES`` and
      ``JAX_PROCESS_ID`` (0 ≤ id < number), all three or none;
    - Slurm (several tasks launched by ``srun``) and Open MPI (``mpirun -np N`` with N > 1), whose
      variables ``jax.distributed.initialize()`` reads itself;
    - ``DIFFMECH_DISTRIBUTED=0`` turns all of this off (e.g. independent runs under ``srun -n K``).
    """
    env = os.environ if env is None else env
    if env.get("DIFFMECH_DISTRIBUTED", "").strip().lower() in ("0", "false", "no", "off"):
        return None
    present = [v for v in _EXPLICIT if env.get(v, "") != ""]
    if present:
        missing = [v for v in _EXPLICIT if v not in present]
        if missing:
            raise ConfigError(f"{', '.join(present)} set but {', '.join(missing)} not; set all of {', '.join(_EXPLICIT)} or none")
        address = env["JAX_COORDINATOR_ADDRESS"]
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"JAX_COORDINATOR_ADDRESS={address!r} must be host:port of process 0 (e.g. 10.0.0.1:1234)")
        n, i = _int_var(env, "JAX_NUM_PROCESSES"), _int_var(env, "JAX_PROCESS_ID")
        if n < 1 or not 0 <= i < n:
            raise ConfigError(f"JAX_PROCESS_ID={i} and JAX_NUM_PROCESSES={n} need 0 ≤ JAX_PROCESS_ID < JAX_NUM_PROCESSES")
        return {"coordinator_address": address, "num_processes": n, "process_id": i}
    for names, count in ((_SLURM, "SLURM_NTASKS"), (_OMPI, "OMPI_COMM_WORLD_SIZE")):
        if all(v in env for v in names) and _int_var(env, count) > 1:
            return {}
    return None


def initialize_distributed(env: Mapping[str, str] | None = None) -> bool:
    """Join the other processes of a multi-host run (``jax.distributed.initialize``) when ``env``
    describes one (:func:`distributed_spec`); do nothing otherwise. Call it before any JAX
    computation. Returns whether this process is (now) part of a multi-process system."""
    global _initialized
    spec = distributed_spec(env)
    if spec is None:
        return False
    if _initialized:
        return True
    try:
        jax.distributed.initialize(**spec)
    except (RuntimeError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"jax.distributed.initialize failed ({first}); check the coordinator address and process variables") from None
    _initialized = True
    return True
