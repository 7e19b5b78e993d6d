"""Neural mechanisms: RegretNet (learned IC) and MonotoneNet (DSIC by construction).

Tolerances used below (derivations):

* Feasibility / IR checks in float32: a softmax or sigmoid output and a product of two float32
  numbers carry a relative rounding error of a few ulps (ε32 ≈ 1.2e-7), so equalities are checked
  to ``F32 = 1e-6`` times the value scale.
* MonotoneNet payment quadrature: the payment identity is evaluated by composite Gauss–Legendre
  with Q nodes. The integrand sigmoid(h(x)/τ − L) is analytic between the kinks of the
  piecewise-linear h, and at a kink its derivative jumps by at most a(1−a)·Δh'/τ; a jump inside a
  panel of width H = x/P costs O(jump·H²). At τ = 0.02, Q = 128 nodes in P = 32 panels (``REF``),
  initial slopes h' ≈ exp(0.2·N(0,1))) the error relative to the support width, measured against
  scipy's adaptive quad in float64 over 120 random initialisations (10 profiles each), has mean
  ≈ 1.4e-6 and worst case 8.4e-5; ``QUAD_TOL = 1e-4`` (per unit of support width) is that worst
  case rounded up. The error must shrink at least like H² when Q grows: at Q = 1024 (H 8×
  smaller, so ≥ 64× smaller; measured worst 1.4e-6) it is checked against ``QUAD_TOL / 32``.
* DSIC: for true value v and report b, the computed gain u(v; b) − u(v; v) equals
  ε(v) − ε(b) − [∫_b^v a − (v − b)a(b)] ≤ |ε(v)| + |ε(b)| ≤ 2·QUAD_TOL·width (the bracket is ≥ 0
  by monotonicity), plus float32 rounding of payments of size ≤ high (≈ F32·high).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from diffmech._compat import enable_x64
from diffmech.errors import ConfigError
from diffmech.mechanisms.neural.monotone import MonotoneNet, composite_gauss_legendre, minmax
from diffmech.mechanisms.neural.regretnet import RegretNet
from diffmech.priors import Uniform
from diffmech.settings.single_item import SingleItem

F32 = 1e-6
QUAD_TOL = 1e-4
# the sizes at which the quadrature error above was measured (the defaults are smaller: 5×5, 64 nodes)
REF = {"groups": 10, "units": 10, "quad_nodes": 128}
SMALL = {"hidden": [32, 16]}  # RegretNet width used where the default size is not the point


@eqx.filter_jit
def run(model, reports):
    return model(reports)


def iid_setting(n=3):
    return SingleItem([Uniform(0.0, 1.0)] * n)


def asym_setting():
    return SingleItem([Uniform(0.0, 1.0), Uniform(1.0, 3.0), Uniform(0.5, 2.0)])


def sample(setting, seed, n):
    return setting.sample(jax.random.PRNGKey(seed), n)


@eqx.filter_jit
def perturb(model, key, scale_w=1.0, scale_b=0.5):
    """Random, far-from-initial parameters (stands in for a trained network)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    scales = [scale_w, scale_b] if isinstance(model, MonotoneNet) else [scale_w] * len(leaves)
    leaves = [a + s * jax.random.normal(k, (a.size,), a.dtype).reshape(a.shape) for a, k, s in zip(leaves, keys, scales)]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)


def to_f64(model):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64) if eqx.is_inexact_array(a) else a, model)


# --------------------------------------------------------------------------------------------
# RegretNet


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
@pytest.mark.parametrize("setting", [iid_setting(), asym_setting()], ids=["iid", "asym"])
def test_regretnet_shapes_feasible_and_ir(activation, setting):
    model = RegretNet.from_config(setting, {"hidden": [32, 16], "activation": activation}, jax.random.PRNGKey(0))
    reports = sample(setting, 1, 256)
    out = run(model, reports)
    assert out.alloc.shape == (256, 3, 1) and out.payments.shape == (256, 3)
    assert out.alloc.dtype == jnp.float32 and out.payments.dtype == jnp.float32
    assert jnp.all(out.alloc >= 0)
    assert jnp.all(out.alloc.sum(axis=1) <= 1 + F32)
    value = reports[..., 0] * out.alloc[..., 0]
    assert jnp.all(out.payments <= value + F32 * 3)
    assert jnp.all(out.payments >= 0)  # nonnegative reports
    assert model.ir_by_construction is True
    assert RegretNet.ir_by_construction is False  # class-level: not every RegretNet is IR


def test_regretnet_free_payments_can_violate_ir():
    setting = iid_setting()
    violated = False
    for seed in range(3):
        model = RegretNet.from_config(setting, {"payments": "free", **SMALL}, jax.random.PRNGKey(seed))
        assert model.ir_by_construction is False
        reports = sample(setting, 10 + seed, 512)
        out = run(model, reports)
        violated |= bool(jnp.any(out.payments > reports[..., 0] * out.alloc[..., 0] + 1e-3))
    assert violated


def test_regretnet_multi_item_shapes():
    low, high = np.zeros((2, 3)), np.full((2, 3), 2.0)
    model = RegretNet(low, high, n_items=3, hidden=[8], key=jax.random.PRNGKey(0))
    reports = jax.random.uniform(jax.random.PRNGKey(1), (384,), maxval=2.0).reshape(64, 2, 3)
    out = run(model, reports)
    assert out.alloc.shape == (64, 2, 3) and out.payments.shape == (64, 2)
    assert jnp.all(out.alloc >= 0) and jnp.all(out.alloc.sum(axis=1) <= 1 + F32)
    assert jnp.all(out.payments <= jnp.sum(reports * out.alloc, -1) + F32 * 6)


def test_regretnet_gradient_reaches_weights_only():
    setting = asym_setting()
    hidden = SMALL["hidden"]
    model = RegretNet.from_config(setting, {"hidden": hidden}, jax.random.PRNGKey(0))
    params = eqx.filter(model, eqx.is_inexact_array)
    leaves = jax.tree_util.tree_leaves(params)
    # exactly the weights and biases of the trunk and both heads; bounds are static, not leaves
    assert len(leaves) == 2 * (len(hidden) + 2)
    assert len(jax.tree_util.tree_leaves(model)) == len(leaves)
    assert model.low == ((0.0,), (1.0,), (0.5,)) and model.high == ((1.0,), (3.0,), (2.0,))
    reports = sample(setting, 2, 128)

    @eqx.filter_jit
    @eqx.filter_grad
    def grad(m):
        return jnp.mean(jnp.sum(m(reports).payments, axis=-1))

    g = grad(model)
    g_leaves = jax.tree_util.tree_leaves(g)
    assert len(g_leaves) == len(leaves)
    for gl in g_leaves:
        assert jnp.all(jnp.isfinite(gl)) and float(jnp.max(jnp.abs(gl))) > 0
    # an optimiser step changes weights and leaves the bounds alone
    stepped = eqx.apply_updates(model, jax.tree_util.tree_map(lambda a: -0.1 * a, g))
    assert stepped.low == model.low and stepped.high == model.high


# --------------------------------------------------------------------------------------------
# both classes


@pytest.mark.parametrize("cls", [RegretNet, MonotoneNet])
def test_same_key_same_outputs(cls):
    setting = asym_setting()
    reports = sample(setting, 3, 64)
    a = run(cls.from_config(setting, {}, jax.random.PRNGKey(7)), reports)  # default sizes
    b = run(cls.from_config(setting, {}, jax.random.PRNGKey(7)), reports)
    c = run(cls.from_config(setting, {}, jax.random.PRNGKey(8)), reports)
    assert jnp.array_equal(a.alloc, b.alloc) and jnp.array_equal(a.payments, b.payments)
    assert not jnp.allclose(a.alloc, c.alloc) and not jnp.allclose(a.payments, c.payments)


@pytest.mark.parametrize("cls", [RegretNet, MonotoneNet])
def test_float64(cls):
    setting = asym_setting()
    reports32 = sample(setting, 4, 64)
    options = SMALL if cls is RegretNet else {}
    model32 = cls.from_config(setting, options, jax.random.PRNGKey(0))
    out32 = run(model32, reports32)
    with enable_x64():
        # built under x64: float64 parameters (jax.random draws different numbers in float64)
        model = cls.from_config(setting, options, jax.random.PRNGKey(0))
        assert all(a.dtype == jnp.float64 for a in jax.tree_util.tree_leaves(model))
        reports = jnp.asarray(reports32, jnp.float64)
        out = run(model, reports)
        assert out.alloc.dtype == jnp.float64 and out.payments.dtype == jnp.float64
        assert jnp.all(out.alloc >= 0) and jnp.all(out.alloc.sum(axis=1) <= 1 + 1e-12)
        assert jnp.all(out.payments <= reports[..., 0] * out.alloc[..., 0] + 1e-12)
        # the float32 weights evaluated in float64 agree with the float32 computation
        out64 = run(to_f64(model32), reports)
        assert out64.payments.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(out64.alloc), np.asarray(out32.alloc), atol=1e-5)
        np.testing.assert_allclose(np.asarray(out64.payments), np.asarray(out32.payments), atol=1e-5)


# --------------------------------------------------------------------------------------------
# MonotoneNet


def test_monotone_shapes_feasible_ir_and_leaves():
    setting = asym_setting()
    model = MonotoneNet.from_config(setting, {}, jax.random.PRNGKey(0))
    assert MonotoneNet.dsic_by_construction and MonotoneNet.ir_by_construction
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    assert [a.shape for a in leaves] == [(3, 5, 5), (3, 5, 5)]
    assert len(jax.tree_util.tree_leaves(model)) == 2
    for m in (model, perturb(model, jax.random.PRNGKey(1))):
        reports = sample(setting, 5, 512)
        out = run(m, reports)
        assert out.alloc.shape == (512, 3, 1) and out.payments.shape == (512, 3)
        assert jnp.all(out.alloc >= 0) and jnp.all(out.alloc.sum(axis=1) <= 1 + F32)
        # ex post IR is exact: the quadrature sum of a ≥ 0 with positive weights is ≥ 0
        assert jnp.all(out.payments <= reports[..., 0] * out.alloc[..., 0] + F32 * 3)
    # initial h: bids at the top of the support win, bids at the bottom do not
    top = jnp.asarray([[[1.0], [1.0], [0.5]]])
    assert run(model, top).alloc[0, 0, 0] > 0.4
    bottom = jnp.asarray([[[0.0], [1.0], [0.5]]])
    assert float(run(model, bottom).alloc.sum()) < 1e-3


def test_monotone_shared_is_symmetric():
    setting = iid_setting()
    model = MonotoneNet.from_config(setting, {"shared": True, "groups": 4, "units": 3}, jax.random.PRNGKey(0))
    assert model.raw_w.shape == (1, 4, 3)
    reports = sample(setting, 6, 64)
    perm = jnp.asarray([2, 0, 1])
    a, b = run(model, reports), run(model, reports[:, perm])
    np.testing.assert_allclose(np.asarray(a.alloc[:, perm]), np.asarray(b.alloc), atol=1e-6)
    np.testing.assert_allclose(np.asarray(a.payments[:, perm]), np.asarray(b.payments), atol=1e-6)


def test_minmax_custom_derivative_matches_autodiff():
    def naive(x, w, b):
        return jnp.min(jnp.max(x[..., None, None] * w[:, None] + b[:, None], -1), -1)

    @jax.jit
    def values_and_grads(x, w, b):
        out = []
        for fn in (minmax, naive):
            loss = lambda x, w, b: jnp.sum(jnp.sin(3.0 * fn(x, w, b)))  # noqa: E731
            out.append((fn(x, w, b), jax.grad(loss, (0, 1, 2))(x, w, b)))
        return out

    model = perturb(MonotoneNet(np.zeros(3), np.ones(3), groups=10, units=10, key=jax.random.PRNGKey(0)), jax.random.PRNGKey(3))
    x = jax.random.uniform(jax.random.PRNGKey(1), (165,), minval=-0.2, maxval=1.2).reshape(5, 3, 11)
    for nets in (1, 3):
        (v1, g1), (v2, g2) = values_and_grads(x, jnp.exp(model.raw_w[:nets]), model.beta[:nets])
        np.testing.assert_array_equal(np.asarray(v1), np.asarray(v2))
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_monotone_allocation_nondecreasing_in_own_bid(seed):
    setting = asym_setting()
    # the allocation does not depend on the payment quadrature: few nodes keep the test fast
    model = MonotoneNet.from_config(setting, {"quad_nodes": 4}, jax.random.PRNGKey(seed))
    if seed % 2:
        model = perturb(model, jax.random.PRNGKey(100 + seed))  # arbitrary parameters, not just the initialisation
    lo, hi = (a[:, 0] for a in setting.type_bounds())
    others = np.asarray(sample(setting, 20 + seed, 4)[..., 0])
    grid = 4001
    for i in range(3):
        z = np.linspace(lo[i] - 0.1, hi[i] + 0.1, grid)
        bids = np.repeat(others, grid, axis=0)
        bids[:, i] = np.tile(z, len(others))
        a = np.asarray(run(model, jnp.asarray(bids[..., None], jnp.float32)).alloc[:, i, 0]).reshape(len(others), grid)
        assert np.all(np.diff(a, axis=1) >= 0), f"bidder {i}: allocation decreases in own bid"
        assert np.ptp(a) > 0.1  # the grid crosses a transition, so the check has teeth


def reference_payments(model, bids):
    """Myerson payments from an independent float64 numpy implementation and adaptive quad."""
    w = np.exp(np.asarray(model.raw_w, np.float64))
    beta = np.asarray(model.beta, np.float64)
    lo, hi, tau = np.asarray(model.low), np.asarray(model.high), model.temperature

    def h(j, z):
        k = 0 if model.shared else j
        return np.min(np.max(w[k] * (z - lo[j]) / (hi[j] - lo[j]) + beta[k], axis=-1))

    out = np.zeros_like(bids)
    for r, b in enumerate(bids):
        logits = np.array([h(j, b[j]) / tau for j in range(len(b))])
        for i in range(len(b)):
            rest = np.logaddexp.reduce(np.concatenate([[0.0], np.delete(logits, i)]))
            a = lambda z: 1.0 / (1.0 + np.exp(rest - h(i, z) / tau))  # noqa: E731
            integral, _ = quad(a, lo[i], b[i], limit=1000, epsabs=1e-10, epsrel=1e-10)
            out[r, i] = b[i] * a(b[i]) - integral
    return out


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_monotone_payment_identity_matches_reference_integral():
    setting = asym_setting()
    width = np.asarray([1.0, 2.0, 1.5])
    errs_default, errs_fine = [], []
    with enable_x64():
        for seed in range(3):
            model = to_f64(MonotoneNet.from_config(setting, dict(REF), jax.random.PRNGKey(seed)))
            fine = to_f64(MonotoneNet.from_config(setting, {**REF, "quad_nodes": 1024}, jax.random.PRNGKey(seed)))
            bids = np.array(sample(setting, 30 + seed, 12)[..., 0], np.float64)
            bids[:4] = np.asarray(setting.type_bounds()[1])[:, 0]  # top of the supports: longest paths
            bids[4:6] = np.asarray(setting.type_bounds()[0])[:, 0]  # bottom: payment = low · a
            ref = reference_payments(model, bids)
            errs_default.append(np.abs(np.asarray(run(model, jnp.asarray(bids)[..., None]).payments) - ref) / width)
            errs_fine.append(np.abs(np.asarray(run(fine, jnp.asarray(bids)[..., None]).payments) - ref) / width)
    errs_default, errs_fine = np.concatenate(errs_default), np.concatenate(errs_fine)
    assert errs_default.max() <= QUAD_TOL, errs_default.max()
    assert errs_default.mean() <= QUAD_TOL / 10, errs_default.mean()
    assert errs_fine.max() <= QUAD_TOL / 32, errs_fine.max()


def dsic_gain(model, setting, seed, n_profiles=4, n_misreports=1000, pay_your_bid=False):
    """max over profiles, bidders and 1,000 misreports of u(v; b) − u(v; v), per unit width."""
    lo, hi = (a[:, 0] for a in setting.type_bounds())
    values = np.asarray(sample(setting, seed, n_profiles)[..., 0])
    worst = -np.inf
    for i in range(setting.n_agents):
        grid = np.linspace(lo[i], hi[i], n_misreports)
        bids = np.repeat(values, n_misreports + 1, axis=0)
        bids[:, i] = np.concatenate([values[:, i : i + 1], np.tile(grid, (n_profiles, 1))], axis=1).ravel()
        out = run(model, jnp.asarray(bids[..., None], jnp.float32))
        a = np.asarray(out.alloc[:, i, 0], np.float64)
        p = bids[:, i] * a if pay_your_bid else np.asarray(out.payments[:, i], np.float64)
        v = np.repeat(values[:, i], n_misreports + 1)
        u = (v * a - p).reshape(n_profiles, n_misreports + 1)
        worst = max(worst, float(np.max(u[:, 1:] - u[:, :1])) / (hi[i] - lo[i]))
    return worst


@pytest.mark.parametrize("seed", [0, 1])
def test_monotone_truthful_bidding_is_dominant(seed):
    setting = asym_setting()
    model = MonotoneNet.from_config(setting, dict(REF), jax.random.PRNGKey(seed))
    tol = 2 * QUAD_TOL + F32 * 3.0
    assert dsic_gain(model, setting, 40 + seed) <= tol
    # the same check catches a non-truthful payment rule (pay your bid) on the same allocation
    assert dsic_gain(model, setting, 40 + seed, pay_your_bid=True) > 100 * tol


def test_composite_gauss_legendre_rule():
    t, w = composite_gauss_legendre(128, 4)
    assert t.shape == w.shape == (128,) and np.all(w > 0) and np.all((t > 0) & (t < 1))
    assert abs(w.sum() - 1) < 1e-14 and abs(np.sum(w * t**7) - 1 / 8) < 1e-14


# --------------------------------------------------------------------------------------------
# configuration errors


@pytest.mark.parametrize(
    "cls, options, message",
    [
        (RegretNet, {"hidden": [100, 0]}, "mechanism.hidden must be a list of positive integers, got [100, 0]"),
        (RegretNet, {"hidden": [-5]}, "mechanism.hidden must be a list of positive integers, got [-5]"),
        (RegretNet, {"hidden": 100}, "mechanism.hidden must be a list of positive integers, got 100"),
        (RegretNet, {"hidden": [1.5]}, "mechanism.hidden must be a list of positive integers, got [1.5]"),
        (RegretNet, {"activation": "sigmoid"}, "mechanism.activation must be one of tanh, relu, gelu, got 'sigmoid'"),
        (RegretNet, {"payments": "none"}, "mechanism.payments must be one of ir, free, got 'none'"),
        (RegretNet, {"hiden": [3], "lr": 1}, "unknown key(s) in [mechanism] for regretnet: hiden, lr"),
        (MonotoneNet, {"groups": 0}, "mechanism.groups must be a positive integer, got 0"),
        (MonotoneNet, {"units": -2}, "mechanism.units must be a positive integer, got -2"),
        (MonotoneNet, {"temperature": 0.0}, "mechanism.temperature must be a positive number, got 0.0"),
        (MonotoneNet, {"temperature": "hot"}, "mechanism.temperature must be a positive number, got 'hot'"),
        (MonotoneNet, {"quad_nodes": 130}, "mechanism.quad_nodes must be a multiple of mechanism.quad_order (4)"),
        (MonotoneNet, {"quad_nodes": 0}, "mechanism.quad_nodes must be a positive integer, got 0"),
        (MonotoneNet, {"shared": "yes"}, "mechanism.shared must be true or false, got 'yes'"),
        (MonotoneNet, {"hidden": [3]}, "unknown key(s) in [mechanism] for monotone: hidden"),
    ],
)
def test_bad_options_raise_one_line_config_error(cls, options, message):
    with pytest.raises(ConfigError) as info:
        cls.from_config(iid_setting(), options, jax.random.PRNGKey(0))
    text = str(info.value)
    assert message in text and "\n" not in text
