"""Settings registry: ``kind`` in a config's ``[setting]`` table → setting class."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import Setting
from .multi_item import MultiItem
from .single_item import SingleItem

SETTINGS: dict[str, type[Setting]] = {SingleItem.kind: SingleItem, MultiItem.kind: MultiItem}


def setting_from_config(cfg: Any) -> Setting:
    if not isinstance(cfg, dict):
        raise ConfigError("the config needs a [setting] table with a 'kind'")
    kind = cfg.get("kind")
    if not isinstance(kind, str) or kind not in SETTINGS:
        raise ConfigError(f"unknown setting kind {kind!r}; choose one of: {', '.join(SETTINGS)}")
    return SETTINGS[kind].from_config(cfg)


__all__ = ["SETTINGS", "MultiItem", "Setting", "SingleItem", "setting_from_config"]
