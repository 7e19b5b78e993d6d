"""One item, n bidders with independent (possibly asymmetric) priors; value = v_i × share."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from ..outcome import Outcome
from ..priors import Prior, prior_from_config, priors_from_list
from .base import Setting

MAX_BIDDERS = 20


class SingleItem(Setting):
    """A single indivisible item sold to ``n`` bidders with independent private values.

    Bidder i's type is a scalar v_i ~ F_i (shape ``(batch, n, 1)``); her value for an outcome is
    v_i·alloc_i where alloc_i ∈ [0, 1] is her probability of receiving the item, Σ_i alloc_i ≤ 1.
    """

    priors: tuple[Prior, ...]
    kind: ClassVar[str] = "single_item"
    priors_via_data: ClassVar[bool] = True
    summary: ClassVar[str] = "one item, 1..20 bidders, independent priors (keys: priors | prior + n_agents)"
    benchmarks: ClassVar[tuple[str, ...]] = ("myerson", "second_price", "second_price_best_reserve")

    def __init__(self, priors):
        priors = tuple(priors)
        if not 1 <= len(priors) <= MAX_BIDDERS:
            raise ConfigError(
                f"single_item needs between 1 and {MAX_BIDDERS} bidders, got {len(priors)}; "
                "give one prior per bidder or set n_agents"
            )
        self.priors = priors

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "SingleItem":
        cfg = dict(cfg)
        cfg.pop("kind", None)
        has_list, has_iid = "priors" in cfg, "prior" in cfg
        if has_list == has_iid:
            raise ConfigError(
                "setting needs exactly one of 'priors' (a list, one table per bidder) or "
                "'prior' with 'n_agents' (iid bidders)"
            )
        if has_list:
            priors = priors_from_list(cfg.pop("priors"), "setting.priors", "bidder")
            if "n_agents" in cfg and cfg.pop("n_agents") != len(priors):
                raise ConfigError("setting.n_agents disagrees with the length of setting.priors; drop one of them")
        else:
            n = cfg.pop("n_agents", None)
            if not isinstance(n, int) or isinstance(n, bool):
                raise ConfigError("setting.n_agents must be an integer when 'prior' is given (iid bidders)")
            if not 1 <= n <= MAX_BIDDERS:
                raise ConfigError(f"setting.n_agents must be between 1 and {MAX_BIDDERS}, got {n}")
            priors = [prior_from_config(cfg.pop("prior"), "setting.prior")] * n
        if cfg:
            raise ConfigError(f"unknown key(s) in [setting] for single_item: {', '.join(sorted(cfg))}")
        return cls(priors)

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "priors": [p.to_config() for p in self.priors]}

    @property
    def n_agents(self) -> int:
        return len(self.priors)

    @property
    def type_dim(self) -> int:
        return 1

    @property
    def n_items(self) -> int:
        return 1

    def sample(self, key, n):
        keys = jax.random.split(key, self.n_agents)
        cols = [p.sample(k, (n,)) for p, k in zip(self.priors, keys)]
        return jnp.stack(cols, axis=1)[..., None]

    def type_bounds(self):
        lo = np.array([[p.low] for p in self.priors], dtype=np.float64)
        hi = np.array([[p.high] for p in self.priors], dtype=np.float64)
        return lo, hi

    def values(self, types, outcome: Outcome):
        return types[..., 0] * outcome.alloc[..., 0]

    def attack_grid(self, n_points: int):
        """``n_points`` evenly spaced reports on each bidder's support (its atoms if discrete)."""
        cols = []
        for p in self.priors:
            atoms = p.atoms()
            cols.append(np.asarray(atoms) if atoms is not None else np.linspace(p.low, p.high, n_points))
        # equal widths: pad with the last point (a repeated candidate is harmless)
        width = max(len(c) for c in cols)
        cols = [np.concatenate([c, np.full(width - len(c), c[-1])]) for c in cols]
        return jnp.asarray(np.stack(cols)[..., None])

    def describe(self) -> str:
        parts = []
        for p in self.priors:
            cfg = p.to_config()
            args = ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "dist")
            parts.append(f"{cfg['dist']}({args})")
        if len(set(parts)) == 1:
            return f"single item, {self.n_agents} bidder(s) iid {parts[0]}"
        return "single item, bidders " + "; ".join(parts)
