"""The public-goods setting, the interim kernels, the simple/general networks and interim training.

Reference values: Fang–Norman appendix as tabulated in the project's REFERENCES (binary 2-good
instance: θ_i^j ∈ {1, 3}, P(3) = 0.4, C(n) = 1.25 n per good; LP optimum 2.56 for n = 2).
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech import interim as I
from diffmech._compat import enable_x64
from diffmech.config import EvalConfig, TrainConfig, resolve
from diffmech.errors import ConfigError
from diffmech.evaluate_interim import evaluate_interim
from diffmech.mechanisms.analytic.public_table import PublicGoodsTable, all_profiles

BINARY = {"dist": "discrete", "values": [1.0, 3.0], "probs": [0.6, 0.4]}


def binary(n, m=2, **extra):
    return {"kind": "public_goods", "n_agents": n, "n_goods": m, "prior": BINARY, "cost_per_agent": 1.25, **extra}


def setting_of(cfg):
    return resolve({"setting": cfg, "mechanism": {"kind": "first_best"}}).setting


def random_table(setting, seed):
    """A random (not incentive-compatible) mechanism as a table over every profile."""
    atoms, _ = setting.type_support()
    n, m = setting.n_agents, setting.n_goods
    rng = np.random.default_rng(seed)
    p = len(atoms) ** n
    return PublicGoodsTable(atoms, rng.uniform(size=(p, m)), rng.uniform(size=(p, n, m)), rng.normal(size=(p, n)))


# ----------------------------------------------------------------------------- setting


def test_config_forms_and_costs():
    s = setting_of(binary(4))
    assert (s.n_agents, s.n_goods, s.finite) == (4, 2, True) and s.costs == (5.0, 5.0)  # C(n) = 1.25 n
    atoms, probs = s.type_support()
    assert atoms.tolist() == [[1, 1], [1, 3], [3, 1], [3, 3]]
    np.testing.assert_allclose(probs, [0.36, 0.24, 0.24, 0.16])
    assert s.exchangeable_goods
    joint = setting_of({"kind": "public_goods", "n_agents": 2, "types": [[1, 3], [3, 1], [3, 3]], "probs": [0.25, 0.25, 0.5], "cost": [1.0, 2.0]})
    assert joint.finite and joint.costs == (1.0, 2.0) and not joint.exchangeable_goods
    cont = setting_of({"kind": "public_goods", "n_agents": 2, "n_goods": 1, "prior": {"dist": "uniform", "low": 0, "high": 1}, "cost": 1})
    assert not cont.finite and cont.benchmark_names() == ("first_best", "optimal_cutoff", "separate_optimal")
    # round trip through the resolved config
    assert setting_of(s.to_config()).to_config() == s.to_config()


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"cost": 1.0, "cost_per_agent": 1.0}, "exactly one of 'cost'"),
        ({"cost": -1.0}, "setting.cost"),
        ({"budget": "sometimes"}, "setting.budget"),
        ({"colour": 1}, "unknown key"),
        ({"n_agents": 0}, "setting.n_agents"),
    ],
)
def test_bad_settings_get_one_line_errors(bad, words):
    cfg = {k: v for k, v in binary(3).items() if not (k == "cost_per_agent" and ("cost" in bad))}
    cfg.update(bad)
    with pytest.raises(ConfigError) as e:
        setting_of(cfg)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_joint_prior_errors():
    with pytest.raises(ConfigError, match="sum to 1"):
        setting_of({"kind": "public_goods", "n_agents": 2, "types": [[1], [2]], "probs": [0.5, 0.6], "cost": 1})
    with pytest.raises(ConfigError, match="twice"):
        setting_of({"kind": "public_goods", "n_agents": 2, "types": [[1], [1]], "probs": [0.5, 0.5], "cost": 1})


# ----------------------------------------------------------------------------- interim kernel


def brute_force_table(mechanism, setting):
    """U[i, k, r] by an explicit loop over agents, own types, reports and others' profiles."""
    atoms, probs = setting.type_support()
    n, big_k = setting.n_agents, len(atoms)
    mechanism = eqx.filter_jit(mechanism)  # one compiled call per profile, not per operation
    out = np.zeros((n, big_k, big_k))
    for i in range(n):
        for k in range(big_k):
            for r in range(big_k):
                total = 0.0
                for others in itertools.product(range(big_k), repeat=n - 1):
                    prof = list(others[:i]) + [r] + list(others[i:])
                    weight = np.prod([probs[o] for o in others])
                    o = mechanism(jnp.asarray(atoms[prof])[None])
                    total += weight * (float(jnp.sum(o.alloc[0, i] * atoms[k])) - float(o.payments[0, i]))
                out[i, k, r] = total
    return out


def test_exact_interim_table_matches_a_brute_force_loop():
    with enable_x64():
        s = setting_of(binary(3))
        m = random_table(s, 0)
        nodes = I.exact_nodes(s)
        others, w = I.others_profiles(nodes)
        table = np.asarray(I.interim_utility(m, s, nodes.points, nodes.points, others, w))
        np.testing.assert_allclose(table, brute_force_table(m, s), atol=1e-12)
        # interim consumption and transfers reproduce the same table: U = Q·θ_k − T
        q, t = I.interim_outcome(m, nodes.points, others, w)
        atoms = np.asarray(nodes.points[0])
        np.testing.assert_allclose(np.einsum("irj,kj->ikr", q, atoms) - np.asarray(t)[:, None, :], table, atol=1e-12)


def test_sampled_others_share_common_random_numbers():
    s = setting_of(binary(3))
    others, w = I.sampled_others(s, jax.random.PRNGKey(0), 7)
    prof = s.sample(jax.random.PRNGKey(0), 7)
    for i in range(3):  # agent i's others are the same draws with column i removed
        np.testing.assert_array_equal(others[i], np.delete(np.asarray(prof), i, axis=1))
    np.testing.assert_allclose(np.asarray(w).sum(axis=1), 1.0)


def test_quadrature_nodes_integrate_polynomials_exactly():
    with enable_x64():
        s = setting_of({"kind": "public_goods", "n_agents": 2, "n_goods": 2, "prior": {"dist": "uniform", "low": 0, "high": 2}, "cost": 1})
        q = I.quadrature_nodes(s, 6)
        x, w = np.asarray(q.points[0]), np.asarray(q.weights[0])
        # E[θ¹² θ²] = E[θ²]·E[θ] = (4/3)·1 for θ ~ U[0, 2]
        assert float(np.sum(w * x[:, 0] ** 2 * x[:, 1])) == pytest.approx(4.0 / 3.0, abs=1e-12)


def test_lp_optimum_is_incentive_feasible_under_the_training_constraints():
    with enable_x64():
        s = setting_of(binary(3))
        lp = dm.mechanism_from_config(s, {"kind": "public_lp"})
        batch = I.training_batch(s, jax.random.PRNGKey(0), TrainConfig())
        g = np.asarray(I.batch_constraints(lp, s, batch, I.INTERIM_CONSTRAINTS))
        assert np.all(np.abs(g) < 1e-8)
        assert float(I.batch_objective(lp, s, batch)) == pytest.approx(3.624, abs=1e-8)  # REFERENCES, n = 3
        # raising one type's transfer creates a violation in the right family
        bad = PublicGoodsTable(lp.table.atoms, lp.table.provision, lp.table.inclusion, lp.table.payments + 10.0)
        g_bad = np.asarray(I.batch_constraints(bad, s, batch, I.INTERIM_CONSTRAINTS))
        assert np.all(g_bad[1] > 1.0) and g_bad[2].sum() == 0.0  # interim IR fails, budget is fine


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("symmetry", ["none", "anonymous", "symmetric"])
def test_simple_net_structure(symmetry):
    run = resolve({"setting": binary(3, 3), "mechanism": {"kind": "public_simple", "symmetry": symmetry, "hidden": [16, 16]}})
    m = run.build_mechanism(jax.random.PRNGKey(1))
    x = run.setting.sample(jax.random.PRNGKey(2), 6)
    o = m(x)
    assert o.provision.shape == (6, 3) and o.inclusion.shape == (6, 3, 3) and o.payments.shape == (6, 3)
    np.testing.assert_allclose(o.alloc, o.provision[:, None, :] * o.inclusion, rtol=1e-6)
    # η_i and t_i depend on the own type only
    y = x.at[:, 1:].set(run.setting.sample(jax.random.PRNGKey(3), 6)[:, 1:])
    o2 = m(y)
    np.testing.assert_allclose(o2.inclusion[:, 0], o.inclusion[:, 0], atol=1e-6)
    np.testing.assert_allclose(o2.payments[:, 0], o.payments[:, 0], atol=1e-6)
    perm_agents, perm_goods = np.array([2, 0, 1]), np.array([1, 2, 0])
    oa, og = m(x[:, perm_agents]), m(x[:, :, perm_goods])
    anonymous = float(jnp.abs(oa.provision - o.provision).max()) < 1e-5 and float(jnp.abs(oa.inclusion - o.inclusion[:, perm_agents]).max()) < 1e-5
    symmetric = float(jnp.abs(og.provision - o.provision[:, perm_goods]).max()) < 1e-5 and float(jnp.abs(og.payments - o.payments).max()) < 1e-5
    assert anonymous == (symmetry != "none")
    assert symmetric == (symmetry == "symmetric")


def test_networks_refuse_other_settings_and_asymmetric_goods():
    with pytest.raises(ConfigError, match="public_goods"):
        resolve({"setting": {"kind": "single_item", "prior": {"dist": "uniform", "low": 0, "high": 1}, "n_agents": 2},
                 "mechanism": {"kind": "public_simple"}})
    joint = {"kind": "public_goods", "n_agents": 2, "types": [[1, 3], [3, 1], [3, 3]], "probs": [0.2, 0.3, 0.5], "cost": 1.0}
    with pytest.raises(ConfigError, match="exchangeable"):
        resolve({"setting": joint, "mechanism": {"kind": "public_simple", "symmetry": "symmetric"}})


# ----------------------------------------------------------------------------- training and evaluation


def test_interim_training_reaches_the_lp_optimum_for_two_agents(tmp_path):
    """n = 2 binary: the LP optimum equals the first best 2.56 (REFERENCES); 600 exact steps of
    the augmented Lagrangian get close with small exact interim regret."""
    cfg = {
        "setting": binary(2),
        "mechanism": {"kind": "public_simple", "symmetry": "symmetric", "hidden": [16, 16]},
        "train": {"steps": 600, "lr": 0.01, "method": "augmented_lagrangian", "lambda_every": 20, "rho_every": 100,
                  "log_every": 100, "ckpt_every": 600},
    }
    res = dm.train(resolve(cfg), tmp_path / "run", progress=False)
    assert [r["step"] for r in res.history][-1] == 600 and "interim_regret" in res.history[-1]
    m = evaluate_interim(res.mechanism, res.run.setting, EvalConfig())
    assert m["interim_method"] == "exact"
    assert m["surplus"] > 2.56 * 0.97
    assert m["interim_regret_max"] < 0.02 and m["ir_violation_max"] < 0.02 and m["bb_residual"] < 0.02
    assert m["benchmarks"]["public_lp"] == pytest.approx(2.56, abs=1e-5)


def test_interim_evaluation_of_the_lp_optimum_is_exact():
    s = setting_of(binary(4))
    lp = dm.mechanism_from_config(s, {"kind": "public_lp"})
    m = evaluate_interim(lp, s, EvalConfig(), benchmarks=False)
    assert m["surplus"] == pytest.approx(4.576492, abs=2e-5)  # REFERENCES, n = 4 (float32 tables)
    assert m["interim_regret_max"] < 1e-5 and m["ir_violation_max"] < 1e-5 and m["bb_residual"] < 1e-5
    assert m["surplus_se"] == 0.0 and m["interim_inner_samples"] == 4**3


def test_monte_carlo_evaluation_reports_inner_standard_errors():
    cfg = {"kind": "public_goods", "n_agents": 3, "n_goods": 1, "prior": {"dist": "uniform", "low": 0, "high": 1}, "cost": 1.0}
    s = setting_of(cfg)
    fb = dm.mechanism_from_config(s, {"kind": "first_best"})
    m = evaluate_interim(fb, s, EvalConfig(samples=2000, interim_types=20, interim_samples=256, attack_steps=5), benchmarks=False)
    assert m["interim_method"] == "monte_carlo" and m["interim_inner_samples"] == 256
    assert m["interim_regret_inner_se_max"] > 0.0 and m["surplus_se"] > 0.0
    # First best with equal cost shares 1/3 is not BIC. With S = θ_2 + θ_3 (P(S ≥ s) = 1 − s²/2 on
    # [0, 1]) a type θ reporting r gets (θ − 1/3)·P(S ≥ 1 − r): types below 1/3 report 0, types
    # above report 1, so the regret is (1/3 − θ)(1 − (1 − θ)²)/2 or (θ − 1/3)(1 − θ)²/2.
    theta = np.linspace(0, 1, 20)  # the evaluator's own-type grid
    exact = np.where(theta < 1 / 3, (1 / 3 - theta) * (1 - (1 - theta) ** 2) / 2, (theta - 1 / 3) * (1 - theta) ** 2 / 2)
    assert m["interim_regret_max"] == pytest.approx(exact.max(), abs=4 * m["interim_regret_inner_se_max"])
    assert m["interim_regret_mean"] == pytest.approx(exact.mean(), abs=4 * m["interim_regret_inner_se_max"])


def _continuous_cfg(steps):
    return {
        "setting": {"kind": "public_goods", "n_agents": 2, "n_goods": 1, "prior": {"dist": "uniform", "low": 0, "high": 1}, "cost": 1.0},
        "mechanism": {"kind": "public_simple", "hidden": [8, 8]},
        "train": {"steps": steps, "log_every": 10, "ckpt_every": 20, "interim_nodes": 8, "interim_reports": 4},
    }


def _leaves(mech):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(mech, eqx.is_inexact_array))]


def test_interim_training_is_reproducible_and_resumes(tmp_path):
    """Stratified interim batches come from the run's key and step: the same seed gives the same
    weights, and a run resumed at step 20 ends where the uninterrupted one does."""
    full = dm.train(resolve(_continuous_cfg(40)), tmp_path / "full")
    again = dm.train(resolve(_continuous_cfg(40)))
    dm.train(resolve(_continuous_cfg(20)), tmp_path / "split")
    resumed = dm.train(resolve(_continuous_cfg(40)), tmp_path / "split", resume=True)
    for x, y, z in zip(_leaves(full.mechanism), _leaves(again.mechanism), _leaves(resumed.mechanism)):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, z, rtol=1e-6, atol=1e-7)
    assert [r["step"] for r in resumed.history] == [10, 20, 30, 40]
    assert set(resumed.history[-1]["lam"]) == {"interim_regret", "interim_ir", "budget"}


def test_constraint_families_are_selectable():
    cfg = _continuous_cfg(10)
    cfg["train"]["constraints"] = ["interim_regret", "budget"]
    res = dm.train(resolve(cfg))
    assert set(res.history[-1]["lam"]) == {"interim_regret", "budget"} and "interim_ir" not in res.history[-1]
    cfg["train"]["constraints"] = ["regret"]
    with pytest.raises(ConfigError, match="do not apply"):
        dm.train(resolve(cfg))
    cfg["train"]["constraints"] = ["telepathy"]
    with pytest.raises(ConfigError, match="train.constraints"):
        resolve(cfg)


def test_ex_post_budget_is_measured_profile_by_profile():
    """With budget = "ex_post" the training row is E|Σ t − Σ ρC| and the metric its maximum; a
    mechanism that balances on average but not profile by profile passes ex ante only."""
    with enable_x64():
        ex_ante, ex_post = setting_of(binary(2)), setting_of(binary(2, budget="ex_post"))
        atoms, probs = ex_ante.type_support()
        prof = all_profiles(atoms, 2)
        prov = np.ones((len(prof), 2))
        cost = 5.0  # Σ_j C^j(2) = 2 · 2.5
        share = prof.sum(axis=(1, 2))  # transfers proportional to the reported values, rescaled below
        w = np.prod(probs[np.array(list(itertools.product(range(4), repeat=2)))], axis=1)
        pay = (share * cost / np.sum(w * share))[:, None] * np.array([0.5, 0.5])  # E Σ t = cost exactly
        m = PublicGoodsTable(atoms, prov, np.ones((len(prof), 2, 2)), pay)
        gap = pay.sum(axis=1) - cost
        batch = I.training_batch(ex_post, jax.random.PRNGKey(0), TrainConfig())
        row = np.asarray(I.batch_constraints(m, ex_post, batch, ("budget",)))[0]
        np.testing.assert_allclose(row, np.sum(w * np.abs(gap)) / 2, atol=1e-12)  # each agent holds half
        assert float(np.asarray(I.batch_constraints(m, ex_ante, batch, ("budget",))).max()) < 1e-12
        assert evaluate_interim(m, ex_post, EvalConfig(), benchmarks=False)["bb_residual"] == pytest.approx(np.abs(gap).max(), abs=1e-9)
        assert evaluate_interim(m, ex_ante, EvalConfig(), benchmarks=False)["bb_residual"] < 1e-9


# ----------------------------------------------------------------------------- correlated continuous goods

U01 = {"dist": "uniform", "low": 0.0, "high": 1.0}


def correlated(n=2, m=2, w=0.5, **extra):
    return {"kind": "public_goods", "n_agents": n, "n_goods": m, "prior": U01, "common_weight": w, "cost": 1.0, **extra}


def test_common_weight_prior_law_and_quadrature():
    """θ^j = w z + (1 − w) x^j with z, x^j iid U[0,1]: corr(θ^1, θ^2) = w²/(w² + (1 − w)²) (= 0.5 at
    w = 1/2) and E[θ^1 θ^2] = w²/3 + w(1 − w)/2 + (1 − w)²/4 (a polynomial of degree 2 in each
    quantile, so Gauss–Legendre quadrature in (x^1, x^2, z) is exact)."""
    with enable_x64():
        s = setting_of(correlated(w=0.5))
        assert not s.finite and not s.independent and s.quantile_dim == 3 and s.exchangeable_goods
        assert setting_of(s.to_config()).to_config() == s.to_config() and s.to_config()["common_weight"] == 0.5
        x = np.asarray(s.sample(jax.random.PRNGKey(0), 100_000)).reshape(-1, 2)
        assert x.min() >= 0.0 and x.max() <= 1.0
        rho = np.corrcoef(x.T)[0, 1]
        assert abs(rho - 0.5) < 4 * (1 - 0.5**2) / np.sqrt(len(x))
        q = I.quadrature_nodes(s, 3)
        pts, wts = np.asarray(q.points[0]), np.asarray(q.weights[0])
        assert pts.shape == (27, 2)
        exact = 0.25 / 3 + 0.25 / 2 + 0.25 / 4
        assert float(np.sum(wts * pts[:, 0] * pts[:, 1])) == pytest.approx(exact, abs=1e-12)
        st = I.stratified_nodes(s, jax.random.PRNGKey(1), 64)
        assert st.points.shape == (2, 64, 2) and float(st.points.min()) >= 0.0 and float(st.points.max()) <= 1.0
        assert I.expectation_method(s) == "quadrature"
        assert s.benchmark_names() == ("first_best",)  # the separate optima need independent goods
        with pytest.raises(ConfigError, match="common"):
            dm.mechanism_from_config(setting_of(correlated(m=1)), {"kind": "optimal_cutoff"})


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"common_weight": 1.0}, "[0, 1)"),
        ({"prior": BINARY}, "continuous prior"),
    ],
)
def test_common_weight_errors(extra, words):
    with pytest.raises(ConfigError) as e:
        setting_of({**correlated(), **extra})
    assert words in str(e.value) and "\n" not in str(e.value)
    cfg = {k: v for k, v in correlated().items() if k not in ("prior", "n_goods")}
    cfg["good_priors"] = [U01, {"dist": "uniform", "low": 0.0, "high": 2.0}]
    with pytest.raises(ConfigError, match="one prior for every good"):
        setting_of(cfg)


def test_correlated_first_best_surplus():
    """First best, n = 2, w = 1/2, C = 1 per good: per good S = (z_1 + z_2 + x_1 + x_2)/2 = H/2 with
    H Irwin–Hall(4), symmetric about 2 with density y³/6 on [0, 1] and (−3y³ + 12y² − 12y + 4)/6
    on [1, 2] (y = 4 − H), so E(S − 1)⁺ = ½ E(H − 2)⁺ = ½ (1/20 + 11/60) = 7/60 (1/6 without the
    common taste); two goods give 7/30. The evaluator integrates the other agent by quadrature
    in (x^1, x^2, z) and samples the ex ante surplus (4 standard errors)."""
    s = setting_of(correlated())
    fb = dm.mechanism_from_config(s, {"kind": "first_best"})
    m = evaluate_interim(fb, s, EvalConfig(samples=20000, interim_types=16, interim_nodes=16, grid_points=16, attack_steps=0), benchmarks=False)
    assert m["interim_method"] == "quadrature" and m["interim_inner_samples"] == 16**3
    assert m["surplus_se"] > 0 and m["surplus"] == pytest.approx(7 / 30, abs=4 * m["surplus_se"])
    assert m["interim_regret_max"] > 0.01  # equal cost shares are not incentive compatible
