"""RegretNet (Dütting, Feng, Narasimhan, Parkes & Ravindranath 2019): a feed-forward network
that maps a reported profile to an allocation and payments; incentive compatibility is learned
(regret is penalised during training), not built in.

Mathematics. Let n agents report b ∈ R^{n×d} and let [ℓ_i, u_i] ⊂ R^d be agent i's type box
(``setting.type_bounds()``). The network input is the normalised, flattened profile

    x = vec((b − ℓ) ⊘ (u − ℓ)) ∈ R^{n·d}       (a zero-width coordinate divides by 1 instead),

and a trunk of fully connected layers z_{k+1} = σ(W_k z_k + c_k) (σ = tanh, relu or gelu) feeds
two linear heads.

Allocation head: for each item j it outputs n + 1 logits s_{0j}, s_{1j}, …, s_{nj}, where slot 0
is the dummy "keep the item" slot, and

    alloc_{ij} = exp(s_{ij}) / Σ_{k=0}^{n} exp(s_{kj}),   i = 1..n,

so alloc_{ij} ≥ 0 and Σ_i alloc_{ij} = 1 − (dummy share) ≤ 1 for every item (feasible by
construction, randomised allocations allowed). The result has shape (batch, agents, items).
This is the head for the setting's feasibility ``"items"``; two more follow the setting:

* ``"unit_demand"`` (each bidder at most one item too): two score matrices s, s' ∈ R^{(n+1)×(m+1)}
  (row n a dummy bidder, column m a dummy item); A = softmax of s over bidders (per item),
  B = softmax of s' over items (per bidder), and alloc_{ij} = min(A_{ij}, B_{ij}) — doubly
  sub-stochastic, Σ_i alloc_{ij} ≤ 1 and Σ_j alloc_{ij} ≤ 1 (Dütting et al. 2019, §3.2).
* ``"units"`` (identical units, one buyer): q_k = Π_{l ≤ k} sigmoid(s_l), so that
  1 ≥ q_1 ≥ q_2 ≥ … ≥ q_n ≥ 0 (feasibility (1) of Bikhchandani–Mishra) for every parameter value:
  the "ordered net" of the identical-objects model.

Payment head (option ``payments``):

* ``"ir"`` (default): the head outputs one fraction logit f_i per agent and

      p_i = sigmoid(f_i) · Σ_j b_{ij} · alloc_{ij},

  i.e. agent i pays a fraction in (0, 1) of the value of her allocation at her report, so
  truthful reporting is ex post individually rational for every parameter value
  (u_i = (1 − sigmoid(f_i)) · v_i·alloc_i ≥ 0 whenever v_i·alloc_i ≥ 0). This requires additive
  values (type_dim == n_items), which is what the single-item setting has.
* ``"free"``: p_i = S · g_i with g_i an unconstrained linear output and S the setting's value
  scale (the largest Σ_j u_{ij} over agents); payments may exceed values, and IR must be
  penalised during training.

Design decisions.

* Type bounds are stored as nested Python tuples in *static* fields (``eqx.field(static=True)``),
  together with every other non-learnable setting (widths, activation name, payment mode, value
  scale). Static fields are part of the tree structure, not leaves, so
  ``eqx.filter(model, eqx.is_inexact_array)`` returns exactly the weights and biases of the
  ``eqx.nn.Linear`` layers, and ``jax.grad``/optax only ever touch those.
* Whether IR holds depends on the instance (the ``payments`` option), while the base class
  declares ``ir_by_construction`` as a class attribute. The static field ``ir`` records the mode
  and ``ir_by_construction`` is a small descriptor: read on an instance it returns ``self.ir``;
  read on the class it returns ``False`` (the conservative answer: not every RegretNet is IR).
  A plain ``property`` would be truthy when read on the class, which is why it is not used.
* The per-profile network is written for one profile and ``jax.vmap``-ed over the batch, so the
  compiled code is a chain of batched matrix products (no Python loop over samples or agents).
* Weights follow the initialisation of ``eqx.nn.Linear`` (uniform ±1/√fan_in), drawn in one
  compiled call from the given PRNG key: the same key gives the same weights. Parameters are float32 by default and float64
  when created with x64 enabled; the computation runs in the promoted dtype of reports and
  weights.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ...errors import ConfigError
from ...outcome import Outcome
from ..base import Mechanism, check_options
from .precision import DEFAULT_MATMUL_DTYPE, dense, parse_matmul_dtype

DEFAULT_HIDDEN = (100, 100, 100)
ACTIVATIONS = {"tanh": jax.nn.tanh, "relu": jax.nn.relu, "gelu": jax.nn.gelu}
PAYMENT_MODES = ("ir", "free")
ALLOCATIONS = ("items", "unit_demand", "units")


class _InstanceFlag:
    """Descriptor: ``obj.<name>`` is ``bool(getattr(obj, attr))``, ``Class.<name>`` is ``default``."""

    def __init__(self, attr: str, default: bool = False):
        self.attr = attr
        self.default = default

    def __get__(self, obj, owner=None) -> bool:
        if obj is None:
            return self.default
        return bool(getattr(obj, self.attr))


def _finite_bounds(kind: str, setting) -> tuple[np.ndarray, np.ndarray]:
    low, high = (np.asarray(a, dtype=np.float64) for a in setting.type_bounds())
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ConfigError(f"mechanism {kind} needs bounded type supports; the setting's priors have infinite bounds")
    return low, high


def _as_tuple(a: np.ndarray) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(a, dtype=np.float64))


def _parse_hidden(value: Any, key: str = "hidden") -> tuple[int, ...]:
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w > 0 for w in value
    )
    if not ok:
        raise ConfigError(f"mechanism.{key} must be a list of positive integers, got {value!r}")
    return tuple(int(w) for w in value)


@functools.partial(jax.jit, static_argnums=1)
def _uniform_init(key: PRNGKeyArray, shapes: tuple[tuple[int, int], ...]) -> list[tuple[Array, Array]]:
    """Weights and biases U(−1/√fan_in, 1/√fan_in) for layers of shape (out, in), as eqx.nn.Linear.

    One random draw for all layers, in one compiled function: drawing per layer eagerly compiles
    a threefry kernel per shape, which dominated construction time.
    """
    sizes = [o * i + o for o, i in shapes]
    u = jax.random.uniform(key, (sum(sizes),), minval=-1.0, maxval=1.0)
    params, offset = [], 0
    for o, i in shapes:
        lim = 1.0 / math.sqrt(i)
        weight = u[offset : offset + o * i].reshape(o, i) * lim
        bias = u[offset + o * i : offset + o * i + o] * lim
        params.append((weight, bias))
        offset += o * i + o
    return params


def _linear(weight: Array, bias: Array) -> eqx.nn.Linear:
    out_features, in_features = weight.shape
    skeleton = eqx.filter_eval_shape(eqx.nn.Linear, in_features, out_features, key=jax.random.PRNGKey(0))
    return eqx.tree_at(lambda layer: (layer.weight, layer.bias), skeleton, (weight, bias))


def allocation_from_scores(scores: Float[Array, " k"], allocation: str, n: int, m: int) -> Float[Array, "agents items"]:
    """A feasible (agents, items) allocation from one profile's raw scores (module docstring)."""
    if allocation == "items":
        logits = scores.reshape(m, n + 1)
        return jax.nn.softmax(logits, axis=-1)[:, 1:].T  # drop the dummy slot
    if allocation == "unit_demand":
        s = scores.reshape(2, n + 1, m + 1)
        over_bidders = jax.nn.softmax(s[0], axis=0)  # each item: bidders + dummy bidder
        over_items = jax.nn.softmax(s[1], axis=1)  # each bidder: items + dummy item
        return jnp.minimum(over_bidders, over_items)[:n, :m]
    return jnp.cumprod(jax.nn.sigmoid(scores))[None, :]  # units: q_1 ≥ q_2 ≥ …


class RegretNet(Mechanism):
    """RegretNet MLP: softmax allocation with a dummy slot per item, IR-fraction or free payments.

    See the module docstring for the mathematics. Build with :meth:`from_config` (options
    ``hidden`` = list of widths, default ``[100, 100, 100]``; ``activation`` ∈ {tanh, relu, gelu},
    default tanh; ``payments`` ∈ {ir, free}, default ir; ``matmul_dtype`` ∈ {float32, bfloat16},
    default float32, see :mod:`~diffmech.mechanisms.neural.precision`) or with the constructor.
    """

    layers: tuple[eqx.nn.Linear, ...]
    alloc_head: eqx.nn.Linear
    pay_head: eqx.nn.Linear
    low: tuple = eqx.field(static=True)
    high: tuple = eqx.field(static=True)
    n_agents: int = eqx.field(static=True)
    n_items: int = eqx.field(static=True)
    type_dim: int = eqx.field(static=True)
    allocation: str = eqx.field(static=True)
    hidden: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    payments: str = eqx.field(static=True)
    value_scale: float = eqx.field(static=True)
    ir: bool = eqx.field(static=True)
    matmul_dtype: str = eqx.field(static=True)

    kind: ClassVar[str] = "regretnet"
    summary: ClassVar[str] = "RegretNet MLP (Duetting et al. 2019); keys hidden, activation, payments (ir|free), matmul_dtype"
    trainable: ClassVar[bool] = True
    dsic_by_construction: ClassVar[bool] = False
    ir_by_construction = _InstanceFlag("ir", default=False)  # True on instances with payments="ir"

    def __init__(
        self,
        low,
        high,
        n_items: int = 1,
        hidden=DEFAULT_HIDDEN,
        activation: str = "tanh",
        payments: str = "ir",
        allocation: str = "items",
        *,
        matmul_dtype: str = DEFAULT_MATMUL_DTYPE,
        key: PRNGKeyArray,
    ):
        low = np.asarray(low, dtype=np.float64)
        high = np.asarray(high, dtype=np.float64)
        if low.ndim != 2 or low.shape != high.shape:
            raise ConfigError(f"type bounds must both have shape (agents, dim), got {low.shape} and {high.shape}")
        hidden = _parse_hidden(hidden)
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"mechanism.activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
        if payments not in PAYMENT_MODES:
            raise ConfigError(f"mechanism.payments must be one of {', '.join(PAYMENT_MODES)}, got {payments!r}")
        n_agents, type_dim = low.shape
        n_items = int(n_items)
        if allocation not in ALLOCATIONS:
            raise ConfigError(f"regretnet allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
        if allocation == "units" and n_agents != 1:
            raise ConfigError("regretnet's identical-units head is for one buyer")
        self.allocation = allocation
        if payments == "ir" and type_dim != n_items:
            raise ConfigError(
                f"regretnet payments = \"ir\" needs additive values (type_dim == n_items), got type_dim={type_dim}, "
                f"n_items={n_items}; use payments = \"free\""
            )
        self.low, self.high = _as_tuple(low), _as_tuple(high)
        self.n_agents, self.n_items, self.type_dim = int(n_agents), n_items, int(type_dim)
        self.hidden, self.activation, self.payments = hidden, activation, payments
        self.ir = payments == "ir"
        self.matmul_dtype = parse_matmul_dtype(matmul_dtype)
        scale = float(np.max(np.sum(high, axis=1)))
        if not scale > 0:
            scale = float(np.max(np.abs(np.concatenate([low, high])))) or 1.0
        self.value_scale = scale

        widths = (int(n_agents * type_dim),) + hidden
        n_scores = {
            "items": n_items * (int(n_agents) + 1),
            "unit_demand": 2 * (int(n_agents) + 1) * (n_items + 1),
            "units": n_items,
        }[allocation]
        shapes = tuple(zip(widths[1:], widths[:-1])) + (
            (n_scores, widths[-1]),
            (int(n_agents), widths[-1]),
        )
        linears = [_linear(w, b) for w, b in _uniform_init(key, shapes)]
        self.layers = tuple(linears[:-2])
        self.alloc_head, self.pay_head = linears[-2], linears[-1]

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "RegretNet":
        options = dict(options)
        check_options(cls.kind, options, ("hidden", "activation", "payments", "matmul_dtype"))
        low, high = _finite_bounds(cls.kind, setting)
        if key is None:
            key = jax.random.PRNGKey(0)
        return cls(
            low,
            high,
            n_items=getattr(setting, "n_items", 1),
            hidden=options.get("hidden", list(DEFAULT_HIDDEN)),
            activation=options.get("activation", "tanh"),
            payments=options.get("payments", "ir"),
            allocation=getattr(setting, "feasibility", "items"),
            matmul_dtype=options.get("matmul_dtype", DEFAULT_MATMUL_DTYPE),
            key=key,
        )

    def _normalise(self, reports: Float[Array, "batch agents dim"]) -> Float[Array, "batch agents dim"]:
        low = np.asarray(self.low)
        width = np.asarray(self.high) - low
        width = np.where(width > 0, width, 1.0)
        dtype = reports.dtype
        return (reports - jnp.asarray(low, dtype)) / jnp.asarray(width, dtype)

    def _network(self, x: Float[Array, " inputs"]) -> tuple[Float[Array, "agents items"], Float[Array, " agents"]]:
        """One profile: normalised flat input → (alloc (agents, items), payment-head output (agents,))."""
        act = ACTIVATIONS[self.activation]
        z = x
        dt = self.matmul_dtype
        for layer in self.layers:
            z = act(dense(layer, z, dt))
        scores = dense(self.alloc_head, z, dt)
        return allocation_from_scores(scores, self.allocation, self.n_agents, self.n_items), dense(self.pay_head, z, dt)

    def __call__(self, reports: Float[Array, "batch agents dim"]) -> Outcome:
        reports = jnp.asarray(reports)
        dtype = jnp.result_type(reports.dtype, self.alloc_head.weight.dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = self.alloc_head.weight.dtype
        reports = reports.astype(dtype)
        batch = reports.shape[0]
        x = self._normalise(reports).reshape(batch, self.n_agents * self.type_dim)
        alloc, raw = jax.vmap(self._network)(x)
        alloc = alloc.astype(dtype)
        raw = raw.astype(dtype)
        if self.ir:
            value = jnp.sum(reports * alloc, axis=-1)  # Σ_j b_ij alloc_ij  (type_dim == n_items)
            payments = jax.nn.sigmoid(raw) * value
        else:
            payments = self.value_scale * raw
        return Outcome(alloc=alloc, payments=payments)
