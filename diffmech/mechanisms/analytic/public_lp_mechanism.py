"""The LP-optimal public-goods mechanism and its analytic baselines, as registry mechanisms.

``kind = "public_lp"`` solves the exact LP of :mod:`diffmech.public_lp` for the setting (a
``public_goods`` setting with a finite type space) and plays the optimal table; options
``restriction`` (``"none"``, ``"separate"``, ``"no_exclusion"``) and ``method`` (``"auto"``,
``"profiles"``, ``"counts"``). ``kind = "separate_provision"`` (each good by its own mechanism
and budget) and ``kind = "no_exclusion"`` (η ≡ 1) fix the restriction. Solutions are cached by
(setting config, restriction, method), so building the same mechanism again is cheap.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, ClassVar

import equinox as eqx
from jaxtyping import Array, Float

from ...errors import ConfigError
from ...outcome import PublicGoodsOutcome
from ..base import Mechanism, check_options, require_public_goods
from .public_table import PublicGoodsTable

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 32


def cached_solution(setting, restriction: str, method: str):
    """:func:`diffmech.public_lp.solve_public_lp_arrays`, memoised on the setting's config."""
    from ...public_lp import solve_public_lp_arrays

    key = (json.dumps(setting.to_config(), sort_keys=True, default=str), restriction, method)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    sol = solve_public_lp_arrays(setting, restriction=restriction, method=method)
    _CACHE[key] = sol
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return sol


class PublicLP(Mechanism):
    """The surplus-maximising incentive-feasible mechanism of a finite public-goods setting.

    Attributes:
        table: the optimal mechanism over all K^n profiles (reports snap to the nearest type).
        surplus: the LP value (expected surplus).
        first_best: E Σ_j max(0, Σ_i θ_i^j − C^j).
        restriction: the mechanism class optimised over (see :mod:`diffmech.public_lp`).
    """

    table: PublicGoodsTable
    surplus: float = eqx.field(static=True)
    first_best: float = eqx.field(static=True)
    restriction: str = eqx.field(static=True)

    kind: ClassVar[str] = "public_lp"
    summary: ClassVar[str] = (
        "exact LP optimum for finite public_goods settings (options: restriction = none | separate | no_exclusion, "
        "method = auto | profiles | counts)"
    )
    options: ClassVar[tuple[str, ...]] = ("restriction", "method")
    fixed_restriction: ClassVar[str | None] = None

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "PublicLP":
        check_options(cls.kind, options, cls.options)
        require_public_goods(setting, cls.kind)
        restriction = cls.fixed_restriction or options.get("restriction", "none")
        method = options.get("method", "auto")
        sol = cached_solution(setting, restriction, method)
        table = sol.table()
        if table is None:
            raise ConfigError(
                f"mechanism {cls.kind!r}: the table over all {len(sol.atoms)}^{setting.n_agents} profiles is too large "
                "to play; use fewer agents or type vectors (diffmech.public_lp.solve_public_lp still gives the value)"
            )
        return cls(table=table, surplus=sol.surplus, first_best=sol.first_best, restriction=restriction)

    def __call__(self, reports: Float[Array, "batch agents goods"]) -> PublicGoodsOutcome:
        return self.table(reports)


class SeparateProvision(PublicLP):
    """Each good provided by its own optimal mechanism (values for that good only, own ex ante
    budget): the sum of the one-good LPs on the marginal priors. Option: ``method``."""

    kind: ClassVar[str] = "separate_provision"
    summary: ClassVar[str] = "each public good by its own LP-optimal mechanism and budget (finite types; option: method)"
    options: ClassVar[tuple[str, ...]] = ("method",)
    fixed_restriction: ClassVar[str | None] = "separate"


class NoExclusion(PublicLP):
    """The best mechanism that never excludes (η ≡ 1): goods are pure public goods. Option:
    ``method``."""

    kind: ClassVar[str] = "no_exclusion"
    summary: ClassVar[str] = "the LP-optimal public-goods mechanism without exclusion, η ≡ 1 (finite types; option: method)"
    options: ClassVar[tuple[str, ...]] = ("method",)
    fixed_restriction: ClassVar[str | None] = "no_exclusion"
