"""The one mechanism signature shared by analytic and neural mechanisms."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray

from ..outcome import Outcome


class Mechanism(eqx.Module):
    """A map from a batch of reported types to an :class:`~diffmech.outcome.Outcome`.

    ``mechanism(reports)`` takes reports of shape ``(batch, agents, type_dim)`` and no PRNG key
    (randomisation is expressed as allocation probabilities). Every metric, constraint and
    comparison in the library calls mechanisms only through this signature.

    Class attributes:
        kind: the name used in configs (``[mechanism] kind = ...``).
        summary: one line shown by ``diffmech list``.
        trainable: whether the mechanism has parameters to learn.
        dsic_by_construction: truthful bidding is a dominant strategy for every parameter value
            (up to the stated numerical error), so training needs no regret constraint.
        ir_by_construction: ex post IR holds for every parameter value.
    """

    kind: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    trainable: ClassVar[bool] = False
    dsic_by_construction: ClassVar[bool] = False
    ir_by_construction: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, reports: Float[Array, "batch agents dim"]) -> Outcome: ...

    @classmethod
    @abc.abstractmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "Mechanism":
        """Build from the ``[mechanism]`` table (without ``kind``). Raises ConfigError on bad keys.

        ``key`` initialises parameters of trainable mechanisms and is ignored by analytic ones.
        """
