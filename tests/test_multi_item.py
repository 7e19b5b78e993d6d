"""Multi-item additive setting: configs, item-wise Myerson against its reference revenue, the
exhaustive product-grid attack, and RegretNet training on two items."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech.config import EvalConfig
from diffmech.evaluate import regret_attack

U01 = {"dist": "uniform", "low": 0.0, "high": 1.0}


def _setting(n, m):
    return dm.setting_from_config({"kind": "multi_item", "prior": U01, "n_agents": n, "n_items": m})


def test_config_forms_agree_and_bad_ones_fail():
    a = _setting(2, 3)
    b = dm.setting_from_config({"kind": "multi_item", "item_priors": [U01] * 3, "n_agents": 2})
    c = dm.setting_from_config({"kind": "multi_item", "priors": [[U01] * 3] * 2})
    assert a.to_config() == b.to_config() == c.to_config()
    assert (a.n_agents, a.n_items, a.type_dim) == (2, 3, 3)
    assert a.sample(jax.random.PRNGKey(0), 5).shape == (5, 2, 3)
    for bad, msg in [
        ({"kind": "multi_item", "prior": U01, "n_agents": 2}, "n_items"),
        ({"kind": "multi_item", "n_agents": 2, "n_items": 2}, "exactly one of"),
        ({"kind": "multi_item", "prior": U01, "n_agents": 1, "n_items": 2, "valuation": "xor"}, "valuation must be one of"),
        ({"kind": "multi_item", "prior": U01, "n_agents": 1, "n_items": 2, "common_weight": 1.0}, "common_weight"),
        ({"kind": "multi_item", "item_priors": [U01, {**U01, "high": 2.0}], "n_agents": 1, "common_weight": 0.5}, "one prior"),
        ({"kind": "multi_item", "priors": [[U01, U01], [U01]]}, "same number"),
        ({"kind": "multi_item", "item_priors": [U01], "n_agents": 1, "n_items": 2}, "disagrees"),
    ]:
        with pytest.raises(dm.ConfigError, match=msg):
            dm.setting_from_config(bad)


@pytest.mark.parametrize("n, expected", [(1, 0.5), (2, 2 * 5 / 12)])
def test_itemwise_myerson_revenue_and_no_regret(n, expected):
    """Selling two iid U[0,1] items separately: 2 × (Myerson revenue of one item) — 0.5 for one
    buyer (REFERENCES.md, "selling separately"), 2 · 5/12 for two bidders. Monte Carlo: 4 se."""
    s = _setting(n, 2)
    mech = dm.mechanism_from_config(s, {"kind": "itemwise_myerson"})
    m = dm.evaluate(mech, s, EvalConfig(samples=5000, grid_points=400, attack_steps=10), benchmarks=False)
    assert abs(m["revenue"] - expected) < 4 * m["revenue_se"]
    assert m["regret_max"] < 1e-5 and m["ir_violation_max"] == 0.0


class _PayYourBidPosted(dm.Mechanism):
    """One buyer; item j is sold iff the report is ≥ 1/2, at the report (not truthful)."""

    kind = "pay_your_bid_posted"

    def __call__(self, reports):
        alloc = (reports >= 0.5).astype(reports.dtype)
        return dm.Outcome(alloc=alloc, payments=jnp.sum(alloc * reports, axis=-1))

    @classmethod
    def from_config(cls, setting, options, key=None):
        return cls()


def test_product_grid_attack_finds_the_exact_gain_on_two_items():
    s = _setting(1, 2)
    types = s.sample(jax.random.PRNGKey(3), 300)
    gains = regret_attack(_PayYourBidPosted(), s, types, jax.random.PRNGKey(0), EvalConfig(grid_points=961, attack_steps=0))
    exact = np.sum(np.maximum(np.asarray(types[:, 0]) - 0.5, 0.0), axis=-1)  # report exactly 1/2 where v ≥ 1/2
    np.testing.assert_allclose(gains[:, 0], exact, atol=1e-5)  # 1/2 lies on the 31-point grid


class _SmoothPayYourBid(dm.Mechanism):
    """One buyer; item j is allocated with probability sigmoid((b_j − 1/2)/0.05) at price b_j."""

    kind = "smooth_pay_your_bid"

    def __call__(self, reports):
        alloc = jax.nn.sigmoid((reports - 0.5) / 0.05)
        return dm.Outcome(alloc=alloc, payments=jnp.sum(alloc * reports, axis=-1))

    @classmethod
    def from_config(cls, setting, options, key=None):
        return cls()


def test_gradient_attack_without_grid_on_three_items():
    """With more than two items there is no grid; the gradient attack must still find the best
    deviation. Utility is separable over items, so the exact gain is a sum of 1-D maximisations
    (computed here on a 20,001-point grid per item)."""
    s = _setting(1, 3)
    assert s.attack_grid(1000) is None
    types = np.asarray(s.sample(jax.random.PRNGKey(4), 200)[:, 0], np.float64)  # (200, 3)
    b = np.linspace(0.0, 1.0, 20001)
    a = 1.0 / (1.0 + np.exp(-(b - 0.5) / 0.05))
    best = np.max(a[None, None, :] * (types[..., None] - b[None, None, :]), axis=-1)
    exact = np.sum(best, axis=-1)  # truthful utility is a(v)·(v − v) = 0
    gains = regret_attack(_SmoothPayYourBid(), s, jnp.asarray(types[:, None], jnp.float32), jax.random.PRNGKey(0), EvalConfig(attack_starts=4, attack_steps=200))
    assert np.all(gains[:, 0] <= exact + 1e-4)
    assert np.all(gains[:, 0] >= exact - 2e-3)


def test_regretnet_trains_on_two_items_and_regret_falls():
    cfg = {
        "setting": {"kind": "multi_item", "prior": U01, "n_agents": 1, "n_items": 2},
        "mechanism": {"kind": "regretnet", "hidden": [32, 32]},
        "train": {"steps": 300, "batch": 128, "train_size": 1024, "lr": 0.003, "inner_steps": 5, "lambda_init": 5.0, "lambda_every": 50},
    }
    run = dm.resolve(cfg)
    quick = EvalConfig(samples=1000, grid_points=225, attack_steps=10)
    before = dm.evaluate(run.build_mechanism(jax.random.PRNGKey(0)), run.setting, quick, benchmarks=False)
    res = dm.train(run)
    after = dm.evaluate(res.mechanism, run.setting, quick)
    assert res.mechanism(jnp.ones((3, 1, 2))).alloc.shape == (3, 1, 2)
    assert after["regret_mean"] < 0.5 * before["regret_mean"]
    assert "itemwise_myerson" in after["benchmarks"]


def test_manelli_vincent_revenue_and_truthfulness():
    """1 buyer, 2 items iid U[0,1]: optimal revenue (12 + 2√2)/27 = 0.549201 (REFERENCES.md,
    Manelli–Vincent), above selling separately (0.5). Monte Carlo: 4 standard errors."""
    s = _setting(1, 2)
    mv = dm.mechanism_from_config(s, {"kind": "manelli_vincent"})
    m = dm.evaluate(mv, s, EvalConfig(samples=50000, grid_points=900, attack_steps=10))
    assert abs(m["revenue"] - (12 + 2 * np.sqrt(2)) / 27) < 4 * m["revenue_se"]
    assert m["revenue"] > m["benchmarks"]["itemwise_myerson"]
    assert m["regret_max"] < 1e-5 and m["ir_violation_max"] == 0.0
    with pytest.raises(dm.ConfigError, match="1 buyer and 2 items"):
        dm.mechanism_from_config(_setting(2, 2), {"kind": "manelli_vincent"})
