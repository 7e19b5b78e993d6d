"""The regret attack: finds known gains exactly, reports ~0 for truthful mechanisms."""

import jax
import jax.numpy as jnp
import numpy as np

from diffmech import constraints as C
from diffmech.config import EvalConfig
from diffmech.evaluate import evaluate, regret_attack
from diffmech.mechanisms import FirstPrice, Myerson, SecondPrice
from diffmech.priors import Uniform
from diffmech.settings import SingleItem


def _setting(n=2):
    return SingleItem([Uniform(0.0, 1.0)] * n)


def test_deviation_profiles_replace_exactly_one_row():
    types = jnp.arange(6.0).reshape(2, 3, 1)
    mis = -jnp.ones((2, 4, 3, 1))
    prof = C.deviation_profiles(types, mis)
    assert prof.shape == (2, 4, 3, 3, 1)
    for i in range(3):
        for j in range(3):
            expected = -1.0 if i == j else types[1, j, 0]
            assert prof[1, 2, i, j, 0] == expected


def test_first_price_gain_found_by_grid():
    """Truthful bidding in a first-price auction: the winner's best deviation is to bid just above
    the loser's value, gaining (v_w − v_l) up to the grid spacing; the loser gains nothing."""
    s = _setting()
    types = s.sample(jax.random.PRNGKey(3), 400)
    gains = regret_attack(FirstPrice(), s, types, jax.random.PRNGKey(0), EvalConfig(grid_points=1001, attack_steps=50))
    v = np.asarray(types[..., 0])
    w = v.argmax(axis=1)
    exact = np.abs(v[:, 0] - v[:, 1])
    found_w = gains[np.arange(len(v)), w]
    found_l = gains[np.arange(len(v)), 1 - w]
    assert np.all(found_w <= exact + 1e-5)
    assert np.all(found_w >= exact - 2e-3)  # grid spacing 1e-3, then gradient refinement
    assert np.all(found_l <= 1e-6)


def test_gradient_attack_without_grid_finds_first_price_gain():
    s = _setting()
    types = s.sample(jax.random.PRNGKey(4), 200)
    starts = s.sample(jax.random.PRNGKey(5), 200 * 8).reshape(200, 8, 2, 1)
    _, best = jax.jit(lambda t, m: C.ascend_misreports(FirstPrice(), s, t, m, 200, 0.02))(types, starts)
    best = np.asarray(jnp.max(best, axis=1))
    v = np.asarray(types[..., 0])
    exact = np.abs(v[:, 0] - v[:, 1])
    found = best[np.arange(200), v.argmax(axis=1)]
    assert np.all(found <= exact + 1e-5)
    assert np.mean(found) >= np.mean(exact) - 0.01


def test_truthful_mechanisms_have_no_regret():
    s = SingleItem([Uniform(2.0, 4.0), Uniform(1.0, 2.0)])
    cfg = EvalConfig(samples=1000, grid_points=1000, attack_steps=50)
    for mech in (Myerson(s.priors), SecondPrice(reserve=2.5)):
        m = evaluate(mech, s, cfg, benchmarks=False)
        assert m["regret_max"] < 1e-5
        assert m["ir_violation_max"] < 1e-6


def test_first_price_regret_is_reported_positive_and_benchmarks_present():
    s = _setting()
    m = evaluate(FirstPrice(), s, EvalConfig(samples=500, attack_steps=20))
    # E|v1 − v2| / 2 (winner's gain, averaged over both agents) = 1/6 for iid U[0,1]
    assert abs(m["regret_mean"] - 1 / 6) < 4 * m["regret_mean_se"] + 2e-3
    assert m["train_regret_mean"] <= m["regret_mean"] + 1e-6
    assert set(m["benchmarks"]) == {"myerson", "second_price", "second_price_best_reserve"}


def test_chunking_does_not_change_the_result():
    s = _setting(3)
    types = s.sample(jax.random.PRNGKey(7), 101)
    a = regret_attack(FirstPrice(), s, types, jax.random.PRNGKey(0), EvalConfig(grid_points=50, attack_steps=5, chunk=1 << 20))
    b = regret_attack(FirstPrice(), s, types, jax.random.PRNGKey(0), EvalConfig(grid_points=50, attack_steps=5, chunk=50 * 3 * 7))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_grid_larger_than_the_memory_chunk_is_searched_in_pieces():
    s = _setting(2)
    types = s.sample(jax.random.PRNGKey(8), 64)
    whole = regret_attack(FirstPrice(), s, types, jax.random.PRNGKey(0), EvalConfig(grid_points=101, attack_steps=0))
    pieces = regret_attack(FirstPrice(), s, types, jax.random.PRNGKey(0), EvalConfig(grid_points=101, attack_steps=0, chunk=2 * 30))
    np.testing.assert_allclose(whole, pieces, atol=1e-7)
