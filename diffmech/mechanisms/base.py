"""The one mechanism signature shared by analytic and neural mechanisms."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..errors import ConfigError
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

    def training_outcome(self, reports: Float[Array, "batch agents dim"]) -> Outcome:
        """The differentiable outcome that training maximises the objective of.

        The mechanism itself by default. Mechanisms whose exact rule is a hard choice (the
        buyer's argmax over a menu in RochetNet, the affine maximiser's argmax over allocations)
        return a softmax relaxation here; evaluation always uses ``__call__``.
        """
        return self(reports)

    @classmethod
    def is_trainable(cls, options: dict[str, Any]) -> bool:
        """Whether the mechanism a ``[mechanism]`` table (without ``kind``) describes has
        parameters to learn; ``trainable`` unless the class depends on its options (transforms)."""
        return bool(cls.trainable)

    @classmethod
    @abc.abstractmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "Mechanism":
        """Build from the ``[mechanism]`` table (without ``kind``). Raises ConfigError on bad keys.

        ``key`` initialises parameters of trainable mechanisms and is ignored by analytic ones.
        """


def check_options(kind: str, options: dict[str, Any], valid: tuple[str, ...]) -> None:
    """Raise a one-line ConfigError naming any ``[mechanism]`` key not in ``valid``."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [mechanism] for {kind}: {', '.join(unknown)}; valid keys: {', '.join(sorted(valid)) or 'none'}"
        )


def require_single_item(setting, kind: str) -> None:
    """Raise a one-line ConfigError unless ``setting`` sells one item with one-dimensional types."""
    if getattr(setting, "type_dim", None) != 1 or getattr(setting, "n_items", 1) != 1:
        raise ConfigError(
            f"mechanism {kind!r} sells one item (one-dimensional types); for several items use itemwise_myerson, vcg, "
            "regretnet or another multi-item mechanism"
        )


def require_public_goods(setting, kind: str) -> None:
    """Raise a one-line ConfigError unless ``setting`` is the public_goods setting."""
    if getattr(setting, "kind", "") != "public_goods":
        raise ConfigError(
            f"mechanism {kind!r} is defined for the public_goods setting, not {getattr(setting, 'kind', type(setting).__name__)!r}; "
            "use kind = \"public_goods\" in [setting]"
        )


def float_dtype(x) -> Any:
    """``x``'s dtype if floating, else the default float dtype (reports may arrive as integers)."""
    return x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.result_type(float)
