"""A neural mechanism for the social-choice setting: stochastic (softmax) or exactly deterministic.

Chen–He–Li–Sun (Section 2.2): a direct mechanism is a lottery q(v) over the K alternatives and
transfers t_i(v). This network reads the whole reported profile v ∈ R^{n×l}, normalised to the
type box [ℓ, h] (``setting.type_bounds()``),

    x = vec(2 (v − ℓ) ⊘ (h − ℓ) − 1) ∈ [−1, 1]^{n·l}      (a zero-width coordinate divides by 1),

and an MLP z = f_θ(x) ∈ R^{K + n} gives K logits s = z_{1..K} and the transfers

    t_i(v) = S · z_{K+i}       (unconstrained; interim IR is a trained constraint),

with S the largest |u_i^k| over the type box (Σ_m |A[k, i, m]| max(|ℓ_im|, |h_im|), maximised over
i and k; the largest |bound| with separable payoffs). The allocation head (option ``head``):

- ``"softmax"``: q(v) = softmax(s), a randomised mechanism;
- ``"straight_through"``: a deterministic mechanism. With ĥ = one_hot(argmax_k s_k) (first index on
  ties) and σ = softmax(s/τ) (τ = option ``temperature``),

      q(v) = ĥ + (σ − stop_gradient(σ)),

  whose value is exactly ĥ (σ − σ = 0 in floating point, then ĥ + 0 = ĥ) and whose derivative is
  ∂σ/∂s, the softmax's at temperature τ (the straight-through estimator). Training and evaluation
  call the same function (``training_outcome`` is ``__call__``), so the mechanism that is trained,
  checkpointed and evaluated chooses one alternative at every profile.

- ``"dither"`` (a setting with ``dither = true`` only): a deterministic mechanism built on the
  agents' dispersed information. The network reads the atoms only (not the u's) and gives a lottery
  q(t) = softmax(s) and transfers t_i(t); the alternative is chosen by Chen–He–Li–Sun's dither
  (:func:`diffmech.purify.dither_choice` with R = 1): the first k with (Σ_i u_i) mod 1 < q^1 + … + q^k.
  For fixed u_i, (u_i + Σ_{j≠i} u_j) mod 1 ~ U[0, 1) exactly (n ≥ 2), so agent i's interim
  allocation and utility, for every report (t', u'), are exactly those of the lottery q: the
  deterministic rule is an exact purification, and ``training_outcome`` is that expectation, the
  lottery itself (the hard choice integrated over the dither in closed form rather than by samples).
  With one agent the dither would be u_1 itself, which she chooses: the head refuses n = 1 (the
  paper's one-agent counterexample).

With finite types a deterministic rule is a table over atoms and cannot beat the MILP optimum of
:mod:`diffmech.social_choice_lp`; with the setting's ``dither`` (a payoff-irrelevant u_i ~ U[0, 1]
in every type) the ``straight_through`` network also reads the u's and may implement a lottery by
regions of (u_1, …, u_n) — the purification of Chen–He–Li–Sun, Theorem 1 — and the ``dither`` head
builds that purification in.
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
from ...outcome import SocialChoiceOutcome, social_choice_outcome
from ..base import Mechanism, check_options
from .precision import DEFAULT_MATMUL_DTYPE
from .public_simple import MLP, mlp
from .regretnet import ACTIVATIONS, _finite_bounds, _parse_hidden

HEADS = ("softmax", "straight_through", "dither")
DEFAULT_HIDDEN = (64, 64)


def straight_through(logits: Float[Array, "batch K"], temperature: float = 1.0) -> Float[Array, "batch K"]:
    """one_hot(argmax s) in value, ∂softmax(s/τ)/∂s in gradient (module docstring)."""
    soft = jax.nn.softmax(logits / temperature, axis=-1)
    hard = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=soft.dtype)
    return hard + (soft - jax.lax.stop_gradient(soft))


def _payment_scale(setting, low: np.ndarray, high: np.ndarray) -> float:
    """S = max_{i,k} Σ_m |A[k, i, m]| max(|ℓ_im|, |h_im|), or the largest |bound| (separable payoffs)."""
    bound = np.maximum(np.abs(low), np.abs(high))  # (n, l)
    a = getattr(setting, "payoff_array", None)
    s = float(np.max(np.einsum("kim,im->ki", np.abs(a), bound))) if a is not None else float(np.max(bound))
    return s if s > 0 and math.isfinite(s) else 1.0


class SocialChoiceNet(Mechanism):
    """MLP of the reported profile → lottery (softmax) or one alternative (straight-through) and
    unconstrained transfers (module docstring)."""

    net: MLP
    low: tuple[float, ...] = eqx.field(static=True)
    width: tuple[float, ...] = eqx.field(static=True)
    n_agents: int = eqx.field(static=True)
    n_alternatives: int = eqx.field(static=True)
    head: str = eqx.field(static=True)
    temperature: float = eqx.field(static=True)
    payment_scale: float = eqx.field(static=True)
    dither: bool = eqx.field(static=True, default=False)  # the last coordinate of each type is u_i

    kind: ClassVar[str] = "social_choice_net"
    summary: ClassVar[str] = (
        "neural social-choice mechanism: MLP of the profile → lottery or one alternative, and transfers "
        "(keys: hidden, activation, head = softmax|straight_through|dither, temperature, matmul_dtype)"
    )
    trainable: ClassVar[bool] = True

    def __init__(self, low, high, n_alternatives: int, *, payment_scale: float = 1.0, hidden=DEFAULT_HIDDEN,
                 activation: str = "tanh", head: str = "softmax", temperature: float = 1.0,
                 matmul_dtype: str = DEFAULT_MATMUL_DTYPE, dither: bool = False, key: PRNGKeyArray):
        """``low``/``high``: the type box ``(n, l)``; ``n_alternatives``: K; ``dither``: the last
        coordinate of every type is the payoff-irrelevant u_i (required by ``head = "dither"``,
        whose network then reads the other coordinates only)."""
        if head not in HEADS:
            raise ConfigError(f"mechanism.head must be one of {', '.join(HEADS)}, got {head!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"mechanism.activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (temperature > 0 and math.isfinite(temperature)):
            raise ConfigError(f"mechanism.temperature must be a positive number, got {temperature!r}")
        hidden = _parse_hidden(list(hidden) if isinstance(hidden, (list, tuple)) else hidden)
        if head == "dither" and not dither:
            raise ConfigError('mechanism.head = "dither" needs the setting\'s dispersed information: set setting.dither = true')
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        if head == "dither" and low.shape[0] < 2:
            raise ConfigError('mechanism.head = "dither" needs at least two agents: with one agent the dither is her own u, '
                              "which she chooses (Chen–He–Li–Sun's one-agent counterexample); use head = \"straight_through\"")
        if head == "dither":  # the network reads the atoms, not the u's
            low, high = low[:, :-1], high[:, :-1]
        n = low.shape[0]
        w = (high - low).reshape(-1)
        self.low = tuple(float(v) for v in low.reshape(-1))
        self.width = tuple(float(v) if v > 0 else 1.0 for v in w)
        self.n_agents, self.n_alternatives = n, int(n_alternatives)
        self.head, self.temperature, self.payment_scale = head, float(temperature), float(payment_scale)
        self.dither = bool(dither)
        self.net = mlp(key, (low.size,) + hidden + (self.n_alternatives + n,), activation, matmul_dtype)

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "SocialChoiceNet":
        if getattr(setting, "kind", "") != "social_choice":
            raise ConfigError(
                f"mechanism 'social_choice_net' is defined for the social_choice setting, not {getattr(setting, 'kind', type(setting).__name__)!r}"
            )
        check_options(cls.kind, options, ("hidden", "activation", "head", "temperature", "matmul_dtype"))
        head = options.get("head", "softmax")
        if "temperature" in options and head != "straight_through":
            raise ConfigError('mechanism.temperature only sets the straight-through gradient; use it with head = "straight_through"')
        low, high = _finite_bounds(cls.kind, setting)
        return cls(low, high, setting.n_alternatives, payment_scale=_payment_scale(setting, low, high),
                   hidden=options.get("hidden", list(DEFAULT_HIDDEN)), activation=options.get("activation", "tanh"), head=head,
                   temperature=options.get("temperature", 1.0), matmul_dtype=options.get("matmul_dtype", DEFAULT_MATMUL_DTYPE),
                   dither=bool(getattr(setting, "dither", False)), key=key if key is not None else jax.random.PRNGKey(0))

    def logits_and_payments(self, reports: Float[Array, "batch agents dim"]) -> tuple[Float[Array, "batch K"], Float[Array, "batch agents"]]:
        """The K logits s and the transfers t_i = S z_{K+i} for every profile."""
        reports = jnp.asarray(reports)
        leaf = jax.tree_util.tree_leaves(self.net)[0]
        dtype = jnp.result_type(reports.dtype, leaf.dtype)
        dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else leaf.dtype
        if self.head == "dither":
            reports = reports[..., :-1]
        flat = reports.astype(dtype).reshape(reports.shape[0], -1)
        x = 2.0 * (flat - jnp.asarray(self.low, dtype)) / jnp.asarray(self.width, dtype) - 1.0
        z = jax.vmap(self.net)(x)
        return z[:, : self.n_alternatives], self.payment_scale * z[:, self.n_alternatives :]

    def __call__(self, reports: Float[Array, "batch agents dim"]) -> SocialChoiceOutcome:
        s, t = self.logits_and_payments(reports)
        if self.head == "dither":
            from ...purify import dither_choice

            u = jnp.asarray(reports)[..., -1].astype(s.dtype)
            return social_choice_outcome(jax.lax.stop_gradient(dither_choice(jax.nn.softmax(s, axis=-1), u, 1)), t)
        choice = jax.nn.softmax(s, axis=-1) if self.head == "softmax" else straight_through(s, self.temperature)
        return social_choice_outcome(choice, t)

    def training_outcome(self, reports: Float[Array, "batch agents dim"]) -> SocialChoiceOutcome:
        """The mechanism itself, except for the ``dither`` head: its lottery q(t), the exact
        expectation of the dithered choice over the u's (module docstring)."""
        if self.head != "dither":
            return self(reports)
        s, t = self.logits_and_payments(reports)
        return social_choice_outcome(jax.nn.softmax(s, axis=-1), t)
