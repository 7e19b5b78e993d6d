"""LP feasibility oracle for ex post socially efficient mechanisms (Ke, Definition 2) on a grid.

Each agent's type space is replaced by N grid types θ_i^0 < … < θ_i^{N−1} with probabilities
π_i^k (``nodes``):

- ``"midpoint"``: N even cells of [low, high], types at the midpoints, π = prior mass of the cell;
- ``"quantile"``: N cells of equal prior mass 1/N, types at the quantiles F⁻¹((k + ½)/N);
- ``"gauss"``: Gauss–Legendre nodes x_k of [low, high], π_k ∝ w_k f(x_k) (normalised).

The allocation is the setting's x*(θ) at every grid profile θ (N^n of them; ties as the setting
breaks them), and the variables are the payments M_i(θ) (N^n × n), the interim payments
m_i(k) = Σ_{θ−i} π_{−i}(θ−i) M_i(θ_i^k, θ−i) and a slack t. With

    W_i(r, k) = E_{θ−i} v_i(x_i*(θ_i^r, θ−i), θ_i^k)      (value of type k reporting r),

the LP (``objective = "slack"``) is

    maximise t
    subject to Σ_i M_i(θ) = c(x*(θ))                                         ∀ θ   (ex post BB)
               m_i(k) − m_i(r) ≤ W_i(k, k) − W_i(r, k)                      ∀ i, k ≠ r   (interim IC)
               v_i(x_i*(θ), θ_i) − M_i(θ) − u̲_i(θ_i) ≥ t                     ∀ i, θ   (ex post IR, slack t)
               [monotone] u_i(θ_i^{k+1}, θ−i) ≥ u_i(θ_i^k, θ−i)              ∀ i, k, θ−i  (Ke Definition 3)
               t ≤ t_max = max_θ |S(θ)| + max_{i,θ} |u̲_i(θ_i)| (bounded; summing IR gives n t ≤ S − Σ u̲),

so t* ≥ 0 iff an ex post socially efficient mechanism (ex post monotone, with ``monotone``) exists
on the grid. The constraints are feasible for every t ≤ t* and t* > −∞: AGV payments satisfy BB
and IC on any grid. ``objective = "lowest_utility"`` drops the IR rows and maximises Σ_i U_i(θ_i^0)
instead (the returned ``t_star`` is then the smallest ex post IR slack of the optimal payments).

Discrete Lemma 3. Ke's Lemma 3 (Σ_i U_i(θ̲_i) ≤ E Δ for IC, ex post BB mechanisms) is a statement
about continuous types. On a grid the downward adjacent IC constraints give
U_i(θ^{k+1}) ≥ U_i(θ^k) + W_i(k, k+1) − W_i(k, k), and ex post BB gives Σ_i E U_i = E S, so

    Σ_i U_i(θ_i^0) ≤ B_grid = E S − Σ_i Σ_{l<N−1} [W_i(l, l+1) − W_i(l, l)] P(θ_i > θ_i^l),   (L3)

with equality at the payments that make every adjacent downward IC constraint bind (globally IC
when W_i is supermodular, as in all of Ke's models). B_grid ≥ E Δ_grid := Σ_i E S(θ_i^0, θ−i) −
(n − 1) E S on the grid (VCG's rents exceed the minimal discrete rents) and B_grid → E Δ as the grid
is refined: for the private good, n = 2, U[0, 1], midpoints, B_grid = 1/3 + 1/(2N) − 1/(3N²)
while E Δ_grid = 1/3 + 1/(6N²). So Σ_i U_i(θ̲) ≤ E Δ(grid) need NOT hold on a grid; (L3) does.

The constraint matrices are scipy.sparse built with numpy index arithmetic (no Python loop over
profiles; loops over the n agents only), solved by HiGHS (``scipy.optimize.linprog``). Grids of
more than ``MAX_PROFILES`` = 16384 profiles are refused (n = 2: N ≤ 128; n = 3: N ≤ 25;
n = 4: N ≤ 11). The returned payments are re-checked in numpy (``ic_violation``,
``budget_residual``, ``min_ir_slack``).
"""

from __future__ import annotations

import dataclasses
import time

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Float
from scipy.optimize import linprog

from ._compat import enable_x64
from .efficient_exact import _call
from .errors import ConfigError

__all__ = ["MAX_PROFILES", "NODES", "OBJECTIVES", "FeasibilityResult", "type_grid", "feasibility_lp"]

#: the largest number of grid profiles N^n an LP is built on
MAX_PROFILES = 1 << 14
NODES = ("midpoint", "quantile", "gauss")
OBJECTIVES = ("slack", "lowest_utility")
_TOL = {"primal_feasibility_tolerance": 1e-9, "dual_feasibility_tolerance": 1e-9}


@dataclasses.dataclass(frozen=True)
class FeasibilityResult:
    """The optimum of the feasibility LP on an N-point grid per agent.

    Attributes:
        t_star: the LP value max t (objective ``"slack"``); for ``"lowest_utility"`` the smallest
            ex post IR slack of the optimal payments. t* ≥ 0: an ex post socially efficient
            mechanism exists on the grid.
        payments: M_i(θ) at every grid profile, shape (N,)*n + (n,) (axis j indexes θ_j^k).
        grid, probs: the grid types θ_i^k and their probabilities, (n, N).
        interim_utility: U_i(θ_i^k) = W_i(k, k) − m_i(k), (n, N).
        lowest_utility_sum: Σ_i U_i(θ_i^0).
        expected_delta: E Δ on the grid, Σ_i E S(θ_i^0, θ−i) − (n − 1) E S.
        lemma3_bound: B_grid of (L3), the largest Σ_i U_i(θ_i^0) of IC, ex post BB payments.
        min_ir_slack: min_{i,θ} v_i − M_i − u̲_i of the returned payments (recomputed).
        ic_violation: the largest interim IC violation of the returned payments (recomputed).
        budget_residual: max_θ |Σ_i M_i(θ) − c(x*(θ))| (recomputed).
        status: HiGHS's message; objective, nodes, monotone: the options; seconds: solve time.
    """

    t_star: float
    payments: np.ndarray
    grid: np.ndarray
    probs: np.ndarray
    interim_utility: np.ndarray
    lowest_utility_sum: float
    expected_delta: float
    lemma3_bound: float
    min_ir_slack: float
    ic_violation: float
    budget_residual: float
    status: str
    objective: str
    nodes: str
    monotone: bool
    seconds: float

    def exists(self, tol: float = 1e-8) -> bool:
        """t* ≥ −tol: an ex post socially efficient mechanism exists on the grid."""
        return self.t_star >= -tol


def _np(x) -> np.ndarray:
    return np.array(x, np.float64)  # a writable copy


def type_grid(prior, n_grid: int, nodes: str = "midpoint") -> tuple[Float[np.ndarray, " N"], Float[np.ndarray, " N"]]:
    """Grid types and probabilities of one prior (see the module docstring)."""
    lo, hi = float(prior.low), float(prior.high)
    with enable_x64():
        if nodes == "midpoint":
            edges = np.linspace(lo, hi, n_grid + 1)
            cdf = _np(prior.cdf(jnp.asarray(edges)))
            cdf[0], cdf[-1] = 0.0, 1.0
            return 0.5 * (edges[1:] + edges[:-1]), np.diff(cdf)
        if nodes == "quantile":
            u = (np.arange(n_grid) + 0.5) / n_grid
            return _np(prior.icdf(jnp.asarray(u))), np.full(n_grid, 1.0 / n_grid)
        x, w = np.polynomial.legendre.leggauss(n_grid)
        theta = lo + (hi - lo) * (x + 1.0) / 2.0
        p = w * _np(prior.pdf(jnp.asarray(theta)))
    if not np.all(np.isfinite(p)) or p.sum() <= 0:
        raise ConfigError("gauss nodes need a finite density with positive mass at the Gauss–Legendre nodes; use nodes='midpoint'")
    return theta, p / p.sum()


def _validate(setting, n_grid, nodes, objective, time_limit) -> None:
    if getattr(setting, "kind", None) != "efficient":
        raise ConfigError(f"the feasibility LP needs an efficient setting, got {getattr(setting, 'kind', setting)!r}")
    if not isinstance(n_grid, int) or isinstance(n_grid, bool) or n_grid < 2:
        raise ConfigError(f"n_grid must be an integer >= 2 (grid points per agent), got {n_grid!r}")
    if nodes not in NODES:
        raise ConfigError(f"nodes must be one of {', '.join(NODES)}, got {nodes!r}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    n = setting.n_agents
    if n_grid ** n > MAX_PROFILES:
        biggest = int(np.floor(MAX_PROFILES ** (1.0 / n) + 1e-9))
        raise ConfigError(
            f"{n_grid}^{n} = {n_grid ** n} grid profiles exceed the limit {MAX_PROFILES}; use n_grid <= {biggest} for {n} agents"
        )
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ConfigError(f"time_limit must be a positive number of seconds, got {time_limit!r}")


def _tables(setting, grids: np.ndarray, probs: np.ndarray) -> dict:
    """Everything the LP needs, at every grid profile (C order over the agents' indices)."""
    n, N = grids.shape
    idx = np.stack(np.meshgrid(*[np.arange(N)] * n, indexing="ij"), axis=-1).reshape(-1, n)  # (P, n)
    agents = np.arange(n)
    theta = grids[agents, idx]  # (P, n)
    P = theta.shape[0]
    x = _call(setting.allocation, theta)
    cost = _call(setting.production_cost, x)
    welfare = _call(setting.welfare, theta)
    truth = _call(setting.value, x, theta)
    reserve = _call(setting.reservation_utility, theta)
    # V[p, k, i] = v_i(x_i*(θ_p), θ_i^k): the value of type k at the allocation of profile p
    xk = np.broadcast_to(x[:, None, :], (P, N, n)).reshape(-1, n)
    tk = np.broadcast_to(grids.T[None], (P, N, n)).reshape(-1, n)
    V = _call(setting.value, xk, tk).reshape(P, N, n)
    pr = probs[agents, idx]  # (P, n)
    pi_minus = np.stack([np.prod(np.delete(pr, i, axis=1), axis=1) for i in range(n)])  # (n, P)
    W = np.empty((n, N, N))  # W[i, r, k]
    for i in range(n):
        arr = (V[:, :, i] * pi_minus[i][:, None]).reshape((N,) * n + (N,))
        W[i] = np.moveaxis(arr, i, 0).reshape(N, -1, N).sum(axis=1)
    return dict(idx=idx, theta=theta, cost=cost, welfare=welfare, truth=truth, reserve=reserve,
                pi_minus=pi_minus, W=W, prob=np.prod(pr, axis=1))


def _constraints(T: dict, n: int, N: int, objective: str, monotone: bool):
    """Sparse (A_ub, b_ub, A_eq, b_eq) over z = [M (P·n, var p·n + i), m (n·N), t]."""
    idx, P = T["idx"], T["idx"].shape[0]
    nM, nm = P * n, n * N
    nvar = nM + nm + 1
    tcol = nvar - 1
    mvar = lambda i, k: nM + i * N + k  # noqa: E731
    p_all = np.arange(P)
    # ex post BB: Σ_i M_i(p) = c(p)
    eq_rows = [np.repeat(p_all, n)]
    eq_cols = [np.arange(nM)]
    eq_vals = [np.ones(nM)]
    b_eq = [T["cost"]]
    # m_i(k) − Σ_{θ−i} π_{−i} M_i(k, θ−i) = 0
    for i in range(n):
        rows = P + i * N + idx[:, i]
        eq_rows += [rows, P + i * N + np.arange(N)]
        eq_cols += [p_all * n + i, mvar(i, np.arange(N))]
        eq_vals += [-T["pi_minus"][i], np.ones(N)]
    b_eq.append(np.zeros(nm))
    A_eq = sp.csr_matrix((np.concatenate(eq_vals), (np.concatenate(eq_rows), np.concatenate(eq_cols))), shape=(P + nm, nvar))
    # interim IC: m_i(k) − m_i(r) ≤ W_i(k, k) − W_i(r, k), k ≠ r
    k, r = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    off = k != r
    k, r = k[off], r[off]
    nic = k.size
    ub_rows, ub_cols, ub_vals, b_ub = [], [], [], []
    row0 = 0
    for i in range(n):
        rows = row0 + np.arange(nic)
        ub_rows += [rows, rows]
        ub_cols += [mvar(i, k), mvar(i, r)]
        ub_vals += [np.ones(nic), -np.ones(nic)]
        b_ub.append(T["W"][i, k, k] - T["W"][i, r, k])
        row0 += nic
    if objective == "slack":  # ex post IR with slack: M_i(p) + t ≤ v_i − u̲_i
        rows = row0 + np.arange(nM)
        ub_rows += [rows, rows]
        ub_cols += [np.arange(nM), np.full(nM, tcol)]
        ub_vals += [np.ones(nM), np.ones(nM)]
        b_ub.append((T["truth"] - T["reserve"]).reshape(-1))
        row0 += nM
    if monotone:  # M_i(p⁺) − M_i(p) ≤ v_i(p⁺) − v_i(p), p⁺ = p with θ_i one grid step up
        for i in range(n):
            stride = N ** (n - 1 - i)
            p = p_all[idx[:, i] < N - 1]
            rows = row0 + np.arange(p.size)
            ub_rows += [rows, rows]
            ub_cols += [(p + stride) * n + i, p * n + i]
            ub_vals += [np.ones(p.size), -np.ones(p.size)]
            b_ub.append(T["truth"][p + stride, i] - T["truth"][p, i])
            row0 += p.size
    A_ub = sp.csr_matrix((np.concatenate(ub_vals), (np.concatenate(ub_rows), np.concatenate(ub_cols))), shape=(row0, nvar))
    return A_ub, np.concatenate(b_ub), A_eq, np.concatenate(b_eq)


def feasibility_lp(
    setting,
    n_grid: int,
    *,
    nodes: str = "midpoint",
    monotone: bool = False,
    objective: str = "slack",
    time_limit: float | None = None,
) -> FeasibilityResult:
    """Solve the feasibility LP of the module docstring on ``n_grid`` types per agent."""
    _validate(setting, n_grid, nodes, objective, time_limit)
    n, N = setting.n_agents, n_grid
    gp = [type_grid(p, N, nodes) for p in setting.priors]
    grids = np.stack([g for g, _ in gp])
    probs = np.stack([q for _, q in gp])
    T = _tables(setting, grids, probs)
    P = T["idx"].shape[0]
    nM = P * n
    A_ub, b_ub, A_eq, b_eq = _constraints(T, n, N, objective, bool(monotone))
    nvar = A_eq.shape[1]
    cvec = np.zeros(nvar)
    if objective == "slack":
        cvec[-1] = -1.0
        t_max = float(np.max(np.abs(T["welfare"])) + np.max(np.abs(T["reserve"])))
        t_bounds = (None, t_max)
    else:  # minimise Σ_i m_i(0)  ⇔  maximise Σ_i U_i(θ_i^0)
        cvec[nM + np.arange(n) * N] = 1.0
        t_bounds = (0.0, 0.0)
    bounds = [(None, None)] * (nvar - 1) + [t_bounds]
    options = dict(_TOL)
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    start = time.perf_counter()
    res = linprog(cvec, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs", options=options)
    seconds = time.perf_counter() - start
    msg = " ".join(str(res.message).split())
    if res.status == 2:
        raise ConfigError(f"HiGHS found the feasibility LP infeasible ({msg}); AGV payments are always feasible, so check the setting's tables")
    if res.status == 3:
        raise ConfigError(f"HiGHS found the feasibility LP unbounded ({msg}); t is bounded above, so check the setting's tables")
    if res.status != 0 or res.x is None:
        raise ConfigError(f"HiGHS did not solve the feasibility LP (status {res.status}: {msg}); raise time_limit or use fewer grid points")
    M = res.x[:nM].reshape(P, n)
    # re-check the returned payments in numpy
    m = np.stack([(np.moveaxis((M[:, i] * T["pi_minus"][i]).reshape((N,) * n), i, 0)).reshape(N, -1).sum(1) for i in range(n)])
    W = T["W"]
    diag = np.einsum("ikk->ik", W)
    U = diag - m  # (n, N)
    mimic = W - m[:, :, None]  # [i, r, k]: value of type k reporting r
    ic_violation = float(np.max(mimic - U[:, None, :]))
    budget = float(np.max(np.abs(M.sum(1) - T["cost"])))
    slack = float(np.min(T["truth"] - M - T["reserve"]))
    ES = float(T["prob"] @ T["welfare"])
    pivots = sum(float(T["welfare"][T["idx"][:, i] == 0] @ T["pi_minus"][i][T["idx"][:, i] == 0]) for i in range(n))
    above = 1.0 - np.cumsum(probs, axis=1)  # P(θ_i > θ_i^l)
    rents = np.sum((W[:, np.arange(N - 1), np.arange(1, N)] - W[:, np.arange(N - 1), np.arange(N - 1)]) * above[:, :-1])
    return FeasibilityResult(
        t_star=float(res.x[-1]) if objective == "slack" else slack,
        payments=M.reshape((N,) * n + (n,)),
        grid=grids,
        probs=probs,
        interim_utility=U,
        lowest_utility_sum=float(U[:, 0].sum()),
        expected_delta=pivots - (n - 1) * ES,
        lemma3_bound=ES - float(rents),
        min_ir_slack=slack,
        ic_violation=ic_violation,
        budget_residual=budget,
        status=msg,
        objective=objective,
        nodes=nodes,
        monotone=bool(monotone),
        seconds=seconds,
    )
