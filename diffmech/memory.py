"""The evaluation memory budget: how many units (profiles, reports, own types) one compiled call takes.

Every evaluation kernel is a batched function whose arrays grow linearly with the number u of
units it is given (profiles for the attack, reports for an interim best response, ...). Its memory
is estimated without compiling or running it: the kernel is traced (:func:`jax.make_jaxpr`, no
FLOPs) at u = 2 and u = 3 and the bytes of its inputs and of *every* intermediate array of the
trace are summed — recursively into the bodies of ``jit``, ``scan``, ``while``, ``cond`` and custom
derivatives, each body counted once (a scan step's arrays are dead before the next step starts).
For batched code that count is exactly affine in u ≥ 2 (at u = 1 some broadcasts vanish and it is
smaller),

    B(u) = B₀ + u·b,   b = B(3) − B(2),   B₀ = B(2) − 2b,

and a call takes the largest u with B(u) ≤ ``eval.memory_mb`` MiB (at least one unit: a budget
below one unit is exceeded rather than refused). The count ignores XLA's fusion and buffer
reuse — every intermediate counted as if all were alive at once — so it is an upper bound of the
call's working memory: for a 5 × 10 RegretNet's gradient attack about 13× the temporary memory
that XLA's compiled memory analysis reports (``experiments/memory_5x10.py``; the
``tests/test_chunking.py`` check that the count bounds the compiled figure). Results do not depend
on the chunk size beyond float32 round-off: the evaluators draw random starting points per profile,
not per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import numpy as np

MIB = 1 << 20


class Cost(NamedTuple):
    """Bytes of one call of a kernel with u units: ``fixed + u · per_unit``."""

    fixed: int
    per_unit: int

    def units(self, budget_bytes: int) -> int:
        """The most units whose call fits in ``budget_bytes`` (0 when not even one fits)."""
        return max(0, (int(budget_bytes) - self.fixed) // max(1, self.per_unit))


def _nbytes(aval) -> int:
    shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
    if shape is None or dtype is None:
        return 0
    try:
        return math.prod(shape) * np.dtype(dtype).itemsize
    except TypeError:  # PRNG key arrays and other extended dtypes: count one word per element
        return math.prod(shape) * 4


def _sub_jaxprs(value):
    """The jaxprs held by an equation parameter (closed or open, alone or in a tuple/list)."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    for q in items:
        if hasattr(q, "jaxpr") and hasattr(q, "consts"):  # ClosedJaxpr
            yield q.jaxpr
        elif hasattr(q, "eqns") and hasattr(q, "outvars"):  # Jaxpr
            yield q


def jaxpr_bytes(jaxpr) -> int:
    """Sum of the sizes of every value an equation of ``jaxpr`` produces, sub-jaxprs included."""
    total = 0
    for eqn in jaxpr.eqns:
        total += sum(_nbytes(v.aval) for v in eqn.outvars)
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                total += jaxpr_bytes(sub)
    return total


def traced_bytes(kernel: Callable, *args: Any) -> int:
    """Bytes of ``kernel(*args)``'s inputs plus all its intermediates (module docstring). Array
    arguments may be :class:`jax.ShapeDtypeStruct`; other arguments are static. Wrappers that
    place arrays on devices (``functools.wraps``, e.g. :func:`diffmech.parallel.over_batch`) are
    looked through: the count is that of the whole call, whatever the number of devices sharing it."""
    while hasattr(kernel, "__wrapped__"):
        kernel = kernel.__wrapped__
    closed = eqx.filter_make_jaxpr(kernel)(*args)[0]
    inputs = sum(_nbytes(v.aval) for v in closed.jaxpr.invars)
    return inputs + jaxpr_bytes(closed.jaxpr)


def unit_cost(kernel: Callable, args_for: Callable[[int], tuple]) -> Cost:
    """:class:`Cost` of ``kernel(*args_for(u))`` from traces at u = 2 and u = 3 (module docstring)."""
    b2 = traced_bytes(kernel, *args_for(2))
    b3 = traced_bytes(kernel, *args_for(3))
    per = max(1, b3 - b2)
    return Cost(max(0, b2 - 2 * per), per)


def budget_bytes(cfg) -> int:
    """``cfg.memory_mb`` (an :class:`~diffmech.config.EvalConfig`) in bytes."""
    return int(cfg.memory_mb * MIB)


def units_per_call(kernel: Callable, args_for: Callable[[int], tuple], total: int, cfg, evals_per_unit: int = 1) -> int:
    """Units per compiled call of ``kernel``: the most that fit in ``cfg.memory_mb``, at most
    ``cfg.chunk // evals_per_unit`` when the optional cap ``cfg.chunk`` (mechanism evaluations per
    call) is set, at most ``total`` and at least 1."""
    size = unit_cost(kernel, args_for).units(budget_bytes(cfg))
    return clamp(size, total, cfg, evals_per_unit)


def clamp(size: int, total: int, cfg, evals_per_unit: int = 1) -> int:
    """``size`` limited by the cap ``cfg.chunk // evals_per_unit`` (when set) and ``total``, ≥ 1."""
    if getattr(cfg, "chunk", 0):
        size = min(size, cfg.chunk // max(1, evals_per_unit))
    return max(1, min(int(size), int(total)))


def shaped(x, rows: int, axis: int = 0) -> jax.ShapeDtypeStruct:
    """The abstract array ``x`` with ``rows`` entries along ``axis`` (for :func:`unit_cost`)."""
    shape = list(x.shape)
    shape[axis] = rows
    return jax.ShapeDtypeStruct(tuple(shape), x.dtype)
