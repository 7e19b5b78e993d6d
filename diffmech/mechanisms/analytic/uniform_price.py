"""The uniform-price mechanism for identical objects (Bikhchandani–Mishra, Section 5.3, Definition 10).

Setting ``identical_items``: one buyer, n identical units, marginal values v_1 ≥ v_2 ≥ … ≥ v_n;
an allocation q_k is the probability of receiving at least k units. With a price p ≥ 0 per unit,

    q_k(v) = 1{v_k ≥ p},        t(v) = p · Σ_k q_k(v)                                (Definition 10)

(the buyer buys unit k iff its marginal value is at least p, and pays p per unit).

Feasibility: since v is sorted decreasingly, {v_{k+1} ≥ p} ⊆ {v_k ≥ p}, so q_1 ≥ q_2 ≥ … ≥ q_n
(eq. (1)). Reports are sorted decreasingly first (a no-op on the type space of the setting), so
the output is feasible for any input. DSIC: buying k units costs p·k and is worth Σ_{l ≤ k} v_l, so
the buyer's best quantity is #{k : v_k ≥ p} (marginal values decrease), which her truthful report
gets her; any report gets her some quantity at p per unit, i.e. an option of the same menu. IR:
she pays p for each unit worth v_k ≥ p, so her utility Σ_k (v_k − p)·q_k ≥ 0.

Revenue (eq. (12)). With G_k the marginal cdf of the k-th (sorted) value and
G_avg = (1/n) Σ_k G_k (the *average marginal*),

    REV(p) = Σ_k p·(1 − G_k(p)) = n·p·(1 − G_avg(p)),                                        (12)

which depends on the joint law only through G_avg: every joint distribution with average marginal
G_avg earns the same. The optimal uniform price p† maximises p·(1 − G_avg(p)) (the equation after
(12)), and by Proposition 6 the optimal uniform-price mechanism is robustly optimal against the
worst joint distribution with that average marginal. For G_avg = U[0,1]: REV(p) = n·p·(1 − p),
p† = 1/2 and REV = n/4.

G_avg of this library's settings. The sorted values are the order statistics v_(1) ≥ … ≥ v_(n) of
exchangeable unsorted values x_1, …, x_n with common marginal F, and

    (1/n) Σ_k P(v_(k) ≤ x) = (1/n) E[Σ_k 1{v_(k) ≤ x}] = (1/n) E[#{j : x_j ≤ x}] = F(x),

because sorting only permutes the values, so the number of them below x is unchanged. Hence
G_avg = F, the prior of one unsorted value, and REV(p) = n·p·P(x_1 ≥ p). For independent priors
(``common_weight`` = 0) F is the setting's prior, used exactly (at an atom of a discrete prior,
P(x_1 ≥ p) = 1 − F(p⁻), since a unit worth exactly p is bought). With ``common_weight`` > 0 the
marginal of x_j = w·z + (1 − w)·y_j is estimated from a fixed sample (2^20 draws of the
heterogeneous source setting with PRNGKey(0), first min(n, 4) values of each draw; see
:mod:`.posted_prices`), and p† is the maximiser of the empirical revenue.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ...errors import ConfigError
from ...outcome import Outcome
from ..base import Mechanism, float_dtype
from .posted_prices import optimal_item_price, parse_price


def uniform_price_revenue(p, g_avg_at_p, n: int):
    """Eq. (12): the expected revenue n·p·(1 − G_avg(p)) of the uniform price p, where
    ``g_avg_at_p`` is the average marginal (the probability that a unit is *not* bought: for a
    discrete marginal pass G_avg(p⁻)). Works elementwise on arrays."""
    return n * p * (1.0 - g_avg_at_p)


def _check_setting(setting) -> None:
    got = getattr(setting, "kind", type(setting).__name__)
    if got == "multi_item":
        raise ConfigError(
            "mechanism 'uniform_price' is for the identical_items setting; on a multi_item setting use "
            "'uniform_item_price' (one price for every item)"
        )
    if got != "identical_items":
        raise ConfigError(f"mechanism 'uniform_price' needs an identical_items setting, got {got!r}")


def optimal_uniform_price(setting) -> tuple[float, float]:
    """The optimal uniform price p† = argmax_p p·(1 − G_avg(p)) and its revenue (12),
    ``(p†, n·p†·(1 − G_avg(p†)))``.

    G_avg is the common marginal of the unsorted values (module docstring), so this is the optimal
    common price of selling the units of the heterogeneous source model separately (additive):
    exact 1-D maximisation for independent priors, the fixed-sample optimum for correlated ones."""
    _check_setting(setting)
    return optimal_item_price(setting.heterogeneous())


class UniformPrice(Mechanism):
    """Uniform price p per unit (Definition 10): q_k = 1{b_k ≥ p} for the decreasingly sorted
    report b, t = p·Σ_k q_k. DSIC, ex post IR and feasible (q decreasing); see the module docstring.

    Option ``price`` (a number ≥ 0); by default the optimal uniform price p† of
    :func:`optimal_uniform_price`.

    Attributes:
        price: the price per unit p.
    """

    price: float = eqx.field(static=True)

    kind: ClassVar[str] = "uniform_price"
    summary: ClassVar[str] = "identical units: every unit at one revenue-optimal (or given) price (Bikhchandani–Mishra Def. 10; option: price)"
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "UniformPrice":
        price = parse_price(cls.kind, options)
        _check_setting(setting)
        if price is None:
            price, _ = optimal_uniform_price(setting)
        return cls(price=float(price))

    def __call__(self, reports: Float[Array, "batch 1 units"]) -> Outcome:
        b = jnp.asarray(reports)
        dtype = float_dtype(b)
        b = -jnp.sort(-b.astype(dtype), axis=-1)  # decreasing marginal values
        p = jnp.asarray(self.price, dtype)
        q = (b >= p).astype(dtype)
        return Outcome(alloc=q, payments=p * jnp.sum(q, axis=-1))
