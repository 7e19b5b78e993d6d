"""Purified mechanisms and their report: the layer behind :func:`diffmech.purify.purify`.

Chen, He, Li & Sun (CHLS), Theorem 1: for separable payoffs every mechanism (q, t) has a
deterministic q̃ with the same interim allocations and interim utilities, *with the same ex post
transfers t* (their Remark 3). This module applies the array-level constructions of
:mod:`diffmech.purify` to mechanisms and settings.

Settings as lotteries (:class:`ChoiceView`). A social-choice mechanism already returns a lottery
over K alternatives. An auction of m goods to n additive bidders is read through the auction map:
alternative k is an assignment g_k ∈ {nobody, 1, …, n}^m (K = (n + 1)^m) and the outcome's
marginals a_ij become the product lottery q^k = Π_j P_j(g_kj); with additive values a bidder's
expected value Σ_j v_ij a_ij is the same under both, and the one-hot choice maps back to the
0/1 allocation of the chosen assignment. Unit demand is refused: the product lottery can give a
bidder two goods at once, outside the unit-demand feasible set (a lottery over feasible
assignments with given marginals exists — Birkhoff–von Neumann — but is not the product one).
Public goods are refused for now: provision and inclusion would have to be chosen by one
uniform (ordering the alternatives to make the coupling comonotone) and the cost kept.

Vertex method on finite (grid) types (:func:`purify_vertex`). q is read on every profile of the
finite space (a continuous prior on G quantile cells per coordinate: atoms F⁻¹((j + ½)/G),
probabilities 1/G). :func:`~diffmech.purify.vertex_purify` returns a vertex q̃ with the interim
allocations (and separable moments) of q to 1e-9; :func:`~diffmech.purify.latin_counts` rounds
it to counts N with Σ_k N(t, k) = R (exactly N = R q̃ when q̃'s entries are multiples of 1/R;
else minimising the interim allocation error and the interim regret the rounding adds); the
deterministic mechanism (:class:`LatinTable`) on the
enlarged space — type (t_i, s_i/R), s_i ∈ {0, …, R − 1}, probability p_i(t_i)/R, payoffs ignoring
s — picks at (t, s) the k with N_{k−1}(t) ≤ (Σ_i s_i) mod R < N_k(t) and charges t_i(t).

*Sub-type identity.* For n ≥ 2, given agent i's report (r, s'_i) and the others' types t_−i,
(s'_i + Σ_{j≠i} s_j) mod R is uniform on {0, …, R − 1} (the others' sub-types are independent
uniform), so alternative k is chosen with probability N(r, t_−i, k)/R, whatever s'_i. Hence every
interim quantity of (t_i, s_i) reporting (r, s'_i) — allocation, moment, utility — is that of t_i
reporting r in the lottery table N/R with the same transfers; interim regret, interim IR and the
interim allocation error are computed on the grid from N/R (tests check this against the
library's exhaustive evaluation of the enlarged setting itself).

*Why the error is not 0 for a learned mechanism.* With uniform sub-types and grid probabilities
1/G (two agents), each enlarged interim allocation Σ_{t−i} p_−i N/R is a multiple of 1/(G·R),
while Q_i(t_i, k) is an arbitrary real number: the best possible error is of order 1/(2GR), and
G·R is bounded by the social-choice type limit (4096 types per agent). No finite enlargement
can be exact in general either: for two agents with rational p, applying a Q-linear map λ with
λ(1) = 0 to the interim equations of agent 1 (linear in agent 2's sub-type probabilities) and the
rational part λ₀ to those of agent 2 shows Σ_{t_1} p_1(t_1) λ(Q_1(t_1, k)) = 0, i.e. the ex ante
probability of every alternative must be rational. Exact (≤ 1e-9) purification on a finite space
therefore needs q with small denominators, as in CHLS Example 1; the continuous-type dither has
error O(1/R) (:func:`~diffmech.purify.dither_choice`).

Dither on continuous types (:class:`Dithered`, :func:`purify_dither`): the mechanism's lottery at
the reported profile, the alternative chosen by u = (Σ_i frac(R F_i(v_i1))) mod 1 — F_i the CDF of
agent i's prior for the first coordinate of her type — and the mechanism's payments.

Not preserved: dominant-strategy IC and ex post IR (the report measures both, before and after).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from functools import reduce
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._compat import enable_x64
from .config import EvalConfig
from .errors import ConfigError
from .mechanisms.base import Mechanism
from .outcome import Outcome, SocialChoiceOutcome, social_choice_outcome
from .purify import NOT_PRESERVED, Purification, _interim, dither_choice, latin_counts, vertex_purify
from .social_choice_lp import _others_weight, _own_first, interim_utility_tables

__all__ = ["ChoiceView", "choice_view", "Dithered", "LatinTable", "purify_vertex", "purify_dither", "PURIFY_EVAL"]

#: the evaluation of continuous-type purifications: own types (= reports) per agent for the interim
#: quantities, sampled profiles of the others when n > 2, profiles of the ex ante quantities,
#: reports per agent of the ex post check
PURIFY_EVAL = EvalConfig(samples=1 << 16, grid_points=100, attack_steps=0, interim_types=32)
#: stratified quantile nodes for the other agent (n = 2) in the dither's interim allocation error:
#: the dithered allocation jumps ~R times across the other's quantile, each jump costing ~1/nodes
ERROR_NODES = 1 << 15
#: profiles of the ex post check (each against ``grid_points`` own reports per agent)
EX_POST_PROFILES = 1000
#: largest finite table q (profiles × alternatives) the vertex LP is built for
MAX_TABLE = 1 << 20
#: profiles per compiled call of a mechanism
CHUNK = 1 << 14
DEFAULT_GRID = 20
DEFAULT_DITHER_R = 64


# ----------------------------------------------------------------------------- settings as lotteries


def _lottery(out: Outcome, kind: str) -> Float[Array, "batch K"]:
    """The lottery over alternatives of an outcome: the social-choice lottery, or the product
    lottery of an auction's marginals (:func:`~diffmech.settings.social_choice.lottery_from_alloc`)."""
    from .settings.social_choice import lottery_from_alloc

    if kind == "social_choice":
        if not isinstance(out, SocialChoiceOutcome):
            raise ConfigError("the mechanism does not return a SocialChoiceOutcome (a lottery over alternatives); it does not fit this setting")
        return out.choice
    return lottery_from_alloc(jnp.clip(out.alloc, 0.0, 1.0))


def _outcome(choice, payments, kind: str, n: int, goods: int | None) -> Outcome:
    """The setting's outcome of a (one-hot) lottery: itself, or the allocation of the assignment."""
    from .settings.social_choice import alloc_from_lottery

    if kind == "social_choice":
        return social_choice_outcome(choice, payments)
    return Outcome(alloc=alloc_from_lottery(choice, n, goods), payments=payments)


@dataclass(frozen=True)
class ChoiceView:
    """A supported setting read as n agents choosing among K alternatives.

    Attributes:
        setting: the original setting.
        kind: ``"social_choice"`` or ``"auction"`` (single_item / multi_item through the auction map).
        n, dim, K: agents, type coordinates l, alternatives.
        goods: m for auctions (and social-choice auction maps), else None.
        priors: per agent, one prior per coordinate (None for a finite social-choice setting).
    """

    setting: Any
    kind: str
    n: int
    dim: int
    K: int
    goods: int | None
    priors: tuple | None

    @property
    def finite(self) -> bool:
        """Every coordinate of every agent has finitely many values."""
        if self.priors is None:
            return True
        return all(p.discrete for agent in self.priors for p in agent)

    @property
    def spec(self) -> tuple:
        return (self.kind, self.n, self.goods)

    def social_choice(self, *, atoms=None, probs=None, priors=None, subtype: bool = False):
        """The equivalent :class:`~diffmech.settings.social_choice.SocialChoice` with the given
        prior; ``subtype`` adds a last type coordinate that no payoff depends on."""
        from .settings.social_choice import SeparablePayoffs, SocialChoice, auction_payoffs

        s = self.setting
        if self.kind == "auction":
            payoffs, sep = auction_payoffs(self.n, self.goods), None
        elif s.separable is not None:
            payoffs, sep = None, s.separable
        else:
            payoffs, sep = s.payoff_array, None
        if not subtype:
            if self.goods is not None:
                return SocialChoice(self.n, goods=self.goods, atoms=atoms, probs=probs, priors=priors)
            return SocialChoice(self.n, payoffs, separable=sep, atoms=atoms, probs=probs, priors=priors)
        l = self.dim
        if sep is not None:
            sep = SeparablePayoffs(own=lambda x: s.separable.own(x[..., :l]), others=lambda x: s.separable.others(x[..., :l]),
                                   n_alternatives=self.K)
            return SocialChoice(self.n, separable=sep, atoms=atoms, probs=probs, priors=priors)
        payoffs = np.concatenate([payoffs, np.zeros(payoffs.shape[:2] + (1,))], axis=-1)
        return SocialChoice(self.n, payoffs, atoms=atoms, probs=probs, priors=priors)


def choice_view(setting) -> ChoiceView:
    """The :class:`ChoiceView` of a setting; one-line ConfigError for the settings purify refuses."""
    from .settings.social_choice import MAX_ALTERNATIVES

    kind = getattr(setting, "kind", type(setting).__name__)
    if kind == "social_choice":
        return ChoiceView(setting, "social_choice", setting.agents, setting.dim, setting.n_alternatives, setting.goods, setting.priors)
    if kind == "single_item":
        return ChoiceView(setting, "auction", setting.n_agents, 1, setting.n_agents + 1, 1, tuple((p,) for p in setting.priors))
    if kind == "multi_item":
        if setting.valuation == "unit_demand":
            raise ConfigError(
                "purify cannot handle unit-demand bidders: the auction map's product lottery can give a bidder two items, "
                "breaking 'at most one item'; use additive values or a social_choice setting"
            )
        if setting.common_weight:
            raise ConfigError("purify needs independent item values; this multi_item setting correlates them (common_weight > 0)")
        n, m = setting.n_agents, setting.n_items
        if (n + 1) ** m > MAX_ALTERNATIVES:
            raise ConfigError(f"the auction map has (n + 1)^m = {(n + 1) ** m} assignments, over {MAX_ALTERNATIVES}; use fewer bidders or items")
        return ChoiceView(setting, "auction", n, m, (n + 1) ** m, m, tuple(tuple(row) for row in setting.priors))
    if kind == "public_goods":
        raise ConfigError(
            "purify does not support public_goods yet (provision and inclusion would need one comonotone uniform and the cost kept); "
            "express the problem as a social_choice setting"
        )
    raise ConfigError(f"purify supports social_choice, single_item and additive multi_item settings, not {kind!r}")


# ----------------------------------------------------------------------------- mechanisms


class Dithered(Mechanism):
    """The dither purification of a mechanism on atomless types (module docstring).

    At reports v: q = the mechanism's lottery, x_i = F_i(v_i1) (agent i's own prior's CDF of her
    first coordinate), alternative = :func:`~diffmech.purify.dither_choice`(q, x, R), payments =
    the mechanism's payments at v, unchanged. Deterministic (one-hot), never picks an alternative
    with q^k(v) = 0; interim allocations within O(1/R) of the mechanism's.
    """

    base: Mechanism
    priors: tuple
    R: int = eqx.field(static=True)
    kind_: str = eqx.field(static=True)
    agents: int = eqx.field(static=True)
    goods: int | None = eqx.field(static=True)

    kind: ClassVar[str] = "dithered"
    summary: ClassVar[str] = "deterministic dither of a stochastic mechanism (built by purify)"

    def quantiles(self, reports: Float[Array, "batch agents dim"]) -> Float[Array, "batch agents"]:
        """x_i = F_i(v_i1) for every agent (one call when all agents share a prior)."""
        first = reports[..., 0]
        if len({repr(p.to_config()) for p in self.priors}) == 1:
            return self.priors[0].cdf(first)
        return jnp.stack([p.cdf(first[:, i]) for i, p in enumerate(self.priors)], axis=-1)  # n priors, built once

    def decide(self, out: Outcome, reports) -> Outcome:
        """The dithered outcome from the mechanism's outcome ``out`` at ``reports``."""
        lot = _lottery(out, self.kind_)
        onehot = dither_choice(lot, self.quantiles(reports).astype(lot.dtype), self.R)
        return _outcome(onehot, out.payments, self.kind_, self.agents, self.goods)

    def __call__(self, reports):
        return self.decide(self.base(reports), reports)

    @classmethod
    def from_config(cls, setting, options, key=None):
        raise ConfigError("dithered is built by diffmech.purify, not from a config")


class LatinTable(Mechanism):
    """The vertex purification: a deterministic table mechanism on the enlarged type space.

    Reports ``(batch, n, l + 1)``: the type part is snapped to the nearest atom t_i of agent i's
    finite type space, the last coordinate to the sub-type s_i = round(R·x) ∈ {0, …, R − 1}.
    Alternative: the k with N_{k−1}(t) ≤ (Σ_i s_i) mod R < N_k(t) (``cum`` = cumulative counts
    N_1, …, N_K, N_K = R); payments t_i(t) of the original mechanism. The table holds P × K
    counts, not the (Π_i T_i R) enlarged profiles.
    """

    atoms: Float[Array, "agents T dim"]
    real: Bool[Array, "agents T"]
    strides: Int[Array, " agents"]
    cum: Int[Array, "P K"]
    payments: Float[Array, "P agents"]
    R: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    kind: ClassVar[str] = "latin_table"
    summary: ClassVar[str] = "deterministic table mechanism on types × sub-types (built by purify)"

    def __call__(self, reports):
        dtype = reports.dtype if jnp.issubdtype(reports.dtype, jnp.floating) else jnp.result_type(float)
        x = reports[..., : self.dim].astype(dtype)
        d = jnp.sum((x[..., None, :] - jnp.asarray(self.atoms, dtype)) ** 2, axis=-1)  # (batch, n, T)
        t = jnp.argmin(jnp.where(self.real, d, jnp.inf), axis=-1)
        row = jnp.sum(t * jnp.asarray(self.strides), axis=-1)
        sub = jnp.clip(jnp.rint(reports[..., self.dim].astype(dtype) * self.R), 0, self.R - 1).astype(jnp.int32)
        m = jnp.mod(jnp.sum(sub, axis=-1), self.R)
        k = jnp.sum(jnp.asarray(self.cum)[row] <= m[:, None], axis=-1)
        choice = jax.nn.one_hot(k, self.cum.shape[-1], dtype=dtype)
        return social_choice_outcome(choice, jnp.asarray(self.payments)[row].astype(dtype))

    @classmethod
    def from_config(cls, setting, options, key=None):
        raise ConfigError("latin_table is built by diffmech.purify, not from a config")


# ----------------------------------------------------------------------------- helpers


def _grid_axis(prior, G: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """One coordinate's finite stand-in: a discrete prior's atoms, or G quantile-cell midpoints
    F⁻¹((j + ½)/G) with mass 1/G each. Returns (values, probs, was_gridded)."""
    if prior.discrete:
        return np.asarray(prior.atoms(), np.float64), np.asarray(prior.probs, np.float64), False
    with enable_x64(), jax.ensure_compile_time_eval():
        v = np.asarray(prior.icdf(jnp.asarray((np.arange(G) + 0.5) / G, jnp.float64)), np.float64)
    return v, np.full(G, 1.0 / G), True


def finite_types(view: ChoiceView, grid: int | None):
    """Per agent atoms ``(T_i, l)`` and probabilities, and the grid used (None if none)."""
    from .settings.social_choice import MAX_TYPES

    s = view.setting
    if view.kind == "social_choice" and s.finite:
        if grid is not None:
            raise ConfigError("grid applies to continuous types; this setting's type space is already finite")
        sup = s.type_supports()
        return [a for a, _ in sup], [p for _, p in sup], None
    G = DEFAULT_GRID if grid is None else grid
    if not isinstance(G, (int, np.integer)) or isinstance(G, bool) or not 2 <= G <= 1024:
        raise ConfigError(f"grid must be an integer between 2 and 1024 (quantile cells per coordinate), got {grid!r}")
    atoms, probs, gridded = [], [], False
    for i, agent in enumerate(view.priors):  # n agents, construction time
        axes = [_grid_axis(p, int(G)) for p in agent]
        gridded |= any(g for _, _, g in axes)
        pts = np.array(list(itertools.product(*[a for a, _, _ in axes])), np.float64).reshape(-1, len(axes))
        w = np.array([math.prod(c) for c in itertools.product(*[b for _, b, _ in axes])], np.float64)
        if len(w) > MAX_TYPES:
            raise ConfigError(f"agent {i} would have {len(w)} grid types, over {MAX_TYPES}; lower grid")
        atoms.append(pts)
        probs.append(w / w.sum())
    if grid is not None and not gridded:
        raise ConfigError("grid applies to continuous types; every prior of this setting is discrete")
    return atoms, probs, (int(G) if gridded else None)


@eqx.filter_jit
def _lottery_rows(mechanism, spec, x):
    out = mechanism(x)
    return _lottery(out, spec[0]), out.payments


def _run(mechanism, spec, profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lotteries ``(P, K)`` and payments ``(P, n)`` of a mechanism on profiles, float64, in chunks."""
    size = max(1, min(len(profiles), CHUNK))
    lots, pays = [], []
    for a in range(0, len(profiles), size):
        part = profiles[a : a + size]
        pad = size - len(part)
        if pad:
            part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
        lot, pay = _lottery_rows(mechanism, spec, jnp.asarray(part, jnp.float64))
        lots.append(np.asarray(lot, np.float64)[: size - pad])
        pays.append(np.asarray(pay, np.float64)[: size - pad])
    return np.concatenate(lots), np.concatenate(pays)


def _interim_transfers(pay: np.ndarray, probs) -> list[np.ndarray]:
    """T_i(r) = Σ_{t−i} p_−i(t_−i) pay_i(r, t_−i) for every agent, ``(T_i,)`` each."""
    n = len(probs)
    return [_own_first(pay[..., i], i, n) @ _others_weight(probs, i) for i in range(n)]


def table_metrics(q: np.ndarray, pay: np.ndarray, u: np.ndarray, probs) -> dict[str, float]:
    """Exact interim and ex ante quantities of a lottery table on a finite type space: the sums of
    :func:`~diffmech.evaluate_interim.evaluate_interim`'s ``exact`` method, per-agent priors allowed.

    With U_i(t_i, r) = Σ_{t−i} p_−i [Σ_k q(r, t_−i, k) u_i^k(t) − pay_i(r, t_−i)]: interim regret
    max_r U_i(t_i, r) − U_i(t_i, t_i) (mean: over agents of the p_i-weighted mean; max), interim IR
    violation max(0, −U_i(t_i, t_i)), surplus Σ_t p(t) Σ_k q Σ_i u_i^k, revenue Σ_t p(t) Σ_i pay_i.
    """
    regrets, ir = [], []
    for U in interim_utility_tables(q, _interim_transfers(pay, probs), u, probs):  # (T_i, T_i) per agent
        truth = np.diag(U)
        regrets.append(np.maximum(U.max(axis=1) - truth, 0.0))
        ir.append(np.maximum(-truth, 0.0))
    joint = reduce(np.multiply.outer, probs, np.ones(()))
    return {
        "interim_regret_mean": float(np.mean([p @ g for p, g in zip(probs, regrets)])),
        "interim_regret_max": float(max(g.max() for g in regrets)),
        "interim_ir_violation_mean": float(np.mean([p @ g for p, g in zip(probs, ir)])),
        "interim_ir_violation_max": float(max(g.max() for g in ir)),
        "surplus": float(np.sum(joint[..., None] * q * u.sum(axis=-2))),
        "revenue": float(np.sum(joint * pay.sum(axis=-1))),
    }


#: largest T_i × P × K block of the ex post check
MAX_EX_POST = 1 << 24


def ex_post_metrics(q: np.ndarray, pay: np.ndarray, u: np.ndarray, support: np.ndarray | None = None) -> dict[str, float] | None:
    """Worst ex post regret and ex post IR violation on a finite type space, or None if too large.

    Lottery table (``support`` None): gain of agent i of type t_i reporting r at t_−i,
    Σ_k q(r, t_−i, k) u_i^k(t) − pay_i(r, t_−i) − [Σ_k q(t, k) u_i^k(t) − pay_i(t)], and IR
    violation max(0, pay_i(t) − Σ_k q u_i^k). Deterministic Latin rule (``support`` = N > 0): every
    alternative of positive count occurs at some sub-type profile and a sub-type report moves
    the choice among them, so the worst gain is max_{k ∈ supp(r, t−i)} u_i^k(t) − pay_i(r, t_−i)
    − [min_{k ∈ supp(t)} u_i^k(t) − pay_i(t)] and the worst IR violation uses min_{k ∈ supp(t)}.
    """
    n, K = len(q.shape) - 1, q.shape[-1]
    if max(q.shape[i] for i in range(n)) * q.size > MAX_EX_POST:
        return None
    gain, short = 0.0, 0.0
    for i in range(n):  # one vectorised block per agent
        ui, pi = _own_first(u[..., i, :], i, n), _own_first(pay[..., i], i, n)  # (T, Rr, K), (T, Rr)
        if support is None:
            val = np.einsum("brk,ark->abr", _own_first(q, i, n), ui)  # (true a, report b, others)
            truth = np.einsum("aar->ar", val)
            hi = val
        else:
            si = _own_first(support, i, n)
            hi = np.max(np.where(si[None], ui[:, None], -np.inf), axis=-1)  # (a, b, r): best realised
            truth = np.min(np.where(si, ui, np.inf), axis=-1)  # worst realised at the truth
        g = hi - pi[None, :, :] - (truth - pi)[:, None, :]
        gain = max(gain, float(g.max()))
        short = max(short, float(np.max(pi - truth)))
    return {"ex_post_regret_max": max(gain, 0.0), "ex_post_ir_violation_max": max(short, 0.0)}


#: lottery entries below this are set to 0 before purifying (float32 networks never return an
#: exact 0, which would make every alternative "supported" everywhere)
ZERO = 1e-9


def _clean(lot: np.ndarray) -> tuple[np.ndarray, float]:
    """Rows with entries below :data:`ZERO` set to 0, renormalised (float32 outcomes sum to 1 only
    to ~1e-7); returns the table and the largest entry change (≤ K·ZERO + float32 rounding)."""
    q = np.where(lot < ZERO, 0.0, lot)
    q = q / q.sum(-1, keepdims=True)
    return q, float(np.max(np.abs(q - lot)))


# ----------------------------------------------------------------------------- vertex


def purify_vertex(mechanism, view: ChoiceView, *, R: int | None = None, grid: int | None = None, key=None,
                  time_limit: float = 10.0) -> Purification:
    """Vertex purification on a finite (grid) type space, then the Latin split (module docstring)."""
    from .settings.social_choice import MAX_TYPES

    t0 = time.perf_counter()
    if view.n < 2:
        raise ConfigError("purification needs at least two agents: with one agent randomisation cannot be purified (CHLS need I ≥ 2)")
    atoms, probs, G = finite_types(view, grid)
    T = tuple(len(p) for p in probs)
    n, K = view.n, view.K
    P = math.prod(T)
    if P * K > MAX_TABLE:
        raise ConfigError(f"the table has {P} profiles × {K} alternatives, over {MAX_TABLE} entries; lower grid")
    cap = MAX_TYPES // max(T)
    if R is not None and (not isinstance(R, (int, np.integer)) or isinstance(R, bool) or not 1 <= R <= cap):
        raise ConfigError(f"R must be an integer between 1 and {cap} (sub-types per type, at most {MAX_TYPES} types per agent), got {R!r}")
    with enable_x64():
        grid_setting = view.social_choice(atoms=atoms, probs=probs)
        prof, pw = grid_setting.profiles()
        lot, pay = _run(mechanism, view.spec, prof)
        q, cleaned = _clean(lot)
        q = q.reshape(T + (K,))
        pay_t = pay.reshape(T + (n,))
        moments = None
        if view.kind == "social_choice" and view.setting.separable is not None:
            r = grid_setting.moment_tables()[1]
            moments = [r[..., i, :, :] for i in range(n)]
        u = grid_setting.payoff_table()
        transfers = _interim_transfers(pay_t, probs)  # T_i(r)
        t1 = time.perf_counter()
        vp = vertex_purify(q, probs, moments)
        t2 = time.perf_counter()
        lc = latin_counts(vp.q_tilde, probs, R, max_r=cap, moments=moments, payoffs=u, transfers=transfers, time_limit=time_limit)
        t3 = time.perf_counter()
        Rr = lc.R
        ext_atoms = [np.concatenate([np.repeat(a, Rr, axis=0), np.tile(np.arange(Rr) / Rr, len(a))[:, None]], axis=1) for a in atoms]
        ext_probs = [np.repeat(p / Rr, Rr) for p in probs]
        enlarged = view.social_choice(atoms=ext_atoms, probs=ext_probs, subtype=True)
        pad = max(T)
        mech = LatinTable(
            atoms=np.stack([np.concatenate([a, np.repeat(a[-1:], pad - len(a), axis=0)]) for a in atoms]),
            real=np.arange(pad)[None, :] < np.asarray(T)[:, None],
            strides=np.array([math.prod(T[i + 1 :]) for i in range(n)], np.int64),
            cum=np.cumsum(lc.counts, axis=-1).reshape(P, K).astype(np.int32),
            payments=pay,
            R=Rr,
            dim=view.dim,
        )
        # the purified mechanism on every profile, each with random sub-types (same type profiles)
        key = jax.random.PRNGKey(0) if key is None else key
        subs = np.asarray(jax.random.randint(key, (P, n), 0, Rr))
        ext_prof = np.concatenate([prof, (subs / Rr)[..., None]], axis=-1)
        choice, pay_after = _run(mech, ("social_choice", n, None), ext_prof)
    eff = lc.counts / Rr
    before = table_metrics(q, pay_t, u, probs)
    after = table_metrics(eff, pay_t, u, probs)
    Q_before, Q_after = _interim(q, probs, None), _interim(eff, probs, None)
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(Q_after, Q_before))
    k_chosen = np.argmax(choice, axis=-1)
    want = np.sum(np.cumsum(lc.counts.reshape(P, K), axis=-1) <= (subs.sum(-1) % Rr)[:, None], axis=-1)
    deterministic = bool(np.all((choice == 0.0) | (choice == 1.0)) and np.all(choice.sum(-1) == 1.0) and np.array_equal(k_chosen, want))
    support = bool(np.all(q.reshape(P, K)[np.arange(P), k_chosen] > 0) and np.all((lc.counts == 0) | (q > 0)))
    rev_before = float(np.sum(pw * pay.sum(-1)))
    rev_after = float(np.sum(pw * pay_after.sum(-1)))
    ep_before = ex_post_metrics(q, pay_t, u)
    ep_after = ex_post_metrics(eff, pay_t, u, support=lc.counts > 0)
    warnings = [NOT_PRESERVED]
    if not lc.exact:
        warnings.append(
            f"interim allocations are matched to {err:.2e}, not exactly: the vertex has fractional entries that are not multiples "
            f"of 1/R (R = {Rr}), so the Latin split rounds them; uniform sub-types put enlarged interim allocations on a lattice "
            "of step ~ p_-i/R, and generic real ones cannot be matched by any finite split"
        )
    if G is not None:
        warnings.append(f"the purified mechanism lives on the {G}-cell quantile grid (reports snap to the nearest grid type)")
    report: dict[str, Any] = {
        "method": "vertex",
        "setting": view.setting.describe(),
        "purified_setting": enlarged.describe(),
        "outcome_map": "auction map: product lottery over (n+1)^m assignments" if view.kind == "auction" else "social choice lotteries",
        "alternatives": K,
        "grid": G,
        "types": list(T),
        "profiles": P,
        "vertex_deterministic_profiles": vp.n_deterministic,
        "vertex_fractional_profiles": vp.n_fractional,
        "vertex_fractional_bound": vp.fractional_bound,
        "vertex_moment_error": vp.max_moment_error,
        "R": Rr,
        "R_exact": lc.exact,
        "rounding": lc.rounding,
        "sub_types": [t * Rr for t in T],
        "interim_allocation_error": err,
        "interim_moment_error": lc.interim_error if moments is not None else None,
        "table_cleaning": cleaned,
        "interim_regret_mean_before": before["interim_regret_mean"],
        "interim_regret_mean_after": after["interim_regret_mean"],
        "interim_regret_max_before": before["interim_regret_max"],
        "interim_regret_max_after": after["interim_regret_max"],
        "interim_ir_violation_max_before": before["interim_ir_violation_max"],
        "interim_ir_violation_max_after": after["interim_ir_violation_max"],
        "surplus_before": before["surplus"],
        "surplus_after": after["surplus"],
        "surplus_change": after["surplus"] - before["surplus"],
        "revenue_before": rev_before,
        "revenue_after": rev_after,
        "revenue_change": rev_after - rev_before,
        "payments_identical": bool(np.array_equal(pay, pay_after)),
        "support_preserved": support and vp.support_preserved,
        "deterministic": deterministic,
        "interim_evaluation": "exact sums over the finite type space; after: on N/R by the sub-type identity (every sub-type's interim "
        "quantities are those of its type under N/R)",
    }
    for name, block in (("before", ep_before), ("after", ep_after)):
        for k, v in (block or {"ex_post_regret_max": None, "ex_post_ir_violation_max": None}).items():
            report[f"{k}_{name}"] = v
    report["seconds"] = {"table": round(t1 - t0, 3), "vertex_lp": round(t2 - t1, 3), "rounding": round(t3 - t2, 3),
                         "total": round(time.perf_counter() - t0, 3)}
    report["warnings"] = warnings
    return Purification(mechanism=mech, setting=enlarged, report=report)


# ----------------------------------------------------------------------------- dither


@eqx.filter_jit
def _ex_ante_pair(mechanism, setting, x):
    """Per profile: payments and social value of the base and of the dithered mechanism (each
    called on the profiles), whether the dithered choice is one-hot and had positive probability."""
    out0 = mechanism.base(x)
    out1 = mechanism(x)
    lot0, lot1 = _lottery(out0, mechanism.kind_), _lottery(out1, mechanism.kind_)
    v0 = jnp.sum(setting.values(x, social_choice_outcome(lot0, out0.payments)), axis=-1)
    v1 = jnp.sum(setting.values(x, social_choice_outcome(lot1, out1.payments)), axis=-1)
    onehot = jnp.all((lot1 == 0.0) | (lot1 == 1.0), axis=-1) & (jnp.sum(lot1, axis=-1) == 1.0)
    supported = jnp.all((lot1 == 0.0) | (lot0 > 0.0), axis=-1)
    return out0.payments, out1.payments, v0, v1, onehot, supported


def _others_profiles(points, weights):
    """:func:`~diffmech.interim.others_profiles` in numpy (built once, no eager device ops):
    every profile of the agents other than i from per-agent nodes ``(n, k, l)`` with product
    weights, ``(n, k^(n−1), n − 1, l)`` and ``(n, k^(n−1))``, others in their order."""
    points, weights = np.asarray(points, np.float64), np.asarray(weights, np.float64)
    n, k, _ = points.shape
    idx = np.indices((k,) * (n - 1)).reshape(n - 1, -1).T  # (S, n − 1), C order
    rows, wts = [], []
    for i in range(n):  # n small
        others = [j for j in range(n) if j != i]
        rows.append(points[np.asarray(others)[None, :], idx])
        wts.append(np.prod(weights[np.asarray(others)[None, :], idx], axis=1))
    return jnp.asarray(np.stack(rows)), jnp.asarray(np.stack(wts))


def _stratified_nodes(sc, nodes: int, key):
    """Stratified random quantile nodes for each agent: one uniform draw in each of the ``nodes``
    cells ((j + U_j)/S) per coordinate, coordinates paired by independent random permutations
    (Latin hypercube), v = F⁻¹(u), equal weights. The dithered integrand jumps ~R times across the
    other agent's quantile; a deterministic grid of S nodes meets those jumps at phases that repeat
    from cell to cell, so its errors add up (∝ R/S), while random phases make them cancel
    (∝ √R/S)."""
    rng = np.random.default_rng(np.asarray(jax.random.randint(key, (2,), 0, 2**31 - 1)))
    n, l, S = sc.agents, sc.dim, int(nodes)
    u = (np.arange(S)[None, :, None] + rng.random((n, S, l))) / S
    for i in range(n):  # n × l small permutations (construction time)
        for m in range(1, l):
            u[i, :, m] = u[i, rng.permutation(S), m]
    with jax.ensure_compile_time_eval():
        pts = np.asarray(sc.from_quantiles(jnp.asarray(u, jnp.float64)), np.float64)
    return pts, np.full((n, S), 1.0 / S)


@eqx.filter_jit
def _ex_post_rows(mechanism, setting, types, grid):
    """Best ex post gain over the report grid and ex post IR shortfall per (profile, agent), for the
    dither's base mechanism and for the dithered one (the library's kernels)."""
    from . import constraints as C

    return tuple(x for m in (mechanism.base, mechanism) for x in (C.grid_gains(m, setting, types, grid)[0], C.ir_violation(m, setting, types)))


def _ex_post_check(dith: Dithered, setting, types, grid) -> tuple[dict, dict]:
    """The library's ex post kernels (exhaustive report grid, truthful IR) on ``types``, in chunks."""
    size = max(1, min(types.shape[0], CHUNK // max(1, grid.shape[1] * setting.n_agents)))
    worst = np.zeros(4)
    for a in range(0, types.shape[0], size):
        part = types[a : a + size]
        if part.shape[0] < size:
            part = jnp.concatenate([part, jnp.repeat(part[-1:], size - part.shape[0], axis=0)])
        worst = np.maximum(worst, [float(jnp.max(x)) for x in _ex_post_rows(dith, setting, part, grid)])
    return tuple({"ex_post_regret_max": float(worst[j]), "ex_post_ir_violation_max": float(worst[j + 1])} for j in (0, 2))


@eqx.filter_jit
def _interim_pair(mechanism, sc, own, reports, others, weights):
    """For the dither's base mechanism and the dithered one (read as social-choice lotteries, same
    payments), from one evaluation of the base on the deviation profiles: the interim lotteries
    Q[i, r, k] at the reports and the interim utilities U[i, a, r] of own type a reporting r — the
    library's kernels (:func:`~diffmech.interim.insert_reports` and the own-type utilities of
    :func:`~diffmech.interim.interim_utility`)."""
    from . import interim as I

    n, s = others.shape[:2]
    r, d = reports.shape[1], reports.shape[2]
    prof = I.insert_reports(others, reports).astype(reports.dtype)
    flat = prof.reshape(n * r * s, n, d)
    out0 = mechanism.base(flat)
    lots = (_lottery(out0, mechanism.kind_), _lottery(mechanism.decide(out0, flat), mechanism.kind_))

    def tables(lot):
        out = social_choice_outcome(lot, out0.payments)
        per_type = lambda o: jnp.einsum("irs,is->ir", I._own_utility(sc, o, prof, out), weights)  # noqa: E731
        Q = jnp.einsum("irsk,is->irk", lot.reshape(n, r, s, -1), weights)
        return Q, jnp.moveaxis(jax.vmap(per_type, in_axes=1)(own), 0, 1)

    return tables(lots[0]), tables(lots[1])


def _interim_pass(dith: Dithered, sc, cfg: EvalConfig, key, nodes: int):
    """Interim allocation error, interim regret and interim IR of the base and the dithered
    mechanism on the same nodes: own types = reports = an even grid of ``interim_types`` points per
    agent (l ≤ 2; else sampled), the other agent on ``nodes`` stratified random quantile nodes
    (:func:`_stratified_nodes`, n = 2) or ``interim_samples`` sampled profiles (n > 2).

    Error: max over agents, grid types and alternatives of |Q̃_i − Q_i|. Regret of (i, θ_a):
    max_b U_i(θ_a, θ_b) − U_i(θ_a, θ_a) over the grid. The base is evaluated once per (report,
    node), so the smooth part of the integrand is common to both; what the nodes add is a sampling
    error of order √R/nodes from the dither's jumps (a regular grid of nodes would meet those jumps
    at phases repeating from cell to cell, an error ∝ R/nodes that does not cancel)."""
    from . import interim as I

    grid = sc.attack_grid(cfg.interim_types)
    own = jnp.asarray(grid, jnp.float64) if grid is not None else jnp.swapaxes(sc.sample(key, cfg.interim_types), 0, 1)
    if sc.agents == 2:
        others, ow = _others_profiles(*_stratified_nodes(sc, nodes, jax.random.fold_in(key, 7)))
        how = f"stratified random quantile nodes: {others.shape[1]} for the other agent"
    else:
        others, ow = I.sampled_others(sc, jax.random.fold_in(key, 1), cfg.interim_samples)
        how = f"monte carlo: {cfg.interim_samples} sampled profiles of the others"
    n, k = own.shape[:2]
    per_call = max(1, min(k, CHUNK * 4 // max(1, n * others.shape[1])))
    parts = [[[], []], [[], []]]  # mechanism → (Q pieces, U pieces)
    for a in range(0, k, per_call):  # chunks of reports, one compiled shape
        piece = own[:, a : a + per_call]
        pad = per_call - piece.shape[1]
        if pad:
            piece = jnp.concatenate([piece, jnp.repeat(piece[:, -1:], pad, axis=1)], axis=1)
        for acc, (Q, U) in zip(parts, _interim_pair(dith, sc, own, piece, others, ow)):
            acc[0].append(np.asarray(Q, np.float64)[:, : per_call - pad])
            acc[1].append(np.asarray(U, np.float64)[:, :, : per_call - pad])
    Qs = [np.concatenate(acc[0], axis=1) for acc in parts]
    metrics = []
    for acc in parts:
        U = np.concatenate(acc[1], axis=-1)  # (n, own a, report b)
        truthful = np.diagonal(U, axis1=1, axis2=2)
        gains = np.maximum(U.max(axis=-1) - truthful, 0.0)
        metrics.append({"interim_regret_mean": float(gains.mean()), "interim_regret_max": float(gains.max()),
                        "ir_violation_max": float(np.maximum(-truthful, 0.0).max())})
    err = float(np.max(np.abs(Qs[1] - Qs[0])))
    return err, metrics[0], metrics[1], f"{how}; {k} own types per agent, reports = the same grid"


def purify_dither(mechanism, view: ChoiceView, *, R: int | None = None, key=None, eval_cfg: EvalConfig | None = None,
                  error_nodes: int | None = None) -> Purification:
    """The dither on atomless types and its report (module docstring)."""
    t0 = time.perf_counter()
    if view.n < 2:
        raise ConfigError("purification needs at least two agents: with one agent randomisation cannot be purified (CHLS need I ≥ 2)")
    if view.priors is None or any(p.discrete for agent in view.priors for p in agent):
        raise ConfigError("the dither needs atomless (continuous) priors; for finite types use method='vertex'")
    R = DEFAULT_DITHER_R if R is None else R
    if not isinstance(R, (int, np.integer)) or isinstance(R, bool) or not 1 <= R <= 1 << 20:
        raise ConfigError(f"R must be an integer between 1 and {1 << 20} (the dither resolution), got {R!r}")
    cfg = eval_cfg or PURIFY_EVAL
    key = jax.random.PRNGKey(0) if key is None else key
    dith = Dithered(base=mechanism, priors=tuple(agent[0] for agent in view.priors), R=int(R), kind_=view.kind, agents=view.n, goods=view.goods)
    with enable_x64():
        sc = view.social_choice(priors=[list(agent) for agent in view.priors])
        err, before, after, how = _interim_pass(dith, sc, cfg, key, error_nodes or ERROR_NODES)
        prof = np.asarray(sc.sample(jax.random.fold_in(key, 2), cfg.samples), np.float64)
        size, pieces = min(len(prof), CHUNK), []
        for a in range(0, len(prof), size):  # chunks padded to one compiled shape
            part = prof[a : a + size]
            full = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])
            pieces.append([np.asarray(x)[: len(part)] for x in _ex_ante_pair(dith, sc, jnp.asarray(full))])
        rows = [np.concatenate([p[j] for p in pieces]) for j in range(6)]
        ep = {}
        grid = view.setting.attack_grid(cfg.grid_points)
        if view.kind == "auction" and grid is not None:  # the original setting's ex post (DSIC) kernels
            types = view.setting.sample(jax.random.fold_in(key, 3), EX_POST_PROFILES).astype(jnp.float64)
            grid = jnp.asarray(grid, jnp.float64)
            ep["before"], ep["after"] = _ex_post_check(dith, view.setting, types, grid)
    pay0, pay1, v0, v1, onehot, supported = rows
    rev0, rev1 = float(np.mean(pay0.sum(-1))), float(np.mean(pay1.sum(-1)))
    report: dict[str, Any] = {
        "method": "dither",
        "setting": view.setting.describe(),
        "purified_setting": view.setting.describe(),
        "outcome_map": "auction map: product lottery over (n+1)^m assignments" if view.kind == "auction" else "social choice lotteries",
        "alternatives": view.K,
        "R": int(R),
        "quantiles": "F_i(v_i1): each agent's own prior CDF of the first type coordinate",
        "interim_allocation_error": err,
        "interim_evaluation": how,
        "interim_regret_mean_before": before["interim_regret_mean"],
        "interim_regret_mean_after": after["interim_regret_mean"],
        "interim_regret_max_before": before["interim_regret_max"],
        "interim_regret_max_after": after["interim_regret_max"],
        "interim_ir_violation_max_before": before["ir_violation_max"],
        "interim_ir_violation_max_after": after["ir_violation_max"],
        "surplus_before": float(np.mean(v0)),
        "surplus_after": float(np.mean(v1)),
        "surplus_change": float(np.mean(v1) - np.mean(v0)),
        "surplus_change_se": float(np.std(v1 - v0, ddof=1) / math.sqrt(len(v0))),
        "revenue_before": rev0,
        "revenue_after": rev1,
        "revenue_change": rev1 - rev0,
        "payments_identical": bool(np.array_equal(pay0, pay1)),
        "ex_ante_profiles": int(len(v0)),
        "support_preserved": bool(np.all(supported)),
        "deterministic": bool(np.all(onehot)),
    }
    for name in ("before", "after"):
        m = ep.get(name, {})
        report[f"ex_post_regret_max_{name}"] = m.get("ex_post_regret_max")
        report[f"ex_post_ir_violation_max_{name}"] = m.get("ex_post_ir_violation_max")
    report["ex_post_evaluation"] = (f"{EX_POST_PROFILES} sampled profiles, {cfg.grid_points} own reports per agent" if ep
                                    else "not measured (the setting has no ex post evaluation or no report grid)")
    report["seconds"] = {"total": round(time.perf_counter() - t0, 3)}
    report["warnings"] = [NOT_PRESERVED, f"the dither matches interim allocations only up to O(1/R) (measured {err:.2e} at R = {int(R)})"]
    return Purification(mechanism=dith, setting=view.setting, report=report)
