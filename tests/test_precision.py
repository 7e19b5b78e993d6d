"""``[mechanism] matmul_dtype = "bfloat16"``: network products with bfloat16 operands and float32
accumulation (:mod:`diffmech.mechanisms.neural.precision`).

Bounds used below (derived in that module's docstring):

* (P1) one dense output y = Σ_k w_k x_k + c: |ŷ − y| ≤ β_K Σ_k |w_k x_k| + 2^-23 (|y| + Σ|w x| + |c|),
  β_K = (2u + u²)(1 + K 2^-24) + K 2^-24 with u = 2^-8 (bfloat16 rounding of each operand, exact
  float32 products, float32 accumulation); the last term is the float32 bias addition, with room.
* (P2) through tanh layers: d_{l+1} ≤ |W_l| (β |z_l| + (1 + β) d_l) + 1e-6 (the 1e-6 covers the float32
  bias addition and tanh of values of order one, a few ulps of 1.2e-7).
* softmax: ∂p_i/∂s_j = p_i(δ_ij − p_j), a row of ℓ1 norm 2 p_i (1 − p_i) ≤ 1/2, so a perturbation e of
  the logits moves each probability by at most ½‖e‖_∞; sigmoid' ≤ 1/4.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech.errors import ConfigError
from diffmech.mechanisms.neural.precision import dense, rounding_bound
from diffmech.mechanisms.neural.regretnet import RegretNet

U32 = 2.0**-24


def test_dense_bfloat16_error_is_within_the_rounding_bound_and_not_zero():
    """(P1) elementwise for a 64×300 layer against the float64 product; the float32 layer is within
    its own bound K·2^-24 Σ|wx|, and the bfloat16 one differs from it (the option acts)."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    layer = eqx.nn.Linear(300, 64, key=k1)
    layer = eqx.tree_at(lambda l: l.bias, layer, jax.random.normal(k3, (64,)))
    x = jax.random.normal(k2, (300,))
    w64, c64, x64 = (np.asarray(a, np.float64) for a in (layer.weight, layer.bias, x))
    exact = w64 @ x64 + c64
    absprod = np.abs(w64) @ np.abs(x64)
    y16 = np.asarray(dense(layer, x, "bfloat16"), np.float64)
    y32 = np.asarray(dense(layer, x, "float32"), np.float64)
    slop = 2 * U32 * (np.abs(exact) + absprod + np.abs(c64))
    assert np.all(np.abs(y16 - exact) <= rounding_bound(300) * absprod + slop)
    assert np.all(np.abs(y32 - exact) <= 300 * U32 * absprod + slop)
    assert np.max(np.abs(y16 - y32) / absprod) > 1e-4  # ~2^-8 relative, far above float32's ~1e-7
    assert dense(layer, x, "bfloat16").dtype == jnp.float32


def _regretnet_reference(m: RegretNet, reports: np.ndarray):
    """Float64 forward of a tanh RegretNet (items allocation, IR payments, bounds [0, 1]) and the
    (P2) bounds on |alloc_bf16 − alloc| and |pay_bf16 − pay| (module docstring)."""
    z = reports.reshape(reports.shape[0], -1)
    d = np.zeros_like(z)

    def layer(lin, z, d):
        w, c = np.asarray(lin.weight, np.float64), np.asarray(lin.bias, np.float64)
        beta = rounding_bound(w.shape[1])
        return z @ w.T + c, (beta * np.abs(z) + (1 + beta) * d) @ np.abs(w).T + 1e-6

    for lin in m.layers:
        a, d = layer(lin, z, d)
        z = np.tanh(a)  # 1-Lipschitz: the bound passes unchanged
    s, ds = layer(m.alloc_head, z, d)
    f, df = layer(m.pay_head, z, d)
    n, items = m.n_agents, m.n_items
    s = s.reshape(-1, items, n + 1)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    alloc = np.swapaxes(p[..., 1:], 1, 2)  # (batch, n, items)
    d_alloc = np.broadcast_to(0.5 * ds.reshape(-1, items, n + 1).max(-1)[:, None, :], alloc.shape) + 1e-6
    value = np.sum(reports * alloc, -1)
    sig = 1 / (1 + np.exp(-f))
    d_pay = 0.25 * df * (value + np.sum(reports * d_alloc, -1)) + np.sum(reports * d_alloc, -1) + 1e-6
    return alloc, sig * value, d_alloc, d_pay


def test_regretnet_bfloat16_forward_is_within_the_propagated_bound_and_gradients_are_finite():
    """2 bidders × 2 items, RegretNet [64, 32] tanh, same key in both modes: the bfloat16 outcome is
    within the (P2) + softmax/sigmoid bound of the float64 forward, the float32 one within 1e-5 of
    it (a check of the reference), the two modes differ by more than float32 rounding, and the
    gradient of the mean revenue is finite float32 in both."""
    cfg = dm.load_config("experiments/two_by_two_additive.toml")
    cfg["mechanism"]["hidden"] = [64, 32]
    models = {}
    for dt in ("float32", "bfloat16"):
        run = dm.resolve(dm.apply_overrides(cfg, [f'mechanism.matmul_dtype="{dt}"']))
        models[dt] = run.build_mechanism(jax.random.PRNGKey(3))
    reports = run.setting.sample(jax.random.PRNGKey(4), 256)
    alloc, pay, d_alloc, d_pay = _regretnet_reference(models["bfloat16"], np.asarray(reports, np.float64))
    out = {dt: m(reports) for dt, m in models.items()}
    a16, p16 = np.asarray(out["bfloat16"].alloc, np.float64), np.asarray(out["bfloat16"].payments, np.float64)
    assert np.all(np.abs(a16 - alloc) <= d_alloc) and np.all(np.abs(p16 - pay) <= d_pay)
    # the worst-case bound is an order of magnitude below the outputs' ranges (alloc ≤ 1, pay ≤ Σ_j b_ij ≤ 2)
    assert d_alloc.max() < 0.1 and d_pay.max() < 0.2
    np.testing.assert_allclose(np.asarray(out["float32"].alloc), alloc, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["float32"].payments), pay, atol=1e-5)
    assert np.max(np.abs(a16 - np.asarray(out["float32"].alloc))) > 1e-5

    def revenue(params, static):
        return jnp.mean(jnp.sum(eqx.combine(params, static)(reports).payments, -1))

    for m in models.values():
        params, static = eqx.partition(m, eqx.is_inexact_array)
        grads = jax.tree_util.tree_leaves(jax.grad(revenue)(params, static))
        assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in grads)


KINDS = {
    "regretnet": ("experiments/two_by_two_additive.toml", None),
    "equivariant": ("experiments/two_by_two_additive.toml", {"kind": "equivariant", "channels": [8]}),
    "public_simple": ("experiments/public_goods_one_good.toml", None),
    "public_general": ("experiments/public_goods_one_good.toml", {"kind": "public_general", "hidden": [8]}),
    "social_choice_net": ("experiments/deterministic_two_agents.toml", None),
    "bb_payments": ("experiments/ke_private_good.toml", None),
    "symmetric_auction": ("experiments/deb_pai_u01_u02_learned.toml", "no_init"),
}


def _config(kind):
    path, mech = KINDS[kind]
    cfg = dm.load_config(path)
    if isinstance(mech, dict):
        cfg["mechanism"] = mech
    elif mech == "no_init":
        cfg["mechanism"].pop("init", None)
    return cfg


def test_every_network_mechanism_takes_the_option_validates_it_and_a_checkpoint_keeps_it(tmp_path):
    """Each network mechanism carries the option to every network it builds; a bad value is one
    ConfigError line naming the key; a published checkpoint rebuilds the bfloat16 RegretNet from its
    config, and the loaded mechanism computes exactly what the saved one does."""
    from diffmech.checkpoint import save_published

    for kind in KINDS:
        cfg = _config(kind)
        with pytest.raises(ConfigError, match="matmul_dtype must be one of float32, bfloat16") as err:
            dm.resolve(dm.apply_overrides(cfg, ['mechanism.matmul_dtype="float16"'])).build_mechanism(jax.random.PRNGKey(0))
        assert "\n" not in str(err.value)
        m = dm.resolve(dm.apply_overrides(cfg, ['mechanism.matmul_dtype="bfloat16"'])).build_mechanism(jax.random.PRNGKey(0))
        nets = [x for x in jax.tree_util.tree_leaves(m, is_leaf=lambda x: hasattr(x, "matmul_dtype")) if hasattr(x, "matmul_dtype")]
        assert nets and all(x.matmul_dtype == "bfloat16" for x in nets), kind
        default = dm.resolve(cfg).build_mechanism(jax.random.PRNGKey(0))
        nets = [x for x in jax.tree_util.tree_leaves(default, is_leaf=lambda x: hasattr(x, "matmul_dtype")) if hasattr(x, "matmul_dtype")]
        assert nets and all(x.matmul_dtype == "float32" for x in nets), kind

    cfg = dm.apply_overrides(_config("regretnet"), ['mechanism.matmul_dtype="bfloat16"', "mechanism.hidden=[16]"])
    run = dm.resolve(cfg)
    m = run.build_mechanism(jax.random.PRNGKey(5))
    save_published(tmp_path / "ck", m, run.to_toml(), seed=0, step=0)
    loaded = dm.load(tmp_path / "ck").mechanism
    assert loaded.matmul_dtype == "bfloat16"
    x = run.setting.sample(jax.random.PRNGKey(6), 32)
    np.testing.assert_array_equal(np.asarray(loaded(x).payments), np.asarray(m(x).payments))
