"""Revenue-optimal Bayesian mechanisms on a finite social-choice setting (LP and MILP).

The setting (:class:`~diffmech.settings.social_choice.SocialChoice`): n agents with independent
finite type spaces (atoms t_i ∈ {1, …, T_i} with probabilities p_i(t_i)), K alternatives and
payoffs u_i^k(t) on every profile t = (t_1, …, t_n) (the table ``setting.payoff_table()``, which
covers private values and interdependent separable payoffs alike). A direct mechanism is a table
of lotteries q(t, k) ≥ 0 with Σ_k q(t, k) = 1 (shape (T_1, …, T_n, K), profiles in C order) and,
for revenue, only the *interim* transfers T_i(t_i) = E_{t−i} t_i(t) matter. With

    U_i(t_i, r) = Σ_{t−i} p_−i(t_−i) Σ_k q((r, t_−i), k) u_i^k(t_i, t_−i) − T_i(r)

(agent i of type t_i reporting r; Chen–He–Li–Sun, Section 2.2), the program is

    maximise    Σ_i Σ_{t_i} p_i(t_i) T_i(t_i)
    subject to  U_i(t_i, t_i) ≥ U_i(t_i, r)     for all i and t_i ≠ r             (BIC)
                U_i(t_i, t_i) ≥ 0               for all i and t_i                (interim IR)
                Σ_k q(t, k) = 1, q ≥ 0          for every profile t,

variables q (P·K, P = Π T_i) and T_i (free). Randomised mechanisms: an LP; deterministic ones
add q ∈ {0, 1} (a MILP). Both are solved by HiGHS (:func:`scipy.optimize.linprog`,
:func:`scipy.optimize.milp`). Assembly is sparse and vectorised over type pairs and profiles (one
block per agent): BIC has Σ_i T_i(T_i − 1) rows with 2·K·P/T_i coefficients each.

With one agent (n = 1) and the auction map (alternatives = subsets of the goods), this is the menu
LP of :mod:`diffmech.lp` with additive values: a lottery over subsets is worth Σ_j v_j a_j with a its
marginals, and every a ∈ [0, 1]^m is the marginal of the product lottery; deterministic
mechanisms are the one-hot lotteries (a ∈ {0, 1}^m) in both.

Ex post transfers. The optimum fixes interim transfers only; the table mechanism
(:meth:`SocialChoiceLP.mechanism`) charges t_i(t) = T_i(t_i), a function of the own report only.
Then E_{t−i} t_i(r, t_−i) = T_i(r) for every report r, so every interim utility U_i(t_i, r) — and
hence BIC, interim IR and the revenue — is the same as in the program. Nothing is claimed ex post:
an agent may regret participating at some profiles (no ex post IR) and the mechanism is not DSIC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import reduce
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from .errors import ConfigError
from .mechanisms.base import Mechanism
from .outcome import social_choice_outcome

__all__ = ["SocialChoiceLP", "SocialChoiceTable", "solve_social_choice", "solve_tables", "interim_utility_tables", "ex_post_transfers"]

#: the largest number of nonzero constraint coefficients assembled
MAX_NONZEROS = 20_000_000


# ----------------------------------------------------------------------------- interim quantities


def _others_weight(probs: tuple[np.ndarray, ...], i: int) -> np.ndarray:
    """p_−i(t_−i) = Π_{j≠i} p_j(t_j) on the others' profiles in C order, shape (P / T_i,)."""
    others = [p for j, p in enumerate(probs) if j != i]
    return reduce(np.multiply.outer, others, np.ones(())).reshape(-1)


def _own_first(table: np.ndarray, i: int, n: int) -> np.ndarray:
    """A (T_1, …, T_n, …) table with agent i's axis first and the others' profiles flattened:
    (T_i, P / T_i, …)."""
    moved = np.moveaxis(table, i, 0)
    return moved.reshape(moved.shape[0], -1, *table.shape[n:])


def interim_utility_tables(q: np.ndarray, transfers, payoffs: np.ndarray, probs) -> tuple[np.ndarray, ...]:
    """U_i(t_i, r) for every agent: a tuple of ``(T_i, T_i)`` arrays (row true type, column report).

    ``q`` ``(T_1, …, T_n, K)``, ``transfers`` n arrays T_i ``(T_i,)``, ``payoffs`` u_i^k(t)
    ``(T_1, …, T_n, n, K)``, ``probs`` n arrays p_i ``(T_i,)``.
    """
    n = len(probs)
    probs = tuple(np.asarray(p, np.float64) for p in probs)
    out = []
    for i in range(n):  # one vectorised block per agent
        w = _others_weight(probs, i)
        u = _own_first(payoffs[..., i, :], i, n)  # (T_i, R, K) at the true type
        qi = _own_first(q, i, n)  # (T_i, R, K) at the report
        out.append(np.einsum("ark,brk,r->ab", u, qi, w) - np.asarray(transfers[i], np.float64)[None, :])
    return tuple(out)


def ex_post_transfers(transfers, counts: tuple[int, ...]) -> np.ndarray:
    """t_i(t) = T_i(t_i) on every profile: ``(T_1, …, T_n, n)`` (module docstring)."""
    n = len(counts)
    cols = [np.broadcast_to(np.asarray(transfers[i], np.float64).reshape([-1 if j == i else 1 for j in range(n)]), counts) for i in range(n)]
    return np.stack(cols, axis=-1)


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True)
class SocialChoiceLP:
    """An optimal (or any) mechanism on a finite social-choice setting, as tables.

    Attributes:
        revenue: Σ_i Σ_{t_i} p_i(t_i) T_i(t_i).
        surplus: Σ_t p(t) Σ_k q(t, k) Σ_i u_i^k(t), the ex ante social surplus.
        q: ``(T_1, …, T_n, K)`` lotteries over the alternatives (one-hot when deterministic).
        transfers: per agent, the interim transfers T_i ``(T_i,)``.
        probs: per agent, p_i ``(T_i,)``.
        payoffs: u_i^k(t) ``(T_1, …, T_n, n, K)``.
        deterministic: whether q was restricted to {0, 1} (MILP).
        status: ``"optimal"``, or ``"time_limit"`` for a MILP stopped early with a feasible table.
        seconds: solve time (assembly and HiGHS).
    """

    revenue: float
    surplus: float
    q: np.ndarray
    transfers: tuple[np.ndarray, ...]
    probs: tuple[np.ndarray, ...]
    payoffs: np.ndarray
    deterministic: bool
    status: str
    seconds: float

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(len(p) for p in self.probs)

    def interim_utilities(self) -> tuple[np.ndarray, ...]:
        """U_i(t_i, r) per agent, ``(T_i, T_i)`` (:func:`interim_utility_tables`)."""
        return interim_utility_tables(self.q, self.transfers, self.payoffs, self.probs)

    def interim_allocation(self, i: int) -> np.ndarray:
        """Q_i(t_i, k) = Σ_{t−i} p_−i(t_−i) q(t, k), shape ``(T_i, K)``."""
        n = len(self.probs)
        return np.einsum("ark,r->ak", _own_first(self.q, i, n), _others_weight(self.probs, i))

    def max_bic_violation(self) -> float:
        """max over agents, types and reports of (U_i(t_i, r) − U_i(t_i, t_i))^+."""
        return max(0.0, max(float(np.max(u - np.diag(u)[:, None])) for u in self.interim_utilities()))

    def max_ir_violation(self) -> float:
        """max over agents and types of (−U_i(t_i, t_i))^+."""
        return max(0.0, max(float(np.max(-np.diag(u))) for u in self.interim_utilities()))

    def ex_post_transfers(self) -> np.ndarray:
        """t_i(t) = T_i(t_i), ``(T_1, …, T_n, n)``."""
        return ex_post_transfers(self.transfers, self.counts)

    def mechanism(self, setting) -> "SocialChoiceTable":
        """The table mechanism (q, t_i(t) = T_i(t_i)) on ``setting``'s type space."""
        return SocialChoiceTable.from_tables(setting, self.q, self.ex_post_transfers())


# ----------------------------------------------------------------------------- the program


def _assemble(payoffs: np.ndarray, probs: tuple[np.ndarray, ...]):
    """c, A_ub, b_ub, A_eq, b_eq of the program (module docstring) for x = (q row-major over
    (profile, k), T_1, …, T_n); minimisation of c·x = −revenue."""
    n = len(probs)
    counts = tuple(len(p) for p in probs)
    k = payoffs.shape[-1]
    p_all = int(np.prod(counts))
    nq = p_all * k
    offs = nq + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    nnz = sum(2 * t * p_all * k for t in counts) + p_all * k
    if nnz > MAX_NONZEROS:
        raise ConfigError(f"the program has about {nnz:.3g} coefficients, over the limit {MAX_NONZEROS:.0e}; use fewer types or alternatives")
    rows, cols, vals = [], [], []
    row = 0
    ks = np.arange(k)
    for i in range(n):  # one vectorised block per agent (construction time)
        t = counts[i]
        r = p_all // t
        idx = _own_first(np.arange(p_all).reshape(counts), i, n)  # (T_i, R) flat profile index
        qcol = idx[:, :, None] * k + ks  # (T_i, R, K) column of q((t_i, t−i), k)
        coef = _own_first(payoffs[..., i, :], i, n) * _others_weight(probs, i)[None, :, None]  # C[a, r, k]
        a, b = np.nonzero(~np.eye(t, dtype=bool))  # BIC rows: true a, report b
        m = a.size
        rid = row + np.arange(m)
        span = r * k
        rows += [np.repeat(rid, span), np.repeat(rid, span), rid, rid]
        cols += [qcol[b].reshape(m, span).ravel(), qcol[a].reshape(m, span).ravel(), offs[i] + b, offs[i] + a]
        vals += [coef[a].reshape(m, span).ravel(), -coef[a].reshape(m, span).ravel(), -np.ones(m), np.ones(m)]
        row += m
        rid = row + np.arange(t)  # interim IR rows: −Σ C[a] q(a) + T_i(a) ≤ 0
        rows += [np.repeat(rid, span), rid]
        cols += [qcol.ravel(), offs[i] + np.arange(t)]
        vals += [-coef.ravel(), np.ones(t)]
        row += t
    n_var = nq + sum(counts)
    a_ub = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(row, n_var)).tocsr()
    a_eq = sparse.coo_matrix(
        (np.ones(nq), (np.repeat(np.arange(p_all), k), np.arange(nq))), shape=(p_all, n_var)
    ).tocsr()
    c = np.zeros(n_var)
    for i in range(n):
        c[offs[i] : offs[i] + counts[i]] = -probs[i]
    return c, a_ub, np.zeros(row), a_eq, np.ones(p_all), nq


def solve_tables(payoffs, probs, deterministic: bool = False, time_limit: float | None = None) -> SocialChoiceLP:
    """The revenue-optimal BIC, interim-IR mechanism for payoffs u_i^k(t) ``(T_1, …, T_n, n, K)``
    and independent type probabilities ``probs`` (n arrays ``(T_i,)``): the LP of the module
    docstring, or with ``deterministic=True`` the MILP (relative gap 1e-9). Raises ConfigError on
    bad input or solver failure."""
    probs = tuple(np.asarray(p, np.float64) for p in probs)
    payoffs = np.asarray(payoffs, np.float64)
    n = len(probs)
    counts = tuple(len(p) for p in probs)
    if n < 1 or payoffs.ndim != n + 2 or payoffs.shape[:n] != counts or payoffs.shape[n] != n or payoffs.shape[-1] < 1:
        raise ConfigError(f"payoffs must have shape (T_1, …, T_n, n, K) = {counts + (n, 'K')}, got {payoffs.shape}")
    if not np.all(np.isfinite(payoffs)):
        raise ConfigError("payoffs must be finite")
    for i, p in enumerate(probs):
        if p.ndim != 1 or not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-9:
            raise ConfigError(f"probs of agent {i} must be finite, >= 0 and sum to 1")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0):
        raise ConfigError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    start = time.perf_counter()
    c, a_ub, b_ub, a_eq, b_eq, nq = _assemble(payoffs, probs)
    lo = np.concatenate([np.zeros(nq), np.full(c.size - nq, -np.inf)])
    hi = np.concatenate([np.ones(nq), np.full(c.size - nq, np.inf)])
    if deterministic:
        options: dict[str, Any] = {"mip_rel_gap": 1e-9}
        if time_limit is not None:
            options["time_limit"] = float(time_limit)
        res = milp(
            c,
            constraints=[LinearConstraint(a_ub, -np.inf, b_ub), LinearConstraint(a_eq, b_eq, b_eq)],
            integrality=np.concatenate([np.ones(nq), np.zeros(c.size - nq)]),
            bounds=Bounds(lo, hi),
            options=options,
        )
    else:
        options = {"primal_feasibility_tolerance": 1e-9, "dual_feasibility_tolerance": 1e-9}
        if time_limit is not None:
            options["time_limit"] = float(time_limit)
        res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=np.column_stack([lo, hi]), method="highs", options=options)
    if res.status == 0 and res.x is not None:
        status = "optimal"
    elif deterministic and res.status == 1 and res.x is not None:
        status = "time_limit"
    else:
        what = "MILP" if deterministic else "LP"
        raise ConfigError(f"HiGHS did not solve the {what} (status {res.status}: {' '.join(str(res.message).split())}); raise time_limit or use fewer types")
    seconds = time.perf_counter() - start
    q = np.clip(res.x[:nq], 0.0, 1.0).reshape(counts + (payoffs.shape[-1],))
    if deterministic:
        q = np.round(q)
    offs = nq + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    transfers = tuple(res.x[offs[i] : offs[i] + counts[i]].copy() for i in range(n))
    revenue = float(sum(p @ t for p, t in zip(probs, transfers)))
    joint = reduce(np.multiply.outer, probs, np.ones(()))
    surplus = float(np.sum(joint[..., None] * q * payoffs.sum(axis=-2)))
    return SocialChoiceLP(revenue, surplus, q, transfers, probs, payoffs, bool(deterministic), status, seconds)


def solve_social_choice(setting, deterministic: bool = False, time_limit: float | None = None) -> SocialChoiceLP:
    """The revenue-optimal BIC, interim-IR mechanism on a finite
    :class:`~diffmech.settings.social_choice.SocialChoice` setting (randomised LP, or the
    deterministic MILP with ``deterministic=True``)."""
    if not getattr(setting, "finite", False) or not hasattr(setting, "payoff_table"):
        raise ConfigError("solve_social_choice needs a social_choice setting with finite types (types + probs)")
    return solve_tables(setting.payoff_table(), [p for _, p in setting.type_supports()], deterministic, time_limit)


# ----------------------------------------------------------------------------- table mechanism


class SocialChoiceTable(Mechanism):
    """A social-choice mechanism stored on every profile of a finite type space.

    Reports are snapped, agent by agent, to the nearest atom of that agent's type space, and the
    row of profile (t_1, …, t_n) is its C-order index Σ_i t_i·Π_{j>i} T_j. Built from tables
    (:meth:`from_tables`, :meth:`SocialChoiceLP.mechanism`), not from a config.
    """

    atoms: Float[Array, "agents T dim"]
    real: Bool[Array, "agents T"]
    strides: Int[Array, " agents"]
    choice: Float[Array, "P K"]
    payments: Float[Array, "P agents"]

    kind: ClassVar[str] = "social_choice_table"
    summary: ClassVar[str] = "a social-choice mechanism as a table over a finite type space (built by the LP)"

    def __init__(self, atoms, real, strides, choice, payments):
        self.atoms = jnp.asarray(atoms)
        self.real = jnp.asarray(real, bool)
        self.strides = jnp.asarray(strides)
        self.choice = jnp.asarray(choice)
        self.payments = jnp.asarray(payments)

    @classmethod
    def from_tables(cls, setting, q, payments) -> "SocialChoiceTable":
        """From q ``(T_1, …, T_n, K)`` and ex post transfers ``(T_1, …, T_n, n)`` on ``setting``."""
        counts = setting.type_counts
        n = len(counts)
        q = np.asarray(q, np.float64)
        payments = np.asarray(payments, np.float64)
        if q.shape[:n] != counts or q.shape[n:] != (setting.n_alternatives,) or payments.shape != counts + (n,):
            raise ConfigError(f"tables must have shapes {counts + (setting.n_alternatives,)} and {counts + (n,)}, got {q.shape} and {payments.shape}")
        atoms, probs = setting._padded()
        real = np.arange(atoms.shape[1])[None, :] < np.asarray(counts)[:, None]
        strides = np.array([int(np.prod(counts[i + 1 :])) for i in range(n)], np.int64)
        return cls(atoms, real, strides, q.reshape(-1, q.shape[-1]), payments.reshape(-1, n))

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "SocialChoiceTable":
        raise ConfigError("social_choice_table is built from tables (diffmech.social_choice_lp), not from a config")

    def __call__(self, reports):
        dtype = reports.dtype if jnp.issubdtype(reports.dtype, jnp.floating) else jnp.result_type(float)
        d = jnp.sum((reports.astype(dtype)[..., None, :] - self.atoms.astype(dtype)) ** 2, axis=-1)  # (batch, n, T)
        t = jnp.argmin(jnp.where(self.real, d, jnp.inf), axis=-1)
        row = jnp.sum(t * self.strides, axis=-1)
        return social_choice_outcome(self.choice[row].astype(dtype), self.payments[row].astype(dtype))
