"""Menus and affine maximisers: RochetNet, VVCA/AMA and multi-item VCG — exact truthfulness under
the strong attack, the soft training rule tends to the hard one, short trainings raise revenue,
VCG against item-wise Vickrey and hand-computed Clarke payments, checkpoints round-trip."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech import constraints as C
from diffmech._compat import enable_x64
from diffmech.config import EvalConfig
from diffmech.evaluate import regret_attack
from diffmech.mechanisms.neural.affine_maximizer import AffineMaximizer, ItemwiseVCG, MultiItemVCG
from diffmech.mechanisms.neural.rochetnet import RochetNet

U01 = {"dist": "uniform", "low": 0.0, "high": 1.0}
ATTACK = EvalConfig(grid_points=900, attack_steps=20)  # exhaustive 30×30 own-report grid + refinement
MV_REVENUE = (12 + 2 * math.sqrt(2)) / 27  # Manelli–Vincent optimum, 1 buyer × 2 items iid U[0,1]


def _setting(n, m, valuation="additive"):
    return dm.setting_from_config({"kind": "multi_item", "prior": U01, "n_agents": n, "n_items": m, "valuation": valuation})


def _no_regret_no_ir_violation(mech, setting, n=400, seed=2):
    types = setting.sample(jax.random.PRNGKey(seed), n)
    gains = regret_attack(mech, setting, types, jax.random.PRNGKey(0), ATTACK)
    assert gains.max() <= 1e-6
    assert float(jnp.max(C.ir_violation(mech, setting, types))) <= 1e-6


def _mc_revenue(mech, setting, n=100_000, seed=7):
    pay = np.asarray(jnp.sum(mech(setting.sample(jax.random.PRNGKey(seed), n)).payments, axis=-1), np.float64)
    return pay.mean(), pay.std(ddof=1) / math.sqrt(n)


def _top_gap(scores):
    """Best minus second-best score per row."""
    top2 = np.sort(np.asarray(scores, np.float64), axis=-1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


# ------------------------------------------------------------------------------------ RochetNet


def test_fresh_rochetnet_is_truthful_ir_and_soft_rule_tends_to_the_menu():
    s = _setting(1, 2)
    mech = dm.mechanism_from_config(s, {"kind": "rochetnet", "menu_size": 64}, jax.random.PRNGKey(1))
    assert mech.menu_size == 64 and mech.dsic_by_construction and mech.ir_by_construction
    _no_regret_no_ir_violation(mech, s)
    types = s.sample(jax.random.PRNGKey(5), 2000)
    hard = mech(types)
    a, p = mech.menu()
    u = np.asarray(types[:, 0]) @ np.asarray(a).T - np.asarray(p)  # (batch, K+1) utilities of all options
    clear = _top_gap(u) > 1e-2  # profiles whose best option is ahead by at least 0.01
    assert clear.mean() > 0.5
    errs = []
    for tau in (1e-2, 1e-3, 1e-5):
        soft = mech.training_outcome(types, tau)
        errs.append(float(jnp.max(jnp.abs(soft.payments - hard.payments)[clear])))
    assert errs[0] > 1e-3  # at τ = 0.01 the relaxation is visibly soft ...
    assert errs[2] < 1e-6  # ... and at τ = 1e-5 it picks the buyer's option (weights e^{-1000} elsewhere)
    soft = mech.training_outcome(types, 1e-5)
    assert float(jnp.max(jnp.abs(soft.alloc - hard.alloc)[clear])) < 1e-6


def test_rochetnet_training_beats_selling_separately_stays_truthful_and_checkpoints(tmp_path):
    """1 buyer × 2 items iid U[0,1]: selling separately earns 0.5, pure bundling 0.5443, the optimum
    is (12 + 2√2)/27 = 0.549201 (Manelli–Vincent). 400 steps of a 50-option menu reach ≈ 0.5435
    (seeds 0–2: 0.541–0.546; MC s.e. 0.0012) from ≈ 0.03; the bar 0.53 is well above selling
    separately and could fail by ~11 s.e."""
    cfg = {
        "setting": {"kind": "multi_item", "prior": U01, "n_agents": 1, "n_items": 2},
        "mechanism": {"kind": "rochetnet", "menu_size": 50},
        "train": {"steps": 400, "batch": 512, "train_size": 8192, "lr": 0.02, "log_every": 100, "ckpt_every": 400},
    }
    run = dm.resolve(cfg)
    before, _ = _mc_revenue(run.build_mechanism(jax.random.PRNGKey(0)), run.setting)
    res = dm.train(run, tmp_path / "r")
    rev, se = _mc_revenue(res.mechanism, run.setting)
    assert before < 0.3
    assert rev > 0.53
    assert rev < MV_REVENUE + 4 * se  # a DSIC, IR menu cannot beat the optimum
    _no_regret_no_ir_violation(res.mechanism, run.setting)
    ck = dm.load(tmp_path / "r")
    assert isinstance(ck.mechanism, RochetNet) and ck.mechanism.temperature == res.mechanism.temperature
    types = run.setting.sample(jax.random.PRNGKey(9), 256)
    np.testing.assert_array_equal(np.asarray(ck.mechanism(types).payments), np.asarray(res.mechanism(types).payments))
    np.testing.assert_array_equal(np.asarray(ck.mechanism.prices), np.asarray(res.mechanism.prices))


@pytest.mark.parametrize("kind", ["unit_demand", "identical_items"])
def test_rochetnet_lotteries_are_feasible(kind):
    if kind == "unit_demand":
        s = _setting(1, 3, "unit_demand")
    else:
        s = dm.setting_from_config({"kind": "identical_items", "prior": U01, "n_items": 3})
    assert s.feasibility == {"unit_demand": "unit_demand", "identical_items": "units"}[kind]
    mech = dm.mechanism_from_config(s, {"kind": "rochetnet", "menu_size": 200}, jax.random.PRNGKey(3))
    a, _ = mech.menu()
    a = np.asarray(a)
    if kind == "unit_demand":  # Σ_j a_kj ≤ 1, and the sum is not trivially small
        assert np.all(a.sum(axis=1) <= 1 + 1e-6) and a.sum(axis=1).max() > 0.9
    else:  # a_k1 ≥ a_k2 ≥ a_k3, strictly decreasing somewhere
        assert np.all(np.diff(a, axis=1) <= 1e-7) and np.diff(a, axis=1).min() < -0.1
    types = s.sample(jax.random.PRNGKey(4), 1000)
    for out in (mech(types), mech.training_outcome(types)):
        assert float(jnp.max(s.feasibility_violation(out))) == 0.0


def test_rochetnet_config_errors_and_registry_round_trip():
    s = _setting(1, 2)
    mech = dm.mechanism_from_config(s, {"kind": "rochetnet", "menu_size": 8})
    assert isinstance(mech, RochetNet) and mech.prices.shape == (8,) and mech.logits.shape == (8, 2)
    assert float(mech.prices.min()) >= 0.0 and float(mech.prices.max()) <= 2.0  # U[0, value scale 2]
    assert mech.temperature == pytest.approx(0.005)  # 0.0025 × value scale
    assert len(eqx.filter(jax.tree_util.tree_leaves(mech), eqx.is_inexact_array)) == 2  # only the menu trains
    for bad_setting, options, msg in [
        (_setting(2, 2), {"menu_size": 8}, "one buyer"),
        (s, {"menu_size": 8, "hidden": [4]}, "unknown key"),
        (s, {"menu_size": 0}, "menu_size"),
        (s, {"temperature": -1.0}, "temperature"),
    ]:
        with pytest.raises(dm.ConfigError, match=msg) as err:
            dm.mechanism_from_config(bad_setting, {"kind": "rochetnet", **options})
        assert "\n" not in str(err.value)


# --------------------------------------------------------------------- affine maximisers and VCG


def _random_parameters(mech, seed):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return eqx.tree_at(
        lambda m: (m.weight_logits, m.boosts),
        mech,
        (0.5 * jax.random.normal(k1, mech.weight_logits.shape), 0.3 * jax.random.normal(k2, mech.boosts.shape)),
    )


def test_vcg_on_two_additive_items_is_itemwise_vickrey():
    """2 bidders × 2 items iid U[0,1], additive: VCG = a Vickrey auction per item, revenue
    2 · E[v_(2)] = 2 · 1/3 (Monte Carlo, 4 s.e.); allocation welfare-maximising."""
    s = _setting(2, 2)
    vcg = MultiItemVCG.build(s)  # VCG over all 9 allocations: the affine maximiser with w = 1, λ = 0
    assert not vcg.trainable and vcg.n_allocations == 9
    assert isinstance(dm.mechanism_from_config(s, {"kind": "vcg"}), ItemwiseVCG)  # additive: per item
    assert not dm.resolve({"setting": s.to_config(), "mechanism": {"kind": "vcg"}}).trainable
    rev, se = _mc_revenue(vcg, s)
    assert abs(rev - 2 / 3) < 4 * se
    types = s.sample(jax.random.PRNGKey(1), 5000)
    out = vcg(types)
    welfare = np.asarray(jnp.sum(types * out.alloc, axis=(1, 2)))
    np.testing.assert_allclose(welfare, np.asarray(types.max(axis=1).sum(axis=-1)), atol=1e-6)
    itemwise = ItemwiseVCG()(types)
    np.testing.assert_allclose(np.asarray(out.payments), np.asarray(itemwise.payments), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.alloc), np.asarray(itemwise.alloc))
    # too many allocations to enumerate (4^7 > 4096) for an affine maximiser
    big = _setting(3, 7)
    with pytest.raises(dm.ConfigError, match="fewer bidders or items"):
        dm.mechanism_from_config(big, {"kind": "affine_maximizer"})
    # one item: unchanged (second price, no reserve)
    single = dm.setting_from_config({"kind": "single_item", "prior": U01, "n_agents": 2})
    assert type(dm.mechanism_from_config(single, {"kind": "vcg"})).__name__ == "VCG"


def test_unit_demand_vcg_matches_hand_computed_clarke_payments():
    """2 bidders × 2 items, unit demand. Hand computation (welfare of the two full matchings; the
    Clarke payment is the other bidder's best single item minus what she gets at a*):
    (a) v1 = (.9,.5), v2 = (.8,.1): 1←2, 2←1 (1.3 > 1.0); p1 = .8 − .8 = 0, p2 = .9 − .5 = .4;
    (b) v1 = (.7,.2), v2 = (.6,.3): 1←1, 2←2 (1.0 > .8); p1 = .6 − .3 = .3, p2 = .7 − .7 = 0;
    (c) v1 = (.9,.8), v2 = (.1,.05): 1←1, 2←2 (.95 > .9); p1 = .1 − .05 = .05, p2 = 0."""
    s = _setting(2, 2, "unit_demand")
    with enable_x64():
        vcg = dm.mechanism_from_config(s, {"kind": "vcg"})
        assert vcg.n_allocations == 7  # empty, 4 single assignments, 2 full matchings
        v = jnp.asarray([[[0.9, 0.5], [0.8, 0.1]], [[0.7, 0.2], [0.6, 0.3]], [[0.9, 0.8], [0.1, 0.05]]], jnp.float64)
        out = vcg(v)
        alloc, pay = np.asarray(out.alloc), np.asarray(out.payments)
        random = vcg(s.sample(jax.random.PRNGKey(0), 2000))
        assert float(jnp.max(jnp.sum(random.alloc, axis=2))) <= 1.0  # at most one item each
        assert float(jnp.max(s.feasibility_violation(random))) == 0.0
    expected_alloc = np.asarray([[[0, 1], [1, 0]], [[1, 0], [0, 1]], [[1, 0], [0, 1]]], np.float64)
    np.testing.assert_array_equal(alloc, expected_alloc)
    np.testing.assert_allclose(pay, [[0.0, 0.4], [0.3, 0.0], [0.05, 0.0]], rtol=0, atol=1e-9)


@pytest.mark.parametrize("boosts", ["vvca", "ama"])
def test_random_affine_maximizer_is_truthful_ir_and_soft_rule_tends_to_hard(boosts):
    s = _setting(2, 2)
    mech = _random_parameters(dm.mechanism_from_config(s, {"kind": "affine_maximizer", "boosts": boosts}), seed=3)
    assert mech.boosts.shape == ((2, 4) if boosts == "vvca" else (9,))
    _no_regret_no_ir_violation(mech, s)
    types = s.sample(jax.random.PRNGKey(5), 2000)
    hard = mech(types)
    X, w, lam = mech.allocations(), np.asarray(mech.weights()), np.asarray(mech.boost_per_allocation())
    total = np.einsum("bij,aij,i->ba", np.asarray(types, np.float64), X, w) + lam
    clear = _top_gap(total) > 1e-2
    assert clear.mean() > 0.5
    tau = 1e-5
    soft = mech.training_outcome(types, tau)
    assert float(jnp.max(jnp.abs(soft.alloc - hard.alloc)[clear])) < 1e-6
    # log-sum-exp over 9 allocations overestimates the max by at most τ log 9; float32 rounding on top
    bound = tau * math.log(9) / w.min() + 1e-5
    assert float(jnp.max(jnp.abs(soft.payments - hard.payments)[clear])) < bound
    assert float(jnp.mean(jnp.abs(mech.training_outcome(types, 0.2).payments - hard.payments))) > 10 * bound  # visibly soft


def test_vvca_training_beats_vcg_and_checkpoints(tmp_path):
    """2 × 2 additive U[0,1]: VCG earns 2/3; 300 steps of VVCA (started at VCG) with the
    entropy-regularised relaxation reach ≈ 0.79 (MC s.e. 0.0012); the bar is 0.76 and VCG + 0.1."""
    cfg = {
        "setting": {"kind": "multi_item", "prior": U01, "n_agents": 2, "n_items": 2},
        "mechanism": {"kind": "affine_maximizer", "boosts": "vvca"},
        "train": {"steps": 300, "batch": 512, "train_size": 8192, "lr": 0.03, "log_every": 100, "ckpt_every": 300},
    }
    run = dm.resolve(cfg)
    res = dm.train(run, tmp_path / "r")
    rev, se = _mc_revenue(res.mechanism, run.setting)
    vcg_rev, _ = _mc_revenue(dm.mechanism_from_config(run.setting, {"kind": "vcg"}), run.setting)
    assert rev > 0.76 and rev > vcg_rev + 0.1
    _no_regret_no_ir_violation(res.mechanism, run.setting)
    ck = dm.load(tmp_path / "r")
    assert isinstance(ck.mechanism, AffineMaximizer)
    types = run.setting.sample(jax.random.PRNGKey(9), 256)
    np.testing.assert_array_equal(np.asarray(ck.mechanism(types).payments), np.asarray(res.mechanism(types).payments))


def test_affine_maximizer_config_errors():
    s = _setting(2, 2)
    for options, msg in [({"boosts": "bogus"}, "boosts"), ({"hidden": [3]}, "unknown key"), ({"temperature": 0}, "temperature")]:
        with pytest.raises(dm.ConfigError, match=msg) as err:
            dm.mechanism_from_config(s, {"kind": "affine_maximizer", **options})
        assert "\n" not in str(err.value)
    with pytest.raises(dm.ConfigError, match="unknown option"):
        dm.mechanism_from_config(s, {"kind": "vcg", "reserve": 0.1})
    single = dm.setting_from_config({"kind": "single_item", "prior": U01, "n_agents": 2})
    with pytest.raises(dm.ConfigError, match="multi_item"):
        dm.mechanism_from_config(single, {"kind": "affine_maximizer"})
