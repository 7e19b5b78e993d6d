"""Learned payments for a fixed efficient allocation, ex post budget balanced by construction.

For Ke's settings (``kind = "efficient"``) the allocation is the efficient rule x*(θ̂) of the
setting and only payments are learned:

    M_i(θ̂) = c(x*(θ̂))/n + s·(m_i(θ̂) − (1/n) Σ_j m_j(θ̂)),                              (BB)

so Σ_i M_i(θ̂) = c(x*(θ̂)) at every profile, whatever the network m_φ outputs (s is a fixed value
scale). The centring is applied to the last hidden layer, before the linear output layer
(:meth:`BudgetBalancedPayments.centred`), so that a common offset of the m_i cannot grow and eat
float32 precision. Agent i's raw payment m_i is an MLP of the features

    (θ̂_i, the other reports, x_i*(θ̂)),

types normalised to [0, 1] on their supports. With ``symmetry = "equivariant"`` (the default when
the setting is symmetric: iid agents, symmetric reservations) one network serves every agent and
the other reports enter sorted (largest first), so permuting the agents permutes the payments
exactly. With ``symmetry = "none"`` the others enter in index order and a one-hot agent id is
appended. The own allocation x_i*(θ̂) is an input so that payments may jump where the allocation
does (the winner of a private good), as Ke's M1–M3 do.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ...errors import ConfigError
from ...outcome import Outcome
from ..base import Mechanism, check_options
from .precision import DEFAULT_MATMUL_DTYPE, contract
from .public_simple import mlp
from .regretnet import ACTIVATIONS, _parse_hidden

SYMMETRIES = ("equivariant", "none")
DEFAULT_HIDDEN = (64, 64)


class BudgetBalancedPayments(Mechanism):
    """Efficient allocation of the setting, payments (BB) from a neural network.

    Attributes:
        setting: the ``efficient`` setting (its allocation, cost and bounds).
        net: the MLP m_φ.
        symmetry: ``"equivariant"`` or ``"none"``.
        scale: the value scale s.
    """

    setting: Any
    net: Any
    symmetry: str = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    kind: ClassVar[str] = "bb_payments"
    summary: ClassVar[str] = (
        "learned payments for the efficient allocation of an 'efficient' setting, ex post budget balanced by "
        "construction (keys: hidden, symmetry = equivariant|none, activation, matmul_dtype)"
    )
    trainable: ClassVar[bool] = True

    def __init__(self, setting, *, hidden=DEFAULT_HIDDEN, symmetry: str | None = None, activation: str = "tanh",
                 matmul_dtype: str = DEFAULT_MATMUL_DTYPE, key: PRNGKeyArray):
        if getattr(setting, "kind", "") != "efficient":
            raise ConfigError(f"mechanism 'bb_payments' needs an 'efficient' setting, got {getattr(setting, 'kind', setting)!r}")
        symmetry = symmetry or ("equivariant" if setting.symmetric else "none")
        if symmetry not in SYMMETRIES:
            raise ConfigError(f"mechanism.symmetry must be one of {', '.join(SYMMETRIES)}, got {symmetry!r}")
        if symmetry == "equivariant" and not setting.symmetric:
            raise ConfigError("symmetry = \"equivariant\" needs iid agents with symmetric reservations; use \"none\"")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"mechanism.activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        n = setting.n_agents
        width = n + 1 + (n if symmetry == "none" else 0)
        self.setting = setting
        self.symmetry = symmetry
        self.net = mlp(key, (width,) + _parse_hidden(list(hidden)) + (1,), activation, matmul_dtype)
        _, hi = setting.type_bounds()
        self.scale = float(max(1.0, float(np.max(np.abs(hi)))))

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "BudgetBalancedPayments":
        check_options(cls.kind, options, ("hidden", "symmetry", "activation", "matmul_dtype"))
        return cls(setting, hidden=options.get("hidden", list(DEFAULT_HIDDEN)), symmetry=options.get("symmetry"),
                   activation=options.get("activation", "tanh"), matmul_dtype=options.get("matmul_dtype", DEFAULT_MATMUL_DTYPE),
                   key=key if key is not None else jax.random.PRNGKey(0))

    def features(self, theta: Float[Array, "batch agents"], x: Float[Array, "batch agents"]) -> Float[Array, "batch agents width"]:
        """Each agent's input: own normalised report, the others' (sorted, or in index order with
        an agent id) and the own allocation."""
        lo, hi = (jnp.asarray(b[:, 0], theta.dtype) for b in self.setting.type_bounds())
        z = (theta - lo) / (hi - lo)
        n = z.shape[1]
        idx = jnp.asarray(np.array([[j for j in range(n) if j != i] for i in range(n)], np.int32))
        others = z[:, idx]  # (batch, n, n-1)
        if self.symmetry == "equivariant":
            others = -jnp.sort(-others, axis=-1)
            return jnp.concatenate([z[..., None], others, x[..., None]], axis=-1)
        ids = jnp.broadcast_to(jnp.eye(n, dtype=z.dtype), z.shape + (n,))
        return jnp.concatenate([z[..., None], others, x[..., None], ids], axis=-1)

    def __call__(self, reports: Float[Array, "batch agents 1"]) -> Outcome:
        reports = jnp.asarray(reports)
        leaf = jax.tree_util.tree_leaves(self.net)[0]
        dtype = jnp.result_type(reports.dtype, leaf.dtype)
        theta = reports[..., 0].astype(dtype)
        x = self.setting.allocation(theta)
        n = theta.shape[1]
        pay = self.setting.production_cost(x)[:, None] / n + self.scale * self.centred(self.features(theta, x))
        return Outcome(alloc=x[..., None], payments=pay)

    def centred(self, feats: Float[Array, "batch agents width"]) -> Float[Array, "batch agents"]:
        """m_i − mean_j m_j, computed as W(h_i − mean_j h_j) with h the last hidden layer and W the
        (linear) output layer: the same number in exact arithmetic, but a common offset of the
        m_i — which the loss cannot see, so nothing stops it from growing — never enters, and the
        budget stays balanced to float32 rounding of the payments themselves."""
        act = ACTIVATIONS[self.net.activation]
        dt = self.net.matmul_dtype
        h = feats
        for layer in self.net.layers[:-1]:
            h = act(contract("bnf,hf->bnh", h, layer.weight, dt) + layer.bias)
        h = h - jnp.mean(h, axis=1, keepdims=True)
        return contract("bnh,oh->bno", h, self.net.layers[-1].weight, dt)[..., 0]
