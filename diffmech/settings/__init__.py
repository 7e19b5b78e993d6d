"""Settings registry: ``kind`` in a config's ``[setting]`` table → setting class."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import Setting
from .efficient import Efficient
from .identical_items import IdenticalItems
from .multi_item import MultiItem
from .public_goods import PublicGoods
from .single_item import SingleItem
from .social_choice import SocialChoice

SETTINGS: dict[str, type[Setting]] = {cls.kind: cls for cls in (SingleItem, MultiItem, IdenticalItems, PublicGoods, Efficient, SocialChoice)}


def setting_from_config(cfg: Any) -> Setting:
    if not isinstance(cfg, dict):
        raise ConfigError("the config needs a [setting] table with a 'kind'")
    kind = cfg.get("kind")
    if not isinstance(kind, str) or kind not in SETTINGS:
        raise ConfigError(f"unknown setting kind {kind!r}; choose one of: {', '.join(SETTINGS)}")
    return SETTINGS[kind].from_config(cfg)


__all__ = ["SETTINGS", "Efficient", "IdenticalItems", "MultiItem", "PublicGoods", "Setting", "SingleItem", "SocialChoice", "setting_from_config"]
