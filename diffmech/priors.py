"""One-dimensional priors over an agent's value, all in JAX.

Every prior offers sampling, ``cdf``, ``pdf`` (for a discrete prior: the probability mass),
``icdf``, the virtual value

    φ(v) = v − (1 − F(v)) / f(v)                                   (Myerson 1981, eq. 3.11)

and the *ironed* virtual value φ̄: with q = F(v) and H(q) = ∫_0^q φ(F⁻¹(s)) ds, φ̄(v) is the
derivative of the convex hull of H at F(v) (equivalently, minus the slope of the concave hull of the
revenue curve R(q') = q'·F⁻¹(1 − q') at q' = 1 − F(v)). φ̄ equals φ where φ is increasing and is
constant on each ironing interval.

Priors are immutable equinox modules; parameters are plain floats, so a prior can be rebuilt from
its :meth:`Prior.to_config` dictionary.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .errors import ConfigError


class Prior(eqx.Module):
    """Abstract base class of a one-dimensional prior with support ``[low, high]``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    discrete: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def low(self) -> float: ...

    @property
    @abc.abstractmethod
    def high(self) -> float: ...

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]: ...

    @abc.abstractmethod
    def cdf(self, v: Float[Array, "..."]) -> Float[Array, "..."]: ...

    @abc.abstractmethod
    def pdf(self, v: Float[Array, "..."]) -> Float[Array, "..."]: ...

    @abc.abstractmethod
    def icdf(self, u: Float[Array, "..."]) -> Float[Array, "..."]: ...

    @abc.abstractmethod
    def virtual_value(self, v: Float[Array, "..."]) -> Float[Array, "..."]: ...

    @abc.abstractmethod
    def ironed_virtual_value(self, v: Float[Array, "..."]) -> Float[Array, "..."]: ...

    @abc.abstractmethod
    def to_config(self) -> dict[str, Any]: ...

    def atoms(self) -> np.ndarray | None:
        """Support points of a discrete prior (sorted), ``None`` for a continuous one."""
        return None


class Uniform(Prior):
    """Uniform on ``[low, high]``: F(v) = (v − low)/(high − low), φ(v) = 2v − high (regular)."""

    lo: float
    hi: float
    name: ClassVar[str] = "uniform"
    summary: ClassVar[str] = "uniform on [low, high]; keys low, high"

    def __init__(self, low: float = 0.0, high: float = 1.0):
        low, high = float(low), float(high)
        if not high > low:
            raise ConfigError(f"uniform prior needs low < high, got low={low}, high={high}")
        self.lo, self.hi = low, high

    @property
    def low(self) -> float:
        return self.lo

    @property
    def high(self) -> float:
        return self.hi

    def sample(self, key, shape):
        return jax.random.uniform(key, shape, minval=self.lo, maxval=self.hi)

    def cdf(self, v):
        return jnp.clip((v - self.lo) / (self.hi - self.lo), 0.0, 1.0)

    def pdf(self, v):
        inside = (v >= self.lo) & (v <= self.hi)
        return jnp.where(inside, 1.0 / (self.hi - self.lo), 0.0)

    def icdf(self, u):
        return self.lo + u * (self.hi - self.lo)

    def virtual_value(self, v):
        return 2.0 * v - self.hi

    def ironed_virtual_value(self, v):
        return self.virtual_value(v)

    def to_config(self):
        return {"dist": self.name, "low": self.lo, "high": self.hi}


PRIORS: dict[str, type[Prior]] = {"uniform": Uniform}


def prior_from_config(cfg: Any, where: str = "prior") -> Prior:
    """Build a prior from a config table such as ``{dist = "uniform", low = 0, high = 1}``."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where} must be a table like {{ dist = \"uniform\", low = 0.0, high = 1.0 }}")
    cfg = dict(cfg)
    dist = cfg.pop("dist", None)
    if dist is None:
        raise ConfigError(f"{where} has no 'dist'; choose one of: {', '.join(PRIORS)}")
    if dist not in PRIORS:
        raise ConfigError(f"{where}: unknown distribution {dist!r}; choose one of: {', '.join(PRIORS)}")
    cls = PRIORS[dist]
    try:
        return cls(**cfg)
    except TypeError as e:
        raise ConfigError(f"{where}: bad keys for {dist!r} prior ({e}); expected: {cls.summary}") from None
    except (ConfigError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
