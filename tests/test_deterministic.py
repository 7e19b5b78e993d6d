"""Deterministic learners and the dither input (issue 7, parts 3 and 5b).

Reference instance (/work/shared/REFERENCES.md, "Deterministic vs stochastic mechanisms", and the
issue's two-agent version): agents with iid types (2,5), (3,2), (1,2) w.p. 1/3, two goods, each to
at most one agent, BIC and interim IR. Two agents: randomised optimum 101/18 (the LP of
diffmech.social_choice_lp; recomputed here, not pasted), deterministic optimum 50/9 on the finite
type space.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech import interim as I
from diffmech._compat import enable_x64
from diffmech.checkpoint import save_published
from diffmech.config import EvalConfig, resolve
from diffmech.errors import ConfigError
from diffmech.evaluate_interim import evaluate_interim
from diffmech.mechanisms import mechanism_from_config
from diffmech.mechanisms.neural.social_choice_net import SocialChoiceNet, straight_through
from diffmech.outcome import social_choice_outcome
from diffmech.settings import setting_from_config
from diffmech.settings.social_choice import SeparablePayoffs, SocialChoice
from diffmech.social_choice_lp import solve_social_choice

TYPES = [[2.0, 5.0], [3.0, 2.0], [1.0, 2.0]]
PROBS = [1 / 3, 1 / 3, 1 / 3]


def _setting_cfg(**extra):
    cfg = {"kind": "social_choice", "n_agents": 2, "goods": 2, "types": TYPES, "probs": PROBS}
    cfg.update(extra)
    return cfg


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


# ----------------------------------------------------------------------------- the heads


def test_straight_through_is_one_hot_with_the_softmax_gradient():
    """Value: one_hot(argmax s) exactly (σ − σ = 0, then ĥ + 0 = ĥ). Derivative: that of
    softmax(s/τ), the Jacobian (diag(σ) − σσᵀ)/τ, nonzero for finite logits."""
    jac = jax.jit(lambda x, tau: jax.vmap(jax.jacobian(lambda y: straight_through(y[None], tau)[0]))(x), static_argnums=1)
    with enable_x64():
        s = jax.random.normal(jax.random.PRNGKey(0), (16, 9), jnp.float64) * 3.0
        for tau in (1.0, 0.25):
            q = straight_through(s, tau)
            assert np.array_equal(np.asarray(q), np.eye(9)[np.argmax(np.asarray(s), axis=-1)])  # bit-exact one-hot
            sig = np.asarray(jax.nn.softmax(s / tau))
            by_hand = (np.einsum("bk,kl->bkl", sig, np.eye(9)) - np.einsum("bk,bl->bkl", sig, sig)) / tau
            np.testing.assert_allclose(np.asarray(jac(s, tau)), by_hand, rtol=0, atol=1e-14)
            assert np.abs(by_hand).max() > 1e-3


def test_straight_through_mechanism_gradient_equals_the_softmax_mechanism_gradient():
    """Same weights (same key), τ = 1: the two heads' logits and transfers coincide, so the
    gradient of any loss Σ w·q + Σ c·t in the weights is the same for both heads, the
    straight-through one's outcome being one-hot at every profile."""
    with enable_x64():
        s = SocialChoice.auction(2, 2, atoms=TYPES, probs=PROBS, dither=True)
        opts = {"kind": "social_choice_net", "hidden": [16]}
        soft = mechanism_from_config(s, {**opts, "head": "softmax"}, jax.random.PRNGKey(3))
        hard = mechanism_from_config(s, {**opts, "head": "straight_through", "temperature": 1.0}, jax.random.PRNGKey(3))
        reports = s.sample(jax.random.PRNGKey(1), 32)
        out = hard(reports)
        q = np.asarray(out.choice)
        assert np.array_equal(q, np.eye(9)[q.argmax(-1)]) and out.payments.shape == (32, 2)
        w = jax.random.normal(jax.random.PRNGKey(2), (32, 9), jnp.float64)

        @eqx.filter_jit
        @eqx.filter_grad
        def grad(m):
            o = m(reports)
            return jnp.sum(w * o.choice) + 0.1 * jnp.sum(o.payments)

        g_soft, g_hard = grad(soft), grad(hard)
        for a, b in zip(jax.tree_util.tree_leaves(g_soft), jax.tree_util.tree_leaves(g_hard)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)
        assert max(float(jnp.abs(x).max()) for x in jax.tree_util.tree_leaves(g_hard)) > 1e-3


# ----------------------------------------------------------------------------- config


def test_config_round_trip_and_checkpoint(tmp_path):
    """The resolved config rebuilds itself (dither included), and a checkpoint written the way
    training writes it loads into the same deterministic mechanism (identical outcomes)."""
    cfg = {
        "setting": _setting_cfg(dither=True),
        "mechanism": {"kind": "social_choice_net", "head": "straight_through", "temperature": 0.5, "hidden": [8]},
    }
    run = resolve(cfg)
    assert run.config["setting"]["dither"] is True and run.setting.dither and run.setting.type_dim == 3
    assert resolve(run.config).config == run.config
    plain = resolve({"setting": _setting_cfg(), "mechanism": {"kind": "social_choice_net"}})
    assert "dither" not in plain.config["setting"] and not plain.setting.dither and plain.setting.finite
    mech = run.build_mechanism(jax.random.PRNGKey(7))
    save_published(tmp_path, mech, run.to_toml(), seed=0, step=0)
    ck = dm.load(tmp_path)
    assert isinstance(ck.mechanism, SocialChoiceNet) and ck.mechanism.head == "straight_through" and ck.mechanism.temperature == 0.5
    assert ck.setting.dither
    x = run.setting.sample(jax.random.PRNGKey(5), 32)
    a, b = mech(x), ck.mechanism(x)
    assert np.array_equal(np.asarray(a.choice), np.asarray(b.choice)) and np.array_equal(np.asarray(a.payments), np.asarray(b.payments))


@pytest.mark.parametrize(
    "mech, setting_extra, needle",
    [
        ({"head": "argmax"}, {}, "mechanism.head"),
        ({"head": "straight_through", "temperature": 0.0}, {}, "temperature"),
        ({"head": "straight_through", "temperature": True}, {}, "temperature"),
        ({"temperature": 0.5}, {}, "straight_through"),
        ({"activation": "sigmoid"}, {}, "activation"),
        ({"hidden": [8, -1]}, {}, "hidden"),
        ({"width": 8}, {}, "unknown key"),
        ({}, {"dither": "yes"}, "dither"),
        ({"head": "dither"}, {}, "setting.dither = true"),
    ],
)
def test_bad_options_are_one_line_errors(mech, setting_extra, needle):
    cfg = {"setting": _setting_cfg(**setting_extra), "mechanism": {"kind": "social_choice_net", **mech}}
    with pytest.raises(ConfigError) as e:
        resolve(cfg)
    assert needle in _one_line(e)


def test_dither_and_mechanism_refuse_what_they_cannot_do():
    with pytest.raises(ConfigError) as e:  # continuous types are atomless already
        setting_from_config({"kind": "social_choice", "n_agents": 2, "goods": 1, "prior": {"dist": "uniform", "low": 0, "high": 1}, "dither": True})
    assert "finite types" in _one_line(e)
    sep = SeparablePayoffs(lambda x: x[..., None, :1], lambda x: jnp.ones_like(x[..., None, :1]), 1)
    with pytest.raises(ConfigError) as e:
        SocialChoice(2, separable=sep, atoms=[[1.0], [2.0]], probs=[0.5, 0.5], dither=True)
    assert "payoff matrix" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        resolve({"setting": {"kind": "single_item", "n_agents": 2, "prior": {"dist": "uniform", "low": 0, "high": 1}},
                 "mechanism": {"kind": "social_choice_net"}})
    assert "social_choice" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        SocialChoice.auction(2, 2, atoms=TYPES, probs=PROBS, dither=True).payoff_table()
    assert "undithered" in _one_line(e)


# ----------------------------------------------------------------------------- the dither setting


def test_dither_setting_types_payoffs_and_nodes():
    """Types (t_i, u_i): l + 1 coordinates, payoffs ignore u (zero column), u ~ U[0, 1]
    independent of the atom. Sampled: the empirical CDF of u at x and the atom frequencies are
    within 4 binomial standard errors of x and 1/3 (also given u < 1/2: independence). The
    deterministic node rules: quadrature = every atom × midpoints (c + ½)/k with weight p/k,
    stratified = every atom × one point in each cell [c/k, (c+1)/k) with weight p/k, the attack grid
    = every atom × midpoints. Expectations: quadrature for n = 2 and n = 1, not exact."""
    s = SocialChoice.auction(2, 2, atoms=TYPES, probs=PROBS, dither=True)
    assert s.type_dim == 3 and not s.finite and s.quantile_dim == 1 and s.exhaustive_attack
    assert np.array_equal(s.payoff_array[..., :2], s.undithered().payoff_array) and np.all(s.payoff_array[..., 2] == 0)
    lo, hi = s.type_bounds()
    assert np.array_equal(lo, [[1, 2, 0]] * 2) and np.array_equal(hi, [[3, 5, 1]] * 2)
    n = 20000
    x = np.asarray(s.sample(jax.random.PRNGKey(0), n))
    assert x.shape == (n, 2, 3)
    u, t = x[..., 2], x[..., :2]
    assert u.min() >= 0 and u.max() < 1
    for g in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert abs(np.mean(u <= g) - g) <= 4 * np.sqrt(g * (1 - g) / (2 * n))
    low_u = u < 0.5
    for a in TYPES:
        hit = np.all(t == np.asarray(a), axis=-1)
        assert abs(hit.mean() - 1 / 3) <= 4 * np.sqrt(2 / 9 / (2 * n))
        assert abs(hit[low_u].mean() - 1 / 3) <= 4 * np.sqrt(2 / 9 / low_u.sum())
    # payoffs do not move with u
    y = x.copy()
    y[..., 2] = 1.0 - y[..., 2]
    assert np.array_equal(np.asarray(s.payoffs(jnp.asarray(x))), np.asarray(s.payoffs(jnp.asarray(y))))
    # node rules
    pts, w = s.quadrature(8)
    assert pts.shape == (2, 24, 3) and np.allclose(w, 1 / 24)
    np.testing.assert_allclose(pts[0, :8, 2], (np.arange(8) + 0.5) / 8, atol=1e-15)
    assert np.array_equal(pts[0, ::8, :2], np.asarray(TYPES))
    sp, sw = s.stratified(jax.random.PRNGKey(1), 8)
    sp = np.asarray(sp)
    assert sp.shape == (2, 24, 3) and np.allclose(sw, 1 / 24)
    assert np.array_equal(np.floor(sp[..., 2] * 8), np.tile(np.arange(8), (2, 3)))
    assert np.array_equal(sp[..., :2], pts[..., :2])
    grid = np.asarray(s.attack_grid(600))
    assert grid.shape == (2, 600, 3) and len(np.unique(grid[0, :, :2], axis=0)) == 3
    proj = np.asarray(s.project(jnp.asarray([[[2.2, 4.1, 1.7], [0.0, 2.3, -0.5]]])))
    assert np.array_equal(proj, [[[2, 5, 1], [1, 2, 0]]])
    assert I.expectation_method(s) == "quadrature"
    assert I.expectation_method(SocialChoice.auction(1, 2, atoms=TYPES, probs=PROBS, dither=True)) == "quadrature"


def test_training_batch_on_the_dithered_setting():
    """A training step's nodes: own types every atom × ``interim_nodes`` stratified u (weights p/k),
    the other agent's nodes redrawn, ``interim_samples`` per atom (stratified), reports = own types +
    sampled. Own types of one atom form one payoff class; the constraints computed once per class
    equal those computed for every own type (the u_i column does not enter payoffs)."""
    run = resolve({"setting": _setting_cfg(dither=True), "mechanism": {"kind": "social_choice_net", "head": "straight_through", "hidden": [8]},
                   "train": {"interim_nodes": 8, "interim_samples": 6, "interim_reports": 5}})
    with enable_x64():
        b = jax.jit(lambda key: I.training_batch(run.setting, key, run.train))(jax.random.PRNGKey(0))
        assert b.own.shape == (2, 24, 3) and np.allclose(b.own_weights, 1 / 24)
        assert b.reports.shape == (2, 29, 3) and np.array_equal(b.reports[:, :24], b.own)
        assert b.others.shape == (2, 18, 1, 3) and np.allclose(b.others_weights, 1 / 18)
        assert np.array_equal(np.floor(np.asarray(b.others[:, :, 0, 2]) * 6), np.tile(np.arange(6), (2, 3)))
        assert b.profiles.shape == (24 * 24, 2, 3) and np.isclose(float(b.profile_weights.sum()), 1.0)
        assert np.array_equal(b.own_class, np.tile(np.repeat(np.arange(3), 8), (2, 1))) and np.array_equal(b.class_first, [[0, 8, 16]] * 2)
        mech = run.build_mechanism(jax.random.PRNGKey(1))
        names = ("interim_regret", "interim_ir")
        full = I.InterimBatch(b.own, b.own_weights, b.reports, b.others, b.others_weights, b.profiles, b.profile_weights)
        g_cls = jax.jit(lambda bb: I.batch_constraints(mech, run.setting, bb, names))(b)
        g_all = jax.jit(lambda bb: I.batch_constraints(mech, run.setting, bb, names))(full)
    np.testing.assert_allclose(np.asarray(g_cls), np.asarray(g_all), rtol=0, atol=1e-12)
    assert np.max(np.asarray(g_all)) > 0


# ----------------------------------------------------------------------------- the heart


class _DitherRule(eqx.Module):
    """A deterministic rule on atoms × [0, 1]: at atoms (t_1, t_2) choose the alternative k with
    c_{k−1} ≤ u < c_k, c the cumulative lottery q(t, ·) of a randomised table, u = (u_1 + u_2) mod 1
    (``mix``) or u = u_1 alone; agent i pays T_i(t_i)."""

    atoms: jax.Array
    cum: jax.Array
    pay: jax.Array
    mix: jax.Array  # 1.0: u = (u_1 + u_2) mod 1; 0.0: u = u_1 (a leaf, so both rules share compiled code)

    def __call__(self, reports):
        t = jnp.argmin(jnp.sum((reports[..., None, :-1] - self.atoms) ** 2, -1), -1)  # (b, 2) atom indices
        u = jnp.mod(reports[:, 0, -1] + self.mix * reports[:, 1, -1], 1.0)
        c = self.cum[t[:, 0], t[:, 1]]
        k = jnp.minimum(jnp.sum(c <= u[:, None], -1), c.shape[-1] - 1)
        return social_choice_outcome(jax.nn.one_hot(k, c.shape[-1], dtype=reports.dtype), self.pay[jnp.arange(2)[None], t])


def test_dithered_deterministic_rule_reaches_the_randomised_optimum():
    """Theorem 1 of Chen–He–Li–Sun on the two-agent instance, and the honesty of the evaluation.

    For every u_i, (u_i + u_j) mod 1 is U[0, 1] when u_j is, so the mixing rule gives agent i of
    atom t_i (and any u_i) alternative k with probability Σ_{t_j} p(t_j) q(t, k): the LP's interim
    allocation, whatever u_i she reports. Transfers are the LP's T_i(t_i), so interim utilities,
    BIC, interim IR and the revenue 101/18 are the LP's: interim regret 0.

    Tolerances (midpoint rule, k cells for the other's u): at most one midpoint per cut point of
    the circle is misplaced, so each interval's weight is off by ≤ 1/k and |Q̂ − Q| ≤ 1/k. The
    LP's lotteries have at most two alternatives, so a lottery's value is off by ≤ U/k with
    U = 7 (the largest value of a bundle): utilities ≤ 7/k, regret ≤ 14/k, IR shortfall ≤ 7/k.
    Revenue depends on atoms only: exact (1e-9).

    The non-mixing rule (u = u_1) is caught by the attack: agent 1 of type (1,2) gets nothing at
    t_2 ∈ {(3,2), (1,2)} when u_1 ≥ 1/6 (the LP's lotteries there are (1/6, 5/6), the 1/6 part
    giving her good 2) and pays T_1(1,2) regardless; reporting u'_1 < 1/6 she gets good 2 (value
    2) in both: gain (1/3 + 1/3)·2 = 4/3.
    """
    k = 300
    cfg = EvalConfig(interim_nodes=k, interim_types=15, grid_points=150)
    s = SocialChoice.auction(2, 2, atoms=TYPES, probs=PROBS, dither=True)
    res = solve_social_choice(s.undithered())
    assert abs(res.revenue - 101 / 18) < 1e-7  # the LP optimum of the finite instance
    assert np.max(np.sum(res.q > 1e-9, axis=-1)) <= 2  # the premise of the tolerances below
    cum = np.cumsum(res.q, axis=-1)
    cum[..., -1] = 1.0
    with enable_x64():
        rule = _DitherRule(jnp.asarray(TYPES), jnp.asarray(cum), jnp.asarray(np.stack(res.transfers)), jnp.asarray(1.0))
        reports = jnp.asarray(s.attack_grid(60), jnp.float64)  # every atom × 20 u'
        pts, w = s.quadrature(k)
        others, ow = I.others_profiles(I.Nodes(jnp.asarray(pts), jnp.asarray(w)))
        q_hat, t_hat = eqx.filter_jit(I.interim_outcome)(rule, reports, others, ow)
        atom_of = np.repeat(np.arange(3), 20)
        for i in range(2):
            want = res.interim_allocation(i)[atom_of]
            assert np.max(np.abs(np.asarray(q_hat[i]) - want)) <= 1 / k + 1e-12
            np.testing.assert_allclose(np.asarray(t_hat[i]), res.transfers[i][atom_of], rtol=0, atol=1e-9)
        met = evaluate_interim(rule, s, cfg, benchmarks=False)
        naive = evaluate_interim(_DitherRule(rule.atoms, rule.cum, rule.pay, jnp.asarray(0.0)), s, cfg, benchmarks=False)
    assert met["interim_method"] == "quadrature" and met["attack"]["steps"] == 0
    assert met["interim_reports"] == 15 + 150 and met["interim_inner_samples"] == 3 * k
    assert abs(met["revenue"] - 101 / 18) < 1e-7
    assert met["revenue"] > 50 / 9 + 0.05  # above every deterministic mechanism of the finite instance
    assert met["interim_regret_max"] <= 14 / k and met["ir_violation_max"] <= 7 / k
    assert met["feasibility_violation_max"] == 0.0
    assert naive["interim_regret_max"] >= 4 / 3 - 14 / k


# ----------------------------------------------------------------------------- the dither head


def test_dither_head_is_deterministic_and_its_interim_allocation_is_the_lottery():
    """The ``dither`` head chooses one alternative at every profile (the first k with
    (u_1 + u_2) mod 1 < q^1 + … + q^k), and for fixed (t_i, u_i) and t_j its average over u_j is the
    lottery q(t): on M midpoints of u_j, (u_i + u_j) mod 1 runs through M equally spaced points, so
    each cumulative C_k is hit by a fraction within 1/M of C_k and each q^k within 2/M. The training
    outcome is q itself; transfers do not depend on the u's."""
    setting = setting_from_config(_setting_cfg(dither=True))
    mech = mechanism_from_config(setting, {"kind": "social_choice_net", "head": "dither", "hidden": [16]}, jax.random.PRNGKey(3))
    prof = setting.sample(jax.random.PRNGKey(0), 512)
    out = mech(prof)
    choice = np.asarray(out.choice)
    assert set(np.unique(choice)) == {0.0, 1.0} and np.all(choice.sum(axis=1) == 1.0)
    lottery = mech.training_outcome(prof)
    assert np.asarray(lottery.choice).min() > 0.0  # a proper lottery in training
    np.testing.assert_array_equal(np.asarray(out.payments), np.asarray(lottery.payments))
    M = 1000
    u_j = (np.arange(M) + 0.5) / M
    atoms = np.asarray(TYPES)
    for t_i, t_j, u_i in [(0, 1, 0.137), (2, 2, 0.9), (1, 0, 0.5)]:
        rows = np.zeros((M, 2, 3), np.float32)
        rows[:, 0, :2], rows[:, 0, 2] = atoms[t_i], u_i
        rows[:, 1, :2], rows[:, 1, 2] = atoms[t_j], u_j
        hard = np.asarray(mech(jnp.asarray(rows)).choice).mean(axis=0)
        q = np.asarray(mech.training_outcome(jnp.asarray(rows[:1])).choice)[0]
        assert np.max(np.abs(hard - q)) <= 2.0 / M + 1e-6
        assert np.all(hard[q < 1e-9] == 0.0)
    with pytest.raises(ConfigError) as e:  # one agent: nothing to purify with
        resolve({"setting": _setting_cfg(dither=True, n_agents=1), "mechanism": {"kind": "social_choice_net", "head": "dither"}})
    assert "at least two agents" in _one_line(e)
