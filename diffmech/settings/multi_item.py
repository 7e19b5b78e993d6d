"""Several heterogeneous items sold to n bidders (the multi-item setting of RegretNet and the
heterogeneous-objects model M^H of Bikhchandani–Mishra).

Bidder i's type is a vector v_i ∈ R^m (shape ``(batch, n, m)``), one value per item. Her value for a
(randomised) allocation is

    value_i = Σ_j v_ij · alloc_ij,      Σ_i alloc_ij ≤ 1 for every item j            (additive)

and, with ``valuation = "unit_demand"``, the bidder wants at most one item, so that feasible
allocations are also row-sub-stochastic, Σ_j alloc_ij ≤ 1 (alloc_i is a lottery over single items,
worth Σ_j v_ij alloc_ij). The designer's objective is revenue Σ_i p_i.

Priors: independent across bidders and items (three config forms), or exchangeable and
correlated across items (``common_weight`` w ∈ [0, 1) with the iid form):

    v_ij = w · z_i + (1 − w) · x_ij,      z_i, x_ij iid from the base prior,

an average of a bidder-specific common shock and idiosyncratic parts (the "efficiency × market
size" story of Bikhchandani–Mishra Section 4, in additive form). It stays on the base support,
is exchangeable across items (their density f^H(v) = f^H(v^σ)), and the correlation between two
items is w² / (w² + (1 − w)²).
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from ..outcome import Outcome
from ..priors import Prior, prior_from_config, priors_from_list
from .base import Setting

MAX_AGENTS = 20
MAX_ITEMS = 50
VALUATIONS = ("additive", "unit_demand")


def _count(cfg: dict, key: str, top: int) -> int:
    v = cfg.pop(key, None)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top:
        raise ConfigError(f"setting.{key} must be an integer between 1 and {top}, got {v!r}")
    return v


class MultiItem(Setting):
    """``n`` bidders, ``m`` items, additive or unit-demand values.

    ``priors[i][j]`` is the prior of bidder i's value for item j (the base prior when
    ``common_weight`` > 0, which needs one prior for all bidders and items).
    """

    priors: tuple[tuple[Prior, ...], ...]
    valuation: str = eqx.field(static=True)
    common_weight: float = eqx.field(static=True)
    kind: ClassVar[str] = "multi_item"
    priors_via_data: ClassVar[bool] = True
    summary: ClassVar[str] = (
        "m items, n bidders, additive or unit-demand values, independent or exchangeable priors "
        "(keys: n_agents, n_items, prior | item_priors | priors, valuation, common_weight)"
    )
    #: all benchmarks this setting may use; :meth:`benchmark_names` picks those that apply
    benchmarks: ClassVar[tuple[str, ...]] = ("itemwise_myerson", "bundle_price", "uniform_item_price", "vcg", "manelli_vincent")

    def __init__(self, priors, valuation: str = "additive", common_weight: float = 0.0):
        priors = tuple(tuple(row) for row in priors)
        if not 1 <= len(priors) <= MAX_AGENTS:
            raise ConfigError(f"multi_item needs between 1 and {MAX_AGENTS} bidders, got {len(priors)}")
        widths = {len(row) for row in priors}
        if len(widths) != 1 or not 1 <= widths.pop() <= MAX_ITEMS:
            raise ConfigError(f"multi_item needs the same number (1..{MAX_ITEMS}) of item priors for every bidder")
        if valuation not in VALUATIONS:
            raise ConfigError(f"setting.valuation must be one of {', '.join(VALUATIONS)}, got {valuation!r}")
        if isinstance(common_weight, bool) or not isinstance(common_weight, (int, float)) or not 0.0 <= common_weight < 1.0:
            raise ConfigError(f"setting.common_weight must be a number in [0, 1), got {common_weight!r}")
        if common_weight > 0 and len({p.to_config().__repr__() for row in priors for p in row}) != 1:
            raise ConfigError("setting.common_weight needs one prior for every bidder and item; use the 'prior' form")
        self.priors = priors
        self.valuation = valuation
        self.common_weight = float(common_weight)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "MultiItem":
        cfg = dict(cfg)
        cfg.pop("kind", None)
        valuation = cfg.pop("valuation", "additive")
        common_weight = cfg.pop("common_weight", 0.0)
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
        return cls(priors, valuation, common_weight)

    def to_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"kind": self.kind, "priors": [[p.to_config() for p in row] for row in self.priors]}
        if self.valuation != "additive":
            cfg["valuation"] = self.valuation
        if self.common_weight:
            cfg["common_weight"] = self.common_weight
        return cfg

    @property
    def feasibility(self) -> str:
        return "unit_demand" if self.valuation == "unit_demand" else "items"

    @property
    def exchangeable(self) -> bool:
        """Whether each bidder's values are exchangeable across items (one prior for all items)."""
        return all(len({repr(p.to_config()) for p in row}) == 1 for row in self.priors)

    @property
    def independent(self) -> bool:
        return self.common_weight == 0.0

    def benchmark_names(self) -> tuple[str, ...]:
        from ..mechanisms import MECHANISMS

        names = []
        if self.independent and self.valuation == "additive":
            names.append("itemwise_myerson")
        if self.n_agents == 1:
            names.append("bundle_price" if self.valuation == "additive" else "uniform_item_price")
            if self._is_manelli_vincent():
                names.append("manelli_vincent")
        elif self.valuation == "additive" or self._vcg_enumerable():
            names.append("vcg")
        return tuple(n for n in names if n in MECHANISMS)

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
        k_items, k_common = jax.random.split(key)
        keys = jax.random.split(k_items, self.n_agents * self.n_items)
        cols = [p.sample(keys[i * self.n_items + j], (n,)) for i, row in enumerate(self.priors) for j, p in enumerate(row)]
        v = jnp.stack(cols, axis=1).reshape(n, self.n_agents, self.n_items)
        if self.common_weight:
            w = self.common_weight
            z = self.priors[0][0].sample(k_common, (n, self.n_agents, 1)).astype(v.dtype)
            v = w * z + (1.0 - w) * v
        return v

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

    def _vcg_enumerable(self) -> bool:
        from ..mechanisms.neural.affine_maximizer import MAX_ALLOCATIONS, count_allocations

        return count_allocations(self.n_agents, self.n_items, self.valuation) <= MAX_ALLOCATIONS

    def _is_manelli_vincent(self) -> bool:
        """One buyer, two additive items iid U[0,1]: the setting of the Manelli–Vincent optimum."""
        unit = {"dist": "uniform", "low": 0.0, "high": 1.0}
        return (
            self.n_agents == 1 and self.n_items == 2 and self.valuation == "additive" and self.independent
            and all(p.to_config() == unit for p in self.priors[0])
        )

    def identical(self):
        """The identical-objects model M^I equivalent to this one (one buyer, exchangeable prior):
        its prior is the law of the sorted values (Bikhchandani–Mishra Theorem 2, f^I = n!·f^H on
        the ordered cone)."""
        from .identical_items import IdenticalItems

        return IdenticalItems(self)

    def describe(self) -> str:
        corr = f", exchangeable (common weight {self.common_weight:g})" if self.common_weight else ""
        return f"{self.n_items} items, {self.n_agents} bidder(s), {self.valuation.replace('_', '-')} values{corr}"
