"""Identical objects with decreasing marginal values: the model M^I of Bikhchandani–Mishra (§2).

One buyer, n identical units. Her type is the vector of marginal values v = (v_1, …, v_n) with
v_1 ≥ v_2 ≥ … ≥ v_n (shape ``(batch, 1, n)``); an allocation q = (q_1, …, q_n) gives q_k, the
probability of receiving at least k units, so feasibility is

    q_1 ≥ q_2 ≥ … ≥ q_n                                                          (eq. (1))

and her value is v·q = Σ_k v_k q_k (Σ_k v_k·P(exactly k units)·… telescoped). Every mechanism for
this setting must satisfy (1) by construction (the setting's ``feasibility`` is ``"units"``).

The prior is the law of the sorted values of an exchangeable heterogeneous model M^H (a one-buyer
:class:`~diffmech.settings.multi_item.MultiItem` whose items share one prior): by Theorem 2 its
density is f^I(v) = n!·f^H(v) on the ordered cone, and the optimal revenues of the two models are
equal. Misreports are projected back onto the cone by sorting (clip to the box, then sort in
decreasing order), so an attack only ever tries types of this model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from ..outcome import Outcome
from .base import Setting
from .multi_item import MultiItem


class IdenticalItems(Setting):
    """n identical units, one buyer with decreasing marginal values (sorted types).

    Built from the heterogeneous model it is equivalent to (``source``); config keys are those of
    a one-buyer ``multi_item`` with the ``prior`` form: ``n_items``, ``prior``, ``common_weight``.
    """

    source: MultiItem
    kind: ClassVar[str] = "identical_items"
    priors_via_data: ClassVar[bool] = True
    summary: ClassVar[str] = (
        "n identical units, one buyer with decreasing marginal values = sorted values of an exchangeable "
        "prior (keys: n_items, prior, common_weight)"
    )
    benchmarks: ClassVar[tuple[str, ...]] = ("uniform_price",)

    def __init__(self, source: MultiItem):
        if not isinstance(source, MultiItem) or source.n_agents != 1 or source.valuation != "additive" or not source.exchangeable:
            raise ConfigError(
                "identical_items is the sorted form of a one-buyer, additive multi_item setting with one prior "
                "for all items (an exchangeable prior)"
            )
        self.source = source

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "IdenticalItems":
        cfg = dict(cfg)
        cfg.pop("kind", None)
        n_agents = cfg.pop("n_agents", 1)
        if n_agents != 1:
            raise ConfigError("identical_items has one buyer (the model of Bikhchandani–Mishra); drop n_agents or set it to 1")
        if "prior" not in cfg:
            raise ConfigError("identical_items needs 'prior' (the marginal of each unsorted value) and 'n_items'")
        known = {"n_items", "prior", "common_weight"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) in [setting] for identical_items: {', '.join(unknown)}")
        return cls(MultiItem.from_config({"kind": "multi_item", "n_agents": 1, **cfg}))

    def to_config(self) -> dict[str, Any]:
        src = self.source
        cfg: dict[str, Any] = {"kind": self.kind, "n_items": src.n_items, "prior": src.priors[0][0].to_config()}
        if src.common_weight:
            cfg["common_weight"] = src.common_weight
        return cfg

    def heterogeneous(self) -> MultiItem:
        """The exchangeable heterogeneous-objects model this one is the sorted form of."""
        return self.source

    @property
    def feasibility(self) -> str:
        return "units"

    @property
    def n_agents(self) -> int:
        return 1

    @property
    def n_items(self) -> int:
        return self.source.n_items

    @property
    def type_dim(self) -> int:
        return self.source.n_items

    def sample(self, key, n):
        return -jnp.sort(-self.source.sample(key, n), axis=-1)

    def type_bounds(self):
        return self.source.type_bounds()

    def values(self, types, outcome: Outcome):
        return jnp.sum(types * outcome.alloc, axis=-1)

    def project(self, reports):
        return -jnp.sort(-super().project(reports), axis=-1)

    def attack_grid(self, n_points: int):
        """All sorted grid types v_1 ≥ v_2 (two units; about n_points of them), else ``None``."""
        if self.n_items > 2:
            return None
        lo, hi = self.type_bounds()
        if self.n_items == 1:
            return jnp.asarray(np.linspace(lo[0, 0], hi[0, 0], max(2, n_points))[None, :, None])
        per = max(2, int(np.floor(np.sqrt(2.0 * n_points))))
        axis = np.linspace(lo[0, 0], hi[0, 0], per)
        a, b = np.meshgrid(axis, axis, indexing="ij")
        keep = a >= b
        return jnp.asarray(np.stack([a[keep], b[keep]], axis=-1)[None])

    def describe(self) -> str:
        corr = f", exchangeable (common weight {self.source.common_weight:g})" if self.source.common_weight else ""
        return f"{self.n_items} identical units, 1 buyer, decreasing marginal values{corr}"
