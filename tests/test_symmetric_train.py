"""Learning symmetric auctions with bidding strategies (Deb–Pai, issue 6 parts 4b and 6)."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffmech._compat import enable_x64
from diffmech.errors import ConfigError
from diffmech.mechanisms.analytic.deb_pai import symmetric_implementation
from diffmech.mechanisms.analytic.hierarchical import AffineIndex, Hierarchical, VirtualValueIndex
from diffmech.mechanisms.neural.bid_strategy import MonotoneStrategy
from diffmech.mechanisms.symmetric_auction import PaymentRule, SymmetricAuction
from diffmech.mechanisms.neural.symmetric_payment import ReserveGate, SeparablePayment
from diffmech.priors import Uniform
from diffmech.symmetric_train import estimate, train_symmetric


class FirstPrice(PaymentRule):
    """p^s(b, b_−) = b · 1{b ≥ max b_−} (first price); in training the indicator is relaxed to
    σ((b − max b_−)/τ), the softmax allocation (S1) of two bids without the reserve slot."""

    def __call__(self, own, others):
        return own * (own >= jnp.max(others, axis=-1))

    def relaxed_outer(self, own, others, tau):
        return own[:, None] * jax.nn.sigmoid((own[:, None] - jnp.max(others, axis=-1)[None, :]) / tau)


def test_monotone_strategy_is_strictly_increasing_and_init_reproduces_an_affine_index():
    """σ_i has slopes softplus(w) > 0 on every segment, so it is strictly increasing on the support
    even for very negative w (softplus(−6) ≈ 2.5e-3). The init is a bounded least-squares fit of
    (c_i, s_i); an affine index with positive slope is in the model class, so the fit is exact:
    φ_1(v) = 2v − 4 on U[2,4] (Myerson) and I_2(v) = 3v − 1 on U[1,2], to float64 rounding (1e-6)."""
    pri = [Uniform(2.0, 4.0), Uniform(1.0, 2.0)]
    w = np.clip(np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 7))) * 3.0 - 3.0, -6.0, 6.0)
    st = MonotoneStrategy(pri, 8, offset=np.array([0.3, -1.0]), slopes=np.log1p(np.exp(w)))
    # value steps ≥ 0.005, slopes ≥ 2.5e-3: bid steps ≥ 1.2e-5, far above float32 resolution (≤ 1e-6 here)
    v = jnp.stack([jnp.linspace(2.0, 4.0, 201), jnp.linspace(1.0, 2.0, 201)], axis=1)
    bids = np.asarray(st(v), np.float64)
    assert bids.shape == (201, 2)
    assert np.all(np.diff(bids, axis=0) > 0)
    with enable_x64():
        h = Hierarchical(pri, [VirtualValueIndex(pri[0]), AffineIndex(3.0, -1.0)])
        fit = MonotoneStrategy.init(h, 12)
        v64 = jnp.stack([jnp.linspace(2.0, 4.0, 101), jnp.linspace(1.0, 2.0, 101)], axis=1).astype(jnp.float64)
        out = np.asarray(fit(v64))
    np.testing.assert_allclose(out[:, 0], 2 * np.linspace(2, 4, 101) - 4, atol=1e-6)
    np.testing.assert_allclose(out[:, 1], 3 * np.linspace(1, 2, 101) - 1, atol=1e-6)
    with pytest.raises(ConfigError, match="n_knots"):
        MonotoneStrategy(pri, 1)


def test_regret_estimator_is_nonnegative_zero_without_deviations_and_exact_for_first_price():
    """First price, two bidders U[0,1] bidding truthfully (σ(v) = v): against the other's truthful bid,
    bidding b earns (v − b)·b, maximal at b = v/2 with v²/4, while the truthful bid earns 0. So
    regret(v) = v²/4 and g = E v²/4 = 1/12 for both bidders. Error budget of the hard estimator: the
    others' Latin hypercube sample makes |Â(b) − b| ≤ 1/S = 1/2048 (one stratum is uncertain), so each
    utility is off by ≤ 1/2048 and the regret by ≤ 2/2048 ≈ 1e-3; the grid (512 bids over
    [−0.25, 1.25], spacing ≈ 0.003) loses ≤ (0.003/2)²·1 ≈ 2e-6 at the concave maximum. With no
    grid (deviations = 0) the only deviation is the equilibrium bid and the regret is exactly 0."""
    pri = [Uniform(0.0, 1.0), Uniform(0.0, 1.0)]
    auction = SymmetricAuction(rule=FirstPrice(), strategy=MonotoneStrategy(pri, 4), reserve=-1.0)
    est = estimate(auction, pri, key=jax.random.PRNGKey(1), batch=1024, others=2048, deviations=512)
    assert np.all(est["regret_values"] >= 0)
    np.testing.assert_allclose(est["regret"], 1 / 12, atol=1.2e-3)
    np.testing.assert_allclose(est["regret_max"], 1 / 4, atol=2e-3)
    none = estimate(auction, pri, key=jax.random.PRNGKey(1), batch=256, others=256, deviations=0)
    assert np.all(np.asarray(none["regret_values"]) == 0)
    # a random learned rule and strategy: regrets are nonnegative, also with the soft allocation
    rule = ReserveGate(SeparablePayment(0.0, 1.0, hidden=(8,), features=3, key=jax.random.PRNGKey(2)), 0.0)
    rand = SymmetricAuction(rule=rule, strategy=MonotoneStrategy(pri, 4, shift=-0.3))
    e = estimate(rand, pri, key=jax.random.PRNGKey(3), temperature=0.05, batch=256, others=256, deviations=128)
    assert np.all(e["regret_values"] >= 0) and np.all(np.isfinite(e["regret_values"]))
    # straight-through: the values of the hard auction (same draw) whatever τ; the hard draw is nonnegative too
    kw = dict(key=jax.random.PRNGKey(4), batch=256, others=256, deviations=128)
    st = estimate(rand, pri, temperature=0.05, straight_through=True, **kw)
    hard = estimate(rand, pri, temperature=None, **kw)
    for k in ("revenue", "regret", "ir", "ex_post"):
        np.testing.assert_allclose(st[k], hard[k], rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(hard["regret_values"]) >= 0)


def _example1():
    pri = [Uniform(2.0, 4.0), Uniform(1.0, 2.0)]
    return pri, Hierarchical(pri, [VirtualValueIndex(p) for p in pri])


def test_training_estimate_is_small_at_the_example1_equilibrium_and_large_off_it():
    """Deb–Pai Example 1 auction (b̂ = 1): bidding φ_1 = 2v − 4, φ_2 = 2v − 2 is an equilibrium. The
    estimator's error at τ = 1e-3: the payment's events "other bid < 1" are exact on the stratified
    sample (b_2 < 1 iff u < 1/2, b_1 < 1 iff u < 1/4, S divisible by 4), the allocation is off by
    ≤ 1/S = 1/4096 plus the logistic smoothing near the ends of the bid spaces (bids within a few τ),
    so the mean regret is ≤ 2·v̄·(1/S + O(τ)) ≈ 2e-3 (v̄ ≤ 4).

    Bidder 1 shifted to σ_1(v) = 2v − 3.5 (reports w = v + 1/4 in the direct mechanism). For
    v ∈ [2, 2.75] the bid stays in [0, 2] and the loss is ∫_v^w (a_1(z) − a_1(v)) dz = (1/4)²/2 = 1/32
    (a_1(z) = z − 2 there); for v ∈ (3.75, 4] the bid exceeds 4, off every bid space, where the rule
    charges the punishment P = 4 in expectation, vs 5/2 for bids in (2, 4] with the same allocation 1:
    regret 3/2. So g_1 ≥ 0.375/32 + 0.125·3/2 = 0.1992 (other types ≥ 0), up to the estimator's error."""
    pri, h = _example1()
    auction = symmetric_implementation(h, cutoff=1.0)
    kw = dict(temperature=1e-3, batch=512, others=4096, deviations=512)
    eq = estimate(SymmetricAuction(rule=auction.rule, strategy=MonotoneStrategy.init(h, 8)), pri, key=jax.random.PRNGKey(0), **kw)
    assert np.all(eq["regret"] < 2e-3), eq["regret"]
    np.testing.assert_allclose(eq["revenue"], 13 / 6, atol=5e-3)  # Myerson's revenue (Example 1)
    shifted = MonotoneStrategy(pri, 8, offset=np.array([0.5, 0.0]), slopes=np.full((2, 7), 2.0))
    off = estimate(SymmetricAuction(rule=auction.rule, strategy=shifted), pri, key=jax.random.PRNGKey(0), **kw)
    assert off["regret"][0] > 0.19, off["regret"]


def test_short_training_moves_first_price_strategies_to_the_bayes_nash_equilibrium():
    """First price with two U[0,1] bidders, rule fixed (lr = 0) and strategies learned from truthful
    bidding under a regret-dominated loss (λ = 1000): the only symmetric equilibrium is σ(v) = v/2
    (best response to b = v/2: max_b (v − b)·2b ⇒ b = v/2), with regret 0, while the start has
    g = 1/12 (previous test). A bid v/2 − δ costs type v only 2δ² (U = (v − b)·2b is a parabola with
    curvature −4), and the low types' whole stake is v²/2, so the loss barely identifies their bids:
    we check v ≥ 0.3, where after 400 steps the bids are within 0.01 of v/2, and the hard regret
    estimate is below 2e-3 (estimator error ≤ 1e-3, as above)."""
    pri = [Uniform(0.0, 1.0), Uniform(0.0, 1.0)]
    auction, hist = train_symmetric(
        pri, FirstPrice(), MonotoneStrategy(pri, 5), key=jax.random.PRNGKey(0), steps=400, lr=0.0, strategy_lr=5e-2,
        lr_final=0.1, batch=128, others=512, deviations=128, temperature=(0.02, 0.005), reserve=-1.0, gate=False,
        lam0=1000.0, rho_growth=1.0, log_every=0,
    )
    v = jnp.linspace(0.3, 1.0, 15)
    bids = np.asarray(auction.strategy(jnp.stack([v, v], axis=1)))
    np.testing.assert_allclose(bids, np.stack([v / 2, v / 2], axis=1), atol=0.01)
    est = estimate(auction, pri, key=jax.random.PRNGKey(1), batch=1024, others=2048, deviations=512)
    assert np.all(est["regret"] < 2e-3), est["regret"]
    assert hist[-1]["step"] == 400 and len(hist[-1]["regret"]) == 2


def test_ex_post_ir_penalty_lowers_the_violation_rate():
    """Two short runs from the same random start (U[0,1] vs U[0,2], winner-split separable rule,
    truthful strategies) that differ only in the ex post IR weight w ∈ {0, 10}: the penalty
    w·E Σ_i (p^s − v_i a_i)⁺ is the only term that discourages charging a loser or charging a winner
    more than her value, so the violation rate (hard auction, pairs (v_i, b_−i) with p > v a) falls
    to at most half of the w = 0 run's and the mean excess E (p − v a)⁺ to at most a tenth."""
    pri = [Uniform(0.0, 1.0), Uniform(0.0, 2.0)]
    rule = SeparablePayment(0.0, 2.0, hidden=(16, 16), features=4, winner=True, activation="relu", key=jax.random.PRNGKey(3))
    rates = {}
    for w in (0.0, 10.0):
        auction, _ = train_symmetric(
            pri, rule, MonotoneStrategy(pri, 5), key=jax.random.PRNGKey(4), steps=300, lr=3e-3, batch=64, others=256,
            deviations=64, temperature=(0.05, 0.01), ex_post_ir_weight=w, lam0=5.0, log_every=0,
        )
        e = estimate(auction, pri, key=jax.random.PRNGKey(5), batch=512, others=512, deviations=64)
        rates[w] = (e["ex_post_rate"], e["ex_post"])
    assert rates[10.0][0] <= 0.5 * rates[0.0][0], rates
    assert rates[10.0][1] <= 0.1 * rates[0.0][1], rates


def test_multipliers_update_on_the_device_and_the_loop_reads_back_only_to_log():
    """The loop makes no implicit device→host transfer (the guard; the log's explicit
    ``jax.device_get`` is allowed), and the on-device dual update is the augmented Lagrangian's:
    with K = update_every = 4 and growth 2, after step 4 λ = λ_0 + ρ_0·mean(g_1..g_4), ρ = 2ρ_0, and
    after step 8 λ = λ_4 + 2ρ_0·mean(g_5..g_8) (the same for μ with h); in between λ is constant.
    g_t, h_t are the logged estimates of step t, so the only error is float32 rounding of a few
    additions (relative ~1e-7; tolerance 1e-5). Bids b = v + 0.3 in first price pay b > v on winning, so
    U(v) = −0.3·A(b) < 0: h = 0.3·E A > 0, and bidding below the others (utility 0) beats it: g > 0."""
    pri = [Uniform(0.0, 1.0), Uniform(0.0, 1.0)]
    with jax.transfer_guard_device_to_host("disallow"):  # overbidding in first price: regret > 0 and IR violated
        _, hist = train_symmetric(pri, FirstPrice(), MonotoneStrategy(pri, 3, shift=0.3), key=jax.random.PRNGKey(0), steps=8, lr=1e-3,
                                  batch=16, others=16, deviations=8, lam0=1.0, rho0=0.5, rho_growth=2.0, update_every=4, log_every=1)
    assert [r["step"] for r in hist] == list(range(1, 9))
    for name, est in (("lam", "regret"), ("mu", "ir")):
        g = np.array([r[est] for r in hist])  # (8, n)
        lam4 = 1.0 + 0.5 * g[:4].mean(axis=0)
        np.testing.assert_allclose(hist[3][name], lam4, rtol=1e-5)
        np.testing.assert_array_equal(hist[4][name], hist[3][name])
        np.testing.assert_allclose(hist[7][name], lam4 + 1.0 * g[4:].mean(axis=0), rtol=1e-5)
        assert np.all(g[:4].mean(axis=0) > 1e-3)  # the update really moves λ and μ
    assert [r["rho"] for r in hist] == [0.5] * 3 + [1.0] * 4 + [2.0]


def test_bad_options_fail_with_config_errors():
    pri = [Uniform(0.0, 1.0), Uniform(0.0, 1.0)]
    st = MonotoneStrategy(pri, 3)
    with pytest.raises(ConfigError, match="temperature"):
        train_symmetric(pri, FirstPrice(), st, key=jax.random.PRNGKey(0), steps=1, temperature=0.0)
    with pytest.raises(ConfigError, match="reserve"):
        train_symmetric(pri, ReserveGate(FirstPrice(), 0.5), st, key=jax.random.PRNGKey(0), steps=1, reserve=0.0)
    with pytest.raises(ConfigError, match="two bidders"):
        train_symmetric(pri[:1], FirstPrice(), MonotoneStrategy(pri[:1], 3), key=jax.random.PRNGKey(0), steps=1)


CONFIG = """
[setting]
kind = "single_item"
priors = [{ dist = "uniform", low = 0.0, high = 1.0 }, { dist = "uniform", low = 0.0, high = 2.0 }]

[mechanism]
kind = "symmetric_auction"
rule = "separable"
hidden = [16]
features = 4
knots = 6
init = "myerson"

[train]
steps = 24
batch = 32
lr = 3e-3
lr_schedule = "cosine"
lambda_every = 4
interim_samples = 64
interim_reports = 32
log_every = 4
ckpt_every = 8

[train.symmetric]
temperature = [0.02, 0.005]
rho_growth = 1.1
straight_through = 0.5
fit_steps = 20
"""


def test_diffmech_train_checkpoints_and_resumes_a_learned_symmetric_auction_exactly(tmp_path):
    """``diffmech train`` on a learned symmetric auction (warm start from Myerson): a run stopped
    after step 12 (last checkpoint at 8) and resumed ends with the same weights, bit for bit, as an
    uninterrupted run (step t uses fold_in(key, t) and the schedules at t; the multipliers and the
    accumulated constraint estimates are part of the saved state); the checkpoint loads into an
    auction that pays what the trained one pays; the strategies stay strictly increasing."""
    from diffmech.checkpoint import load
    from diffmech.config import parse_toml, resolve
    from diffmech.trainer import train

    run = resolve(parse_toml(CONFIG))
    full = train(run, tmp_path / "full", progress=False)

    class Stop(Exception):
        pass

    def stop_at_12(rec):
        if rec["step"] == 12:
            raise Stop

    with pytest.raises(Stop):
        train(run, tmp_path / "cut", progress=False, callback=stop_at_12)
    assert json.loads((tmp_path / "cut" / "resume" / "state.json").read_text())["step"] == 8
    resumed = train(run, tmp_path / "cut", resume=True, progress=False)
    assert (tmp_path / "full" / "weights.eqx").read_bytes() == (tmp_path / "cut" / "weights.eqx").read_bytes()
    assert [r["step"] for r in resumed.history] == [r["step"] for r in full.history] == list(range(4, 25, 4))

    loaded = load(tmp_path / "full").mechanism
    vals = Uniform(0.0, 1.0).sample(jax.random.PRNGKey(5), (256, 2)) * jnp.asarray([1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(loaded(vals[..., None]).payments), np.asarray(full.mechanism(vals[..., None]).payments))
    grid = jnp.stack([jnp.linspace(0.0, 1.0, 50), jnp.linspace(0.0, 2.0, 50)], axis=1)
    assert np.all(np.diff(np.asarray(loaded.strategy(grid)), axis=0) > 0)
    # the warm start made the bidders bid Myerson's virtual values (2v − 1, 2v − 2), not their values
    np.testing.assert_allclose(np.asarray(loaded.strategy(grid[jnp.asarray([0, -1])])), [[-1.0, -2.0], [1.0, 2.0]], atol=0.15)


def test_learned_symmetric_auction_bad_configs_fail_with_one_line(tmp_path):
    """Each bad key is refused before anything is written; the CLI exits 2 with one line."""
    from diffmech.config import apply_overrides, parse_toml, resolve
    from diffmech.trainer import train

    cases = [
        ('mechanism.rule="lstm"', "mechanism.rule"),
        ("mechanism.bids=[1.0, 0.0]", "mechanism.bids"),
        ('mechanism.rule="deepsets"', None),  # fine alone; with winner = true it is not
        ("train.symmetric.temperature=0.0", "temperature"),
        ("train.symmetric.warm=1", "unknown key"),
        ('train.method="penalty"', "augmented_lagrangian"),
        ('train.constraints=["interim_ir"]', "interim_regret"),
    ]
    for override, message in cases:
        overrides = [override] + (["mechanism.winner=true"] if message is None else [])
        with pytest.raises(ConfigError, match=message or "winner"):
            train(resolve(apply_overrides(parse_toml(CONFIG), overrides)), tmp_path / "o", progress=False)
        assert not (tmp_path / "o").exists()
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    proc = subprocess.run([sys.executable, "-m", "diffmech.cli", "train", str(cfg), "--out", str(tmp_path / "o"), "--no-progress",
                           "--set", "train.symmetric.rho_growth=0.5"], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "rho_growth" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
