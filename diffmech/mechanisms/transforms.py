"""Transformations that return a new mechanism: the symmetric extension of a mechanism on the
ordered cone (Bikhchandani–Mishra Definition 3) and the symmetrisation over item permutations
(the averaging in the proof of their Theorem 3).

Notation (the paper's): for a permutation σ of the items, v^σ_j = v_{σ(j)}; D(σ) is the set of
strict types with v_{σ(1)} > … > v_{σ(n)}, so v ∈ D(σ) iff v^σ is sorted decreasingly, and
D(σ^I) = D^I is the ordered cone of the identical-objects model.

The map between the two models of the paper is: heterogeneous → identical, restrict a
(symmetric, IC) mechanism to D^I — the same function evaluated on sorted types, which is feasible
there (q_1 ≥ q_2 ≥ …) exactly when it is rank preserving (Definition 2; measure it with
:mod:`diffmech.symmetry`); identical → heterogeneous, the symmetric extension below, which is IC and
IR when the mechanism on D^I is (Lemma 2 / Remark 1).
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import ConfigError
from ..outcome import Outcome
from .base import Mechanism, check_options

MAX_SYMMETRISE_ITEMS = 6


class _FromBase:
    """Descriptor: on an instance, the wrapped mechanism's flag; on the class, ``default``."""

    def __init__(self, name: str, default: bool = False):
        self.name, self.default = name, default

    def __get__(self, obj, owner=None) -> bool:
        return self.default if obj is None else bool(getattr(obj.base, self.name))


def _sort_decreasing(reports: Float[Array, "batch 1 m"]):
    """(v^σ, σ) with σ = the stable argsort of −v, so that v^σ_j = v_{σ(j)} is decreasing."""
    sigma = jnp.argsort(-reports, axis=-1, stable=True)
    return jnp.take_along_axis(reports, sigma, axis=-1), sigma


def _base_trainable(options: dict[str, Any]) -> bool:
    from . import MECHANISMS

    base = options.get("base")
    cls = MECHANISMS.get(base.get("kind")) if isinstance(base, dict) else None
    return cls is not None and cls.is_trainable({k: v for k, v in base.items() if k != "kind"})


def _one_buyer(setting, kind: str) -> None:
    if getattr(setting, "n_agents", None) != 1 or getattr(setting, "kind", "") not in ("multi_item", "identical_items"):
        raise ConfigError(f"mechanism '{kind}' is defined for one buyer and several items (multi_item with n_agents = 1)")


class SymmetricExtension(Mechanism):
    """Definition 3: extend ``base`` (a mechanism on the ordered cone D^I) to all of D^H,

        q^s_{σ(i)}(v) = q_i(v^σ),    t^s(v) = t(v^σ)      for v ∈ D(σ),

    i.e. sort the report decreasingly, run ``base`` on the sorted report, and give the k-th
    largest-valued item the probability of the k-th unit. Ties (measure zero) are broken by item
    index. By Theorem 1 / Lemma 2 the result is IC (and IR) on D^H iff ``base`` is IC (IR) on D^I
    and rank preserving (q_1 ≥ q_2 ≥ … on D^I); every identical-objects mechanism is rank
    preserving (Remark 1), and Example 1 shows what fails without it.

    Config: ``kind = "symmetric_extension"`` with ``base`` a mechanism table, built for the
    identical-objects form of the setting (``setting.identical()``), e.g. ``base = {kind =
    "regretnet"}`` learns an ordered net on D^I and sells by its extension.
    """

    base: Mechanism

    kind: ClassVar[str] = "symmetric_extension"
    summary: ClassVar[str] = "symmetric extension (B–M Definition 3) of a base mechanism on sorted types; key base"
    trainable = _FromBase("trainable")
    dsic_by_construction = _FromBase("dsic_by_construction")
    ir_by_construction = _FromBase("ir_by_construction")

    @classmethod
    def is_trainable(cls, options: dict[str, Any]) -> bool:
        return _base_trainable(options)

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "SymmetricExtension":
        from . import mechanism_from_config

        check_options(cls.kind, options, ("base",))
        _one_buyer(setting, cls.kind)
        if setting.kind == "multi_item" and (setting.valuation != "additive" or not setting.exchangeable):
            raise ConfigError(
                "mechanism 'symmetric_extension' maps the identical-objects model to additive items with one shared prior "
                "(an exchangeable prior); this setting is not one"
            )
        if "base" not in options or not isinstance(options["base"], dict):
            raise ConfigError("mechanism 'symmetric_extension' needs base = { kind = ... }, the mechanism on sorted types")
        if options["base"].get("kind") == cls.kind:
            raise ConfigError("the base of a symmetric extension cannot itself be a symmetric extension")
        identical = setting if setting.kind == "identical_items" else setting.identical()
        return cls(mechanism_from_config(identical, options["base"], key))

    def __call__(self, reports: Float[Array, "batch 1 m"]) -> Outcome:
        reports = jnp.asarray(reports)
        ordered, sigma = _sort_decreasing(reports)
        out = self.base(ordered)
        inverse = jnp.argsort(sigma, axis=-1)
        return Outcome(alloc=jnp.take_along_axis(out.alloc, inverse, axis=-1), payments=out.payments)

    def training_outcome(self, reports):
        ordered, sigma = _sort_decreasing(jnp.asarray(reports))
        out = self.base.training_outcome(ordered)
        inverse = jnp.argsort(sigma, axis=-1)
        return Outcome(alloc=jnp.take_along_axis(out.alloc, inverse, axis=-1), payments=out.payments)


class Symmetrised(Mechanism):
    """The average of ``base`` over all m! permutations of the items (applied to every bidder):

        q^sym(v) = (1/m!) Σ_σ q(v^σ)^{σ⁻¹},     t^sym(v) = (1/m!) Σ_σ t(v^σ),

    which is symmetric (Definition 1). If ``base`` is IC and IR, so is q^sym (an average of the
    IC mechanisms v ↦ q(v^σ)^{σ⁻¹}), and under an exchangeable prior it earns the same expected
    revenue (proof of Theorem 3). At most 6 items (720 evaluations per profile).
    """

    base: Mechanism
    perms: tuple = eqx.field(static=True)

    kind: ClassVar[str] = "symmetrised"
    summary: ClassVar[str] = "average of a base mechanism over all item permutations (B–M Theorem 3); key base"
    trainable = _FromBase("trainable")
    dsic_by_construction = _FromBase("dsic_by_construction")
    ir_by_construction = _FromBase("ir_by_construction")

    def __init__(self, base: Mechanism, n_items: int):
        if not 1 <= n_items <= MAX_SYMMETRISE_ITEMS:
            raise ConfigError(f"symmetrising averages over m! permutations; use at most {MAX_SYMMETRISE_ITEMS} items")
        self.base = base
        self.perms = tuple(itertools.permutations(range(n_items)))

    @classmethod
    def is_trainable(cls, options: dict[str, Any]) -> bool:
        return _base_trainable(options)

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "Symmetrised":
        from . import mechanism_from_config

        check_options(cls.kind, options, ("base",))
        if getattr(setting, "kind", "") != "multi_item" or not setting.exchangeable:
            raise ConfigError(
                "mechanism 'symmetrised' permutes heterogeneous items: it needs a multi_item setting whose items share one prior"
            )
        if not isinstance(options.get("base"), dict) or options["base"].get("kind") == cls.kind:
            raise ConfigError("mechanism 'symmetrised' needs base = { kind = ... } (not itself symmetrised)")
        return cls(mechanism_from_config(setting, options["base"], key), setting.n_items)

    def _average(self, reports, call):
        perms = jnp.asarray(np.array(self.perms))  # (P, m)
        inverse = jnp.argsort(perms, axis=-1)
        b, n, m = reports.shape
        stacked = reports[:, :, perms]  # (b, n, P, m): row σ is v^σ
        stacked = jnp.moveaxis(stacked, 2, 0).reshape(len(self.perms) * b, n, m)
        out = call(stacked)
        alloc = out.alloc.reshape(len(self.perms), b, n, -1)
        alloc = jnp.take_along_axis(alloc, inverse[:, None, None, :], axis=-1)  # q(v^σ)^{σ⁻¹}
        return Outcome(alloc=alloc.mean(axis=0), payments=out.payments.reshape(len(self.perms), b, n).mean(axis=0))

    def __call__(self, reports):
        return self._average(jnp.asarray(reports), self.base)

    def training_outcome(self, reports):
        return self._average(jnp.asarray(reports), self.base.training_outcome)
