"""Small shims that keep the library working across jax 0.4.3x .. 0.12."""

from __future__ import annotations

import jax


def enable_x64():
    """Context manager that turns on float64 inside its block only.

    Analytic mechanisms and reference computations compared at 1e-9 run inside it.
    """
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as _ex  # jax < 0.6

    return _ex()


def flops_of(compiled) -> float | None:
    """FLOP count that XLA's cost model assigns to a compiled function (None if unavailable)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # pragma: no cover - backend without a cost model
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost:
        return None
    flops = cost.get("flops")
    return float(flops) if flops is not None and flops > 0 else None

