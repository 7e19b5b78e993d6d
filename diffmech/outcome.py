"""The result of running a mechanism on a batch of reports."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Float


class Outcome(eqx.Module):
    """What a mechanism decides for each reported profile.

    Attributes:
        alloc: ``(batch, agents, items)`` probability that each agent receives each item.
            Randomisation is always expressed as probabilities; mechanisms take no PRNG key.
        payments: ``(batch, agents)`` expected payment of each agent to the mechanism
            (negative: the agent is paid).

    Settings with other outcomes (public goods, social choice) subclass this and keep
    ``payments``.
    """

    alloc: Float[Array, "batch agents items"]
    payments: Float[Array, "batch agents"]


class PublicGoodsOutcome(Outcome):
    """Outcome of an excludable-public-goods mechanism (Fang–Norman, eq. (B1)).

    Attributes:
        provision: ``(batch, goods)`` probability ρ^j that good j is provided.
        inclusion: ``(batch, agents, goods)`` probability η_i^j that agent i may consume good j
            *given* that it is provided.
        alloc: ``(batch, agents, goods)`` probability that agent i consumes good j, ρ^j·η_i^j
            (what values and interim expectations use).
        payments: ``(batch, agents)`` transfer t_i of agent i to the mechanism.

    Build with :func:`public_goods_outcome`, which keeps ``alloc`` consistent.
    """

    provision: Float[Array, "batch goods"]
    inclusion: Float[Array, "batch agents goods"]


def public_goods_outcome(provision, inclusion, payments) -> PublicGoodsOutcome:
    """The outcome with provision ρ, conditional inclusion η and transfers t; alloc = ρ·η."""
    return PublicGoodsOutcome(
        alloc=provision[:, None, :] * inclusion, payments=payments, provision=provision, inclusion=inclusion
    )


class SocialChoiceOutcome(Outcome):
    """Outcome of a mechanism in the social-choice setting (Chen–He–Li–Sun, Section 2.2).

    Attributes:
        choice: ``(batch, K)`` the lottery q^k over the K alternatives (q^k ≥ 0, Σ_k q^k = 1).
        payments: ``(batch, agents)`` transfer t_i of agent i to the mechanism.
        alloc: ``(batch, agents, K)`` the lottery repeated for every agent (alloc[b, i, k] = q^k),
            so that the library's interim averages of ``alloc`` over the other agents' types give
            the interim allocation Q_i^k(v_i) = E_{v−i} q^k(v_i, v_−i) of each agent.

    Build with :func:`social_choice_outcome`, which keeps ``alloc`` consistent.
    """

    choice: Float[Array, "batch alternatives"]


def social_choice_outcome(choice, payments) -> SocialChoiceOutcome:
    """The outcome with lottery ``choice`` (batch, K) and transfers ``payments`` (batch, n)."""
    import jax.numpy as jnp

    alloc = jnp.broadcast_to(choice[:, None, :], (choice.shape[0], payments.shape[1], choice.shape[1]))
    return SocialChoiceOutcome(alloc=alloc, payments=payments, choice=choice)
