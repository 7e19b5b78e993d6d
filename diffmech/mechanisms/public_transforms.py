"""Transformations of excludable-public-goods mechanisms (Fang–Norman appendix, Claims B1–B2 and
Proposition 2): reduce to a simple mechanism, symmetrise over agents, symmetrise over goods.

Each transform is an equinox module wrapping a base mechanism and has the ordinary mechanism call
on reports ``(batch, agents, goods)``, returning a :class:`~diffmech.outcome.PublicGoodsOutcome`.
A base outcome already holds *expected* provision ρ^j(θ) = E_ϑ ζ^j(θ, ϑ) and expected consumption
``alloc`` = E_ϑ[ζ^j ω_i^j] (randomisation is expressed as probabilities), so the ϑ-expectations of
the paper are built in.

Interim expectations E_{−i} are weighted sums over *others profiles* ``others[i, s]`` with weights
``weights[i, s]`` (as in :mod:`diffmech.interim`): exact on a finite type space
(``others_profiles(exact_nodes(setting))``), quadrature or Monte Carlo otherwise.

**Simple reduction** (Claim B1, eq. (B2)). For a mechanism (ρ, a = ρη, t) define

    ρ̃^j(θ) = ρ^j(θ),
    η̃_i^j(θ_i) = E_{−i}[a_i^j(θ_i, θ_−i)] / E_{−i}[ρ^j(θ_i, θ_−i)]   (k = 1 when the denominator is 0),
    t̃_i(θ_i) = E_{−i}[t_i(θ_i, θ_−i)].                                                        (B2)

By (B5) every interim utility U_i(θ_i, r) is unchanged (so IC and IR are), and by iterated
expectations so are the surplus (B8) and the expected budget. The 0/0 convention k = 1 (included)
is one of the paper's free choices k ∈ [0, 1]; it is taken with a ``jnp.where``-safe division, so
gradients never see a NaN.

**Agent symmetrisation** (Claim B2 with the consistent group action, REFERENCES errata on (B9)).
For a permutation σ of the agents, the σ-permuted mechanism lets agent i play the role σ(i):

    θ'_{σ(i)} = θ_i,    ρ_σ(θ) = ρ(θ'),    a_σ,i(θ) = a_{σ(i)}(θ'),    t_σ,i(θ) = t_{σ(i)}(θ'),

and :class:`AgentAverage` returns the average over all n! permutations of ρ, a and t, with
inclusion ā/ρ̄ (0/0 → 1). The average is anonymous: permuting the agents' reports permutes the
outcome (ρ̄ symmetric, ā_{π(i)}(θ^π) = ā_i(θ), t̄ likewise). Agents are iid in the setting, so each
σ-permuted mechanism has the same surplus and expected budget as the base, and by linearity each
agent's interim table U_i(θ_i, r) of the average is the mean of the permuted mechanisms' tables:
every IC or IR slack of the average is a mean of slacks of the base (so the minimum slack can only
rise) and the average is incentive feasible when the base is. Followed by the simple reduction,

    :func:`symmetrise_agents` (m) = SimpleReduction(AgentAverage(m)),

which for a simple m is exactly Claim B2's construction (B9) with the consistent action:

    ρ_k(θ) = ρ(θ^{P_k}),  θ^{P_k} = (θ_{P_k^{-1}(1)}, …, θ_{P_k^{-1}(n)}),
    η_{ki}(θ_i) = η_{P_k(i)}(θ_i),  t_{ki}(θ_i) = t_{P_k(i)}(θ_i),                     (B9, corrected)
    ρ̃ = (1/n!) Σ_k ρ_k,  η̃_i = Σ_k E_{−i}[ρ_k] η_{ki} / Σ_k E_{−i}[ρ_k],  t̃_i = (1/n!) Σ_k t_{ki}.

(As printed, (B9) pairs η_{P_k^{-1}(i)} with θ^{P_k}: for n ≥ 3 that is not a group action, and the
result is neither anonymous nor surplus-preserving; ``tests/test_public_transforms.py`` shows it.)

**Goods symmetrisation** (Proposition 2 with the consistent action, errata on (B23)). For a
permutation π of the goods, (θ_i^π)^{π(j)} = θ_i^j and

    ρ_π^j(θ) = ρ^{π(j)}(θ^π),    a_π,i^j(θ) = a_i^{π(j)}(θ^π),    t_π,i(θ) = t_i(θ^π);

:class:`GoodsAverage` averages ρ, a and t over the M! permutations (inclusion ā/ρ̄, 0/0 → 1). The
result is symmetric: ρ̄^{π(j)}(θ^π) = ρ̄^j(θ), ā_i^{π(j)}(θ^π) = ā_i^j(θ), t̄(θ^π) = t̄(θ). Only when
the goods are *exchangeable* (the prior of θ_i and the costs invariant under permutations of the
goods, ``setting.exchangeable_goods``) do the permuted mechanisms keep the base's surplus, budget,
IC and IR (type θ_i reporting r in the π-permuted mechanism gets what type θ_i^π reporting r^π gets
in the base), so that the average does too. :func:`symmetrise_goods` = SimpleReduction(GoodsAverage)
is Proposition 2's (B23) with t̃ = (1/M!) Σ_k t_k (the Σ_k missing in print).
"""

from __future__ import annotations

import itertools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import ConfigError
from ..interim import Nodes, exact_nodes, insert_reports, others_profiles
from ..outcome import PublicGoodsOutcome, public_goods_outcome
from .analytic.public_table import PublicGoodsTable, all_profiles
from .base import Mechanism
from .transforms import _FromBase

#: at most this many agents (n! evaluations per profile) or goods (M!) for the averages
MAX_PERMUTED = 6


def safe_ratio(num, den, default: float = 1.0):
    """num/den where den > 0, ``default`` where den = 0; the division never sees a zero, so
    gradients stay finite."""
    pos = den > 0
    return jnp.where(pos, num / jnp.where(pos, den, 1.0), jnp.asarray(default, num.dtype))


def _python_only(kind: str):
    raise ConfigError(
        f"{kind} is built in Python (diffmech.mechanisms.public_transforms: reduce_to_simple, symmetrise_agents, "
        "symmetrise_goods), not from a config"
    )


class _PublicTransform(Mechanism):
    base: Mechanism

    trainable = _FromBase("trainable")

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None):
        _python_only(cls.__name__)

    def _apply(self, reports, call) -> PublicGoodsOutcome:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, reports: Float[Array, "batch agents goods"]) -> PublicGoodsOutcome:
        return self._apply(jnp.asarray(reports), self.base)

    def training_outcome(self, reports: Float[Array, "batch agents goods"]) -> PublicGoodsOutcome:
        return self._apply(jnp.asarray(reports), self.base.training_outcome)


class SimpleReduction(_PublicTransform):
    """Claim B1, eq. (B2): the simple mechanism with the base's provision, inclusion
    η̃_i(θ_i) = E_{−i}[a_i] / E_{−i}[ρ] (1 when E_{−i}[ρ] = 0) and transfer t̃_i(θ_i) = E_{−i}[t_i].

    Attributes:
        base: the mechanism to reduce.
        others: ``(agents, S, agents − 1, goods)`` profiles of the other agents.
        weights: ``(agents, S)`` their weights (summing to 1 per agent).

    ``others`` and ``weights`` are data: gradients are stopped through them, so a trainer that
    updates every floating leaf leaves them unchanged.

    A call on ``b`` profiles runs the base once on the ``b`` profiles (for ρ) and once on the
    ``agents · b · S`` profiles in which agent i reports its own report and the others play
    ``others[i, s]``.
    """

    others: Float[Array, "agents S others goods"]
    weights: Float[Array, "agents S"]

    def __init__(self, base: Mechanism, others, weights):
        self.base = base
        self.others = jnp.asarray(others)
        self.weights = jnp.asarray(weights)

    def interim(self, reports: Float[Array, "batch agents goods"], call=None):
        """(E_{−i}[ρ^j], E_{−i}[a_i^j], E_{−i}[t_i]) when agent i reports ``reports[b, i]``:
        shapes (batch, agents, goods), (batch, agents, goods), (batch, agents)."""
        call = self.base if call is None else call
        b, n, d = reports.shape
        s = self.others.shape[1]
        dtype = reports.dtype
        others = jax.lax.stop_gradient(self.others).astype(dtype)  # data, not parameters
        prof = insert_reports(others, jnp.swapaxes(reports, 0, 1))  # (n, b, S, n, d)
        out = call(prof.reshape(n * b * s, n, d))
        w = jax.lax.stop_gradient(self.weights).astype(dtype)
        idx = jnp.arange(n)
        prov = out.provision.reshape(n, b, s, -1)
        alloc = out.alloc.reshape(n, b, s, n, -1)[idx, :, :, idx]  # (n, b, S, goods): agent i's own
        pay = out.payments.reshape(n, b, s, n)[idx, :, :, idx]  # (n, b, S)
        e_rho = jnp.einsum("ibsj,is->bij", prov, w)
        e_alloc = jnp.einsum("ibsj,is->bij", alloc, w)
        e_pay = jnp.einsum("ibs,is->bi", pay, w)
        return e_rho, e_alloc, e_pay

    def _apply(self, reports, call):
        dtype = reports.dtype if jnp.issubdtype(reports.dtype, jnp.floating) else jnp.result_type(float)
        reports = reports.astype(dtype)
        rho = call(reports).provision
        e_rho, e_alloc, e_pay = self.interim(reports, call)
        return public_goods_outcome(rho, safe_ratio(e_alloc, e_rho), e_pay)


class _Frozen:
    """A hashable wrapper of a small integer array (static field of a module)."""

    def __init__(self, array: np.ndarray):
        self.array = np.asarray(array, np.int32)
        self.array.setflags(write=False)
        self._key = (self.array.shape, self.array.tobytes())

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Frozen) and self._key == other._key

    def __repr__(self):
        return f"perms{self.array.shape}"


def _perm_tables(k: int) -> tuple[np.ndarray, np.ndarray]:
    """All k! permutations σ as rows σ[i] = σ(i), and their inverses."""
    perms = np.array(list(itertools.permutations(range(k))), np.int32).reshape(-1, k)
    return perms, np.argsort(perms, axis=1).astype(np.int32)


def _average(prov, alloc, pay) -> PublicGoodsOutcome:
    """Average (P, b, ...) stacked outcomes over P; inclusion ā/ρ̄ with 0/0 → 1."""
    rho, a, t = prov.mean(axis=0), alloc.mean(axis=0), pay.mean(axis=0)
    return public_goods_outcome(rho, safe_ratio(a, rho[:, None, :]), t)


def _checked_perms(perms, size: int, what: str, letter: str) -> np.ndarray:
    """All permutations of ``size`` objects when ``perms`` is None, else ``perms`` checked to be
    permutations, one per row."""
    if perms is None:
        if not 1 <= size <= MAX_PERMUTED:
            raise ConfigError(f"averaging over {what} evaluates {letter}! permutations; use at most {MAX_PERMUTED} {what}")
        perms = _perm_tables(size)[0]
    perms = np.asarray(perms, np.int32).reshape(-1, size)
    if not all(sorted(p) == list(range(size)) for p in perms.tolist()):
        raise ConfigError(f"perms must be permutations of 0..{size - 1}, one per row")
    return perms


class AgentAverage(_PublicTransform):
    """The average over all n! agent permutations σ of the σ-permuted mechanisms, in which agent i
    takes role σ(i): θ'_{σ(i)} = θ_i, outcome_σ(θ)_i = outcome(θ')_{σ(i)} (see the module
    docstring). Anonymous; same surplus and expected budget as the base (iid agents); each
    agent's interim table is the mean of the permuted mechanisms' tables.

    ``perms`` restricts the average to the given permutations (rows σ with σ[i] = σ(i)); a single
    permutation gives the σ-permuted mechanism itself.
    """

    perms: _Frozen = eqx.field(static=True)
    n: int = eqx.field(static=True)

    def __init__(self, base: Mechanism, n_agents: int, perms=None):
        self.base, self.n = base, n_agents
        self.perms = _Frozen(_checked_perms(perms, n_agents, "agents", "n"))

    def _apply(self, reports, call):
        perms = self.perms.array
        inverse = np.argsort(perms, axis=1)
        b, n, d = reports.shape
        p = perms.shape[0]
        permuted = jnp.moveaxis(reports[:, inverse], 1, 0)  # (P, b, n, d): θ'[k] = θ[σ⁻¹(k)]
        out = call(permuted.reshape(p * b, n, d))
        role = jnp.asarray(perms)[:, None, :]  # agent i reads row σ(i)
        alloc = jnp.take_along_axis(out.alloc.reshape(p, b, n, -1), role[..., None], axis=2)
        pay = jnp.take_along_axis(out.payments.reshape(p, b, n), role, axis=2)
        return _average(out.provision.reshape(p, b, -1), alloc, pay)


class GoodsAverage(_PublicTransform):
    """The average over all M! goods permutations π of ρ_π^j(θ) = ρ^{π(j)}(θ^π),
    a_π,i^j(θ) = a_i^{π(j)}(θ^π), t_π,i(θ) = t_i(θ^π) with (θ_i^π)^{π(j)} = θ_i^j. Symmetric in the
    goods; keeps surplus, budget, IC and IR only under exchangeable goods (module docstring).

    ``perms`` restricts the average to the given permutations (rows π with π[j] = π(j)).
    """

    perms: _Frozen = eqx.field(static=True)
    m: int = eqx.field(static=True)

    def __init__(self, base: Mechanism, n_goods: int, perms=None):
        self.base, self.m = base, n_goods
        self.perms = _Frozen(_checked_perms(perms, n_goods, "goods", "M"))

    def _apply(self, reports, call):
        perms = self.perms.array
        inverse = np.argsort(perms, axis=1)
        b, n, d = reports.shape
        p = perms.shape[0]
        permuted = jnp.moveaxis(reports[:, :, inverse], 2, 0)  # (P, b, n, M): θ^π_i[k] = θ_i[π⁻¹(k)]
        out = call(permuted.reshape(p * b, n, d))
        pi = jnp.asarray(perms)
        prov = jnp.take_along_axis(out.provision.reshape(p, b, d), pi[:, None, :], axis=2)
        alloc = jnp.take_along_axis(out.alloc.reshape(p, b, n, d), pi[:, None, None, :], axis=3)
        return _average(prov, alloc, out.payments.reshape(p, b, n))


# ----------------------------------------------------------------------------- convenience


def _others(setting, nodes):
    """(others, weights) from ``nodes``: None → exact nodes of a finite type space; a
    :class:`~diffmech.interim.Nodes` → all profiles of the others; or an (others, weights) pair."""
    if nodes is None:
        if not setting.finite:
            raise ConfigError(
                "this public_goods setting has continuous types; pass nodes (quadrature_nodes or sampled_others) to the transform"
            )
        nodes = exact_nodes(setting)
    if isinstance(nodes, Nodes):
        return others_profiles(nodes)
    others, weights = nodes
    return jnp.asarray(others), jnp.asarray(weights)


def reduce_to_simple(mechanism: Mechanism, setting, nodes=None) -> SimpleReduction:
    """Claim B1 (B2): the simple mechanism with the same interim utilities, surplus and expected
    budget. ``nodes``: None (exact, finite type spaces), a ``Nodes`` or an (others, weights) pair."""
    others, weights = _others(setting, nodes)
    return SimpleReduction(mechanism, others, weights)


def symmetrise_agents(mechanism: Mechanism, setting, nodes=None) -> SimpleReduction:
    """Claim B2: SimpleReduction(AgentAverage(mechanism)), an anonymous simple mechanism with the
    same surplus and expected budget whose interim tables are the means of the agent-permuted
    mechanisms' tables. For a simple ``mechanism`` this is (B9) with the consistent action
    η_{ki} = η_{P_k(i)}, t_{ki} = t_{P_k(i)} (module docstring)."""
    others, weights = _others(setting, nodes)
    return SimpleReduction(AgentAverage(mechanism, setting.n_agents), others, weights)


def symmetrise_goods(mechanism: Mechanism, setting, nodes=None, *, require_exchangeable: bool = True) -> SimpleReduction:
    """Proposition 2: SimpleReduction(GoodsAverage(mechanism)), a simple mechanism symmetric in
    the goods ((B23) with the consistent action and t̃ = (1/M!) Σ_k t_k). Keeps surplus, budget,
    IC and IR when the goods are exchangeable (``setting.exchangeable_goods``); refused otherwise
    unless ``require_exchangeable=False``."""
    if require_exchangeable and not setting.exchangeable_goods:
        raise ConfigError(
            "symmetrising over goods keeps surplus, budget and incentives only for exchangeable goods (same prior and cost "
            "per good); pass require_exchangeable=False to average anyway"
        )
    others, weights = _others(setting, nodes)
    return SimpleReduction(GoodsAverage(mechanism, setting.n_goods), others, weights)


def tabulate(mechanism: Mechanism, setting, chunk: int = 64) -> PublicGoodsTable:
    """The :class:`PublicGoodsTable` of ``mechanism`` on every profile of a finite type space,
    evaluated by one compiled call per ``chunk`` profiles (bounded memory; the last chunk is padded),
    in the default float dtype (float64 inside ``enable_x64``)."""
    atoms, _ = setting.type_support()
    prof = all_profiles(atoms, setting.n_agents)
    total = prof.shape[0]
    chunk = max(1, min(int(chunk), total))
    pad = (-total) % chunk
    prof = np.concatenate([prof, np.repeat(prof[:1], pad, axis=0)]) if pad else prof
    dtype = jnp.result_type(float)
    call = eqx.filter_jit(lambda mech, x: (lambda o: (o.provision, o.inclusion, o.payments))(mech(x)))
    parts = [call(mechanism, jnp.asarray(prof[a : a + chunk], dtype)) for a in range(0, prof.shape[0], chunk)]
    cat = [jnp.concatenate([p[k] for p in parts])[:total] for k in range(3)]
    return PublicGoodsTable(jnp.asarray(atoms, dtype), *cat)


__all__ = [
    "AgentAverage",
    "GoodsAverage",
    "SimpleReduction",
    "reduce_to_simple",
    "safe_ratio",
    "symmetrise_agents",
    "symmetrise_goods",
    "tabulate",
]
