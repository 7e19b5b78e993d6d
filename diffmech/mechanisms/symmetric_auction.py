"""Symmetric (anonymous) single-item auctions played in a given strategy profile (Deb–Pai 2017).

A symmetric auction (Deb–Pai, Section 2) takes one bid b_i ∈ ℝ per bidder and never sees who
made which bid:

    a^s(b_i, b_−i) = 1{b_i ≥ max(b_−i), b_i ≥ r} / #{j : b_j = b_i}      (Symmetric Auction Allocation)
    p^s(b_i, b_−i)  (a function of b_i and the multiset b_−i)            (Symmetric Auction Payment)

with reserve bid r: the highest bid wins if it is at least r, ties are split equally, and every
bidder (losers too) pays p^s of her own bid and the others' bids. Bidders play a pure strategy
profile σ = (σ_1, …, σ_n), σ_i : V_i → ℝ; the outcome on values v is the auction's outcome on the
bids σ(v). Asymmetric bidders may play different strategies (the identity enters only through the
strategy, never through the auction).

:class:`SymmetricAuction` is a :class:`~diffmech.mechanisms.base.Mechanism` whose ``__call__`` takes
*values* ``(batch, n, 1)`` and plays them through its strategy (so metrics that call mechanisms on
values evaluate the equilibrium outcome); :meth:`SymmetricAuction.play` takes bids. Whether σ is an
equilibrium is checked numerically by :func:`diffmech.equilibrium.check_equilibrium`.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import ConfigError
from ..outcome import Outcome
from .base import Mechanism, check_options, float_dtype


class PaymentRule(eqx.Module):
    """An anonymous payment rule p^s(own bid, others' bids), symmetric in the others' bids.

    ``rule(own, others)`` with ``own`` of shape ``(batch,)`` and ``others`` of shape
    ``(batch, n − 1)`` returns the ``(batch,)`` payments; permuting the columns of ``others`` must
    not change the result (p^s is a function of the multiset b_−).
    """

    @abc.abstractmethod
    def __call__(self, own: Float[Array, " batch"], others: Float[Array, "batch m"]) -> Float[Array, " batch"]: ...

    def outer(self, own: Float[Array, " B"], others: Float[Array, "S m"]) -> Float[Array, "B S"]:
        """p^s(own[b], others[s]) for every pair (b, s); by default by broadcasting ``__call__``.

        Subclasses whose payment separates into functions of the own bid and of the others' bids
        (:class:`~diffmech.mechanisms.analytic.deb_pai.EventPaymentRule`) override this with a
        product of two small matrices.
        """
        B, S = own.shape[0], others.shape[0]
        o = jnp.broadcast_to(own[:, None], (B, S)).reshape(-1)
        r = jnp.broadcast_to(others[None], (B, S, others.shape[1])).reshape(B * S, -1)
        return self(o, r).reshape(B, S)


class Strategy(eqx.Module):
    """A pure strategy profile σ: ``strategy(values (batch, n)) -> bids (batch, n)``.

    Bidder i's bid must depend on v_i only (σ_i(v_i)); the profile form lets asymmetric bidders
    play different functions in one vectorised call.
    """

    @abc.abstractmethod
    def __call__(self, values: Float[Array, "batch n"]) -> Float[Array, "batch n"]: ...


class IndexStrategy(Strategy):
    """Bid the index: σ_i(v_i) = I_i(v_i) of a hierarchical mechanism (Deb–Pai, Section 4).

    Attributes:
        hierarchical: a :class:`~diffmech.mechanisms.analytic.hierarchical.Hierarchical`
            (anything with ``index_values(values (batch, n)) -> (batch, n)``).
    """

    hierarchical: Any

    def __call__(self, values: Float[Array, "batch n"]) -> Float[Array, "batch n"]:
        return self.hierarchical.index_values(values)


def others_index(n: int) -> np.ndarray:
    """The ``(n, n − 1)`` integer table whose row i lists the bidders other than i, in order."""
    return np.asarray([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int32).reshape(n, max(n - 1, 0))


def allocation_against(own: Float[Array, "..."], others: Float[Array, "... m"], reserve) -> Float[Array, "..."]:
    """a^s(own, others): 1/(1 + #{others = own}) if own ≥ max(others) and own ≥ r, else 0."""
    top = jnp.max(others, axis=-1) if others.shape[-1] else jnp.full(own.shape, -jnp.inf, own.dtype)
    ties = jnp.sum(others == own[..., None], axis=-1).astype(own.dtype)
    wins = (own >= top) & (own >= reserve)
    return jnp.where(wins, 1.0 / (1.0 + ties), jnp.zeros((), own.dtype))


class SymmetricAuction(Mechanism):
    """A symmetric auction (``rule``, reserve) played by the strategy profile ``strategy``.

    ``play(bids)``: the highest bid wins if it is ≥ ``reserve`` (ties split equally) and every bidder
    pays ``rule(own bid, others' bids)``; the others' bids of every bidder are one static gather
    ``bids[:, others_index(n)]`` (no identity input, no loop over samples).
    ``auction(values (batch, n, 1))`` = ``play(strategy(values[..., 0]))``.

    Attributes:
        rule: the :class:`PaymentRule` p^s.
        strategy: the :class:`Strategy` profile σ the bidders play.
        reserve: the reserve bid r (default 0).
    """

    rule: PaymentRule
    strategy: Strategy
    reserve: float = 0.0

    kind: ClassVar[str] = "symmetric_auction"
    #: evaluated by its bidders' best-response gains (diffmech.evaluate_symmetric), not truthful reports
    played_in_equilibrium: ClassVar[bool] = True
    summary: ClassVar[str] = (
        "Deb-Pai symmetric auction: analytic (index, cutoff, punishment) or learned with its bidders' strategies "
        "(rule, hidden, features, activation, winner, knots, reserve, bids, init, matmul_dtype)"
    )

    @classmethod
    def is_trainable(cls, options: dict[str, Any]) -> bool:
        """Learned when the table names a payment ``rule``; otherwise the analytic construction."""
        return "rule" in options

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "SymmetricAuction":
        """The Deb–Pai implementation of a hierarchical mechanism: ``index`` as for ``hierarchical``
        (the target, whose index the bidders bid), optional ``cutoff`` (b̂ of the two-bidder rule)
        and ``punishment`` (P of eq. (9)). With ``rule``: a learned auction
        (:func:`~diffmech.mechanisms.neural.symmetric_payment.learned_symmetric_auction`)."""
        from .analytic.deb_pai import symmetric_implementation
        from .analytic.hierarchical import Hierarchical

        if "rule" in options:
            from .neural.symmetric_payment import learned_symmetric_auction

            return learned_symmetric_auction(setting, options, key)
        check_options(cls.kind, options, ("index", "cutoff", "punishment"))
        for name in ("cutoff", "punishment"):
            v = options.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v)):
                raise ConfigError(f"mechanism.{name} must be a finite number, got {v!r}")
        h = Hierarchical.from_config(setting, {"index": options["index"]} if "index" in options else {})
        return symmetric_implementation(h, options.get("cutoff"), options.get("punishment"))

    @property
    def target(self):
        """The hierarchical mechanism the strategy bids the index of (``None`` for other strategies)."""
        return getattr(self.strategy, "hierarchical", None)

    def play(self, bids: Float[Array, "batch n"]) -> Outcome:
        """The outcome (allocation ``(batch, n, 1)``, payments ``(batch, n)``) on a bid profile."""
        bids = jnp.asarray(bids)
        bids = bids.astype(float_dtype(bids))
        batch, n = bids.shape
        others = bids[:, others_index(n)]  # (batch, n, n − 1)
        alloc = allocation_against(bids, others, jnp.asarray(self.reserve, bids.dtype))
        pay = self.rule(bids.reshape(-1), others.reshape(batch * n, n - 1)).reshape(batch, n)
        return Outcome(alloc=alloc[..., None], payments=pay)

    def __call__(self, reports: Float[Array, "batch n 1"]) -> Outcome:
        reports = jnp.asarray(reports)
        if reports.ndim != 3 or reports.shape[2] != 1:
            raise ValueError(f"symmetric_auction expects values of shape (batch, n, 1), got {reports.shape}")
        values = reports[..., 0].astype(float_dtype(reports))
        return self.play(self.strategy(values))
