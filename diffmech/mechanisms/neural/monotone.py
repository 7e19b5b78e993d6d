"""A single-parameter network that is DSIC and ex post IR by construction (MyersonNet-like).

Mathematics. Bidder i reports a scalar b_i with support [ℓ_i, u_i]; x_i = (b_i − ℓ_i)/(u_i − ℓ_i)
is her normalised bid. Each bidder has a min-max network (Sill 1998; Dütting et al. 2019)

    h_i(x) = min_{g=1..G} max_{k=1..K} ( w_{igk} · x + β_{igk} ),     w_{igk} = exp(ρ_{igk}) > 0,

a strictly increasing, piecewise-linear function of x (every piece has positive slope; max and
min of increasing functions are increasing). With ``shared = true`` one h is used by all bidders
(meant for identical priors; with different supports it still acts on the normalised bid).
The allocation is a softmax against a "keep the item" slot with logit 0 and temperature τ:

    a_i(b) = exp(h_i(x_i)/τ) / (1 + Σ_j exp(h_j(x_j)/τ))
           = sigmoid( h_i(x_i)/τ − L_{−i} ),    L_{−i} = log(1 + Σ_{j≠i} exp(h_j(x_j)/τ)).

The second form is what is computed (logsumexp, numerically stable for any τ). L_{−i} does not
depend on b_i, so a_i(·, b_{−i}) is nondecreasing in b_i, and Myerson's payment identity

    p_i(b) = b_i · a_i(b) − ∫_{ℓ_i}^{b_i} a_i(z, b_{−i}) dz

makes truthful bidding a dominant strategy: for true value v and report b,
u_i(v; v) − u_i(v; b) = ∫_b^v a_i(z) dz − (v − b) a_i(b) ≥ 0 by monotonicity. The truthful
utility u_i(v; v) = ∫_{ℓ_i}^{v} a_i ≥ 0 at every profile, so the mechanism is also ex post IR.

Quadrature. The integral is computed inside ``jit`` by composite Gauss–Legendre quadrature on
[0, x_i] in normalised units, ``quad_nodes`` nodes in panels of ``quad_order`` nodes:

    ∫_{ℓ_i}^{b_i} a_i dz ≈ (b_i − ℓ_i) Σ_k ω_k · sigmoid( h_i(x_i t_k)/τ − L_{−i} ),

with (t_k, ω_k) the composite rule on [0, 1] (Σ_k ω_k = 1). All nodes, bidders and profiles are
evaluated in one vectorised call of h; only h_i changes along the path, so L_{−i} is computed once
per profile and reused at every node. Because ω_k > 0 and a_i ≥ 0, the computed integral is ≥ 0 and
ex post IR (p_i ≤ b_i a_i) holds exactly, not just up to quadrature error. DSIC holds up to the
quadrature error: if |ε(b)| bounds the error of the integral at report b, a misreport gains at most
|ε(v)| + |ε(b)|.

The integrand is a sigmoid of slope (dh/dx)/τ in x, analytic except at the kinks of h; the
error depends on the ratio of the panel width x_i/P to the transition width τ/(dh/dx), and is
dominated by the kinks of h inside the transition (where the derivative of the integrand jumps),
so it decays like (x_i/P)^2..(x_i/P)^3. Measured with 10×10 pieces (τ = 0.02, 128 nodes in 32
panels of 4) against scipy's adaptive quadrature in float64, over 120 random initialisations of
three asymmetric bidders (10 profiles each, including bids at the top of the supports), the
payment error relative to the support width u_i − ℓ_i was: mean ≈ 1.4e-6, median of the
per-initialisation worst ≈ 1.2e-5, overall worst 8.4e-5 (64 nodes: worst 2.7e-4; 256 nodes:
1.4e-5; 1024 nodes: 1.4e-6). The float32 computation adds ~1e-7. So DSIC holds up to
≈ 2e-4·(u_i − ℓ_i) at initialisation. The error grows if training steepens h (dh/dx/τ larger):
raise ``quad_nodes`` (cost is linear in it) or ``temperature`` in that case.

Defaults. ``temperature = 0.02``: with the initial h(x) ≈ x − 0.5 (slopes exp(0.2·N(0,1)),
intercepts ≈ −0.5·w) the allocation moves from 12% to 88% of the item over 8% of the support, i.e.
close to a deterministic auction with reserve at the middle of the support (Myerson's reserve
for uniform priors), while keeping the payment quadrature accurate. Bids near the top of the
support have logits ≈ +0.5/τ = +25, near the bottom ≈ −25.

Design decisions. The network weights ρ and β are the only array leaves
(``eqx.filter(model, eqx.is_inexact_array)`` returns exactly them). Support bounds, τ, sizes and
quadrature settings are static fields (Python floats/ints/tuples); quadrature nodes are computed
with numpy at trace time and enter the graph as constants. The min-max is evaluated as a fused
(jitted) broadcast-and-reduce, and differentiated by a custom JVP through the active piece only
(see :func:`minmax`), which keeps the backward pass cheap in the number of quadrature nodes. Parameters are float32 by default,
float64 if created with x64 enabled; the computation runs in the promoted dtype of reports and
parameters.
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

DEFAULT_GROUPS = 5
DEFAULT_UNITS = 5
DEFAULT_TEMPERATURE = 0.02
DEFAULT_QUAD_NODES = 64
DEFAULT_QUAD_ORDER = 4
OPTIONS = ("groups", "units", "shared", "temperature", "quad_nodes", "quad_order")


@functools.lru_cache(maxsize=32)
def composite_gauss_legendre(n_nodes: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes t and weights ω of composite Gauss–Legendre on [0, 1]: n_nodes/order panels of
    ``order`` nodes each; Σ ω = 1, all ω > 0."""
    g, w = np.polynomial.legendre.leggauss(order)
    panels = n_nodes // order
    left = np.arange(panels, dtype=np.float64)[:, None] / panels
    t = (left + (g[None, :] + 1.0) / (2.0 * panels)).ravel()
    omega = np.broadcast_to(w[None, :] / (2.0 * panels), (panels, order)).ravel()
    t.setflags(write=False)
    omega = np.array(omega)
    omega.setflags(write=False)
    return t, omega


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"mechanism.{name} must be a positive integer, got {value!r}")
    return int(value)


@jax.custom_jvp
def minmax(x: Array, w: Array, beta: Array) -> Array:
    """min_g max_k (w[i, g, k]·x[..., i, p] + beta[i, g, k]) for x of shape (..., agents, points) and
    w, beta of shape (nets, G, K) with nets ∈ {1, agents}.

    The value is a fused broadcast-and-reduce. The derivative (custom JVP) locates the active
    piece (g*, k*) and differentiates w_{ig*k*}·x + β_{ig*k*}: the almost-everywhere derivative of
    the min-max, as a gather (and a scatter-add in reverse mode) over the points instead of masks
    over every (point, group, unit), several times faster in training.
    """
    return _minmax_value(x, w, beta)


@jax.jit  # jitted even when the mechanism is called eagerly, so the pieces are never materialised
def _minmax_value(x: Array, w: Array, beta: Array) -> Array:
    # The barrier keeps XLA from fusing the two reductions into one: on GPU that nested fusion
    # took over five minutes to compile at attack sizes (H100, jax 0.11); apart it takes seconds.
    group_max = jax.lax.optimization_barrier(jnp.max(x[..., None, None] * w[:, None] + beta[:, None], axis=-1))
    return jnp.min(group_max, axis=-1)


@jax.jit
def _active_piece(x: Array, w: Array, beta: Array) -> tuple[Array, Array]:
    """(net index, flat index g*·K + k*) of the active piece at each point."""
    nets, _, units = w.shape
    net = jnp.zeros((1, 1), jnp.int32) if nets == 1 else jnp.arange(nets).reshape((nets, 1))
    group_max = jax.lax.optimization_barrier(  # see _minmax_value
        jnp.max(x[..., None, None] * w[:, None] + beta[:, None], axis=-1)
    )  # (..., agents, points, G)
    g_best = jnp.argmin(group_max, axis=-1)  # (..., agents, points)
    in_group = x[..., None] * w[net, g_best] + beta[net, g_best]  # (..., agents, points, K)
    k_best = jnp.argmax(in_group, axis=-1)
    return net, g_best * units + k_best


@minmax.defjvp
def _minmax_jvp(primals, tangents):
    x, w, beta = primals
    dx, dw, dbeta = tangents
    nets, groups, units = w.shape
    net, flat = _active_piece(x, w, beta)
    w_sel = w.reshape(nets, groups * units)[net, flat]
    dw_sel = dw.reshape(nets, groups * units)[net, flat]
    dbeta_sel = dbeta.reshape(nets, groups * units)[net, flat]
    return minmax(x, w, beta), w_sel * dx + dw_sel * x + dbeta_sel


@functools.partial(jax.jit, static_argnums=1)
def _init_minmax(key: PRNGKeyArray, shape: tuple[int, int, int]) -> tuple[Array, Array]:
    """h(x) ≈ x − 0.5 at initialisation: slopes w = exp(0.2·N(0,1)) ≈ 1, each linear piece crossing
    zero near the middle of the support, plus intercept noise 0.05·N(0,1). One compiled call."""
    k_w, k_b = jax.random.split(key)
    size = math.prod(shape)  # flat draws: XLA compiles 1-D random bits much faster than n-D
    raw_w = 0.2 * jax.random.normal(k_w, (size,)).reshape(shape)
    beta = -0.5 * jnp.exp(raw_w) + 0.05 * jax.random.normal(k_b, (size,)).reshape(shape)
    return raw_w, beta


class MonotoneNet(Mechanism):
    """Per-bidder monotone min-max networks, softmax allocation, Myerson payments by quadrature.

    See the module docstring for the mathematics. Options (``from_config``): ``groups`` (G,
    default 5), ``units`` (K, default 5), ``shared`` (one h for all bidders, default false),
    ``temperature`` (τ > 0 on the h scale, default 0.02), ``quad_nodes`` (default 64, a multiple
    of ``quad_order``), ``quad_order`` (Gauss–Legendre nodes per panel, default 4).
    """

    raw_w: Float[Array, "nets groups units"]
    beta: Float[Array, "nets groups units"]
    low: tuple[float, ...] = eqx.field(static=True)
    high: tuple[float, ...] = eqx.field(static=True)
    n_agents: int = eqx.field(static=True)
    shared: bool = eqx.field(static=True)
    temperature: float = eqx.field(static=True)
    quad_nodes: int = eqx.field(static=True)
    quad_order: int = eqx.field(static=True)

    kind: ClassVar[str] = "monotone"
    summary: ClassVar[str] = (
        "DSIC-by-construction monotone min-max net, Myerson payments (single item); "
        "keys groups, units, shared, temperature, quad_nodes, quad_order"
    )
    trainable: ClassVar[bool] = True
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    def __init__(
        self,
        low,
        high,
        groups: int = DEFAULT_GROUPS,
        units: int = DEFAULT_UNITS,
        shared: bool = False,
        temperature: float = DEFAULT_TEMPERATURE,
        quad_nodes: int = DEFAULT_QUAD_NODES,
        quad_order: int = DEFAULT_QUAD_ORDER,
        *,
        key: PRNGKeyArray,
    ):
        low = np.asarray(low, dtype=np.float64).reshape(-1)
        high = np.asarray(high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape or low.size == 0:
            raise ConfigError(f"type bounds must have one entry per bidder, got {low.shape} and {high.shape}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ConfigError("mechanism monotone needs bounded supports; the setting's priors have infinite bounds")
        groups = _positive_int("groups", groups)
        units = _positive_int("units", units)
        quad_nodes = _positive_int("quad_nodes", quad_nodes)
        quad_order = _positive_int("quad_order", quad_order)
        if quad_nodes % quad_order:
            raise ConfigError(
                f"mechanism.quad_nodes must be a multiple of mechanism.quad_order ({quad_order}), got {quad_nodes}"
            )
        if not isinstance(shared, bool):
            raise ConfigError(f"mechanism.shared must be true or false, got {shared!r}")
        if (
            not isinstance(temperature, (int, float, np.floating))
            or isinstance(temperature, bool)
            or not np.isfinite(temperature)
            or temperature <= 0
        ):
            raise ConfigError(f"mechanism.temperature must be a positive number, got {temperature!r}")

        self.low = tuple(float(v) for v in low)
        self.high = tuple(float(v) for v in high)
        self.n_agents = int(low.size)
        self.shared = shared
        self.temperature = float(temperature)
        self.quad_nodes, self.quad_order = quad_nodes, quad_order

        nets = 1 if shared else self.n_agents
        self.raw_w, self.beta = _init_minmax(key, (nets, groups, units))

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "MonotoneNet":
        options = dict(options)
        check_options(cls.kind, options, OPTIONS)
        if setting.type_dim != 1 or getattr(setting, "n_items", 1) != 1:
            raise ConfigError(
                "mechanism monotone is single-parameter: it needs one item and scalar types "
                f"(got type_dim={setting.type_dim}, n_items={getattr(setting, 'n_items', 1)})"
            )
        low, high = setting.type_bounds()
        if key is None:
            key = jax.random.PRNGKey(0)
        return cls(
            np.asarray(low)[:, 0],
            np.asarray(high)[:, 0],
            groups=options.get("groups", DEFAULT_GROUPS),
            units=options.get("units", DEFAULT_UNITS),
            shared=options.get("shared", False),
            temperature=options.get("temperature", DEFAULT_TEMPERATURE),
            quad_nodes=options.get("quad_nodes", DEFAULT_QUAD_NODES),
            quad_order=options.get("quad_order", DEFAULT_QUAD_ORDER),
            key=key,
        )

    def monotone_h(self, x: Float[Array, "... agents points"]) -> Float[Array, "... agents points"]:
        """h_i(x) = min_g max_k (exp(ρ_igk)·x + β_igk) at normalised points x[..., i, :] of bidder i."""
        return minmax(x, jnp.exp(self.raw_w).astype(x.dtype), self.beta.astype(x.dtype))

    def _normalise(self, bids: Float[Array, "batch agents"]) -> Float[Array, "batch agents"]:
        low = np.asarray(self.low)
        width = np.asarray(self.high) - low
        width = np.where(width > 0, width, 1.0)
        return (bids - jnp.asarray(low, bids.dtype)) / jnp.asarray(width, bids.dtype)

    def _logits_and_rest(self, bids: Float[Array, "batch agents"], t: Float[Array, " nodes"]):
        """h_i(x_i)/τ, h_i(x_i·t_k)/τ and L_{−i} = log(1 + Σ_{j≠i} exp(h_j(x_j)/τ))."""
        x = self._normalise(bids)
        pts = jnp.concatenate([x[..., None], x[..., None] * t], axis=-1)  # (batch, agents, 1 + nodes)
        logits = self.monotone_h(pts) / jnp.asarray(self.temperature, bids.dtype)
        own, path = logits[..., 0], logits[..., 1:]
        full = jnp.concatenate([jnp.zeros_like(own[..., :1]), own], axis=-1)  # (batch, 1 + agents)
        n = self.n_agents
        exclude = np.concatenate([np.zeros((n, 1), bool), np.eye(n, dtype=bool)], axis=1)  # (agents, 1 + agents)
        rest = jax.nn.logsumexp(jnp.where(exclude, -jnp.inf, full[..., None, :]), axis=-1)  # (batch, agents)
        return own, path, rest

    def __call__(self, reports: Float[Array, "batch agents 1"]) -> Outcome:
        reports = jnp.asarray(reports)
        dtype = jnp.result_type(reports.dtype, self.raw_w.dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = self.raw_w.dtype
        # reports outside the support are treated as its nearest end (as Myerson does)
        bids = jnp.clip(reports[..., 0].astype(dtype), jnp.asarray(self.low, dtype), jnp.asarray(self.high, dtype))
        t_np, w_np = composite_gauss_legendre(self.quad_nodes, self.quad_order)
        t, omega = jnp.asarray(t_np, dtype), jnp.asarray(w_np, dtype)
        own, path, rest = self._logits_and_rest(bids, t)
        alloc = jax.nn.sigmoid(own - rest)  # a_i(b)
        path_alloc = jax.nn.sigmoid(path - rest[..., None])  # a_i(ℓ_i + (b_i − ℓ_i) t_k, b_−i)
        low = jnp.asarray(np.asarray(self.low), dtype)
        integral = (bids - low) * jnp.sum(path_alloc * omega, axis=-1)
        payments = bids * alloc - integral
        return Outcome(alloc=alloc[..., None], payments=payments)
