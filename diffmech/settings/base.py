"""The abstract setting: agents, their prior, what an outcome is worth to each of them."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..outcome import Outcome


class Setting(eqx.Module):
    """An environment: pure data and pure functions, no training code.

    Types and reports have shape ``(batch, agents, type_dim)``.
    """

    kind: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: name of the quantity the designer maximises, a key of the metrics dictionary
    objective: ClassVar[str] = "revenue"
    #: analytic mechanisms evaluated beside a learned one on the same samples
    benchmarks: ClassVar[tuple[str, ...]] = ()
    #: incentive compatibility and participation: ``"ex_post"`` (dominant strategy, per profile)
    #: or ``"interim"`` (Bayesian, in expectation over the other agents' types)
    ic: ClassVar[str] = "ex_post"
    ir: ClassVar[str] = "ex_post"
    #: the training step reads the prior only through :meth:`type_bounds` (the prior enters by the
    #: sampled training set), so runs that differ only in priors with the same bounds can be
    #: trained together in one vmapped step (:mod:`diffmech.sweep`)
    priors_via_data: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def n_agents(self) -> int: ...

    @property
    @abc.abstractmethod
    def type_dim(self) -> int: ...

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n agents dim"]:
        """Draw ``n`` type profiles from the prior."""

    @abc.abstractmethod
    def type_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of each agent's type, each of shape ``(agents, dim)``."""

    @abc.abstractmethod
    def values(self, types: Float[Array, "batch agents dim"], outcome: Outcome) -> Float[Array, "batch agents"]:
        """Each agent's value for the outcome, at its true type."""

    @abc.abstractmethod
    def to_config(self) -> dict[str, Any]:
        """The ``[setting]`` table that rebuilds this setting."""

    def utility(self, types: Float[Array, "batch agents dim"], outcome: Outcome) -> Float[Array, "batch agents"]:
        """Quasi-linear utility: value of the outcome minus payment."""
        return self.values(types, outcome) - outcome.payments

    def objective_value(self, types: Float[Array, "batch agents dim"], outcome: Outcome) -> Float[Array, "batch"]:
        """The designer's objective per profile (revenue Σ_i p_i unless the setting says otherwise)."""
        return jnp.sum(outcome.payments, axis=-1)

    @property
    def feasibility(self) -> str:
        """What a feasible allocation is: ``"items"`` (each item to at most one agent, Σ_i a_ij ≤ 1),
        ``"unit_demand"`` (also each agent at most one item, Σ_j a_ij ≤ 1) or ``"units"``
        (identical units, a_ik = P(agent i gets at least k units), so a_i1 ≥ a_i2 ≥ …)."""
        return "items"

    def feasibility_violation(self, outcome: Outcome) -> Float[Array, "batch"]:
        """Largest violation of the setting's feasibility constraints in each profile (0 if feasible)."""
        a = outcome.alloc
        worst = [jnp.max(jnp.maximum(-a, 0.0), axis=(1, 2)), jnp.max(jnp.maximum(a - 1.0, 0.0), axis=(1, 2))]
        if self.feasibility == "units":
            worst.append(jnp.max(jnp.maximum(a[..., 1:] - a[..., :-1], 0.0), axis=(1, 2), initial=0.0))
        else:
            worst.append(jnp.max(jnp.maximum(jnp.sum(a, axis=1) - 1.0, 0.0), axis=1))
        if self.feasibility == "unit_demand":
            worst.append(jnp.max(jnp.maximum(jnp.sum(a, axis=2) - 1.0, 0.0), axis=1))
        return jnp.max(jnp.stack(worst), axis=0)

    def project(self, reports: Float[Array, "... agents dim"]) -> Float[Array, "... agents dim"]:
        """Clip reports to the type space (the projection of projected gradient ascent)."""
        lo, hi = self.type_bounds()
        return jnp.clip(reports, jnp.asarray(lo, reports.dtype), jnp.asarray(hi, reports.dtype))

    def attack_grid(self, n_points: int) -> Float[Array, "agents points dim"] | None:
        """Candidate misreports per agent for an exhaustive attack, or ``None`` if the type space
        is too large to enumerate (then the attack is by gradient ascent only)."""
        return None

    def benchmark_names(self) -> tuple[str, ...]:
        """Analytic mechanisms evaluated beside a learned one on the same samples."""
        return self.benchmarks

    def describe(self) -> str:
        return self.kind
