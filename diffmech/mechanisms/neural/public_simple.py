"""Neural *simple* mechanisms for excludable public goods (Fang–Norman eq. (B1)).

A simple mechanism decides provision from the whole profile and everything else from the own type:

    ρ^j(θ) ∈ [0, 1],        η_i^j(θ_i) ∈ [0, 1],        t_i(θ_i) ∈ R.

By Claim B1 every incentive-feasible mechanism has a simple one with the same surplus, so nothing is
lost by learning in this class; it also makes interim quantities cheap (E_{−i} ρ^j is the only
expectation). Types are normalised per good, x_i^j = (θ_i^j − ℓ^j)/(u^j − ℓ^j).

``symmetry`` selects how much of the symmetry of an iid, exchangeable problem is built in:

- ``"none"``: ρ is an MLP of the flattened profile, (η_i, t_i) an MLP of (x_i, one-hot(i)).
- ``"anonymous"`` (Claim B2): ρ is a DeepSets network, ρ(θ) = σ(ψ(mean_i φ(x_i))), invariant under
  permutations of agents; η and t are one shared MLP of the own type for every agent.
- ``"symmetric"`` (Proposition 2): also equivariant over goods. ρ uses exchangeable matrix layers on
  the agents × goods cells (H'_ij = act(W_0 H_ij + W_1 mean_k H_kj + W_2 mean_l H_il + W_3 mean_kl
  H_kl + c)), pooled over agents; (η, t) use exchangeable set layers over the own goods
  (h'_j = act(W_0 h_j + W_1 mean_l h_l + c)), η^j from cell j and t from the mean. Hence
  ρ^{π(j)}(θ^π) = ρ^j(θ), η^{π(j)}(θ_i^π) = η^j(θ_i) and t(θ_i^π) = t(θ_i) for every permutation π of
  goods, exactly. It needs goods with one common type interval.

Transfers are ``value_scale · raw`` with value_scale the largest upper bound of a type.
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
from .precision import DEFAULT_MATMUL_DTYPE, dense, parse_matmul_dtype
from .regretnet import ACTIVATIONS, _finite_bounds, _linear, _parse_hidden, _uniform_init

SYMMETRIES = ("none", "anonymous", "symmetric")
DEFAULT_HIDDEN = (64, 64)


class MLP(eqx.Module):
    """Linear layers with an activation between them (none after the last); the products W x in
    ``matmul_dtype`` (:mod:`~diffmech.mechanisms.neural.precision`)."""

    layers: tuple[eqx.nn.Linear, ...]
    activation: str = eqx.field(static=True)
    matmul_dtype: str = eqx.field(static=True, default=DEFAULT_MATMUL_DTYPE)

    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(dense(layer, x, self.matmul_dtype))
        return dense(self.layers[-1], x, self.matmul_dtype)


def mlp(key: PRNGKeyArray, sizes: tuple[int, ...], activation: str, matmul_dtype: str = DEFAULT_MATMUL_DTYPE) -> MLP:
    """An MLP with layer widths ``sizes`` (input first, output last)."""
    shapes = tuple((o, i) for i, o in zip(sizes[:-1], sizes[1:]))
    return MLP(tuple(_linear(w, b) for w, b in _uniform_init(key, shapes)), activation, parse_matmul_dtype(matmul_dtype))


def _matrix_pool(h: Float[Array, "n m c"]) -> Float[Array, "n m 4c"]:
    s = h.shape
    return jnp.concatenate(
        [h, jnp.broadcast_to(h.mean(0, keepdims=True), s), jnp.broadcast_to(h.mean(1, keepdims=True), s),
         jnp.broadcast_to(h.mean((0, 1), keepdims=True), s)],
        axis=-1,
    )


def _set_pool(h: Float[Array, "m c"]) -> Float[Array, "m 2c"]:
    return jnp.concatenate([h, jnp.broadcast_to(h.mean(0, keepdims=True), h.shape)], axis=-1)


class PublicSimpleNet(Mechanism):
    """Simple public-goods mechanism: ρ(θ), η_i(θ_i), t_i(θ_i) (module docstring)."""

    provision_net: Any
    own_net: Any
    low: tuple[float, ...] = eqx.field(static=True)
    high: tuple[float, ...] = eqx.field(static=True)
    n_agents: int = eqx.field(static=True)
    n_goods: int = eqx.field(static=True)
    symmetry: str = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    value_scale: float = eqx.field(static=True)

    kind: ClassVar[str] = "public_simple"
    summary: ClassVar[str] = (
        "neural simple public-goods mechanism ρ(θ), η_i(θ_i), t_i(θ_i) (keys: hidden, symmetry = none|anonymous|symmetric, activation, "
        "matmul_dtype)"
    )
    trainable: ClassVar[bool] = True

    def __init__(self, low, high, n_agents: int, *, hidden=DEFAULT_HIDDEN, symmetry: str = "anonymous",
                 activation: str = "tanh", matmul_dtype: str = DEFAULT_MATMUL_DTYPE, key: PRNGKeyArray):
        if symmetry not in SYMMETRIES:
            raise ConfigError(f"mechanism.symmetry must be one of {', '.join(SYMMETRIES)}, got {symmetry!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"mechanism.activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        hidden = _parse_hidden(list(hidden))
        self.low, self.high = tuple(float(v) for v in low), tuple(float(v) for v in high)
        m = len(self.low)
        if symmetry == "symmetric" and (len(set(self.low)) > 1 or len(set(self.high)) > 1):
            raise ConfigError("symmetry = \"symmetric\" needs every good on one type interval; use \"anonymous\"")
        self.n_agents, self.n_goods, self.symmetry, self.activation = n_agents, m, symmetry, activation
        self.value_scale = float(max(abs(v) for v in self.high + self.low) or 1.0)
        k1, k2 = jax.random.split(key)
        h = hidden
        dt = parse_matmul_dtype(matmul_dtype)
        if symmetry == "none":
            self.provision_net = mlp(k1, (n_agents * m,) + h + (m,), activation, dt)
            self.own_net = mlp(k2, (m + n_agents,) + h + (m + 1,), activation, dt)
        elif symmetry == "anonymous":
            ka, kb = jax.random.split(k1)
            self.provision_net = (mlp(ka, (m,) + h, activation, dt), mlp(kb, (h[-1],) + h + (m,), activation, dt))
            self.own_net = mlp(k2, (m,) + h + (m + 1,), activation, dt)
        else:
            widths = (1,) + h
            self.provision_net = tuple(mlp(k, (4 * a, b), activation, dt) for k, a, b in zip(jax.random.split(k1, len(h)), widths[:-1], widths[1:])) + (
                mlp(jax.random.fold_in(k1, 7), (h[-1], 1), activation, dt),
            )
            self.own_net = tuple(mlp(k, (2 * a, b), activation, dt) for k, a, b in zip(jax.random.split(k2, len(h)), widths[:-1], widths[1:])) + (
                mlp(jax.random.fold_in(k2, 7), (h[-1], 2), activation, dt),
            )

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "PublicSimpleNet":
        require_public_goods(setting, cls.kind)
        check_options(cls.kind, options, ("hidden", "symmetry", "activation", "matmul_dtype"))
        low, high = _finite_bounds(cls.kind, setting)
        symmetry = options.get("symmetry", "anonymous")
        if symmetry == "symmetric" and not setting.exchangeable_goods:
            raise ConfigError("symmetry = \"symmetric\" needs goods that are exchangeable (same prior and cost); use \"anonymous\"")
        return cls(low[0], high[0], setting.n_agents, hidden=options.get("hidden", list(DEFAULT_HIDDEN)), symmetry=symmetry,
                   activation=options.get("activation", "tanh"), matmul_dtype=options.get("matmul_dtype", DEFAULT_MATMUL_DTYPE),
                   key=key if key is not None else jax.random.PRNGKey(0))

    # ------------------------------------------------------------------ pieces

    def _normalise(self, reports):
        lo = jnp.asarray(self.low, reports.dtype)
        width = np.asarray(self.high) - np.asarray(self.low)
        return (reports - lo) / jnp.asarray(np.where(width > 0, width, 1.0), reports.dtype)

    def _provision_logits(self, x: Float[Array, "n m"]) -> Float[Array, " m"]:
        act = ACTIVATIONS[self.activation]
        if self.symmetry == "none":
            return self.provision_net(x.reshape(-1))
        if self.symmetry == "anonymous":
            phi, psi = self.provision_net
            return psi(act(jnp.mean(jax.vmap(phi)(x), axis=0)))
        h = x[..., None]
        for layer in self.provision_net[:-1]:
            h = act(jax.vmap(jax.vmap(layer))(_matrix_pool(h)))
        return jax.vmap(self.provision_net[-1])(h.mean(axis=0))[:, 0]

    def _own(self, x_i: Float[Array, " m"], i) -> tuple[Float[Array, " m"], Float[Array, ""]]:
        act = ACTIVATIONS[self.activation]
        if self.symmetry == "none":
            z = self.own_net(jnp.concatenate([x_i, jax.nn.one_hot(i, self.n_agents, dtype=x_i.dtype)]))
            return z[:-1], z[-1]
        if self.symmetry == "anonymous":
            z = self.own_net(x_i)
            return z[:-1], z[-1]
        h = x_i[:, None]
        for layer in self.own_net[:-1]:
            h = act(jax.vmap(layer)(_set_pool(h)))
        out = jax.vmap(self.own_net[-1])(h)  # (m, 2)
        return out[:, 0], jnp.mean(out[:, 1])

    def own_rules(self, types: Float[Array, "batch agents goods"]):
        """η_i(θ_i) ``(batch, agents, goods)`` and t_i(θ_i) ``(batch, agents)``: they depend only on
        each agent's own type, so they can be evaluated without the others' reports."""
        x = self._normalise(types)
        idx = jnp.arange(self.n_agents)
        eta_logit, t_raw = jax.vmap(jax.vmap(self._own, in_axes=(0, 0)), in_axes=(0, None))(x, idx)
        return jax.nn.sigmoid(eta_logit), self.value_scale * t_raw

    def __call__(self, reports: Float[Array, "batch agents goods"]):
        reports = jnp.asarray(reports)
        dtype = self._dtype(reports)
        reports = reports.astype(dtype)
        rho = jax.nn.sigmoid(jax.vmap(self._provision_logits)(self._normalise(reports)))
        eta, t = self.own_rules(reports)
        return public_goods_outcome(rho, eta, t)

    def _dtype(self, reports):
        leaf = jax.tree_util.tree_leaves(self.own_net)[0]
        dtype = jnp.result_type(reports.dtype, leaf.dtype)
        return dtype if jnp.issubdtype(dtype, jnp.floating) else leaf.dtype
