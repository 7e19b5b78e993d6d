"""Example 1 of Bikhchandani–Mishra: a symmetric mechanism that is not rank preserving.

One buyer, two objects, t ≡ 0 and

    q(v_1, v_2) = (0, 1) if v_1 > v_2,    (1, 0) if v_1 < v_2     (ties: (1/2, 1/2)),

i.e. the buyer gets the object she values less, for free. It is symmetric (Definition 1) and IC on
each cone D(σ) separately, but not IC: a type with v_1 > v_2 gains v_1 − v_2 by reporting the swapped
type. It is the symmetric extension of its restriction to D(σ^I), so it shows that Lemma 2 needs
rank preservation. Generalised here to m objects: the object of lowest value (ties split).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Float

from ...errors import ConfigError
from ...outcome import Outcome
from ..base import Mechanism, check_options, float_dtype


class RankReversing(Mechanism):
    """Give the lowest-valued object for free (B–M Example 1); symmetric, not rank preserving."""

    kind: ClassVar[str] = "rank_reversing"
    summary: ClassVar[str] = "B–M Example 1: the lowest-valued object for free (symmetric, not rank preserving, not IC)"
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "RankReversing":
        check_options(cls.kind, options, ())
        if getattr(setting, "n_agents", None) != 1 or getattr(setting, "kind", "") != "multi_item":
            raise ConfigError("mechanism 'rank_reversing' (B–M Example 1) is for one buyer and several items (multi_item)")
        return cls()

    def __call__(self, reports: Float[Array, "batch 1 m"]) -> Outcome:
        v = jnp.asarray(reports)
        v = v.astype(float_dtype(v))
        lowest = v == v.min(axis=-1, keepdims=True)
        alloc = lowest / lowest.sum(axis=-1, keepdims=True)
        return Outcome(alloc=alloc.astype(v.dtype), payments=jnp.zeros(v.shape[:2], v.dtype))
