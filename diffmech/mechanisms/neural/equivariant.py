"""A permutation-equivariant RegretNet: it can only express mechanisms that are symmetric across
items (and across bidders when their priors are the same).

Mathematics. The reported profile b ∈ R^{n×m} (n bidders, m items) is normalised per bidder,
x_ij = (b_ij − ℓ_i)/(u_i − ℓ_i), and treated as an n × m "matrix of cells" with channels. Each
layer is an exchangeable matrix layer (Hartford et al. 2018; used for auctions by Rahme et al.
2021):

    H'_ij = σ( W_0 H_ij + W_1 mean_k H_kj + W_2 mean_l H_il + W_3 mean_kl H_kl + c ),

so permuting items (columns) or bidders (rows) of the input permutes the cells of every layer
the same way. The last layer gives per cell the scores s_ij, s'_ij, d_ij, e_ij, r_ij and

* allocation ``"items"`` (each item to at most one bidder): for item j a softmax over the n
  scores s_·j and a dummy score mean_k d_kj; a_ij is bidder i's share;
* allocation ``"unit_demand"``: as above for A (over bidders + dummy), and B_i· = softmax over
  s'_i· and a dummy item score mean_l e_il; a_ij = min(A_ij, B_ij) (doubly sub-stochastic);
* payments: p_i = sigmoid(mean_l r_il) · Σ_j b_ij a_ij (a fraction of the value of the
  allocation at the report, so ex post IR holds for every parameter value).

Hence for every item permutation σ, a(b^σ) = a(b)^σ and p(b^σ) = p(b): every mechanism the net
expresses is symmetric in the sense of Bikhchandani–Mishra Definition 1 (for one buyer), and for
a symmetric mechanism IC is equivalent to rank preservation plus IC on one ordered cone
(Theorem 1). When the bidders' priors differ the input gets one-hot bidder channels, which keeps
item symmetry and drops bidder symmetry.

Requirements: each bidder's items share one type interval (else the normalisation would break
the item symmetry); the identical-units setting has ordered coordinates and no item symmetry
(use ``regretnet`` or ``rochetnet`` there).
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
from .precision import DEFAULT_MATMUL_DTYPE, contract, parse_matmul_dtype
from .regretnet import ACTIVATIONS, _finite_bounds, _linear, _parse_hidden, _uniform_init

DEFAULT_CHANNELS = (64, 64, 64)
OUT_CHANNELS = 5  # s, s', d, e, r


def _pooled(h: Float[Array, "n m c"]) -> Float[Array, "n m 4c"]:
    """[H_ij, mean_k H_kj, mean_l H_il, mean_kl H_kl] stacked on the channel axis."""
    shape = h.shape
    return jnp.concatenate(
        [
            h,
            jnp.broadcast_to(h.mean(axis=0, keepdims=True), shape),
            jnp.broadcast_to(h.mean(axis=1, keepdims=True), shape),
            jnp.broadcast_to(h.mean(axis=(0, 1), keepdims=True), shape),
        ],
        axis=-1,
    )


class EquivariantNet(Mechanism):
    """Exchangeable-layer RegretNet, symmetric by construction (module docstring)."""

    layers: tuple[eqx.nn.Linear, ...]
    head: eqx.nn.Linear
    low: tuple = eqx.field(static=True)  # per bidder
    high: tuple = eqx.field(static=True)
    n_agents: int = eqx.field(static=True)
    n_items: int = eqx.field(static=True)
    bidder_symmetric: bool = eqx.field(static=True)
    allocation: str = eqx.field(static=True)
    channels: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    matmul_dtype: str = eqx.field(static=True)

    kind: ClassVar[str] = "equivariant"
    summary: ClassVar[str] = (
        "RegretNet with exchangeable layers: symmetric across items (and bidders with one prior); keys channels, activation, "
        "matmul_dtype"
    )
    trainable: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    def __init__(self, low, high, n_items: int, bidder_symmetric: bool, allocation: str = "items",
                 channels=DEFAULT_CHANNELS, activation: str = "tanh", *, matmul_dtype: str = DEFAULT_MATMUL_DTYPE,
                 key: PRNGKeyArray):
        if allocation not in ("items", "unit_demand"):
            raise ConfigError(
                "mechanism 'equivariant' needs heterogeneous items (additive or unit-demand); identical units are "
                "ordered — use 'regretnet' or 'rochetnet'"
            )
        if activation not in ACTIVATIONS:
            raise ConfigError(f"mechanism.activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        channels = _parse_hidden(channels, "channels")
        self.low, self.high = tuple(float(x) for x in low), tuple(float(x) for x in high)
        self.n_agents, self.n_items = len(self.low), int(n_items)
        self.bidder_symmetric, self.allocation = bool(bidder_symmetric), allocation
        self.channels, self.activation = channels, activation
        self.matmul_dtype = parse_matmul_dtype(matmul_dtype)
        c_in = 1 + (0 if self.bidder_symmetric else self.n_agents)
        widths = (c_in,) + channels + (OUT_CHANNELS,)
        shapes = tuple((o, 4 * i) for i, o in zip(widths[:-1], widths[1:]))
        linears = [_linear(w, b) for w, b in _uniform_init(key, shapes)]
        self.layers, self.head = tuple(linears[:-1]), linears[-1]

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "EquivariantNet":
        check_options(cls.kind, options, ("channels", "activation", "matmul_dtype"))
        if getattr(setting, "kind", "") == "identical_items":
            raise ConfigError(
                "mechanism 'equivariant' needs heterogeneous items; identical units are ordered — use 'regretnet' or 'rochetnet'"
            )
        if getattr(setting, "kind", "") != "multi_item" or not setting.exchangeable:
            raise ConfigError(
                "mechanism 'equivariant' needs a multi_item setting in which each bidder's items share one prior (symmetric across items)"
            )
        low, high = _finite_bounds(cls.kind, setting)
        priors = getattr(setting, "priors", None)
        symmetric = priors is not None and len({repr([p.to_config() for p in row]) for row in priors}) == 1
        return cls(
            low[:, 0], high[:, 0], getattr(setting, "n_items", 1), symmetric,
            getattr(setting, "feasibility", "items"),
            options.get("channels", list(DEFAULT_CHANNELS)), options.get("activation", "tanh"),
            matmul_dtype=options.get("matmul_dtype", DEFAULT_MATMUL_DTYPE), key=jax.random.PRNGKey(0) if key is None else key,
        )

    def _cells(self, x: Float[Array, "n m"]) -> Float[Array, "n m 5"]:
        act = ACTIVATIONS[self.activation]
        h = x[..., None]
        if not self.bidder_symmetric:
            ids = jnp.broadcast_to(jnp.eye(self.n_agents, dtype=x.dtype)[:, None, :], (self.n_agents, self.n_items, self.n_agents))
            h = jnp.concatenate([h, ids], axis=-1)
        dt = self.matmul_dtype
        for layer in self.layers:
            h = act(contract("nmc,oc->nmo", _pooled(h), layer.weight, dt) + layer.bias)
        return contract("nmc,oc->nmo", _pooled(h), self.head.weight, dt) + self.head.bias

    def _profile(self, b: Float[Array, "n m"]) -> tuple[Float[Array, "n m"], Float[Array, " n"]]:
        low = jnp.asarray(self.low, b.dtype)[:, None]
        width = jnp.asarray(np.where(np.subtract(self.high, self.low) > 0, np.subtract(self.high, self.low), 1.0), b.dtype)[:, None]
        out = self._cells((b - low) / width)
        s, s2, d, e, r = (out[..., k] for k in range(OUT_CHANNELS))
        over_bidders = jax.nn.softmax(jnp.concatenate([s, d.mean(axis=0, keepdims=True)], axis=0), axis=0)[:-1]
        if self.allocation == "unit_demand":
            over_items = jax.nn.softmax(jnp.concatenate([s2, e.mean(axis=1, keepdims=True)], axis=1), axis=1)[:, :-1]
            alloc = jnp.minimum(over_bidders, over_items)
        else:
            alloc = over_bidders
        pay = jax.nn.sigmoid(r.mean(axis=1)) * jnp.sum(b * alloc, axis=1)
        return alloc, pay

    def __call__(self, reports: Float[Array, "batch agents items"]) -> Outcome:
        reports = jnp.asarray(reports)
        dtype = jnp.result_type(reports.dtype, self.head.weight.dtype)
        alloc, pay = jax.vmap(self._profile)(reports.astype(dtype))
        return Outcome(alloc=alloc, payments=pay)
