"""A learned symmetric payment rule p^s(own bid, multiset of other bids) (Deb–Pai, issue 6).

Mathematics. Bids are normalised to x = (b − c)/s with a centre c and scale s fixed at
construction (the bid range the rule is meant for). The rule is a DeepSets network
(Zaheer et al. 2017) over the other bids, conditioned on the own bid:

    p^s(b, b_−) = s_p · ρ( x, (1/(n−1)) Σ_{j} φ(x, x_j) ),

with φ: R² → R^d and ρ: R^{1+d} → R MLPs and s_p a payment scale. The mean over the others makes
p^s a function of the multiset {b_j} (Deb–Pai's symmetry: one rule for every bidder, no
identity input), and the same network is applied to every bidder, so the auction it defines is
anonymous by construction. With n − 1 = 1 this is a general function of (b, b_j).

A rule that implements a hierarchical mechanism must pay very different amounts for nearby
opponent bids (Example 1 switches between p^u and p^l at the opponent bid b̂), so φ sees
the pair (x, x_j), not x_j alone.

Also here: :class:`SeparablePayment`, a low-rank rule Σ_k α_k(b) ψ̄_k(b_−) (Deb–Pai's event rules,
eq. (7)) that costs B + S network calls on B bids × S profiles, and :class:`ReserveGate`, which
makes bids below the reserve pay nothing (why it is needed: :mod:`diffmech.symmetric_train`).
Rules with a ``relaxed_outer(own, others, τ)`` method have a smoothed training version
(:func:`relaxed_payment_outer`).
"""

from __future__ import annotations

from typing import Any, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ...errors import ConfigError
from ..symmetric_auction import PaymentRule
from .precision import DEFAULT_MATMUL_DTYPE
from .public_simple import mlp
from .regretnet import ACTIVATIONS, _parse_hidden

DEFAULT_HIDDEN = (64, 64)


class DeepSetsPayment(PaymentRule):
    """p^s(b, b_−) = s_p ρ(x, mean_j φ(x, x_j)) (module docstring)."""

    phi: object
    rho: object
    centre: float = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    pay_scale: float = eqx.field(static=True)

    def __init__(self, bid_low: float, bid_high: float, *, hidden: Sequence[int] = DEFAULT_HIDDEN, features: int = 16,
                 activation: str = "tanh", pay_scale: float | None = None, matmul_dtype: str = DEFAULT_MATMUL_DTYPE,
                 key: PRNGKeyArray):
        if not (bid_high > bid_low):
            raise ConfigError(f"the bid range must have bid_high > bid_low, got [{bid_low}, {bid_high}]")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        hidden = _parse_hidden(list(hidden))
        if not isinstance(features, int) or features < 1:
            raise ConfigError(f"features must be a positive integer, got {features!r}")
        k1, k2 = jax.random.split(key)
        self.phi = mlp(k1, (2,) + hidden + (features,), activation, matmul_dtype)
        self.rho = mlp(k2, (1 + features,) + hidden + (1,), activation, matmul_dtype)
        self.centre = 0.5 * (bid_low + bid_high)
        self.scale = 0.5 * (bid_high - bid_low)
        self.pay_scale = float(pay_scale) if pay_scale is not None else max(abs(bid_low), abs(bid_high), 1.0)

    def __call__(self, own: Float[Array, " batch"], others: Float[Array, "batch others"]) -> Float[Array, " batch"]:
        x = (own - self.centre) / self.scale
        xo = (others - self.centre) / self.scale
        pairs = jnp.stack([jnp.broadcast_to(x[:, None], xo.shape), xo], axis=-1)  # (batch, others, 2)
        pooled = jax.vmap(jax.vmap(self.phi))(pairs).mean(axis=1)  # (batch, features)
        out = jax.vmap(self.rho)(jnp.concatenate([x[:, None], pooled], axis=-1))[:, 0]
        return self.pay_scale * out


def relaxed_payment_outer(rule, own, others, tau):
    """p̃^s(own[b], others[s]): the relaxed gate at temperature τ if the rule has one, else the rule."""
    if tau is not None and hasattr(rule, "relaxed_outer"):
        return rule.relaxed_outer(own, others, tau)
    return rule.outer(own, others)


class ReserveGate(PaymentRule):
    """p^s(b, b_−) = 1{b ≥ r} · base(b, b_−): bids below the reserve pay nothing (module docstring).

    ``relaxed_outer`` is the training version with the gate σ((b − r)/τ).
    """

    base: PaymentRule
    reserve: float = eqx.field(static=True)

    def __call__(self, own: Float[Array, " batch"], others: Float[Array, "batch m"]) -> Float[Array, " batch"]:
        pay = self.base(own, others)
        return jnp.where(own >= self.reserve, pay, jnp.zeros((), pay.dtype))

    def outer(self, own: Float[Array, " B"], others: Float[Array, "S m"]) -> Float[Array, "B S"]:
        pay = self.base.outer(own, others)
        return jnp.where((own >= self.reserve)[:, None], pay, jnp.zeros((), pay.dtype))

    def relaxed_outer(self, own: Float[Array, " B"], others: Float[Array, "S m"], tau) -> Float[Array, "B S"]:
        gate = jax.nn.sigmoid((own - self.reserve) / tau)
        return gate[:, None] * relaxed_payment_outer(self.base, own, others, tau)


class SeparablePayment(PaymentRule):
    """A low-rank symmetric payment rule, cheap to evaluate on all (bid, others' profile) pairs.

    With normalised bids x = (b − c)/s (centre c, scale s of the bid range given at construction),
    an own-bid network α: ℝ → ℝ^{K+1} and K features ψ_k of one other bid, pooled by the mean,

        p^s(b, b_−) = s_p [α_0(x) + Σ_k α_k(x) ψ̄_k(b_−)],   ψ̄(b_−) = (1/(n−1)) Σ_j ψ(b_j),

    the form of Deb–Pai's event rules (Observation 1, eq. (7): Σ_j π_j(b) w_j(b_−)) with K learned
    "events" w = ψ̄ (for two bidders any rank-(K+1) function of (b, b_j)); symmetric in b_− by the
    mean. ``others_features="events"`` (default): ψ_k(b_j) = σ((β_k − b_j)/h_k), a smoothed
    "other bid ≤ β_k", with learned cutoffs β_k (initially evenly spaced on the bid range) and widths
    h_k (initially the spacing), so ψ̄_k is the smoothed type-1 event of Appendix C and bidder i's
    expected payment is α_0(b) + Σ_k α_k(b) G̃_−i(β_k): different bid distributions G_i give
    different rows even when they have equal means (a near-linear MLP feature would see only the
    means, an ill-conditioned start). ``others_features="mlp"``: ψ an MLP of x_j. With ``winner=True`` a second term is paid only by the highest bid,

        + 1{b ≥ max b_−} · s_p [β_0(x) + Σ_k β_k(x) χ̄_k(b_−)],

    so losers' and winners' payments can differ sharply at b = max b_− (what ex post IR needs:
    losers pay ≤ 0, winners ≤ their value); in training 1{b ≥ max b_−} is relaxed to
    σ((b − τ logsumexp(b_−/τ))/τ), matching the softmax allocation (S1). ``outer`` on B bids × S
    profiles costs B + S network calls and a (B, K) × (K, S) product (DeepSets costs B·S calls).
    """

    own_net: Any
    others_net: Any
    cutoffs: Any
    log_widths: Any
    features: int = eqx.field(static=True)
    winner: bool = eqx.field(static=True)
    centre: float = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    pay_scale: float = eqx.field(static=True)

    def __init__(self, bid_low: float, bid_high: float, *, hidden: Sequence[int] = (64, 64), features: int = 8,
                 winner: bool = False, others_features: str = "events", activation: str = "tanh",
                 pay_scale: float | None = None, matmul_dtype: str = DEFAULT_MATMUL_DTYPE, key: PRNGKeyArray):
        if not (bid_high > bid_low):
            raise ConfigError(f"the bid range must have bid_high > bid_low, got [{bid_low}, {bid_high}]")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if not isinstance(features, int) or features < 1:
            raise ConfigError(f"features must be a positive integer, got {features!r}")
        if others_features not in ("events", "mlp"):
            raise ConfigError(f"others_features must be 'events' or 'mlp', got {others_features!r}")
        hidden = _parse_hidden(list(hidden))
        parts = 2 if winner else 1
        k1, k2 = jax.random.split(key)
        self.own_net = mlp(k1, (1,) + hidden + (parts * (features + 1),), activation, matmul_dtype)
        dtype = jnp.result_type(float)
        if others_features == "mlp":
            self.others_net = mlp(k2, (1,) + hidden + (parts * features,), activation, matmul_dtype)
            self.cutoffs = self.log_widths = None
        else:
            self.others_net = None
            K = parts * features
            spacing = 2.0 / features  # in normalised units, over [−1, 1]
            cut = np.tile(np.linspace(-1.0 + 0.5 * spacing, 1.0 - 0.5 * spacing, features), parts)
            self.cutoffs = jnp.asarray(cut, dtype)
            self.log_widths = jnp.full((K,), np.log(spacing), dtype)
        self.features, self.winner = features, bool(winner)
        self.centre = 0.5 * (bid_low + bid_high)
        self.scale = 0.5 * (bid_high - bid_low)
        self.pay_scale = float(pay_scale) if pay_scale is not None else max(abs(bid_low), abs(bid_high), 1.0)

    def _own(self, own):
        return jax.vmap(self.own_net)(((own - self.centre) / self.scale)[:, None])  # (B, parts (K + 1))

    def _pooled(self, others):
        x = ((others - self.centre) / self.scale)[..., None]  # (S, m, 1)
        if self.others_net is not None:
            return jax.vmap(jax.vmap(self.others_net))(x).mean(axis=-2)  # (S, parts K)
        return jax.nn.sigmoid((self.cutoffs - x) / jnp.exp(self.log_widths)).mean(axis=-2)

    def _combine(self, a, w, win, outer: bool):
        """s_p[α_0 + α·ψ̄ + win·(β_0 + β·χ̄)]; ``outer``: a (B, ·), w (S, ·) → (B, S)."""
        K = self.features
        if outer:
            base = a[:, :1] + a[:, 1 : K + 1] @ w[:, :K].T
        else:
            base = a[:, 0] + jnp.sum(a[:, 1 : K + 1] * w[:, :K], axis=-1)
        if self.winner:
            if outer:
                extra = a[:, K + 1 : K + 2] + a[:, K + 2 :] @ w[:, K:].T
            else:
                extra = a[:, K + 1] + jnp.sum(a[:, K + 2 :] * w[:, K:], axis=-1)
            base = base + win * extra
        return self.pay_scale * base

    def __call__(self, own: Float[Array, " batch"], others: Float[Array, "batch m"]) -> Float[Array, " batch"]:
        win = (own >= jnp.max(others, axis=-1)).astype(own.dtype) if self.winner else None
        return self._combine(self._own(own), self._pooled(others), win, outer=False)

    def outer(self, own: Float[Array, " B"], others: Float[Array, "S m"]) -> Float[Array, "B S"]:
        win = (own[:, None] >= jnp.max(others, axis=-1)[None, :]).astype(own.dtype) if self.winner else None
        return self._combine(self._own(own), self._pooled(others), win, outer=True)

    def relaxed_outer(self, own: Float[Array, " B"], others: Float[Array, "S m"], tau) -> Float[Array, "B S"]:
        win = None
        if self.winner:
            top = tau * jax.nn.logsumexp(others / tau, axis=-1)  # smooth max of the others' bids
            win = jax.nn.sigmoid((own[:, None] - top[None, :]) / tau)
        return self._combine(self._own(own), self._pooled(others), win, outer=True)


LEARNED_KEYS = ("rule", "hidden", "features", "activation", "winner", "knots", "reserve", "bids", "init", "matmul_dtype")


def learned_symmetric_auction(setting, options: dict[str, Any], key: PRNGKeyArray):
    """A learned symmetric auction from a ``[mechanism]`` table with ``kind = "symmetric_auction"``
    and a ``rule`` (trained by ``diffmech train``: :func:`diffmech.symmetric_train.train_run`).

    Keys: ``rule`` = ``"separable"`` (:class:`SeparablePayment`; defaults features 8, ReLU) or
    ``"deepsets"`` (:class:`DeepSetsPayment`; features 16, tanh); ``hidden``, ``features``,
    ``activation``; ``matmul_dtype`` (the networks' products, :mod:`~diffmech.mechanisms.neural.precision`);
    ``winner`` (separable only: a term paid by the highest bid alone); ``knots`` of
    each bidder's monotone strategy (default 16; the strategies start truthful, σ_i(v) = v);
    ``reserve`` r (default 0; the rule is wrapped in :class:`ReserveGate`); ``bids = [low, high]``,
    the bid range the rule normalises by (default: the hull of the ``init`` mechanism's bid spaces,
    else of the value supports); ``init``, an index as for ``hierarchical`` (``"myerson"``,
    ``"vickrey"`` or one table per bidder): a warm start, done when training starts — the bidders
    bid that mechanism's index and the rule is fitted to its interim payments.
    """
    from ..analytic.hierarchical import Hierarchical
    from ..base import check_options, require_single_item
    from ..symmetric_auction import SymmetricAuction
    from .bid_strategy import MonotoneStrategy

    check_options("symmetric_auction", options, LEARNED_KEYS)
    require_single_item(setting, "symmetric_auction")
    priors = tuple(setting.priors)
    if len(priors) < 2:
        raise ConfigError("a symmetric auction needs at least two bidders; add priors to [setting]")
    kind = options["rule"]
    if kind not in ("separable", "deepsets"):
        raise ConfigError(f"mechanism.rule must be \"separable\" or \"deepsets\", got {kind!r}")
    if "winner" in options and (kind != "separable" or not isinstance(options["winner"], bool)):
        raise ConfigError("mechanism.winner is a boolean option of rule = \"separable\" only")
    reserve = options.get("reserve", 0.0)
    if isinstance(reserve, bool) or not isinstance(reserve, (int, float)) or not np.isfinite(reserve):
        raise ConfigError(f"mechanism.reserve must be a finite number, got {reserve!r}")
    knots = options.get("knots", 16)
    if isinstance(knots, bool) or not isinstance(knots, int) or knots < 2:
        raise ConfigError(f"mechanism.knots must be an integer >= 2, got {knots!r}")
    if "init" in options:
        h = Hierarchical.from_config(setting, {"index": options["init"]})
        spaces = np.asarray([h.bid_space(i) for i in range(len(priors))], dtype=np.float64)
        lo, hi = float(spaces[:, 0].min()), float(spaces[:, 1].max())
    else:
        lo, hi = min(float(p.low) for p in priors), max(float(p.high) for p in priors)
    if "bids" in options:
        b = options["bids"]
        if not (isinstance(b, list) and len(b) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in b) and b[1] > b[0]):
            raise ConfigError(f"mechanism.bids must be [low, high] with high > low, got {b!r}")
        lo, hi = float(b[0]), float(b[1])
    net = {k: options[k] for k in ("hidden", "features", "activation", "winner", "matmul_dtype") if k in options}
    if kind == "separable":
        net.setdefault("activation", "relu")
        base = SeparablePayment(lo, hi, key=key, **net)
    else:
        base = DeepSetsPayment(lo, hi, key=key, **net)
    return SymmetricAuction(rule=ReserveGate(base, float(reserve)), strategy=MonotoneStrategy(priors, knots), reserve=float(reserve))
