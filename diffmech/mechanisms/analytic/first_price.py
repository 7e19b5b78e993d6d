"""First-price sealed-bid auction with an anonymous reserve.

Rule: the bidders with the highest bid win if that bid is ≥ r, ties split evenly, and a winner pays
her own bid: a_i(b) = 1{b_i = max_j b_j ≥ r} / #{j : b_j = max_j b_j}, p_i(b) = a_i(b) · b_i.

It is *not* DSIC: under truthful bidding a winner's utility is v_i − v_i = 0, and shading the bid
below v_i (while still winning) gives positive utility, so the ex post regret at truthful reports is
positive. The library uses it to check that the regret attack detects manipulability. It is ex post
IR (p_i ≤ b_i a_i at truthful reports).
"""

from __future__ import annotations

from typing import Any, ClassVar

from jaxtyping import Array, Float

from ...outcome import Outcome
from ..base import Mechanism, require_single_item
from .second_price import _parse_reserve, highest_bidders


class FirstPrice(Mechanism):
    """First-price auction (pay your bid) with an anonymous reserve.

    Attributes:
        reserve: anonymous reserve price r ≥ 0 (option ``reserve``, default 0).
    """

    reserve: float = 0.0

    kind: ClassVar[str] = "first_price"
    summary: ClassVar[str] = "first-price auction, pay your bid (not DSIC; option: reserve)"
    trainable: ClassVar[bool] = False
    dsic_by_construction: ClassVar[bool] = False
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "FirstPrice":
        require_single_item(setting, cls.kind)
        return cls(reserve=_parse_reserve(options, cls.kind))

    def __call__(self, reports: Float[Array, "batch agents 1"]) -> Outcome:
        b, alloc = highest_bidders(reports, self.reserve)
        return Outcome(alloc=alloc[..., None], payments=alloc * b)
