"""Manelli–Vincent: the optimal mechanism for one buyer, two items, values iid U[0,1], additive.

Manelli and Vincent (2006) show that the optimum is deterministic: a menu that offers each item
alone at 2/3 and both items together at (4 − √2)/3. The buyer takes the option of highest utility
(nothing, item 1, item 2, or the bundle):

    u(v) = max(0, v_1 − 2/3, v_2 − 2/3, v_1 + v_2 − (4 − √2)/3),

and the expected revenue is (12 + 2√2)/27 ≈ 0.549201 (selling separately earns 0.5, pure bundling
0.5443). A menu chosen by the buyer is DSIC and ex post IR.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Float

from ...errors import ConfigError
from ...outcome import Outcome
from ..base import Mechanism, check_options, float_dtype

ITEM_PRICE = 2.0 / 3.0
BUNDLE_PRICE = (4.0 - math.sqrt(2.0)) / 3.0
REVENUE = (12.0 + 2.0 * math.sqrt(2.0)) / 27.0


class ManelliVincent(Mechanism):
    """The menu {item 1 at 2/3, item 2 at 2/3, both at (4 − √2)/3}; the buyer picks her best."""

    kind: ClassVar[str] = "manelli_vincent"
    summary: ClassVar[str] = "optimal menu for 1 buyer × 2 items iid U[0,1] (Manelli–Vincent 2006)"
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "ManelliVincent":
        check_options(cls.kind, options, ())
        ok = getattr(setting, "kind", "") == "multi_item" and setting._is_manelli_vincent()
        if not ok:
            raise ConfigError("mechanism 'manelli_vincent' is the optimum for 1 buyer and 2 items iid U[0,1] only")
        return cls()

    def __call__(self, reports: Float[Array, "batch 1 2"]) -> Outcome:
        v = jnp.asarray(reports)
        dtype = float_dtype(v)
        v = v[:, 0].astype(dtype)  # (batch, 2)
        # options: nothing, item 1, item 2, bundle — allocations (4, 2) and prices (4,)
        allocs = jnp.asarray([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype)
        prices = jnp.asarray([0.0, ITEM_PRICE, ITEM_PRICE, BUNDLE_PRICE], dtype)
        utility = v @ allocs.T - prices  # (batch, 4)
        choice = jnp.argmax(utility, axis=-1)
        return Outcome(alloc=allocs[choice][:, None, :], payments=prices[choice][:, None])
