"""Several heterogeneous items sold to n bidders with additive values (the multi-item setting of
RegretNet and of Bikhchandani–Mishra's heterogeneous-objects model).

Bidder i's type is a vector v_i ∈ R^m (shape ``(batch, n, m)``), one value per item, drawn
independently across bidders and items from the priors F_ij. Her value for an outcome is additive,

    value_i = Σ_j v_ij · alloc_ij,      with Σ_i alloc_ij ≤ 1 for every item j,

and the designer's objective is revenue Σ_i p_i. Correlated (exchangeable) priors, unit-demand
values and the identical-objects model are the next steps of issue 3.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from ..outcome import Outcome
from ..priors import Prior, prior_from_config, priors_from_list
from .base import Setting

MAX_AGENTS = 20
MAX_ITEMS = 50


def _count(cfg: dict, key: str, top: int) -> int:
    v = cfg.pop(key, None)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top:
        raise ConfigError(f"setting.{key} must be an integer between 1 and {top}, got {v!r}")
    return v


class MultiItem(Setting):
    """``n`` bidders, ``m`` items, additive values, independent priors per (bidder, item).

    ``priors[i][j]`` is the prior of bidder i's value for item j.
    """

    priors: tuple[tuple[Prior, ...], ...]
    kind: ClassVar[str] = "multi_item"
    summary: ClassVar[str] = (
        "m items, n bidders, additive values, independent priors "
        "(keys: n_agents, n_items, and prior | item_priors | priors)"
    )
    benchmarks: ClassVar[tuple[str, ...]] = ("itemwise_myerson",)

    def __init__(self, priors):
        priors = tuple(tuple(row) for row in priors)
        if not 1 <= len(priors) <= MAX_AGENTS:
            raise ConfigError(f"multi_item needs between 1 and {MAX_AGENTS} bidders, got {len(priors)}")
        widths = {len(row) for row in priors}
        if len(widths) != 1 or not 1 <= widths.pop() <= MAX_ITEMS:
            raise ConfigError(f"multi_item needs the same number (1..{MAX_ITEMS}) of item priors for every bidder")
        self.priors = priors

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "MultiItem":
        cfg = dict(cfg)
        cfg.pop("kind", None)
        valuation = cfg.pop("valuation", "additive")
        if valuation != "additive":
            raise ConfigError(f"setting.valuation {valuation!r} is not available yet; use \"additive\"")
        forms = [k for k in ("prior", "item_priors", "priors") if k in cfg]
        if len(forms) != 1:
            raise ConfigError(
                "multi_item needs exactly one of 'prior' (iid over bidders and items), 'item_priors' "
                "(one table per item, iid over bidders) or 'priors' (one list of item tables per bidder)"
            )
        form = forms[0]
        if form == "prior":
            n, m = _count(cfg, "n_agents", MAX_AGENTS), _count(cfg, "n_items", MAX_ITEMS)
            p = prior_from_config(cfg.pop("prior"), "setting.prior")
            priors = [[p] * m for _ in range(n)]
        elif form == "item_priors":
            n = _count(cfg, "n_agents", MAX_AGENTS)
            row = priors_from_list(cfg.pop("item_priors"), "setting.item_priors", "item")
            if "n_items" in cfg and cfg.pop("n_items") != len(row):
                raise ConfigError("setting.n_items disagrees with the length of setting.item_priors; drop one")
            priors = [row] * n
        else:
            rows = cfg.pop("priors")
            if not isinstance(rows, list) or not rows:
                raise ConfigError("setting.priors must be a list (one per bidder) of non-empty lists of item tables")
            for key in ("n_agents", "n_items"):
                cfg.pop(key, None)
            priors = [priors_from_list(r, f"setting.priors.{i}", "item") for i, r in enumerate(rows)]
        if cfg:
            raise ConfigError(f"unknown key(s) in [setting] for multi_item: {', '.join(sorted(cfg))}")
        return cls(priors)

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "priors": [[p.to_config() for p in row] for row in self.priors]}

    @property
    def n_agents(self) -> int:
        return len(self.priors)

    @property
    def n_items(self) -> int:
        return len(self.priors[0])

    @property
    def type_dim(self) -> int:
        return self.n_items

    def item_priors(self, j: int) -> tuple[Prior, ...]:
        """The bidders' priors for item j (the single-item setting of that item)."""
        return tuple(row[j] for row in self.priors)

    def sample(self, key, n):
        keys = jax.random.split(key, self.n_agents * self.n_items)
        cols = [p.sample(keys[i * self.n_items + j], (n,)) for i, row in enumerate(self.priors) for j, p in enumerate(row)]
        return jnp.stack(cols, axis=1).reshape(n, self.n_agents, self.n_items)

    def type_bounds(self):
        lo = np.array([[p.low for p in row] for row in self.priors], dtype=np.float64)
        hi = np.array([[p.high for p in row] for row in self.priors], dtype=np.float64)
        return lo, hi

    def values(self, types, outcome: Outcome):
        return jnp.sum(types * outcome.alloc, axis=-1)

    def attack_grid(self, n_points: int):
        """An exhaustive product grid of own reports when there are at most two items
        (⌊n_points^(1/m)⌋ points per item); ``None`` beyond (gradient attack only)."""
        if self.n_items > 2:
            return None
        per = max(2, int(np.floor(n_points ** (1.0 / self.n_items) + 1e-9)))
        lo, hi = self.type_bounds()
        grids = []
        for i in range(self.n_agents):
            axes = [np.linspace(lo[i, j], hi[i, j], per) for j in range(self.n_items)]
            mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, self.n_items)
            grids.append(mesh)
        return jnp.asarray(np.stack(grids))

    def describe(self) -> str:
        return f"{self.n_items} items, {self.n_agents} bidder(s), additive values"
