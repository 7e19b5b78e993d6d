"""Mechanism registry: ``kind`` in a config's ``[mechanism]`` table → mechanism class.

A new mechanism is one new file plus one entry here.
"""

from __future__ import annotations

from typing import Any

import jax

from ..errors import ConfigError
from .analytic.first_price import FirstPrice
from .analytic.hierarchical import Hierarchical
from .analytic.itemwise import ItemwiseMyerson
from .analytic.ke_two_agent import KeM2, KeM3
from .analytic.ke_generic import AGV, EfficientVCG
from .analytic.ke_private import FirstPriceRedistribution, KeM1
from .analytic.manelli_vincent import ManelliVincent
from .analytic.myerson import Myerson
from .analytic.posted_prices import BundlePrice, UniformItemPrice
from .analytic.public_goods import FirstBest, OptimalCutoff
from .analytic.public_lp_mechanism import NoExclusion, PublicLP, SeparateProvision
from .analytic.public_separate import SeparateOptimal
from .analytic.rank_reversing import RankReversing
from .analytic.second_price import VCG, BestReserveSecondPrice, SecondPrice
from .analytic.uniform_price import UniformPrice
from .base import Mechanism
from .neural.affine_maximizer import AffineMaximizer
from .neural.bb_payments import BudgetBalancedPayments
from .neural.equivariant import EquivariantNet
from .neural.monotone import MonotoneNet
from .neural.public_general import PublicGeneralNet
from .neural.public_simple import PublicSimpleNet
from .neural.regretnet import RegretNet
from .neural.rochetnet import RochetNet
from .neural.social_choice_net import SocialChoiceNet
from .symmetric_auction import SymmetricAuction
from .transforms import SymmetricExtension, Symmetrised

MECHANISMS: dict[str, type[Mechanism]] = {
    cls.kind: cls
    for cls in (RegretNet, RochetNet, AffineMaximizer, EquivariantNet, MonotoneNet, PublicSimpleNet, PublicGeneralNet, BudgetBalancedPayments, Myerson, Hierarchical, SecondPrice, BestReserveSecondPrice, VCG, FirstPrice, ItemwiseMyerson, ManelliVincent, BundlePrice, UniformItemPrice, UniformPrice, RankReversing, SymmetricExtension, Symmetrised, PublicLP, SeparateProvision, NoExclusion, FirstBest, OptimalCutoff, SeparateOptimal, EfficientVCG, AGV, KeM1, FirstPriceRedistribution, KeM2, KeM3, SymmetricAuction, SocialChoiceNet)
}


def mechanism_from_config(setting, cfg: Any, key: jax.Array | None = None) -> Mechanism:
    """Build the mechanism described by a ``[mechanism]`` table for ``setting``."""
    if not isinstance(cfg, dict):
        raise ConfigError("the config needs a [mechanism] table with a 'kind'")
    options = dict(cfg)
    kind = options.pop("kind", None)
    if not isinstance(kind, str) or kind not in MECHANISMS:
        raise ConfigError(f"unknown mechanism kind {kind!r}; choose one of: {', '.join(MECHANISMS)}")
    if key is None:
        key = jax.random.PRNGKey(0)
    return MECHANISMS[kind].from_config(setting, options, key)


__all__ = ["MECHANISMS", "Mechanism", "mechanism_from_config"] + [c.__name__ for c in MECHANISMS.values()]
