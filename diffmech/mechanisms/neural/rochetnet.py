"""RochetNet (Dütting, Feng, Narasimhan, Parkes & Ravindranath 2019, §"RochetNet"): a learned menu
of lotteries for ONE buyer, who picks the option she likes best.

Mathematics. The menu has K learned options k = 1..K, each a lottery a_k ∈ [0, 1]^m (a_kj: the
probability of item j, or of the j-th unit) with a price p_k ∈ R, plus the fixed null option
(a_0 = 0, p_0 = 0). The buyer with report b ∈ R^m has utility

    u_k(b) = b · a_k − p_k        for option k,

and the mechanism (``__call__``, used for evaluation) gives her an option of highest utility,

    k*(b) = argmax_{k ∈ {0, …, K}} u_k(b),     alloc = a_{k*},  payment = p_{k*}

(ties: the first maximiser, the null option being first). This is exactly DSIC and ex post IR for
every parameter value: a menu chosen by the buyer lets her, by reporting b, only pick some option
k*(b), and the truthful report picks one she likes best among all of them, so no report does
better (Rochet 1987: u(v) = max_k u_k(v) is convex and its gradient is the allocation); the null
option guarantees u ≥ u_0 = 0. Only floating-point error can make a measured regret or IR
shortfall non-zero.

Training (``training_outcome``) uses the softmax relaxation of the buyer's choice,

    w_k(b) = softmax_k(u_k(b) / τ),   alloc = Σ_k w_k a_k,   payment = Σ_k w_k p_k,

over all K + 1 options, with temperature τ (option ``temperature``, in the units of values;
default 0.0025 × the setting's value scale S = the largest value one deterministic allocation can
have for the buyer: Σ_j high_j for additive values and units, max_j high_j for unit demand). As
τ → 0 the relaxation tends to the hard menu at every b without ties.

Lotteries are parameterised by the setting's feasibility (``setting.feasibility``), with free
logits θ_k:

* ``"items"`` (additive heterogeneous items): a_kj = sigmoid(θ_kj);
* ``"unit_demand"``: a_k = softmax(θ_k1, …, θ_km, θ_k0)[1..m] (a dummy "no item" slot dropped),
  so a_kj ≥ 0 and Σ_j a_kj ≤ 1;
* ``"units"`` (identical units, a_kj = P(at least j units)): a_kj = Π_{l ≤ j} sigmoid(θ_kl), so
  a_k1 ≥ a_k2 ≥ … ≥ a_km — feasibility (1) of Bikhchandani–Mishra.

Prices p_k are unconstrained (a negative price would only lose revenue). Initialisation from the
PRNG key: logits θ ~ N(0, 1) (random lotteries), prices ~ U[0, S].

Design: the two learnable arrays (``logits`` (K, m or m+1), ``prices`` (K,)) are the only inexact
array leaves; everything else (feasibility, sizes, τ, S) is a static field, so the trainer's
``eqx.filter(model, eqx.is_inexact_array)`` sees exactly the menu, and checkpoints store the menu
as plain arrays (rebuilt into the skeleton built from the config).
"""

from __future__ import annotations

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

DEFAULT_MENU_SIZE = 500
DEFAULT_RELATIVE_TEMPERATURE = 0.0025
FEASIBILITIES = ("items", "unit_demand", "units")


def value_scale(setting, kind: str) -> float:
    """Largest value one deterministic feasible allocation can have for an agent (≥ a tiny
    positive number): max_i Σ_j high_ij, or max_ij high_ij for unit demand. Needs finite bounds."""
    lo, hi = (np.asarray(a, dtype=np.float64) for a in setting.type_bounds())
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ConfigError(f"mechanism {kind!r} needs bounded type supports; the setting's priors have infinite bounds")
    if getattr(setting, "feasibility", "items") == "unit_demand":
        scale = float(np.max(hi))
    else:
        scale = float(np.max(np.sum(np.maximum(hi, 0.0), axis=1)))
    return scale if scale > 0 else 1.0


def parse_temperature(kind: str, value: Any, scale: float, relative: float = DEFAULT_RELATIVE_TEMPERATURE) -> float:
    """Option ``temperature``: a number > 0 in value units; default ``relative`` × value scale."""
    if value is None:
        return relative * scale
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"mechanism.temperature for {kind} must be a number > 0 (in value units), got {value!r}")
    return float(value)


def _lotteries(logits: Array, feasibility: str) -> Array:
    """Lotteries (K, m) from free logits, feasible by construction (see the module docstring)."""
    if feasibility == "unit_demand":
        return jax.nn.softmax(logits, axis=-1)[:, :-1]  # last slot is the dummy
    if feasibility == "units":
        return jnp.cumprod(jax.nn.sigmoid(logits), axis=-1)
    return jax.nn.sigmoid(logits)


class RochetNet(Mechanism):
    """A learned menu of K lotteries plus the null option; the buyer takes her favourite.

    See the module docstring. Options: ``menu_size`` (K, default 500), ``temperature`` (τ of the
    training relaxation, value units, default 0.0025 × value scale).
    """

    logits: Float[Array, "menu slots"]
    prices: Float[Array, " menu"]
    n_items: int = eqx.field(static=True)
    feasibility: str = eqx.field(static=True)
    temperature: float = eqx.field(static=True)
    value_scale: float = eqx.field(static=True)

    kind: ClassVar[str] = "rochetnet"
    summary: ClassVar[str] = "RochetNet menu of lotteries for one buyer (Duetting et al. 2019); keys menu_size, temperature"
    trainable: ClassVar[bool] = True
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def initialise(
        cls,
        key: PRNGKeyArray,
        n_items: int,
        feasibility: str = "items",
        menu_size: int = DEFAULT_MENU_SIZE,
        value_scale: float = 1.0,
        temperature: float | None = None,
    ) -> "RochetNet":
        """Random lotteries (logits ~ N(0, 1)) and prices ~ U[0, value_scale] from ``key``."""
        if feasibility not in FEASIBILITIES:
            raise ConfigError(f"rochetnet needs feasibility in {', '.join(FEASIBILITIES)}, got {feasibility!r}")
        slots = n_items + 1 if feasibility == "unit_demand" else n_items
        k_logits, k_prices = jax.random.split(key)
        logits = jax.random.normal(k_logits, (menu_size, slots))
        prices = jax.random.uniform(k_prices, (menu_size,), minval=0.0, maxval=value_scale)
        tau = parse_temperature(cls.kind, temperature, value_scale)
        return cls(logits, prices, int(n_items), feasibility, tau, float(value_scale))

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "RochetNet":
        options = dict(options)
        check_options(cls.kind, options, ("menu_size", "temperature"))
        if setting.n_agents != 1:
            raise ConfigError(
                f"mechanism 'rochetnet' is a menu for one buyer, the setting has {setting.n_agents}; use 'regretnet' or 'affine_maximizer'"
            )
        n_items = int(getattr(setting, "n_items", 1))
        if setting.type_dim != n_items:
            raise ConfigError(f"mechanism 'rochetnet' needs one value per item (type_dim == n_items), got {setting.type_dim} and {n_items}")
        menu_size = options.get("menu_size", DEFAULT_MENU_SIZE)
        if isinstance(menu_size, bool) or not isinstance(menu_size, int) or not 1 <= menu_size <= 1_000_000:
            raise ConfigError(f"mechanism.menu_size must be an integer between 1 and 1000000, got {menu_size!r}")
        feasibility = getattr(setting, "feasibility", "items")
        if feasibility not in FEASIBILITIES:
            raise ConfigError(f"mechanism 'rochetnet' does not support feasibility {feasibility!r}")
        scale = value_scale(setting, cls.kind)
        if key is None:
            key = jax.random.PRNGKey(0)
        return cls.initialise(key, n_items, feasibility, menu_size, scale, options.get("temperature"))

    @property
    def menu_size(self) -> int:
        return int(self.prices.shape[0])

    def menu(self, dtype=None) -> tuple[Float[Array, "options items"], Float[Array, " options"]]:
        """All K + 1 options: lotteries (K+1, m) and prices (K+1,), the null option first."""
        a = _lotteries(self.logits, self.feasibility)
        p = self.prices
        if dtype is not None:
            a, p = a.astype(dtype), p.astype(dtype)
        a = jnp.concatenate([jnp.zeros((1, self.n_items), a.dtype), a], axis=0)
        p = jnp.concatenate([jnp.zeros((1,), p.dtype), p], axis=0)
        return a, p

    def _utilities(self, reports):
        reports = jnp.asarray(reports)
        dtype = jnp.result_type(reports.dtype, self.prices.dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = self.prices.dtype
        b = reports[:, 0, :].astype(dtype)  # (batch, m)
        a, p = self.menu(dtype)
        # u_k(b) = b·a_k − p_k, written like the setting's value Σ_j b_j a_j so that the buyer's
        # own utility is computed with the same rounding as the attack's
        u = jnp.sum(b[:, None, :] * a[None, :, :], axis=-1) - p[None, :]  # (batch, K+1)
        return u, a, p

    def __call__(self, reports: Float[Array, "batch 1 items"]) -> Outcome:
        u, a, p = self._utilities(reports)
        k = jnp.argmax(u, axis=-1)  # first maximiser; the null option is first
        return Outcome(alloc=a[k][:, None, :], payments=p[k][:, None])

    def training_outcome(self, reports: Float[Array, "batch 1 items"], temperature: float | None = None) -> Outcome:
        """Softmax relaxation: weights softmax(u/τ) over all options (τ = ``temperature`` if given)."""
        tau = self.temperature if temperature is None else float(temperature)
        u, a, p = self._utilities(reports)
        w = jax.nn.softmax(u / tau, axis=-1)  # (batch, K+1)
        return Outcome(alloc=(w @ a)[:, None, :], payments=(w @ p)[:, None])
