"""Ke's efficient settings, the budget-balanced payment network and the ex post checks.

Closed forms from Ke, "Auctioning social surplus": Example 3 (public good, v = θ(2x − x²),
c = C x²: x* = Σθ/(C + Σθ), S = (Σθ)²/(C + Σθ), autarky θ²/(C + θ)), Example 4 (Σx = 1:
x_i* = θ_i/(θ_1 + θ_2), S = Σθ − θ_1θ_2/(θ_1 + θ_2)).
"""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech import interim as I
from diffmech._compat import enable_x64
from diffmech.config import EvalConfig
from diffmech.errors import ConfigError
from diffmech.mechanisms.base import Mechanism
from diffmech.outcome import Outcome

U01 = {"dist": "uniform", "low": 0.0, "high": 1.0}


def setting(model="private_good", n=2, prior=U01, **extra):
    return dm.setting_from_config({"kind": "efficient", "model": model, "n_agents": n, "prior": prior, **extra})


def test_models_closed_forms():
    with enable_x64():
        rng = np.random.default_rng(0)
        th = jnp.asarray(rng.uniform(0.5, 1.0, size=(50, 2)))
        t = np.asarray(th)
        pub = setting("public_good", prior={"dist": "uniform", "low": 0.5, "high": 1.0}, cost=2.0)
        tot = t.sum(1)
        np.testing.assert_allclose(np.asarray(pub.allocation(th))[:, 0], tot / (2 + tot), atol=1e-14)
        np.testing.assert_allclose(np.asarray(pub.welfare(th)), tot**2 / (2 + tot), atol=1e-14)
        np.testing.assert_allclose(np.asarray(pub.reservation_utility(th)), t**2 / (2 + t), atol=1e-14)
        end = setting("endowment")
        np.testing.assert_allclose(np.asarray(end.allocation(th)), t / tot[:, None], atol=1e-14)
        np.testing.assert_allclose(np.asarray(end.welfare(th)), tot - t[:, 0] * t[:, 1] / tot, atol=1e-14)
        part = setting("partnership", shares=[0.3, 0.7])
        np.testing.assert_array_equal(np.asarray(part.allocation(th)), (t == t.max(1, keepdims=True)).astype(float))
        np.testing.assert_allclose(np.asarray(part.reservation_utility(th)), t * [0.3, 0.7], atol=1e-15)
        priv = setting(gamma=2.0)
        np.testing.assert_allclose(np.asarray(priv.welfare(th)), t.max(1) ** 2 / 2, atol=1e-14)
        tie = jnp.asarray([[0.5, 0.5]])
        np.testing.assert_array_equal(np.asarray(priv.allocation(tie)), [[0.5, 0.5]])


def test_endowment_shares_solve_the_kkt_conditions_for_three_agents():
    """max Σ θ_i(2x_i − x_i²) on the simplex: θ_i(2 − 2x_i) = λ where x_i > 0, ≤ λ where x_i = 0."""
    with enable_x64():
        s = setting("endowment", n=3)
        th = jnp.asarray([[0.97, 0.081, 0.652], [0.3, 0.3, 0.3], [0.9, 0.8, 0.7]])
        x = np.asarray(s.allocation(th))
        np.testing.assert_allclose(x.sum(1), 1.0, atol=1e-12)
        marg = np.asarray(th) * (2 - 2 * x)
        for row, m in zip(x, marg):
            lam = m[row > 0].max()
            np.testing.assert_allclose(m[row > 0], lam, atol=1e-9)
            assert np.all(m[row == 0] <= lam + 1e-9)
        assert x[0, 1] == 0.0 and np.allclose(x[1], 1 / 3)


@pytest.mark.parametrize(
    "cfg, words",
    [
        ({"model": "auction"}, "setting.model"),
        ({"gamma": 2.0, "model": "public_good"}, "does not apply"),
        ({"model": "endowment", "shares": [0.2, 0.2]}, "sum to 1"),
        ({"prior": {"dist": "discrete", "values": [0, 1], "probs": [0.5, 0.5]}}, "continuous"),
        ({"model": "public_good", "reservation": "shares"}, "reservation"),
        ({"n_agents": 1}, "n_agents"),
    ],
)
def test_bad_settings_get_one_line_errors(cfg, words):
    base = {"kind": "efficient", "model": "private_good", "n_agents": 2, "prior": U01}
    with pytest.raises(ConfigError) as e:
        dm.setting_from_config({**base, **cfg})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_round_trip():
    for s in (setting("public_good", prior={"dist": "uniform", "low": 0.5, "high": 1.0}), setting("partnership"),
              dm.setting_from_config({"kind": "efficient", "priors": [U01, {"dist": "power_law", "low": 0, "high": 1, "a": 2.0}]})):
        assert dm.setting_from_config(s.to_config()).to_config() == s.to_config()


def test_payment_network_is_budget_balanced_and_equivariant():
    with enable_x64():
        s = setting("public_good", n=3, prior={"dist": "uniform", "low": 0.5, "high": 1.0}, cost=1.5)
        m = dm.mechanism_from_config(s, {"kind": "bb_payments", "hidden": [8]}, jax.random.PRNGKey(3))
        m = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, m)
        th = s.sample(jax.random.PRNGKey(1), 64).astype(jnp.float64)
        out = m(th)
        np.testing.assert_allclose(np.asarray(s.budget_residual(out)), 0.0, atol=1e-12)
        assert float(jnp.std(out.payments)) > 1e-3  # not trivially equal shares
        perm = [2, 0, 1]
        np.testing.assert_allclose(np.asarray(m(th[:, perm]).payments), np.asarray(out.payments)[:, perm], atol=1e-12)
        asym = dm.setting_from_config({"kind": "efficient", "priors": [U01, {"dist": "uniform", "low": 0, "high": 2}]})
        assert dm.mechanism_from_config(asym, {"kind": "bb_payments"}).symmetry == "none"
        with pytest.raises(ConfigError, match="equivariant"):
            dm.mechanism_from_config(asym, {"kind": "bb_payments", "symmetry": "equivariant"})
        with pytest.raises(ConfigError, match="efficient"):
            dm.mechanism_from_config(dm.setting_from_config({"kind": "single_item", "prior": U01, "n_agents": 2}), {"kind": "bb_payments"})


class _OwnTax(Mechanism):
    """Efficient private good; every agent pays 2θ̂_i (a loser's payoff −2θ falls with her type)."""

    setting: object

    @classmethod
    def from_config(cls, setting, options, key=None):
        return cls(setting)

    def __call__(self, reports):
        th = reports[..., 0]
        return Outcome(alloc=self.setting.allocation(th)[..., None], payments=2.0 * th)


def test_payoff_decrease_measures_the_slope_of_falling_payoffs():
    """A loser's payoff −2θ falls at slope 2; a winner's θ − 2θ = −θ at slope 1 (finite differences
    of a linear function are exact)."""
    with enable_x64():
        s = setting()
        prof = jnp.asarray([[[0.2], [0.6]], [[0.9], [0.1]]])
        d = np.asarray(I.payoff_decrease(_OwnTax(s), s, prof))
        np.testing.assert_allclose(d, [[2.0, 1.0], [1.0, 2.0]], atol=1e-9)


def test_evaluation_of_m1_reports_its_known_properties():
    """M1, private good, n = 2, U[0,1] (REFERENCES, Ke): ex post budget balanced, ex post IR, ex post
    monotone, Σ_i U_i(0) = E Δ = 1/3, and ex post IC with Ke's convention with probability
    n/(n+1) = 2/3 (4 standard errors)."""
    s = setting()
    m1 = dm.mechanism_from_config(s, {"kind": "ke_m1"})
    cfg = EvalConfig(samples=1000, interim_types=11, grid_points=51, interim_nodes=256, attack_steps=0)
    met = dm.evaluate(m1, s, cfg, benchmarks=False)
    assert met["bb_residual"] < 1e-6 and met["ir_slack_min"] > -1e-6 and met["monotonicity_violation_max"] < 1e-5
    assert met["expected_delta"] == pytest.approx(1 / 3, abs=1e-9)
    assert abs(met["conservation_gap"]) < 1e-5
    assert met["epic_probability"] == pytest.approx(2 / 3, abs=4 * met["epic_probability_se"])


def test_lp_command_certifies_existence_in_example_3(capsys):
    """Ke Example 3 (θ ~ U[a, 1], autarky reservation): an ex post socially efficient mechanism
    exists at a = 1/2 and not at a = 0.1 (the threshold is a* = 0.2029882)."""
    from diffmech.cli import main

    base = ["lp", "experiments/ke_example3.toml", "--points", "16", "--json"]
    assert main(base) == 0
    yes = json.loads(capsys.readouterr().out)
    assert main(base + ["--set", "setting.prior.low=0.1"]) == 0
    no = json.loads(capsys.readouterr().out)
    assert yes["t_star"] > 0 and yes["exists_on_grid"] and yes["existence_margin"] > 0
    assert no["t_star"] < 0 and not no["exists_on_grid"] and no["existence_margin"] < 0
    assert yes["expected_delta"] == pytest.approx(0.48986393, abs=1e-7)  # REFERENCES: 4(6 ln5 − 9 ln2 − 3 ln3)
    assert main(base + ["--deterministic"]) == 2
