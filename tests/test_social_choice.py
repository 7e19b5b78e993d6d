"""The social-choice setting (Chen–He–Li–Sun, Section 2) and its revenue-optimal LP / MILP.

Reference instance (/work/shared/REFERENCES.md, "Deterministic vs stochastic mechanisms"): one
buyer, two goods, additive values, types (2,5), (3,2), (1,2) each w.p. 1/3: optimal randomised
revenue 34/9, optimal deterministic revenue 10/3.
"""

from __future__ import annotations

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from diffmech import interim as I
from diffmech._compat import enable_x64
from diffmech.config import EvalConfig
from diffmech.errors import ConfigError
from diffmech.evaluate_interim import evaluate_interim
from diffmech.lp import solve_menu
from diffmech.outcome import Outcome, SocialChoiceOutcome, social_choice_outcome
from diffmech.priors import Uniform
from diffmech.settings import SETTINGS, setting_from_config
from diffmech.settings.social_choice import (
    SeparablePayoffs,
    SocialChoice,
    alloc_from_lottery,
    assignments,
    lottery_from_alloc,
)
from diffmech.social_choice_lp import SocialChoiceTable, solve_social_choice, solve_tables

TYPES = [[2, 5], [3, 2], [1, 2]]
PROBS = [1 / 3, 1 / 3, 1 / 3]


def _cfg(**extra):
    cfg = {"kind": "social_choice", "n_agents": 2, "goods": 2, "types": TYPES, "probs": PROBS}
    cfg.update(extra)
    return cfg


def _interim_by_loops(q, transfers, payoff, atoms, probs):
    """U_i(t_i, r) recomputed with explicit loops over profiles (independent of the library):
    ``payoff(i, k, profile_of_types)``; returns a list of (T_i, T_i) arrays."""
    n = len(atoms)
    out = []
    for i in range(n):
        ti = len(atoms[i])
        u = np.zeros((ti, ti))
        others = [range(len(atoms[j])) for j in range(n) if j != i]
        for a in range(ti):
            for r in range(ti):
                total = 0.0
                for rest in itertools.product(*others):
                    rest = list(rest)
                    true_idx = tuple(rest[:i] + [a] + rest[i:])
                    rep_idx = tuple(rest[:i] + [r] + rest[i:])
                    w = math.prod(probs[j][true_idx[j]] for j in range(n) if j != i)
                    prof = [atoms[j][true_idx[j]] for j in range(n)]
                    total += w * sum(q[rep_idx][k] * payoff(i, k, prof) for k in range(q.shape[-1]))
                u[a, r] = total - transfers[i][r]
        out.append(u)
    return out


def _auction_payoff(n, m):
    g = assignments(n, m)
    return lambda i, k, prof: sum(prof[i][j] for j in range(m) if g[k, j] == i + 1)


def test_one_agent_reduces_to_menu_lp():
    """n = 1: the social-choice LP over the 4 subsets equals the menu LP of diffmech.lp.

    By hand: the menu {bundle at 5, good 2 w.p. 2/3 at 4/3} is IC and IR ((2,5): 7 − 5 = 2 =
    5·2/3 − 4/3; (3,2): 0 = 2·2/3 − 4/3; (1,2) buys the lottery at utility 0) and earns
    (5 + 5 + 4/3)/3 = 34/9; the menu {bundle at 4, good 2 at 2} earns (4 + 4 + 2)/3 = 10/3. Both
    are the optima of REFERENCES.md.
    """
    s = SocialChoice.auction(1, 2, atoms=TYPES, probs=PROBS)
    assert s.n_alternatives == 4 and s.type_dim == 2
    rand = solve_social_choice(s)
    det = solve_social_choice(s, deterministic=True)
    assert rand.status == "optimal" and det.status == "optimal"
    assert abs(rand.revenue - 34 / 9) < 1e-9
    assert abs(det.revenue - 10 / 3) < 1e-9
    assert abs(rand.revenue - solve_menu(TYPES, PROBS).revenue) < 1e-9
    assert abs(det.revenue - solve_menu(TYPES, PROBS, deterministic=True).revenue) < 1e-9
    assert set(np.unique(det.q)) <= {0.0, 1.0}
    assert np.allclose(rand.q.sum(-1), 1.0, atol=1e-9) and rand.q.min() >= 0


def _marginal_lp(deterministic: bool) -> float:
    """The two-agent auction written independently: marginals a[t, i, j] with Σ_i a ≤ 1 (any such
    marginals are the product lottery's, and one-hot assignments are the binary ones), interim
    transfers, BIC and interim IR built with explicit loops."""
    atoms = np.asarray(TYPES, float)
    p = np.asarray(PROBS)
    T, n, m = 3, 2, 2
    prof = list(itertools.product(range(T), repeat=n))
    na = len(prof) * n * m
    col = lambda t, i, j: (prof.index(t) * n + i) * m + j  # noqa: E731
    tcol = lambda i, a: na + i * T + a  # noqa: E731
    rows, rhs = [], []
    for t in prof:
        for j in range(m):
            r = np.zeros(na + n * T)
            for i in range(n):
                r[col(t, i, j)] = 1.0
            rows.append(r)
            rhs.append(1.0)
    for i in range(n):
        for a in range(T):
            for b in list(range(T)) + [None]:  # None: the IR row
                if b == a:
                    continue
                r = np.zeros(na + n * T)
                for o in range(T):
                    ta = (a, o) if i == 0 else (o, a)
                    for j in range(m):
                        r[col(ta, i, j)] -= p[o] * atoms[a, j]
                        if b is not None:
                            tb = (b, o) if i == 0 else (o, b)
                            r[col(tb, i, j)] += p[o] * atoms[a, j]
                r[tcol(i, a)] += 1.0
                if b is not None:
                    r[tcol(i, b)] -= 1.0
                rows.append(r)
                rhs.append(0.0)
    c = np.zeros(na + n * T)
    for i in range(n):
        for a in range(T):
            c[tcol(i, a)] = -p[a]
    lo = np.r_[np.zeros(na), np.full(n * T, -np.inf)]
    hi = np.r_[np.ones(na), np.full(n * T, np.inf)]
    if deterministic:
        res = milp(c, constraints=LinearConstraint(np.array(rows), -np.inf, np.array(rhs)),
                   integrality=np.r_[np.ones(na), np.zeros(n * T)], bounds=Bounds(lo, hi), options={"mip_rel_gap": 1e-10})
    else:
        res = linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=np.column_stack([lo, hi]), method="highs")
    assert res.status == 0
    return -res.fun


def test_two_agent_auction_optima():
    """Two agents iid over the three types, each good to at most one agent (K = 9).

    Properties, by hand: ignoring agent 2 and running the one-agent optimum for agent 1 is BIC and
    interim IR, so randomised ≥ 34/9 and deterministic ≥ 10/3; revenue ≤ first-best surplus
    E Σ_j max_i v_ij = 22/9 + 33/9 = 55/9 (good 1: max of two draws from {1,2,3} is 3, 2, 1 w.p.
    5/9, 3/9, 1/9; good 2: 5 w.p. 5/9, else 2); deterministic ≤ randomised. The optima equal the
    optima of the same auction written with marginals (:func:`_marginal_lp`), and the tables are
    BIC and interim IR when U_i is recomputed by loops over profiles.
    """
    s = setting_from_config(_cfg())
    assert s.n_alternatives == 9
    rand = solve_social_choice(s)
    det = solve_social_choice(s, deterministic=True)
    assert 34 / 9 - 1e-9 <= rand.revenue <= 55 / 9 + 1e-9
    assert 10 / 3 - 1e-9 <= det.revenue <= rand.revenue + 1e-9
    assert abs(rand.revenue - _marginal_lp(False)) < 1e-9
    assert abs(det.revenue - _marginal_lp(True)) < 1e-9
    assert set(np.unique(det.q)) <= {0.0, 1.0} and np.all(det.q.sum(-1) == 1.0)
    atoms = [np.asarray(TYPES, float)] * 2
    probs = [np.asarray(PROBS)] * 2
    for res in (rand, det):
        assert np.allclose(res.q.sum(-1), 1.0, atol=1e-9) and res.q.min() >= 0
        tables = _interim_by_loops(res.q, res.transfers, _auction_payoff(2, 2), atoms, probs)
        for u, lib in zip(tables, res.interim_utilities()):
            assert np.max(u - np.diag(u)[:, None]) <= 1e-9  # BIC
            assert np.min(np.diag(u)) >= -1e-9  # interim IR
            assert np.allclose(u, lib, atol=1e-12)
        assert abs(res.revenue - sum(p @ t for p, t in zip(probs, res.transfers))) < 1e-12
        assert res.surplus <= 55 / 9 + 1e-9 and res.revenue <= res.surplus + 1e-9


def test_per_agent_types_and_interdependent_payoffs():
    """Per-agent finite types and separable interdependent payoffs u_i^1 = v_i (1 + v_j / 2)
    (w = v_i, r = 1 + v_j/2; alternative 0 worth 0): the LP optimum is BIC and interim IR by an
    independent loop computation; a payoff whose 'others' factor moves with the own type is
    refused; a separable setting has no config form."""
    def own(x):
        v = x[..., 0]
        return jnp.stack([jnp.zeros_like(v), v], axis=-1)[..., None]

    def others(x):
        v = x[..., 0]
        return jnp.broadcast_to((1.0 + v[:, ::-1] / 2.0)[..., None, None], v.shape + (2, 1))

    atoms = [[[1.0], [2.0], [4.0]], [[0.5], [3.0]]]
    probs = [[0.2, 0.5, 0.3], [0.6, 0.4]]
    s = SocialChoice(2, separable=SeparablePayoffs(own, others, 2), atoms=atoms, probs=probs)
    assert s.type_counts == (3, 2) and not s.identical
    res = solve_social_choice(s)
    payoff = lambda i, k, prof: 0.0 if k == 0 else prof[i][0] * (1.0 + prof[1 - i][0] / 2.0)  # noqa: E731
    tables = _interim_by_loops(res.q, res.transfers, payoff, [np.asarray(a) for a in atoms], [np.asarray(p) for p in probs])
    for u in tables:
        assert np.max(u - np.diag(u)[:, None]) <= 1e-9 and np.min(np.diag(u)) >= -1e-9
    assert 0 < res.revenue <= res.surplus + 1e-9
    w, r = s.moment_tables()
    assert w.shape == (3, 2, 2, 2, 1) and np.allclose((w * r).sum(-1), s.payoff_table())
    with pytest.raises(ConfigError, match="own type"):
        SocialChoice(2, separable=SeparablePayoffs(own, lambda x: own(x) + 1.0, 2), atoms=atoms, probs=probs)
    with pytest.raises(ConfigError, match="no config form"):
        s.to_config()
    with pytest.raises(ConfigError, match="identical agents"):
        s.type_support()
    mech = res.mechanism(s)
    prof, _ = s.profiles()
    with enable_x64():
        out = mech(jnp.asarray(prof))
    assert np.allclose(np.asarray(out.choice), res.q.reshape(-1, 2)) and np.allclose(np.asarray(out.payments), res.ex_post_transfers().reshape(-1, 2))


def test_config_round_trip():
    configs = [
        _cfg(),
        {"kind": "social_choice", "n_agents": 2, "payoffs": [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]], [[0.5, 0.5], [0.5, 0.5]]],
         "types": [[[1.0, 2.0], [2.0, 1.0]], [[0.0, 1.0]]], "probs": [[0.25, 0.75], [1.0]]},
        {"kind": "social_choice", "n_agents": 3, "goods": 1, "prior": {"dist": "uniform", "low": 0.0, "high": 1.0}},
        {"kind": "social_choice", "n_agents": 2, "goods": 2, "prior": [{"dist": "uniform", "low": 0.0, "high": 1.0}, {"dist": "uniform", "low": 1.0, "high": 2.0}]},
        {"kind": "social_choice", "n_agents": 2, "goods": 1, "prior": [[{"dist": "uniform", "low": 0.0, "high": 1.0}], [{"dist": "uniform", "low": 0.0, "high": 2.0}]]},
    ]
    for cfg in configs:
        s = setting_from_config(cfg)
        out = s.to_config()
        assert setting_from_config(out).to_config() == out
        assert out["n_agents"] == cfg["n_agents"] and out.get("goods") == cfg.get("goods")
        assert isinstance(s.describe(), str) and "social choice" in s.describe()
    assert SETTINGS["social_choice"] is SocialChoice
    s = setting_from_config(configs[0])
    assert s.to_config()["types"] == [[2.0, 5.0], [3.0, 2.0], [1.0, 2.0]]
    assert s.ic == s.ir == "interim" and s.objective == "revenue" and s.benchmark_names() == ()


BAD = [
    ({"goods": 2, "payoffs": [[[1.0]]]}, "exactly one of 'goods'"),
    ({"goods": None}, "exactly one of 'goods'"),
    ({"goods": 0}, "setting.goods"),
    ({"goods": 12}, "alternatives"),
    ({"probs": [0.5, 0.7, -0.2]}, ">= 0"),
    ({"probs": [0.5, 0.25, 0.2]}, "sum to 1"),
    ({"probs": [0.5, 0.5]}, "3 numbers"),
    ({"types": [[2, 5], [3, 2], [2, 5]]}, "twice"),
    ({"types": [[2, 5], [3], [1, 2]]}, "rectangular"),
    ({"types": [[2, 5, 1], [3, 2, 1], [1, 2, 1]]}, "l = 2"),
    ({"n_agents": 0}, "n_agents"),
    ({"colour": "blue"}, "unknown key"),
    ({"prior": {"dist": "uniform"}}, "exactly one of 'types'"),
]


@pytest.mark.parametrize("change,message", BAD)
def test_bad_configs(change, message):
    cfg = _cfg()
    cfg.update(change)
    cfg = {k: v for k, v in cfg.items() if v is not None}  # None: drop the key
    with pytest.raises(ConfigError, match=message) as err:
        setting_from_config(cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "cfg,message",
    [
        ({"payoffs": [[1.0, 2.0], [3.0, 4.0]]}, "K × n × l"),
        ({"payoffs": []}, "K × n × l"),
        ({"payoffs": [[[1.0, 0.0]], [[0.0, 1.0]]]}, "n_agents = 2"),
        ({"payoffs": [[[1.0, 0.0], [1.0]], [[0.0, 1.0], [0.0, 1.0]]]}, "rectangular"),
        ({"goods": 1, "prior": {"dist": "discrete", "values": [0.0, 1.0], "probs": [0.5, 0.5]}}, "continuous"),
        ({"goods": 1, "prior": [[{"dist": "uniform"}]]}, "per-agent lists"),
        ({"goods": 1, "types": [[[1.0]], [[2.0]]], "probs": [[1.0]]}, "one list per agent"),
    ],
)
def test_bad_payoff_and_prior_configs(cfg, message):
    full = {"kind": "social_choice", "n_agents": 2, "types": [[1.0, 2.0]], "probs": [1.0]}
    if "prior" in cfg or "types" in cfg:
        full.pop("types"), full.pop("probs")
    full.update(cfg)
    with pytest.raises(ConfigError, match=message) as err:
        setting_from_config(full)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("n,m", [(1, 3), (2, 2), (3, 2)])
def test_auction_map_round_trip(n, m):
    """K = (n + 1)^m; marginals → product lottery → marginals is the identity (exact up to
    rounding), the lottery is a distribution, and a one-hot assignment maps to its 0/1 marginals."""
    s = SocialChoice.auction(n, m, atoms=np.ones((1, m)), probs=[1.0])
    k = (n + 1) ** m
    assert s.n_alternatives == k
    raw = np.random.default_rng(n * 10 + m).uniform(size=(64, n + 1, m))
    alloc = (raw / raw.sum(axis=1, keepdims=True))[:, :n]  # Σ_i a_ij ≤ 1, the slack to nobody
    alloc[0] = np.arange(n)[:, None] == 0  # a corner: every good to agent 1

    @jax.jit
    def trip(a, onehot):
        lot = lottery_from_alloc(a)
        return lot, alloc_from_lottery(lot, n, m), alloc_from_lottery(onehot, n, m)

    with enable_x64():
        lot, back, marg = (np.asarray(x) for x in trip(jnp.asarray(alloc), jnp.eye(k, dtype=jnp.float64)))
    assert lot.shape == (64, k)
    assert np.max(np.abs(back - alloc)) < 1e-12
    assert np.max(np.abs(lot.sum(-1) - 1.0)) < 1e-12 and lot.min() >= 0
    g = assignments(n, m)
    assert np.array_equal(marg, (g[:, None, :] == np.arange(1, n + 1)[None, :, None]).astype(float))


class _EfficientFree(eqx.Module):
    """Each good to the highest report (ties split evenly), no payments, as a product lottery."""

    def __call__(self, reports):
        top = reports >= jnp.max(reports, axis=1, keepdims=True)
        alloc = top / jnp.sum(top, axis=1, keepdims=True)
        return social_choice_outcome(lottery_from_alloc(alloc), jnp.zeros(reports.shape[:2], reports.dtype))


def test_interim_evaluation_of_lp_optimum_and_a_stochastic_mechanism():
    """The library's exact interim evaluation on the two-agent instance.

    LP optimum (BIC, interim IR): regret and IR shortfall ≤ 1e-9, revenue = the LP's.
    The stochastic free efficient mechanism (by hand, others' types uniform on the three atoms):
    type (1,2) truthfully wins good 1 w.p. 1/6 and good 2 w.p. 1/3, U = 1/6 + 2/3 = 5/6; reporting
    (2,5) wins them w.p. 1/2 and 5/6, U = 1/2 + 5/3 = 13/6: gain 4/3 (reporting (3,2): gain 2/3).
    Types (2,5) and (3,2) gain nothing (31/6 vs 20/6; 19/6 vs 19/6 and 7/6). So the interim
    regret max is 4/3, its probability-weighted mean 4/9; welfare = E Σ_j max_i v_ij = 55/9.
    """
    s = setting_from_config(_cfg())
    assert I.expectation_method(s) == "exact"
    res = solve_social_choice(s)
    with enable_x64():
        mech = res.mechanism(s)
        assert isinstance(mech, SocialChoiceTable)
        met = evaluate_interim(mech, s, EvalConfig(), benchmarks=False)
        free = evaluate_interim(_EfficientFree(), s, EvalConfig(), benchmarks=False)
    assert met["interim_method"] == "exact"
    assert met["interim_regret_max"] <= 1e-9 and met["ir_violation_max"] <= 1e-9
    assert abs(met["revenue"] - res.revenue) < 1e-9 and abs(met["welfare"] - res.surplus) < 1e-9
    assert met["feasibility_violation_max"] < 1e-9
    assert abs(free["interim_regret_max"] - 4 / 3) < 1e-9
    assert abs(free["interim_regret_mean"] - 4 / 9) < 1e-9
    assert abs(free["welfare"] - 55 / 9) < 1e-9 and free["revenue"] == 0.0 and free["ir_violation_max"] == 0.0


class _SecondPrice(eqx.Module):
    """One good: the highest report wins (ties split) and pays the other report."""

    def __call__(self, reports):
        v = reports[..., 0]
        top = v >= jnp.max(v, axis=1, keepdims=True)
        a = top / jnp.sum(top, axis=1, keepdims=True)
        out = social_choice_outcome(lottery_from_alloc(a[..., None]), a * jnp.min(v, axis=1, keepdims=True))
        return out


def test_continuous_priors_quadrature():
    """Continuous priors: sampling stays in the support, the quadrature weights sum to 1 per agent,
    and the interim utilities of the second-price auction on two U[0,1] bidders, with the library's
    Gauss–Legendre nodes for the other agent (the evaluation's ``quadrature`` method), show no gain
    from misreporting (it is DSIC: each profile's gain is ≤ 0) and U(θ, θ) = ∫_0^θ (θ − v) dv = θ²/2
    up to the quadrature error of a kinked integrand (O(1/k²), < 1e-3 with k = 64 nodes)."""
    s = setting_from_config({"kind": "social_choice", "n_agents": 2, "goods": 1, "prior": {"dist": "uniform", "low": 0.0, "high": 1.0}})
    assert not s.finite and s.quantile_dim == 1 and I.expectation_method(s) == "quadrature"
    x = s.sample(jax.random.PRNGKey(0), 1000)
    assert x.shape == (1000, 2, 1) and float(x.min()) >= 0 and float(x.max()) <= 1
    s2 = SocialChoice.auction(2, 2, priors=Uniform(0.0, 2.0))
    pts2, w2 = s2.quadrature(4)
    assert pts2.shape == (2, 16, 2) and np.allclose(w2.sum(1), 1.0) and s2.attack_grid(100).shape == (2, 100, 2)
    with enable_x64():
        others, ow = I.others_profiles(I.quadrature_nodes(s, 64))
        grid = jnp.asarray(s.attack_grid(11), jnp.float64)  # (2, 11, 1): 0, 0.1, …, 1
        table = np.asarray(eqx.filter_jit(I.interim_utility)(_SecondPrice(), s, grid, grid, others, ow))
    truthful = np.diagonal(table, axis1=1, axis2=2)
    assert np.max(table - truthful[..., None]) <= 1e-9
    theta = np.linspace(0.0, 1.0, 11)
    assert np.max(np.abs(truthful - theta**2 / 2)) < 1e-3


def test_outcome_and_values():
    """values = Σ_k q^k u_i^k; alloc repeats the lottery per agent; non-lottery outcomes are refused."""
    s = setting_from_config(_cfg())
    with enable_x64():
        choice = jnp.asarray([[0.0] * 8 + [1.0], [1.0] + [0.0] * 8])  # alternative 8 = (2, 2): both goods to agent 2
        out = social_choice_outcome(choice, jnp.zeros((2, 2)))
        assert isinstance(out, SocialChoiceOutcome) and out.alloc.shape == (2, 2, 9)
        types = jnp.asarray([[[2.0, 5.0], [3.0, 2.0]]] * 2)
        v = np.asarray(s.values(types, out))
        assert np.array_equal(v, [[0.0, 5.0], [0.0, 0.0]])
        assert np.allclose(np.asarray(s.feasibility_violation(out)), 0.0)
        with pytest.raises(ConfigError, match="SocialChoiceOutcome"):
            s.values(types, Outcome(alloc=jnp.zeros((2, 2, 2)), payments=jnp.zeros((2, 2))))
    assert np.allclose(np.asarray(s.project(jnp.asarray([[[2.1, 4.0], [0.0, 0.0]]]))), [[[2.0, 5.0], [1.0, 2.0]]])
    with pytest.raises(ConfigError, match="shape"):
        solve_tables(np.zeros((3, 2)), [np.full(3, 1 / 3)])
