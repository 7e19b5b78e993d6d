"""A neural *general* public-goods mechanism: provision, inclusion and transfers over the whole profile.

One MLP of the normalised profile x (x_i^j = (θ_i^j − ℓ^j)/(u^j − ℓ^j)) outputs per profile

    ρ^j(θ) = σ(s^j),      η_i^j(θ) = σ(e_i^j),      t_i(θ) = value_scale · r_i,

the form (3) of Fang–Norman with expected provision ρ = E_ϑ ζ and conditional inclusion
η = E[ζω]/E[ζ] (only these expectations enter values, costs and interim utilities). It can express
ex post budget-balanced mechanisms, which simple mechanisms cannot; Claim B1's reduction
(:func:`diffmech.mechanisms.public_transforms.reduce_to_simple`) maps it to a simple one with the
same interim payoffs, surplus and budget.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ...errors import ConfigError
from ...outcome import public_goods_outcome
from ..base import Mechanism, check_options, require_public_goods
from .precision import DEFAULT_MATMUL_DTYPE
from .public_simple import DEFAULT_HIDDEN, mlp
from .regretnet import ACTIVATIONS, _finite_bounds, _parse_hidden


class PublicGeneralNet(Mechanism):
    """General public-goods mechanism: every output depends on the whole profile."""

    net: Any
    low: tuple[float, ...] = eqx.field(static=True)
    high: tuple[float, ...] = eqx.field(static=True)
    n_agents: int = eqx.field(static=True)
    n_goods: int = eqx.field(static=True)
    value_scale: float = eqx.field(static=True)

    kind: ClassVar[str] = "public_general"
    summary: ClassVar[str] = "neural general public-goods mechanism ρ(θ), η_i(θ), t_i(θ) (keys: hidden, activation, matmul_dtype)"
    trainable: ClassVar[bool] = True

    def __init__(self, low, high, n_agents: int, *, hidden=DEFAULT_HIDDEN, activation: str = "tanh",
                 matmul_dtype: str = DEFAULT_MATMUL_DTYPE, key: PRNGKeyArray):
        if activation not in ACTIVATIONS:
            raise ConfigError(f"mechanism.activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        hidden = _parse_hidden(list(hidden))
        self.low, self.high = tuple(float(v) for v in low), tuple(float(v) for v in high)
        m = len(self.low)
        self.n_agents, self.n_goods = n_agents, m
        self.value_scale = float(max(abs(v) for v in self.high + self.low) or 1.0)
        self.net = mlp(key, (n_agents * m,) + hidden + (m + n_agents * m + n_agents,), activation, matmul_dtype)

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "PublicGeneralNet":
        require_public_goods(setting, cls.kind)
        check_options(cls.kind, options, ("hidden", "activation", "matmul_dtype"))
        low, high = _finite_bounds(cls.kind, setting)
        return cls(low[0], high[0], setting.n_agents, hidden=options.get("hidden", list(DEFAULT_HIDDEN)),
                   activation=options.get("activation", "tanh"), matmul_dtype=options.get("matmul_dtype", DEFAULT_MATMUL_DTYPE),
                   key=key if key is not None else jax.random.PRNGKey(0))

    def __call__(self, reports: Float[Array, "batch agents goods"]):
        reports = jnp.asarray(reports)
        leaf = jax.tree_util.tree_leaves(self.net)[0]
        dtype = jnp.result_type(reports.dtype, leaf.dtype)
        dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else leaf.dtype
        reports = reports.astype(dtype)
        n, m = self.n_agents, self.n_goods
        width = np.asarray(self.high) - np.asarray(self.low)
        x = (reports - jnp.asarray(self.low, dtype)) / jnp.asarray(np.where(width > 0, width, 1.0), dtype)
        z = jax.vmap(self.net)(x.reshape(x.shape[0], n * m))
        rho = jax.nn.sigmoid(z[:, :m])
        eta = jax.nn.sigmoid(z[:, m : m + n * m]).reshape(-1, n, m)
        t = self.value_scale * z[:, m + n * m :]
        return public_goods_outcome(rho, eta, t)
