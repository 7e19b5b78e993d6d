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
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ...errors import ConfigError
from ..symmetric_auction import PaymentRule
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
                 activation: str = "tanh", pay_scale: float | None = None, key: PRNGKeyArray):
        if not (bid_high > bid_low):
            raise ConfigError(f"the bid range must have bid_high > bid_low, got [{bid_low}, {bid_high}]")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        hidden = _parse_hidden(list(hidden))
        if not isinstance(features, int) or features < 1:
            raise ConfigError(f"features must be a positive integer, got {features!r}")
        k1, k2 = jax.random.split(key)
        self.phi = mlp(k1, (2,) + hidden + (features,), activation)
        self.rho = mlp(k2, (1 + features,) + hidden + (1,), activation)
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
