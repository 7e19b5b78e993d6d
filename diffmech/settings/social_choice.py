"""The general social-choice setting of Chen–He–Li–Sun (Section 2), with Bayesian IC and interim IR.

n agents choose among K social alternatives. Agent i has a type v_i ∈ R^l; types are independent
across agents (the coordinates of one agent's type may be correlated when the type space is
finite). A direct mechanism (Section 2.2) is a lottery q(v) = (q^1(v), …, q^K(v)) over the
alternatives, q^k ≥ 0, Σ_k q^k = 1, and transfers t_i(v) from each agent to the designer. Agent i's
utility is Σ_k q^k(v) u_i^k(v) − t_i(v), where u_i^k is her payoff in alternative k:

- *private values, linear* (the config form): with a payoff matrix A of shape (K, n, l),

      u_i^k(v) = Σ_m v_im · A[k, i, m];

- *separable* (Python API only, :class:`SeparablePayoffs`; the separable payoffs of Section 4, the form
  behind the moment equation (4) of Appendix A.2):

      u_i^k(v_1, …, v_n) = Σ_{m ≤ M} w_im^k(v_i) · r_im^k(v_−i),

  with w_i a function of agent i's own type and r_i of the others' types only (interdependent
  values). Private values are the case M = 1, w_i1^k(v_i) = u_i^k(v_i), r ≡ 1.

Incentives are interim (Section 2.2): with U_i(v_i, v'_i) = E_{v−i}[Σ_k q^k(v'_i, v_−i) u_i^k(v_i, v_−i)
− t_i(v'_i, v_−i)], BIC asks U_i(v_i, v_i) ≥ U_i(v_i, v'_i) and interim IR U_i(v_i, v_i) ≥ 0. The
designer maximises expected revenue E Σ_i t_i (``objective = "revenue"``; the evaluation's
``surplus`` metric is then the revenue and ``welfare`` the social surplus E Σ_i Σ_k q^k u_i^k).

Priors: a *finite* type space per agent — atoms (T_i, l) with probabilities (T_i,), the main case
(``types`` + ``probs``, the same for every agent or one list per agent) — or continuous priors,
independent across coordinates (``prior``: one table, one per coordinate, or one list per agent),
for the dither construction of the purifier. Profiles of a finite space are enumerated in C order
over (t_1, …, t_n) (agent 1 slowest), and a mechanism on it is a table q of shape
(T_1, …, T_n, K) (:func:`diffmech.social_choice_lp.solve_social_choice`).

Auctions map onto the setting (:meth:`SocialChoice.auction`, config ``goods = m``): an alternative
is an assignment "who gets what" — each of the m goods to one of the n agents or to nobody — so
K = (n + 1)^m, types are the additive values v_i ∈ R^m, and A[k, i, j] = 1 when alternative k
gives good j to agent i. :func:`lottery_from_alloc` turns auction marginals a_ij (the probability
that agent i gets good j, Σ_i a_ij ≤ 1) into the product lottery (goods assigned independently);
with additive values only the marginals matter, so this lottery is worth exactly what the auction
outcome is, and :func:`alloc_from_lottery` maps back.

Dispersed information (``dither = true``, finite types only): each agent's type gets one more,
payoff-irrelevant coordinate u_i ~ U[0, 1], independent of her atom and of the other agents, so a type
is v_i = (t_i, u_i) ∈ atoms_i × [0, 1] and the payoff matrix gets a zero column (A[k, i, l] = 0). The
type space is atomless, which is what Theorem 1 of Chen–He–Li–Sun needs: with n ≥ 2 agents a
deterministic rule can choose by the others' u_j and reproduce any lottery's interim allocations, e.g.
by u = (Σ_i u_i) mod 1 against the cumulative lottery (u is U[0, 1] given any one agent's u_i). Such
a setting is not ``finite``; its interim expectations (:mod:`diffmech.interim`) are exact over the
atoms and a rule in u: the evaluation takes the midpoint rule with k cells (:meth:`SocialChoice.quadrature`;
a rule that is piecewise constant in u is integrated to 1/(2k) per jump, exact for a jump-free
integrand up to O(1/k²)), training redraws stratified u every step (:meth:`SocialChoice.stratified`)
so that no fixed node set can be fitted, and the misreport attack is exhaustive over the atoms and
a fine grid in u' (:meth:`SocialChoice.attack_grid`; no gradient ascent, which would leave the atoms).
In training the own types are ``train.interim_nodes`` stratified u per atom and the other agent
``train.interim_samples`` per atom (the training attack's maximum over u' against k draws of u_j is
biased upward by about one draw per jump of the rule, O(1/k), so the other agent needs many).
:meth:`SocialChoice.undithered` is the finite setting without the coordinate (its LP optimum is the
randomised benchmark; the deterministic MILP optimum of the finite setting is *not* a bound for
deterministic rules of the dithered one).

The outcome is a :class:`~diffmech.outcome.SocialChoiceOutcome` whose ``alloc`` is the lottery
repeated for every agent, ``(batch, n, K)``: the library's interim averages of ``alloc``
(:func:`diffmech.interim.interim_outcome`) are then the interim allocations Q_i^k(v_i).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import ConfigError
from ..outcome import Outcome, SocialChoiceOutcome
from ..priors import Prior, prior_from_config
from .base import Setting

MAX_AGENTS = 8
MAX_ALTERNATIVES = 4096
MAX_TYPES = 4096
MAX_DIM = 16
#: the largest number of quadrature nodes per agent (k^l)
MAX_NODES = 1 << 16


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ----------------------------------------------------------------------------- payoffs


@dataclasses.dataclass(frozen=True)
class SeparablePayoffs:
    """Separable payoffs u_i^k(v) = Σ_{m ≤ M} w_im^k(v_i) · r_im^k(v_−i) (Chen–He–Li–Sun,
    the separable-payoff definition of Section 4; the moments r enter their equation (4) of Appendix A.2).

    Attributes:
        own: types ``(batch, n, l)`` → ``(batch, n, K, M)``, entry [b, i, k, m] = w_im^k(v_i): a
            function of agent i's own type only.
        others: types ``(batch, n, l)`` → ``(batch, n, K, M)``, entry [b, i, k, m] = r_im^k(v_−i): a
            function of the other agents' types only (the interim moments of the purifier).
        n_alternatives: K.

    Both must be JAX-traceable (they run inside compiled evaluation). On a finite type space the
    setting checks the two dependence conditions on every profile.
    """

    own: Callable[[Array], Array]
    others: Callable[[Array], Array]
    n_alternatives: int


def assignments(n_agents: int, n_goods: int) -> np.ndarray:
    """The K = (n + 1)^m alternatives of an auction, ``(K, m)`` integers: entry g_kj ∈ {0, …, n}
    is who gets good j in alternative k (0 nobody, i + 1 agent i), in C order (good 1 slowest)."""
    return np.indices((n_agents + 1,) * n_goods).reshape(n_goods, -1).T.astype(np.int64)


def auction_payoffs(n_agents: int, n_goods: int) -> np.ndarray:
    """Payoff matrix A ``(K, n, m)`` of the auction: A[k, i, j] = 1 if alternative k gives good j to
    agent i, so u_i^k(v_i) = Σ_j v_ij A[k, i, j] (additive values)."""
    g = assignments(n_agents, n_goods)
    return (g[:, None, :] == np.arange(1, n_agents + 1)[None, :, None]).astype(np.float64)


def lottery_from_alloc(alloc: Float[Array, "batch agents goods"]) -> Float[Array, "batch alternatives"]:
    """The product lottery over the (n + 1)^m assignments with marginals ``alloc``.

    Good j goes to agent i with probability a_ij and to nobody with 1 − Σ_i a_ij, independently
    across goods: q^k = Π_j P_j(g_kj). Its marginals are a again (Σ_{k: g_kj = i} q^k = a_ij), so
    for additive values it is worth Σ_j v_ij a_ij to agent i, like the auction outcome.
    """
    alloc = jnp.asarray(alloc)
    n, m = alloc.shape[1], alloc.shape[2]
    nobody = 1.0 - jnp.sum(alloc, axis=1, keepdims=True)  # (batch, 1, m)
    per_good = jnp.swapaxes(jnp.concatenate([nobody, alloc], axis=1), 1, 2)  # (batch, m, n + 1)
    g = jnp.asarray(assignments(n, m))  # (K, m)
    return jnp.prod(per_good[:, jnp.arange(m)[None, :], g], axis=-1)


def alloc_from_lottery(choice: Float[Array, "batch alternatives"], n_agents: int, n_goods: int) -> Float[Array, "batch agents goods"]:
    """Marginals a_ij = Σ_k q^k A[k, i, j] of a lottery (or one-hot choice) over the assignments."""
    choice = jnp.asarray(choice)
    return jnp.einsum("bk,kij->bij", choice, jnp.asarray(auction_payoffs(n_agents, n_goods), choice.dtype))


# ----------------------------------------------------------------------------- the setting


class SocialChoice(Setting):
    """n agents, K alternatives, types in R^l, independent priors (module docstring).

    Attributes:
        agents: n.
        dim: l, the dimension of a type.
        n_alternatives: K.
        payoff_matrix: A ``(K, n, l)`` as nested tuples (linear private values), or ``None``.
        goods: m when the setting is the auction map (A from the assignments), else ``None``.
        separable: :class:`SeparablePayoffs` (Python API), or ``None``.
        atoms, atom_probs: per agent, the finite type space (T_i atoms of length l, T_i
            probabilities), or ``None``.
        priors: per agent, one continuous prior per coordinate, or ``None``.
        dither: whether each type carries the payoff-irrelevant coordinate u_i ~ U[0, 1] (last
            coordinate; ``dim`` = l + 1, ``atoms`` hold the first l coordinates).
    """

    agents: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    n_alternatives: int = eqx.field(static=True)
    payoff_matrix: tuple | None = eqx.field(static=True)
    goods: int | None = eqx.field(static=True)
    separable: SeparablePayoffs | None = eqx.field(static=True)
    atoms: tuple | None = eqx.field(static=True)
    atom_probs: tuple | None = eqx.field(static=True)
    priors: tuple | None
    dither: bool = eqx.field(static=True)

    kind: ClassVar[str] = "social_choice"
    summary: ClassVar[str] = (
        "n agents choose among K alternatives (lotteries), linear or separable payoffs, BIC and interim IR, revenue "
        "(keys: n_agents, goods | payoffs, types + probs | prior, dither)"
    )
    objective: ClassVar[str] = "revenue"
    ic: ClassVar[str] = "interim"
    ir: ClassVar[str] = "interim"
    benchmarks: ClassVar[tuple[str, ...]] = ()
    #: no budget constraint: the interim evaluation's ``bb_residual`` is max(0, −revenue)
    budget: ClassVar[str] = "none"
    #: training constraint families: BIC and interim IR (no budget)
    constraint_families: ClassVar[tuple[str, ...]] = ("interim_regret", "interim_ir")
    default_constraints: ClassVar[tuple[str, ...]] = ("interim_regret", "interim_ir")

    def __init__(self, n_agents: int, payoffs=None, *, goods: int | None = None, separable: SeparablePayoffs | None = None,
                 atoms=None, probs=None, priors=None, dither: bool = False):
        """Build from exactly one payoff form (``payoffs`` = A ``(K, n, l)``, ``goods`` = m for the
        auction map, or ``separable``) and exactly one prior form: ``atoms`` ``(T, l)`` with
        ``probs`` ``(T,)`` for iid agents or a list of n such pairs, or ``priors`` (one prior for
        every coordinate and agent, a list of l priors, or n lists of l priors; continuous).
        ``dither=True`` (finite types and a payoff matrix only) appends u_i ~ U[0, 1] to every type."""
        if not _int(n_agents) or not 1 <= n_agents <= MAX_AGENTS:
            raise ConfigError(f"social_choice needs between 1 and {MAX_AGENTS} agents, got {n_agents!r}")
        if sum(x is not None for x in (payoffs, goods, separable)) != 1:
            raise ConfigError("social_choice needs exactly one of payoffs (the matrix A[k, i, m]), goods (the auction map) or separable")
        if goods is not None:
            if not _int(goods) or not 1 <= goods <= MAX_DIM or (n_agents + 1) ** goods > MAX_ALTERNATIVES:
                raise ConfigError(
                    f"setting.goods must be an integer >= 1 with (n_agents + 1)^goods <= {MAX_ALTERNATIVES} alternatives, got {goods!r}"
                )
            payoffs = auction_payoffs(n_agents, goods)
        if payoffs is not None:
            a = _check_payoffs(payoffs, n_agents)
            k, dim = a.shape[0], a.shape[2]
            self.payoff_matrix = tuple(tuple(tuple(float(x) for x in row) for row in block) for block in a)
        else:
            if not isinstance(separable, SeparablePayoffs) or not callable(separable.own) or not callable(separable.others):
                raise ConfigError("separable payoffs must be a SeparablePayoffs(own, others, n_alternatives) with two callables")
            k = separable.n_alternatives
            if not _int(k) or not 1 <= k <= MAX_ALTERNATIVES:
                raise ConfigError(f"separable.n_alternatives must be an integer between 1 and {MAX_ALTERNATIVES}, got {k!r}")
            dim = None
            self.payoff_matrix = None
        if not isinstance(dither, bool):
            raise ConfigError(f"setting.dither must be true or false, got {dither!r}")
        if dither and atoms is None:
            raise ConfigError("setting.dither needs finite types (types + probs); continuous types are already atomless")
        if dither and separable is not None:
            raise ConfigError("setting.dither needs a payoff matrix (payoffs or goods), not separable payoffs")
        if (atoms is None) == (priors is None):
            raise ConfigError("social_choice needs exactly one prior form: atoms + probs (finite types) or priors (continuous)")
        if atoms is not None:
            atoms, probs = _check_atoms(atoms, probs, n_agents)
            width = len(atoms[0][0])
        else:
            priors = _check_priors(priors, n_agents, dim)
            width = len(priors[0])
        if dim is not None and width != dim:
            raise ConfigError(f"types have {width} coordinate(s) but the payoffs need l = {dim}; give types of length {dim}")
        if not 1 <= width <= MAX_DIM:
            raise ConfigError(f"types need between 1 and {MAX_DIM} coordinates, got {width}")
        if dither and width + 1 > MAX_DIM:
            raise ConfigError(f"setting.dither adds a coordinate: types need at most {MAX_DIM - 1} coordinates, got {width}")
        self.agents = n_agents
        self.dim = width + 1 if dither else width
        self.dither = dither
        self.n_alternatives = k
        self.goods = goods
        self.separable = separable
        self.atoms = atoms
        self.atom_probs = probs
        self.priors = priors
        if separable is not None and atoms is not None:
            self._check_separable()

    @classmethod
    def auction(cls, n_agents: int, n_items: int, atoms=None, probs=None, priors=None, dither: bool = False) -> "SocialChoice":
        """The auction of ``n_items`` goods to ``n_agents`` additive bidders as a social choice
        (K = (n + 1)^m assignments, A from :func:`auction_payoffs`)."""
        return cls(n_agents, goods=n_items, atoms=atoms, probs=probs, priors=priors, dither=dither)

    def undithered(self) -> "SocialChoice":
        """The same setting without the dither coordinate (the finite one when types are atoms)."""
        payoffs = None if self.goods is not None or self.payoff_matrix is None else self.payoff_matrix
        return SocialChoice(self.agents, payoffs, goods=self.goods, separable=self.separable, atoms=self.atoms,
                            probs=self.atom_probs, priors=self.priors)

    # ------------------------------------------------------------------ config

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "SocialChoice":
        cfg = dict(cfg)
        cfg.pop("kind", None)
        n = cfg.pop("n_agents", None)
        if n is not None and (not _int(n) or not 1 <= n <= MAX_AGENTS):
            raise ConfigError(f"setting.n_agents must be an integer between 1 and {MAX_AGENTS}, got {n!r}")
        forms = [k for k in ("goods", "payoffs") if k in cfg]
        if len(forms) != 1:
            raise ConfigError("social_choice needs exactly one of 'goods' (an auction of m goods) or 'payoffs' (the matrix A[k][i][m])")
        goods = payoffs = None
        if forms[0] == "goods":
            goods = cfg.pop("goods")
            if not _int(goods) or goods < 1:
                raise ConfigError(f"setting.goods must be an integer >= 1 (the number of goods), got {goods!r}")
        else:
            payoffs = _nested_array(cfg.pop("payoffs"), 3, "setting.payoffs", "a K × n × l nested list A[k][i][m] of numbers")
            if n is not None and payoffs.shape[1] != n:
                raise ConfigError(f"setting.payoffs has {payoffs.shape[1]} agent rows per alternative but n_agents = {n}; make them agree")
            n = payoffs.shape[1]
        prior_forms = [k for k in ("types", "prior") if k in cfg]
        if len(prior_forms) != 1:
            raise ConfigError("social_choice needs exactly one of 'types' + 'probs' (finite types) or 'prior' (continuous types)")
        atoms = probs = priors = None
        if prior_forms[0] == "types":
            if "probs" not in cfg:
                raise ConfigError("setting.types needs setting.probs (one probability per type vector)")
            atoms, probs, per_agent = _parse_types(cfg.pop("types"), cfg.pop("probs"))
            if per_agent:
                if n is not None and len(atoms) != n:
                    raise ConfigError(f"setting.types has {len(atoms)} per-agent lists but there are {n} agents; make them agree")
                n = len(atoms)
        else:
            priors, per_agent = _parse_priors(cfg.pop("prior"))
            if per_agent:
                if n is not None and len(priors) != n:
                    raise ConfigError(f"setting.prior has {len(priors)} per-agent lists but there are {n} agents; make them agree")
                n = len(priors)
        dither = cfg.pop("dither", False)
        if cfg:
            raise ConfigError(f"unknown key(s) in [setting] for social_choice: {', '.join(sorted(cfg))}")
        if n is None:
            raise ConfigError("social_choice needs setting.n_agents (or per-agent types or priors)")
        return cls(n, payoffs, goods=goods, atoms=atoms, probs=probs, priors=priors, dither=dither)

    def to_config(self) -> dict[str, Any]:
        if self.separable is not None:
            raise ConfigError("a social_choice setting with separable (callable) payoffs has no config form; use a payoff matrix")
        cfg: dict[str, Any] = {"kind": self.kind, "n_agents": self.agents}
        if self.goods is not None:
            cfg["goods"] = self.goods
        else:
            cfg["payoffs"] = [[list(row) for row in block] for block in self.payoff_matrix]
        if self.atoms is not None:
            if self.identical:
                cfg["types"] = [list(a) for a in self.atoms[0]]
                cfg["probs"] = list(self.atom_probs[0])
            else:
                cfg["types"] = [[list(a) for a in agent] for agent in self.atoms]
                cfg["probs"] = [list(p) for p in self.atom_probs]
        else:
            tables = [[p.to_config() for p in agent] for agent in self.priors]
            if self.identical and len({repr(t) for t in tables[0]}) == 1:
                cfg["prior"] = tables[0][0]
            elif self.identical:
                cfg["prior"] = tables[0]
            else:
                cfg["prior"] = tables
        if self.dither:
            cfg["dither"] = True
        return cfg

    # ------------------------------------------------------------------ shape and prior

    @property
    def n_agents(self) -> int:
        return self.agents

    @property
    def type_dim(self) -> int:
        return self.dim

    @property
    def quantile_dim(self) -> int:
        """Independent uniform quantiles per agent: one per coordinate (continuous priors), or the
        dither coordinate alone (atoms × U[0, 1]: the atoms are enumerated, not quantiles)."""
        return 1 if self.dither else self.dim

    @property
    def finite(self) -> bool:
        """Whether each agent's type space is finite (interim expectations are exact sums); a
        dithered type space (atoms × [0, 1]) is not."""
        return self.atoms is not None and not self.dither

    @property
    def exhaustive_attack(self) -> bool:
        """Whether :meth:`attack_grid` is exhaustive over the atoms (dither): the evaluation then
        runs no gradient ascent, which would move reports off the atoms."""
        return self.dither

    @property
    def stratified_others(self) -> bool:
        """Whether training redraws the other agents' nodes every step (:meth:`stratified`) instead
        of a fixed rule: with the dither a deterministic mechanism jumps in u_j, and a fixed set of
        nodes could be fitted (a jump placed between two nodes is invisible to them)."""
        return self.dither

    @property
    def identical(self) -> bool:
        """Whether all agents have the same prior (iid types)."""
        if self.atoms is not None:
            return len(set(zip(self.atoms, self.atom_probs))) == 1
        return len({repr([p.to_config() for p in agent]) for agent in self.priors}) == 1

    @property
    def payoff_array(self) -> np.ndarray | None:
        """A ``(K, n, dim)`` float64 (linear private values), or ``None`` with separable payoffs; with
        the dither the last column (the coordinate u_i) is zero."""
        if self.payoff_matrix is None:
            return None
        a = np.asarray(self.payoff_matrix, np.float64)
        return np.concatenate([a, np.zeros(a.shape[:2] + (1,))], axis=2) if self.dither else a

    def type_supports(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """Per agent, the finite type space: atoms ``(T_i, l)`` and probabilities ``(T_i,)``,
        float64, in the order given (with the dither: the atom part, without u_i)."""
        if self.atoms is None:
            raise ConfigError("this social_choice setting has continuous types; it has no finite type space")
        return tuple((np.asarray(a, np.float64), np.asarray(p, np.float64)) for a, p in zip(self.atoms, self.atom_probs))

    def type_support(self) -> tuple[np.ndarray, np.ndarray]:
        """The finite type space shared by all agents (iid types): atoms ``(T, l)``, probs ``(T,)``.
        The library's exact interim evaluation needs identical agents; per-agent type spaces are
        in :meth:`type_supports`."""
        if self.atoms is not None and not self.identical:
            raise ConfigError(
                "the agents of this social_choice setting have different type spaces; exact interim evaluation needs "
                "identical agents (use type_supports() and diffmech.social_choice_lp for per-agent spaces)"
            )
        return self.type_supports()[0]

    @property
    def type_counts(self) -> tuple[int, ...]:
        """(T_1, …, T_n) of a finite type space."""
        if self.atom_probs is None:
            raise ConfigError("this social_choice setting has continuous types; it has no finite type space")
        return tuple(len(p) for p in self.atom_probs)

    def _padded(self) -> tuple[np.ndarray, np.ndarray]:
        """Atoms ``(n, T_max, l)`` (padding repeats an agent's last atom) and probabilities
        ``(n, T_max)`` (padding 0) of a finite type space."""
        sup = self.type_supports()
        t = max(len(p) for _, p in sup)
        atoms = np.stack([np.concatenate([a, np.repeat(a[-1:], t - len(a), axis=0)]) for a, _ in sup])
        probs = np.stack([np.concatenate([p, np.zeros(t - len(p))]) for _, p in sup])
        return atoms, probs

    def sample(self, key, n):
        if self.atoms is not None:
            atoms, probs = self._padded()
            k_atom, k_u = jax.random.split(key)
            with np.errstate(divide="ignore"):
                logits = jnp.asarray(np.log(probs), jnp.result_type(float))
            idx = jax.random.categorical(k_atom if self.dither else key, logits, axis=-1, shape=(n, self.agents))
            t = jnp.asarray(atoms, jnp.result_type(float))[jnp.arange(self.agents), idx]
            if not self.dither:
                return t
            return jnp.concatenate([t, jax.random.uniform(k_u, (n, self.agents, 1), t.dtype)], axis=-1)
        u = jax.random.uniform(key, (self.agents, n, self.dim), jnp.result_type(float))
        return jnp.swapaxes(self.from_quantiles(u), 0, 1)

    def from_quantiles(self, u: Float[Array, "agents ... dim"]) -> Float[Array, "agents ... dim"]:
        """Types from quantiles in (0, 1), agent by agent and coordinate by coordinate:
        v_im = F_im⁻¹(u_im) (leading axis = agents). Continuous priors only."""
        if self.priors is None:
            raise ConfigError("this social_choice setting has finite types (atoms, dithered or not); it has no quantile form")
        flat = [p for agent in self.priors for p in agent]
        if len({repr(p.to_config()) for p in flat}) == 1:
            return flat[0].icdf(u)
        return jnp.stack([jnp.stack([p.icdf(u[i, ..., m]) for m, p in enumerate(agent)], axis=-1) for i, agent in enumerate(self.priors)])

    def quadrature(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Product Gauss–Legendre rule in quantile space, ``k`` nodes per coordinate: points
        ``(agents, k^l, l)`` (v = F⁻¹(u)) and weights ``(agents, k^l)``, float64. Continuous priors.

        With the dither: every atom t × the k midpoints u = (c + ½)/k, weight p(t)/k — exact over
        the atoms; the midpoint rule integrates a step in u to within 1/(2k) (a deterministic rule
        is piecewise constant in u, where Gauss–Legendre would only give π/(2k))."""
        from .._compat import enable_x64

        if self.dither:
            return self._atoms_times_u(np.broadcast_to((np.arange(k) + 0.5) / k, (self.agents, k)))
        if self.priors is None:
            raise ConfigError("this social_choice setting has finite types; use its exact type space")
        if k**self.dim > MAX_NODES:
            raise ConfigError(f"{k}^{self.dim} quadrature nodes per agent are too many; use fewer nodes per coordinate")
        x, w = np.polynomial.legendre.leggauss(k)
        u, w = (x + 1.0) / 2.0, w / 2.0
        grid = np.array(list(itertools.product(u, repeat=self.dim)), np.float64)  # (k^l, l)
        wts = np.prod(np.array(list(itertools.product(w, repeat=self.dim)), np.float64), axis=1)
        with enable_x64(), jax.ensure_compile_time_eval():
            pts = np.asarray(self.from_quantiles(jnp.asarray(np.broadcast_to(grid, (self.agents,) + grid.shape), jnp.float64)), np.float64)
        return pts, np.broadcast_to(wts, (self.agents, len(wts))).copy()

    def _atoms_times_u(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every atom × the u values ``u`` ``(agents, k)`` (equal weights 1/k): points
        ``(agents, T_max·k, l + 1)`` atom-major and weights p_i(t)/k (0 on padding atoms)."""
        atoms, probs = self._padded()
        n, t, l = atoms.shape
        k = u.shape[1]
        if t * k > MAX_NODES:
            raise ConfigError(f"{t} atoms × {k} dither values = {t * k} nodes per agent are too many (at most {MAX_NODES}); use fewer")
        pts = np.concatenate([np.repeat(atoms[:, :, None, :], k, axis=2), np.broadcast_to(u[:, None, :, None], (n, t, k, 1))], axis=-1)
        return pts.reshape(n, t * k, l + 1), np.repeat(probs / k, k, axis=1)

    def stratified(self, key, k: int):
        """Training nodes with the dither (:func:`diffmech.interim.stratified_nodes`): every atom ×
        ``k`` stratified u, u_c = (c + U_c)/k with U_c ~ U[0, 1) independent per agent, atom and
        cell, weight p(t)/k — an unbiased estimate of E over (t, u) whose nodes move every step."""
        if not self.dither:
            raise ConfigError("stratified atom × u nodes exist only for a dithered social_choice setting")
        atoms, probs = self._padded()
        n, t, l = atoms.shape
        u = (jnp.arange(k) + jax.random.uniform(key, (n, t, k), jnp.result_type(float))) / k
        pts = jnp.concatenate([jnp.broadcast_to(jnp.asarray(atoms, u.dtype)[:, :, None, :], (n, t, k, l)), u[..., None]], axis=-1)
        return pts.reshape(n, t * k, l + 1), jnp.asarray(np.repeat(probs / k, k, axis=1), u.dtype)

    def stratified_classes(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The payoff classes of :meth:`stratified`'s ``k`` nodes per atom: class (= atom) of each
        node ``(agents, T_max·k)`` and the first node of each class ``(agents, T_max)``, int32."""
        t = self._padded()[0].shape[1]
        cls = np.repeat(np.arange(t, dtype=np.int32), k)
        return np.broadcast_to(cls, (self.agents, t * k)).copy(), np.broadcast_to(np.arange(t, dtype=np.int32) * k, (self.agents, t)).copy()

    def own_type_nodes(self, k: int):
        """Own types at which the evaluation measures interim regret: with the dither every atom ×
        the midpoint rule in u with max(1, k // T) cells (:meth:`quadrature`), weights p(t)/cells;
        ``None`` otherwise (the evaluation's default grid)."""
        if not self.dither:
            return None
        return self.quadrature(max(1, k // max(self.type_counts)))

    def payoff_relevant(self, types: np.ndarray) -> np.ndarray | None:
        """The coordinates payoffs depend on: without the dither coordinate u_i (last), or ``None``
        when every coordinate counts (the evaluation then shares one best response among own types
        that differ only in u_i: :func:`diffmech.evaluate_interim.payoff_classes`)."""
        return np.asarray(types)[..., :-1] if self.dither else None

    def type_bounds(self):
        if self.atoms is not None:
            sup = self.type_supports()
            lo, hi = np.stack([a.min(axis=0) for a, _ in sup]), np.stack([a.max(axis=0) for a, _ in sup])
            if self.dither:
                return np.concatenate([lo, np.zeros((self.agents, 1))], 1), np.concatenate([hi, np.ones((self.agents, 1))], 1)
            return lo, hi
        lo = np.array([[p.low for p in agent] for agent in self.priors], np.float64)
        hi = np.array([[p.high for p in agent] for agent in self.priors], np.float64)
        return lo, hi

    def project(self, reports):
        """Clip to the support; on a finite type space, snap each agent's report to the nearest of
        her own atoms (with the dither: the atom part snapped, u clipped to [0, 1])."""
        if self.atoms is None:
            return super().project(reports)
        atoms, probs = self._padded()
        pts = jnp.asarray(atoms, reports.dtype)  # (n, T, l)
        head = reports[..., : pts.shape[-1]]
        d = jnp.sum((head[..., None, :] - pts) ** 2, axis=-1)  # (..., n, T)
        d = jnp.where(jnp.asarray(_real(probs, self.type_counts)), d, jnp.inf)
        idx = jnp.argmin(d, axis=-1)  # (..., n)
        snapped = pts[jnp.arange(self.agents), idx]
        if self.dither:
            return jnp.concatenate([snapped, jnp.clip(reports[..., -1:], 0.0, 1.0)], axis=-1)
        return snapped

    def attack_grid(self, n_points: int):
        """Every atom of each agent's finite type space (padded by repeats to a common count); with
        the dither every atom × the max(2, ``n_points`` // T) cell midpoints in u' (exhaustive over
        the atoms: a deterministic rule is piecewise constant in u', and every interval of length
        ≥ T/``n_points`` holds a grid point); else an even product grid of about ``n_points``
        reports when l ≤ 2."""
        if self.dither:
            g = max(2, n_points // max(self.type_counts))
            return jnp.asarray(self._atoms_times_u(np.broadcast_to((np.arange(g) + 0.5) / g, (self.agents, g)))[0])
        if self.atoms is not None:
            return jnp.asarray(self._padded()[0])
        if self.dim > 2:
            return None
        per = max(2, int(np.floor(n_points ** (1.0 / self.dim) + 1e-9)))
        lo, hi = self.type_bounds()
        grids = []
        for i in range(self.agents):  # construction-time numpy
            axes = [np.linspace(lo[i, m], hi[i, m], per) for m in range(self.dim)]
            grids.append(np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, self.dim))
        return jnp.asarray(np.stack(grids))

    # ------------------------------------------------------------------ payoffs

    def payoffs(self, types: Float[Array, "batch agents dim"]) -> Float[Array, "batch agents alternatives"]:
        """u_i^k(v) for every profile, agent and alternative: Σ_m v_im A[k, i, m], or
        Σ_m w_im^k(v_i) r_im^k(v_−i) with separable payoffs."""
        if self.separable is not None:
            return jnp.sum(self.separable.own(types) * self.separable.others(types), axis=-1)
        return jnp.einsum("bil,kil->bik", types, jnp.asarray(self.payoff_array, types.dtype))

    def values(self, types, outcome: Outcome):
        """value_i = Σ_k q^k u_i^k(v) at the true profile ``types``."""
        if not isinstance(outcome, SocialChoiceOutcome):
            raise ConfigError(
                "social_choice values need a SocialChoiceOutcome (a lottery over alternatives); map auction marginals "
                "with diffmech.settings.social_choice.lottery_from_alloc"
            )
        return jnp.einsum("bik,bk->bi", self.payoffs(types), outcome.choice.astype(types.dtype))

    def surplus(self, types, outcome: Outcome) -> Float[Array, " batch"]:
        """Social surplus Σ_i Σ_k q^k u_i^k(v) per profile (transfers cancel)."""
        return jnp.sum(self.values(types, outcome), axis=-1)

    def provision_cost(self, outcome: Outcome) -> Float[Array, " batch"]:
        """No cost of alternatives: zero per profile (the interim evaluation asks for one)."""
        return jnp.zeros(outcome.payments.shape[:1], outcome.payments.dtype)

    def budget_surplus(self, outcome: Outcome) -> Float[Array, " batch"]:
        """Σ_i t_i per profile (no cost to cover)."""
        return jnp.sum(outcome.payments, axis=-1)

    @property
    def feasibility(self) -> str:
        return "lottery"

    def feasibility_violation(self, outcome):
        """Largest violation of q^k ≥ 0 and Σ_k q^k = 1 in each profile."""
        q = outcome.choice
        return jnp.maximum(jnp.max(jnp.maximum(-q, 0.0), axis=1), jnp.abs(jnp.sum(q, axis=1) - 1.0))

    # ------------------------------------------------------------------ finite tables (float64, numpy)

    def profiles(self) -> tuple[np.ndarray, np.ndarray]:
        """Every profile of a finite type space in C order over (t_1, …, t_n): types
        ``(P, n, l)`` and probabilities ``(P,)``, float64. Refused with the dither (the payoffs do
        not depend on it: use :meth:`undithered`)."""
        if self.dither:
            raise ConfigError("a dithered social_choice setting has no finite profile table; use setting.undithered() (payoffs ignore the dither)")
        sup = self.type_supports()
        idx = np.indices(self.type_counts).reshape(self.agents, -1).T  # (P, n)
        prof = np.stack([sup[i][0][idx[:, i]] for i in range(self.agents)], axis=1)
        prob = np.prod(np.stack([sup[i][1][idx[:, i]] for i in range(self.agents)], axis=1), axis=1)
        return prof, prob

    def payoff_table(self) -> np.ndarray:
        """u_i^k(t) on every profile of a finite type space: ``(T_1, …, T_n, n, K)`` float64."""
        from .._compat import enable_x64

        prof, _ = self.profiles()
        with enable_x64(), jax.ensure_compile_time_eval():
            u = np.asarray(self.payoffs(jnp.asarray(prof, jnp.float64)), np.float64)
        return u.reshape(self.type_counts + (self.agents, self.n_alternatives))

    def moment_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The separable factors on every profile of a finite type space, float64:
        w ``(T_1, …, T_n, n, K, M)`` (w_im^k(t_i), constant along the other agents' axes) and
        r ``(T_1, …, T_n, n, K, M)`` (r_im^k(t_−i), constant along agent i's own axis), so that
        u = Σ_m w·r. Private values: M = 1, w = u and r ≡ 1."""
        from .._compat import enable_x64

        if self.separable is None:
            u = self.payoff_table()[..., None]
            return u, np.ones_like(u)
        prof, _ = self.profiles()
        with enable_x64(), jax.ensure_compile_time_eval():
            x = jnp.asarray(prof, jnp.float64)
            w = np.asarray(self.separable.own(x), np.float64)
            r = np.asarray(self.separable.others(x), np.float64)
        shape = self.type_counts + w.shape[1:]
        return w.reshape(shape), r.reshape(shape)

    def _check_separable(self) -> None:
        """The separability condition (Section 4) on a finite type space: w_i must not move with t_−i and r_i
        must not move with t_i (else the payoffs are not separable in this form)."""
        n, k = self.agents, self.n_alternatives
        try:
            w, r = self.moment_tables()
        except Exception as e:  # the user's callables failed
            raise ConfigError(f"separable payoffs could not be evaluated on the type profiles ({type(e).__name__}: {e})") from None
        want = self.type_counts + (n, k)
        if w.shape != r.shape or w.ndim != n + 3 or w.shape[:-1] != want:
            raise ConfigError(f"separable own/others must both return (batch, n, K, M) = (batch, {n}, {k}, M), got {w.shape[n:]} and {r.shape[n:]}")
        for i in range(n):  # construction-time check
            wi, ri = w[..., i, :, :], r[..., i, :, :]
            if np.max(np.abs(np.moveaxis(ri, i, 0) - np.moveaxis(ri, i, 0)[:1]), initial=0.0) > 1e-12 * max(1.0, np.max(np.abs(ri))):
                raise ConfigError(f"separable.others must not depend on agent {i}'s own type (r_i = r_i(v_-i)); it does")
            own_first = np.moveaxis(wi, i, 0)
            flat = own_first.reshape(own_first.shape[0], -1, k, w.shape[-1])
            if np.max(np.abs(flat - flat[:, :1]), initial=0.0) > 1e-12 * max(1.0, np.max(np.abs(wi))):
                raise ConfigError(f"separable.own must depend on agent {i}'s own type only (w_i = w_i(v_i)); it does not")

    def describe(self) -> str:
        if self.goods is not None:
            what = f"auction of {self.goods} good(s) ({self.n_alternatives} assignments)"
        else:
            what = f"{self.n_alternatives} alternatives, {'separable' if self.separable is not None else 'linear'} payoffs"
        types = ("finite types " + "×".join(str(t) for t in self.type_counts)) if self.atoms is not None else "continuous types"
        if self.dither:
            types += " × dither u ~ U[0,1]"
        return f"social choice: {self.agents} agent(s), {what}, {types} in R^{self.dim}"


# ----------------------------------------------------------------------------- validation


def _real(probs: np.ndarray, counts: tuple[int, ...]) -> np.ndarray:
    """Mask ``(n, T_max)`` of the real (not padding) atoms."""
    return np.arange(probs.shape[1])[None, :] < np.asarray(counts)[:, None]


def _nested_array(value: Any, depth: int, where: str, what: str) -> np.ndarray:
    """A rectangular nested list of finite numbers of the given depth as float64."""
    def ok(v, d):
        if d == 0:
            return _number(v)
        return isinstance(v, (list, tuple)) and len(v) > 0 and all(ok(x, d - 1) for x in v)

    if not ok(value, depth):
        raise ConfigError(f"{where} must be {what}")
    try:
        arr = np.asarray(value, np.float64)
    except ValueError:
        raise ConfigError(f"{where} must be rectangular: {what}") from None
    if arr.ndim != depth:
        raise ConfigError(f"{where} must be rectangular: {what}")
    return arr


def _check_payoffs(payoffs, n_agents: int) -> np.ndarray:
    try:
        a = np.asarray(payoffs, np.float64)
    except (ValueError, TypeError):
        raise ConfigError("payoffs must be a rectangular (K, n, l) array of numbers A[k, i, m]") from None
    if a.ndim != 3 or min(a.shape) < 1:
        raise ConfigError(f"payoffs must have shape (K, n, l) with K, l >= 1, got shape {a.shape}")
    if a.shape[1] != n_agents:
        raise ConfigError(f"payoffs have {a.shape[1]} agent rows per alternative but there are {n_agents} agents")
    if a.shape[0] > MAX_ALTERNATIVES:
        raise ConfigError(f"payoffs list {a.shape[0]} alternatives, more than {MAX_ALTERNATIVES}")
    if not np.all(np.isfinite(a)):
        raise ConfigError("payoffs must be finite numbers")
    return a


def _check_one_agent(atoms, probs, where: str):
    """One agent's atoms (T, l) and probs (T,) as tuples; one-line errors."""
    try:
        a = np.asarray(atoms, np.float64)
        p = np.asarray(probs, np.float64)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}types and probs must be rectangular lists of numbers, e.g. types [[2, 5], [3, 2]], probs [0.5, 0.5]") from None
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ConfigError(f"{where}types must be a non-empty list of type vectors of one length, e.g. [[2, 5], [3, 2]]; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"{where}types must hold finite numbers")
    if a.shape[0] > MAX_TYPES:
        raise ConfigError(f"{where}types has {a.shape[0]} type vectors, more than {MAX_TYPES}")
    if p.shape != (a.shape[0],):
        raise ConfigError(f"{where}probs must be a list of {a.shape[0]} numbers, one per type vector; got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ConfigError(f"{where}probs must be finite numbers >= 0")
    if abs(math.fsum(p.tolist()) - 1.0) > 1e-9:
        raise ConfigError(f"{where}probs must sum to 1 (within 1e-9), got {math.fsum(p.tolist())!r}")
    if len({tuple(r) for r in (a + 0.0).tolist()}) != a.shape[0]:
        raise ConfigError(f"{where}types lists a type vector twice; merge their probabilities")
    return tuple(tuple(float(x) for x in r) for r in a + 0.0), tuple(float(x) for x in p)


def _check_atoms(atoms, probs, n_agents: int):
    """Per-agent atoms and probs (tuples); iid input is repeated for every agent."""
    if probs is None:
        raise ConfigError("finite types need probs (one probability per type vector)")
    if isinstance(atoms, np.ndarray) and atoms.ndim == 3:
        atoms = list(atoms)
    try:
        per_agent = isinstance(atoms, (list, tuple)) and len(atoms) > 0 and np.ndim(atoms[0]) == 2
    except ValueError:  # ragged first entry
        per_agent = False
    if per_agent and isinstance(probs, np.ndarray) and probs.ndim == 2:
        probs = list(probs)
    if not per_agent:
        pair = _check_one_agent(atoms, probs, "setting.")
        return (pair[0],) * n_agents, (pair[1],) * n_agents
    if not isinstance(probs, (list, tuple)) or len(atoms) != n_agents or len(probs) != n_agents:
        raise ConfigError(f"per-agent types need {n_agents} lists of type vectors and {n_agents} lists of probabilities, one per agent")
    pairs = [_check_one_agent(a, p, f"setting (agent {i}): ") for i, (a, p) in enumerate(zip(atoms, probs))]
    if len({len(a[0]) for a, _ in pairs}) != 1:
        raise ConfigError("per-agent types must all have the same number of coordinates l")
    return tuple(a for a, _ in pairs), tuple(p for _, p in pairs)


def _parse_types(types, probs):
    """Config ``types``/``probs``: a list of vectors (iid) or one list of vectors per agent."""
    def is_vec(v):
        return isinstance(v, list) and len(v) > 0 and all(_number(x) for x in v)

    if isinstance(types, list) and types and all(is_vec(v) for v in types):
        if not isinstance(probs, list) or not all(_number(p) for p in probs):
            raise ConfigError("setting.probs must be a list of numbers, one per type vector")
        return types, probs, False
    if isinstance(types, list) and types and all(isinstance(a, list) and a and all(is_vec(v) for v in a) for a in types):
        if not isinstance(probs, list) or len(probs) != len(types) or not all(isinstance(p, list) and all(_number(x) for x in p) for p in probs):
            raise ConfigError(f"per-agent setting.types need setting.probs as {len(types)} lists of numbers, one list per agent")
        return types, probs, True
    raise ConfigError("setting.types must be a list of type vectors like [[2, 5], [3, 2]] or one such list per agent")


def _parse_priors(value):
    """Config ``prior``: one table (every agent and coordinate), a list of l tables (one per
    coordinate, iid agents) or a list of n lists of l tables (per agent)."""
    if isinstance(value, dict):
        return prior_from_config(value, "setting.prior"), False
    if isinstance(value, list) and value and all(isinstance(p, dict) for p in value):
        return [prior_from_config(p, f"setting.prior.{m}") for m, p in enumerate(value)], False
    if isinstance(value, list) and value and all(isinstance(a, list) and a and all(isinstance(p, dict) for p in a) for a in value):
        return [[prior_from_config(p, f"setting.prior.{i}.{m}") for m, p in enumerate(a)] for i, a in enumerate(value)], True
    raise ConfigError("setting.prior must be a prior table, a list of one table per coordinate, or one such list per agent")


def _check_priors(priors, n_agents: int, dim: int | None):
    """Per-agent tuples of per-coordinate continuous priors."""
    if isinstance(priors, Prior):
        if dim is None:
            raise ConfigError("one prior for every coordinate needs the type dimension; give one prior per coordinate")
        per = [[priors] * dim] * n_agents
    elif isinstance(priors, (list, tuple)) and priors and all(isinstance(p, Prior) for p in priors):
        per = [list(priors)] * n_agents
    elif isinstance(priors, (list, tuple)) and len(priors) == n_agents and all(
        isinstance(a, (list, tuple)) and a and all(isinstance(p, Prior) for p in a) for a in priors
    ):
        per = [list(a) for a in priors]
    else:
        raise ConfigError(f"priors must be one prior, a list of one prior per coordinate, or {n_agents} such lists (one per agent)")
    if len({len(a) for a in per}) != 1:
        raise ConfigError("every agent needs one prior per coordinate (the same number l for all)")
    if any(p.discrete for a in per for p in a):
        raise ConfigError("social_choice priors must be continuous; for finite types give types + probs")
    return tuple(tuple(a) for a in per)
