"""Exact optimal mechanisms for excludable public goods on a finite type space (LP ground truth).

The setting is :class:`~diffmech.settings.public_goods.PublicGoods` (Fang–Norman, appendix B): n
agents with iid types θ_i ∈ Θ = {θ_1, …, θ_K} ⊂ R^M (probabilities π_k), M excludable non-rival
goods, good j costs C^j = C^j(n) when provided. A mechanism (eq. (B1)) chooses provision
probabilities ρ^j(θ), inclusion probabilities η_i^j(θ) and transfers t_i(θ). Writing agent i's
*consumption* a_i^j(θ) = ρ^j(θ) η_i^j(θ), the constraints 0 ≤ η ≤ 1, 0 ≤ ρ ≤ 1 become the linear
0 ≤ a_i^j ≤ ρ^j ≤ 1, and the designer's problem is the linear program

    maximise   E[ Σ_j ( Σ_i a_i^j(θ) θ_i^j − ρ^j(θ) C^j ) ]                               (surplus, (B8))
    subject to Σ_j θ_k^j Q_i^j(k) − T_i(k) ≥ Σ_j θ_k^j Q_i^j(r) − T_i(r)   ∀ i, k, r          (IC)
               Σ_j θ_k^j Q_i^j(k) − T_i(k) ≥ 0                          ∀ i, k             (IR)
               Σ_i E T_i(θ_i) ≥ E Σ_j ρ^j(θ) C^j                                            (BB)
               0 ≤ a_i^j(θ) ≤ ρ^j(θ) ≤ 1,

where Q_i^j(r) = E_{θ−i} a_i^j(r, θ−i) is the interim consumption of good j by agent i reporting
r (the left side of (B5)) and T_i(r) = E_{θ−i} t_i(r, θ−i) the interim transfer. Transfers enter
only through T_i, so the T_i(k) are the variables and the returned table charges the simple
transfer t_i(θ) = T_i(θ_i) (Claim B1's t_i); with ``budget = "ex_post"`` (and n ≥ 2) the
expected budget surplus is refunded and the transfers are rebalanced profile by profile without
changing any T_i (see :func:`_balanced_transfers`), so the same optimum is reached.

Two formulations, same optimum:

* ``"profiles"``: every one of the K^n profiles carries its own ρ(θ) and a_i(θ) (the full class of
  mechanisms); Q_i is a sum over the K^(n−1) profiles of the others.
* ``"counts"``: the anonymous class — ρ(c) and the consumption a(k, c) of an agent of type k
  depend only on the type-count vector c ∈ {c ∈ N^K : Σ c = n}; an agent of type k who reports r
  meets others' counts d ~ Multinomial(n − 1, π) and the profile count d + e_r, so
  Q^j(r) = Σ_d P(d) a^j(r, d + e_r). Claim B2 (symmetrising over the n! permutations of the
  agents) maps any incentive-feasible mechanism to an anonymous one with the same surplus, and
  Claim B1 makes any consumption rule a ≤ ρ implementable with inclusion rules, so the two LPs
  have the same value; the counts LP has C(n + K − 1, K − 1) cells instead of K^n.

Restrictions (the analytic baselines):

* ``"none"``: the optimum above (bundling and exclusion allowed);
* ``"no_exclusion"``: η ≡ 1, i.e. a_i^j = ρ^j;
* ``"separate"``: each good j is provided by its own mechanism that sees only the values for good
  j and balances its own budget: the sum over goods of the one-good LPs on the marginal priors of
  θ^j. (Every separate mechanism is IC, IR and BB for the joint problem as well, because others'
  types are independent of one's own, so the separate optimum is a lower bound on the optimum.)

All LPs are solved by HiGHS through :func:`scipy.optimize.linprog` with sparse constraint matrices
built in numpy (no Python loop over profiles or constraints).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog
from scipy.special import gammaln

from .errors import ConfigError

RESTRICTIONS = ("none", "separate", "no_exclusion")
METHODS = ("auto", "profiles", "counts")
#: ``method = "auto"`` uses the profiles LP up to this many profiles K^n, else the counts LP (same
#: optimum, much smaller: at K^n = 4096 the profiles LP takes ~1.5 s, the counts LP ~0.05 s)
AUTO_PROFILES = 1024
#: the largest number of cells (profiles K^n, or type-count vectors) an LP is built on
MAX_CELLS = 1 << 16
#: the returned table (K^n rows) is built up to this many profiles, else ``mechanism`` is None
MAX_TABLE = 1 << 16

_TOL = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


@dataclasses.dataclass(frozen=True)
class PublicLPResult:
    """The optimum of the public-goods LP.

    Attributes:
        surplus: the optimal expected surplus (the LP value).
        first_best: E Σ_j max(0, Σ_i θ_i^j − C^j) (:func:`first_best_surplus`).
        mechanism: the optimal mechanism as a
            :class:`~diffmech.mechanisms.analytic.public_table.PublicGoodsTable` over all K^n
            profiles (None when K^n > :data:`MAX_TABLE`).
        restriction: ``"none"``, ``"separate"`` or ``"no_exclusion"``.
        method: the formulation actually solved, ``"profiles"`` or ``"counts"``.
        seconds: wall-clock time of building and solving the LP(s).
        status: HiGHS's message.
    """

    surplus: float
    first_best: float
    mechanism: object | None
    restriction: str
    method: str
    seconds: float
    status: str


@dataclasses.dataclass(frozen=True)
class PublicLPSolution:
    """A solved LP in float64 numpy arrays (what :class:`PublicLPResult` wraps).

    ``provision`` (K^n, M), ``inclusion`` (K^n, n, M) and ``payments`` (K^n, n) are the table in
    the row order of :func:`~diffmech.mechanisms.analytic.public_table.all_profiles`, or None when
    K^n > :data:`MAX_TABLE`; ``interim_transfers`` (n, K) are T_i(k).
    """

    surplus: float
    first_best: float
    atoms: np.ndarray
    provision: np.ndarray | None
    inclusion: np.ndarray | None
    payments: np.ndarray | None
    interim_transfers: np.ndarray
    restriction: str
    method: str
    seconds: float
    status: str

    def table(self):
        """The :class:`PublicGoodsTable` (arrays in the current JAX precision), or None."""
        if self.provision is None:
            return None
        from .mechanisms.analytic.public_table import PublicGoodsTable

        return PublicGoodsTable(self.atoms, self.provision, self.inclusion, self.payments)

    def result(self) -> PublicLPResult:
        return PublicLPResult(
            self.surplus, self.first_best, self.table(), self.restriction, self.method, self.seconds, self.status
        )


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def solve_public_lp(setting, *, restriction: str = "none", method: str = "auto") -> PublicLPResult:
    """The surplus-maximising incentive-feasible mechanism of a finite public-goods setting.

    Args:
        setting: a :class:`~diffmech.settings.public_goods.PublicGoods` with a finite type space.
        restriction: ``"none"`` (the optimum), ``"separate"`` (one mechanism and one budget per
            good) or ``"no_exclusion"`` (η ≡ 1); see the module docstring.
        method: ``"profiles"`` (all K^n profiles), ``"counts"`` (anonymous, over type-count
            vectors) or ``"auto"`` (profiles when K^n ≤ :data:`AUTO_PROFILES`).

    Returns:
        a :class:`PublicLPResult`; its ``mechanism`` is built in the current JAX precision (call
        inside :func:`diffmech._compat.enable_x64` for a float64 table).
    """
    return solve_public_lp_arrays(setting, restriction=restriction, method=method).result()


def solve_public_lp_arrays(setting, *, restriction: str = "none", method: str = "auto") -> PublicLPSolution:
    """:func:`solve_public_lp`, returning the solution as float64 numpy arrays."""
    atoms, probs = _finite_support(setting)
    if restriction not in RESTRICTIONS:
        raise ConfigError(f"restriction must be one of {', '.join(RESTRICTIONS)}, got {restriction!r}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    n, costs = setting.n_agents, np.asarray(setting.cost, np.float64)
    ex_post = getattr(setting, "budget", "ex_ante") == "ex_post"
    start = time.perf_counter()
    if restriction == "separate":
        sol = _solve_separate(atoms, probs, n, costs, method, ex_post)
    else:
        sol = _solve_joint(atoms, probs, n, costs, restriction == "no_exclusion", method, ex_post, table=True)
    seconds = time.perf_counter() - start
    prov = incl = pay = None
    if sol["rho"] is not None:
        prov, incl, pay = _finish_table(sol["rho"], sol["a"], sol["T"], probs, n, costs, ex_post)
    return PublicLPSolution(
        float(sol["value"]), first_best_surplus(setting), atoms, prov, incl, pay, sol["T"], restriction,
        sol["method"], seconds, sol["status"],
    )


def first_best_surplus(setting) -> float:
    """E Σ_j max(0, Σ_i θ_i^j − C^j): provide each good exactly when the agents' total value
    covers its cost and include everyone (no incentive constraints). Exact on a finite type space:
    the law of Σ_i θ_i^j is the n-fold convolution of good j's marginal."""
    atoms, probs = _finite_support(setting)
    total = 0.0
    for j, cost in enumerate(np.asarray(setting.cost, np.float64)):
        dist = {0.0: (0.0, 1.0)}  # rounded sum -> (sum, probability)
        for _ in range(setting.n_agents):
            new: dict[float, list] = {}
            for s, p in dist.values():
                for v, q in zip(atoms[:, j], probs):
                    if q == 0.0:
                        continue
                    key = round(s + v, 9)
                    e = new.setdefault(key, [s + v, 0.0])
                    e[1] += p * q
            dist = {k: tuple(e) for k, e in new.items()}
        total += math.fsum(p * max(0.0, s - cost) for s, p in dist.values())
    return float(total)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _finite_support(setting) -> tuple[np.ndarray, np.ndarray]:
    if getattr(setting, "kind", "") != "public_goods":
        raise ConfigError(f"the public-goods LP needs a public_goods setting, got {getattr(setting, 'kind', setting)!r}")
    if not setting.finite:
        raise ConfigError(
            "the LP needs a finite type space; give the goods discrete priors (dist = \"discrete\") or a joint "
            "prior (types + probs)"
        )
    atoms, probs = setting.type_support()
    return np.asarray(atoms, np.float64), np.asarray(probs, np.float64)


def _pick_method(method: str, k: int, n: int) -> str:
    if method == "auto":
        return "profiles" if k**n <= AUTO_PROFILES else "counts"
    return method


# --------------------------------------------------------------------------------------------
# Cells and slots: the two formulations in one shape
# --------------------------------------------------------------------------------------------


def _profiles_cells(probs: np.ndarray, n: int) -> dict:
    """Cells = the K^n profiles (row order of itertools.product); slot (p, i) = agent i in
    profile p, class i (each agent has its own interim rules)."""
    k = len(probs)
    idx = np.indices((k,) * n).reshape(n, -1).T  # (P, n), lexicographic
    pk = probs[idx]  # (P, n)
    w = np.prod(pk, axis=1)
    p = len(idx)
    # ω of slot (p, i): probability of the others' profile, ∏_{l≠i} π_{p_l} (no division by π)
    omega = np.stack([np.prod(np.delete(pk, i, axis=1), axis=1) for i in range(n)], axis=1)  # (P, n)
    return {
        "cell_w": w,
        "slot_cell": np.repeat(np.arange(p), n),
        "slot_class": np.tile(np.arange(n), p),
        "slot_type": idx.reshape(-1),
        "slot_omega": omega.reshape(-1),
        "slot_mu": np.repeat(w, n),
        "classes": n,
        "bb_mult": 1,
        "idx": idx,
    }


def _multinomial(counts: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """P(counts) for counts ~ Multinomial(Σ counts, probs), row-wise."""
    m = counts.sum(axis=1)
    logc = gammaln(m + 1.0) - gammaln(counts + 1.0).sum(axis=1)
    return np.exp(logc) * np.prod(np.power(probs[None, :], counts), axis=1)


def _count_cells(probs: np.ndarray, n: int) -> dict:
    """Cells = type-count vectors c (Σ c = n); slot (c, k) for c_k ≥ 1 = an agent of type k in
    cell c, one class (anonymous rules), weight of the others' counts P_{n−1}(c − e_k)."""
    k = len(probs)
    combos = np.array(list(itertools.combinations_with_replacement(range(k), n)), np.int64).reshape(-1, n)
    counts = np.zeros((len(combos), k), np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(combos)), n), combos.reshape(-1)), 1)
    w = _multinomial(counts, probs)
    cell, typ = np.nonzero(counts > 0)
    others = counts[cell].copy()
    others[np.arange(len(cell)), typ] -= 1
    return {
        "cell_w": w,
        "slot_cell": cell,
        "slot_class": np.zeros(len(cell), np.int64),
        "slot_type": typ,
        "slot_omega": _multinomial(others, probs),
        "slot_mu": w[cell] * counts[cell, typ],
        "classes": 1,
        "bb_mult": n,
        "counts": counts,
    }


# --------------------------------------------------------------------------------------------
# The LP
# --------------------------------------------------------------------------------------------


def _solve_joint(atoms, probs, n, costs, no_exclusion, method, ex_post, table) -> dict:
    """One LP over all goods jointly. Returns value, status, the method used, T (n, K) and —
    when ``table`` and K^n ≤ MAX_TABLE — rho (K^n, M) and consumption a (K^n, n, M)."""
    k, m = atoms.shape
    method = _pick_method(method, k, n)
    if method == "profiles":
        if k**n > MAX_CELLS:
            raise ConfigError(
                f"the profiles LP would have {k}^{n} = {k**n} profiles (limit {MAX_CELLS}); use method = \"counts\""
            )
        cells = _profiles_cells(probs, n)
    else:
        size = math.comb(n + k - 1, k - 1)
        if size > MAX_CELLS:
            raise ConfigError(
                f"the counts LP would have {size} type-count vectors (limit {MAX_CELLS}); use fewer agents or fewer "
                "type vectors"
            )
        cells = _count_cells(probs, n)
    rho, a, t, value, status = _lp(atoms, probs, costs, cells, no_exclusion, ex_post and n == 1)
    out = {"value": value, "status": status, "method": method, "rho": None, "a": None}
    if method == "profiles":
        out["T"] = t  # (n, K)
        if table and k**n <= MAX_TABLE:
            out["rho"], out["a"] = rho, a.reshape(k**n, n, m)
    else:
        out["T"] = np.broadcast_to(t[0], (n, k)).copy()
        if table and k**n <= MAX_TABLE:
            out["rho"], out["a"] = _expand_counts(cells, rho, a, k, n)
    return out


def _lp(atoms, probs, costs, cells, no_exclusion, ex_post_single):
    """Build and solve the LP of the module docstring on ``cells``.

    Variables: ρ (C·M) ∈ [0, 1]; a (S·M) ∈ [0, 1] (absent without exclusion: a = ρ of the
    slot's cell); Q (G·K·M) ∈ [0, 1], Q[g, r, j] = Σ_{slots s of class g and type r} ω_s a_s^j;
    T (G·K) free.
    """
    k, m = atoms.shape
    w = cells["cell_w"]
    s_cell, s_class, s_type = cells["slot_cell"], cells["slot_class"], cells["slot_type"]
    s_omega, s_mu = cells["slot_omega"], cells["slot_mu"]
    g_n = cells["classes"]
    n_cells, n_slots = len(w), len(s_cell)
    n_rho = n_cells * m
    n_a = 0 if no_exclusion else n_slots * m
    off_a, off_q = n_rho, n_rho + n_a
    off_t = off_q + g_n * k * m
    n_var = off_t + g_n * k
    jj = np.arange(m)

    # column of the consumption of slot s, good j
    if no_exclusion:
        cons = s_cell[:, None] * m + jj[None, :]
    else:
        cons = off_a + np.arange(n_slots)[:, None] * m + jj[None, :]  # (S, M)

    # objective: minimise −E surplus
    c = np.zeros(n_var)
    np.add.at(c, cons.ravel(), -(s_mu[:, None] * atoms[s_type]).ravel())
    c[:n_rho] += (w[:, None] * costs[None, :]).ravel()

    ub_rows, ub_cols, ub_vals, n_ub = [], [], [], 0

    def add_ub(rows, cols, vals):
        ub_rows.append(np.asarray(rows).ravel())
        ub_cols.append(np.asarray(cols).ravel())
        ub_vals.append(np.broadcast_to(vals, np.shape(rows)).ravel().astype(np.float64))

    # a_s^j − ρ^j(cell s) ≤ 0
    if not no_exclusion:
        r = np.arange(n_slots * m).reshape(n_slots, m)
        add_ub(r, cons, 1.0)
        add_ub(r, s_cell[:, None] * m + jj[None, :], -1.0)
        n_ub += n_slots * m

    def q_col(g, r_, j):
        return off_q + (g * k + r_) * m + j

    def t_col(g, r_):
        return off_t + g * k + r_

    # IC: Σ_j θ_k^j (Q[g,r,j] − Q[g,k,j]) + T[g,k] − T[g,r] ≤ 0 for r ≠ k
    g_, k_, r_ = np.meshgrid(np.arange(g_n), np.arange(k), np.arange(k), indexing="ij")
    off = k_ != r_
    g_, k_, r_ = g_[off], k_[off], r_[off]
    rows = n_ub + np.arange(len(g_))
    th = atoms[k_]  # (R, M)
    add_ub(np.repeat(rows[:, None], m, 1), q_col(g_[:, None], r_[:, None], jj[None, :]), th)
    add_ub(np.repeat(rows[:, None], m, 1), q_col(g_[:, None], k_[:, None], jj[None, :]), -th)
    add_ub(rows, t_col(g_, k_), 1.0)
    add_ub(rows, t_col(g_, r_), -1.0)
    n_ub += len(rows)

    # IR: −Σ_j θ_k^j Q[g,k,j] + T[g,k] ≤ 0
    g_, k_ = np.meshgrid(np.arange(g_n), np.arange(k), indexing="ij")
    g_, k_ = g_.ravel(), k_.ravel()
    rows = n_ub + np.arange(len(g_))
    add_ub(np.repeat(rows[:, None], m, 1), q_col(g_[:, None], k_[:, None], jj[None, :]), -atoms[k_])
    add_ub(rows, t_col(g_, k_), 1.0)
    n_ub += len(rows)

    # BB: E Σ_j ρ^j C^j − mult Σ_g Σ_k π_k T[g,k] ≤ 0
    add_ub(np.full(n_rho, n_ub), np.arange(n_rho), (w[:, None] * costs[None, :]).ravel())
    add_ub(np.full(g_n * k, n_ub), t_col(g_, k_), -cells["bb_mult"] * probs[k_])
    n_ub += 1

    a_ub = sp.csr_matrix(
        (np.concatenate(ub_vals), (np.concatenate(ub_rows), np.concatenate(ub_cols))), shape=(n_ub, n_var)
    )

    # Q[g,r,j] − Σ ω_s cons(s, j) = 0
    q_rows = (s_class * k + s_type)[:, None] * m + jj[None, :]  # (S, M)
    eq_r = [np.arange(g_n * k * m), q_rows.ravel()]
    eq_c = [off_q + np.arange(g_n * k * m), cons.ravel()]
    eq_v = [np.ones(g_n * k * m), -np.repeat(s_omega, m)]
    n_eq = g_n * k * m
    if ex_post_single:  # one agent, ex post BB: T(type of cell) = Σ_j C^j ρ^j(cell)
        one = s_cell  # one slot per cell
        rows = n_eq + np.arange(len(one))
        eq_r += [rows, np.repeat(rows, m)]
        eq_c += [t_col(s_class, s_type), (one[:, None] * m + jj[None, :]).ravel()]
        eq_v += [np.ones(len(one)), -np.tile(costs, len(one))]
        n_eq += len(one)
    a_eq = sp.csr_matrix((np.concatenate(eq_v), (np.concatenate(eq_r), np.concatenate(eq_c))), shape=(n_eq, n_var))

    lo = np.zeros(n_var)
    hi = np.ones(n_var)
    lo[off_t:], hi[off_t:] = -np.inf, np.inf
    res = linprog(
        c, A_ub=a_ub, b_ub=np.zeros(n_ub), A_eq=a_eq, b_eq=np.zeros(n_eq), bounds=np.column_stack([lo, hi]),
        method="highs", options=_TOL,
    )
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"HiGHS did not solve the public-goods LP: {res.message}")
    x = res.x
    rho = x[:n_rho].reshape(n_cells, m)
    a = rho[s_cell] if no_exclusion else x[off_a:off_q].reshape(n_slots, m)
    t = x[off_t:].reshape(g_n, k)
    return rho, a, t, -float(res.fun), str(res.message)


def _expand_counts(cells, rho, a, k, n):
    """The anonymous counts solution as a profile table: ρ(θ) = ρ(c(θ)), a_i(θ) = a(θ_i, c(θ))."""
    counts = cells["counts"]
    radix = (n + 1) ** np.arange(k)
    lookup = {int(v): i for i, v in enumerate(counts @ radix)}
    slot_of = np.full((len(counts), k), -1, np.int64)
    slot_of[cells["slot_cell"], cells["slot_type"]] = np.arange(len(cells["slot_cell"]))
    idx = np.indices((k,) * n).reshape(n, -1).T
    prof_counts = np.zeros((len(idx), k), np.int64)
    np.add.at(prof_counts, (np.repeat(np.arange(len(idx)), n), idx.reshape(-1)), 1)
    cell = np.array([lookup[int(v)] for v in prof_counts @ radix], np.int64)
    return rho[cell], a[slot_of[cell[:, None], idx]]


def _solve_separate(atoms, probs, n, costs, method, ex_post) -> dict:
    """Σ_j of the one-good LPs on the marginals of θ^j; the table runs them side by side."""
    k, m = atoms.shape
    value, methods, statuses = 0.0, [], []
    table = k**n <= MAX_TABLE
    idx = np.indices((k,) * n).reshape(n, -1).T if table else None
    rho = np.zeros((k**n, m)) if table else None
    a = np.zeros((k**n, n, m)) if table else None
    t = np.zeros((n, k))
    for j in range(m):
        vals, inv = np.unique(atoms[:, j], return_inverse=True)
        marg = np.bincount(inv, weights=probs, minlength=len(vals))
        sol = _solve_joint(vals[:, None], marg, n, costs[j : j + 1], False, method, ex_post, table=table)
        value += sol["value"]
        methods.append(sol["method"])
        statuses.append(sol["status"])
        t += sol["T"][:, inv]
        if table:
            kj = len(vals)
            row = inv[idx] @ (kj ** np.arange(n - 1, -1, -1))  # the good-j profile of each profile
            rho[:, j] = sol["rho"][row, 0]
            a[:, :, j] = sol["a"][row, :, 0]
    method_used = methods[0] if len(set(methods)) == 1 else "+".join(methods)
    status = statuses[0] if len(set(statuses)) == 1 else "; ".join(statuses)
    return {"value": value, "status": status, "method": method_used, "rho": rho, "a": a, "T": t}


# --------------------------------------------------------------------------------------------
# From LP variables to a table
# --------------------------------------------------------------------------------------------


def _finish_table(rho, a, t, probs, n, costs, ex_post):
    """(provision, inclusion, payments) over all K^n profiles.

    ρ is clipped to [0, 1] and a to [0, ρ] (removing solver noise), η = a/ρ where ρ > 0 and 1
    where ρ = 0 (0/0 convention). Payments are t_i(θ) = T_i(θ_i), or the ex post balanced
    transfers of :func:`_balanced_transfers` when the setting asks for ex post budget balance.
    """
    k = len(probs)
    rho = np.clip(rho, 0.0, 1.0)
    a = np.clip(a, 0.0, rho[:, None, :])
    pos = rho[:, None, :] > 0.0
    incl = np.where(pos, a / np.where(pos, rho[:, None, :], 1.0), 1.0)
    idx = np.indices((k,) * n).reshape(n, -1).T
    if ex_post and n >= 2:
        pay = _balanced_transfers(rho, t, probs, idx, costs)
    else:
        pay = t[np.arange(n)[None, :], idx]
    return rho, incl, pay


def _balanced_transfers(rho, t, probs, idx, costs):
    """Transfers with Σ_i t_i(θ) = Σ_j ρ^j(θ) C^j at every profile and E_{−i} t_i = T_i(θ_i)
    (less a lump-sum refund of the expected budget surplus, which keeps IR and IC).

    With the deficit D(θ) = Σ_j ρ^j C^j − Σ_i T_i(θ_i) (E D = 0 after the refund) and
    d_i(θ_i) = E_{−i} D, set t_i = T_i(θ_i) + [D − Σ_l d_l(θ_l)]/n + Σ_{l≠i} d_l(θ_l)/(n − 1):
    the corrections sum to D and have zero interim mean for agent i (independent types).
    """
    p, n = idx.shape
    k = len(probs)
    w = np.prod(probs[idx], axis=1)
    t = t.copy()
    surplus = float(np.sum(probs[None, :] * t) - w @ (rho @ costs))
    t -= surplus / n
    own = t[np.arange(n)[None, :], idx]  # (P, n)
    deficit = rho @ costs - own.sum(axis=1)
    grid = deficit.reshape((k,) * n)
    d = np.zeros((n, k))
    for i in range(n):  # d_i(k) = Σ_{θ−i} π(θ−i) D(k, θ−i), also for types of probability 0
        x = grid
        for l in range(n - 1, -1, -1):
            if l != i:
                x = np.tensordot(x, probs, axes=([l], [0]))
        d[i] = x
    di = d[np.arange(n)[None, :], idx]  # (P, n)
    common = (deficit - di.sum(axis=1)) / n
    return own + common[:, None] + (di.sum(axis=1, keepdims=True) - di) / (n - 1)


__all__ = [
    "AUTO_PROFILES",
    "MAX_CELLS",
    "MAX_TABLE",
    "METHODS",
    "RESTRICTIONS",
    "PublicLPResult",
    "PublicLPSolution",
    "first_best_surplus",
    "solve_public_lp",
    "solve_public_lp_arrays",
]
