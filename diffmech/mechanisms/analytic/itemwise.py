"""Item-wise Myerson: each item sold separately by its own optimal auction.

For additive values and priors independent across items, running Myerson's auction (Myerson
1981) on each item j with the bidders' item-j values is DSIC and ex post IR, and its revenue is
Σ_j E[max_i φ̄_ij(v_ij)⁺]. For one buyer and two items iid U[0,1] it sells each item at 1/2 and
earns 0.5 ("selling separately"), below the optimum (12 + 2√2)/27 ≈ 0.5492 of Manelli–Vincent.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Float

from ...errors import ConfigError
from ...outcome import Outcome
from ..base import Mechanism, check_options
from .myerson import Myerson


class ItemwiseMyerson(Mechanism):
    """One :class:`Myerson` auction per item; payments add up over items."""

    auctions: tuple[Myerson, ...]

    kind: ClassVar[str] = "itemwise_myerson"
    summary: ClassVar[str] = "each item sold separately by its own Myerson auction (multi-item, additive)"
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "ItemwiseMyerson":
        check_options(cls.kind, options, ())
        if getattr(setting, "kind", "") != "multi_item":
            raise ConfigError("mechanism 'itemwise_myerson' needs a multi_item setting; for one item use 'myerson'")
        if setting.valuation != "additive" or not setting.independent:
            raise ConfigError(
                "mechanism 'itemwise_myerson' needs additive values and independent priors (no valuation = \"unit_demand\", "
                "no common_weight)"
            )
        return cls(tuple(Myerson(setting.item_priors(j)) for j in range(setting.n_items)))

    def __call__(self, reports: Float[Array, "batch agents items"]) -> Outcome:
        outs = [auction(reports[..., j : j + 1]) for j, auction in enumerate(self.auctions)]
        alloc = jnp.concatenate([o.alloc for o in outs], axis=-1)
        return Outcome(alloc=alloc, payments=sum(o.payments for o in outs))
