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
