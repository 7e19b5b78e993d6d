"""Bounded memory (issue 8): the chunked evaluators give the numbers of the unchunked ones.

Each evaluation runs twice on the same mechanism and seed: under a tiny budget
(``eval.memory_mb`` = 0.01 MiB ≈ 10 kB, below one unit of most kernels, so every kernel takes one
profile, report or own type per compiled call — many chunks, padded last chunks, the interim
best response split over own types as well as reports) and under a huge one (10⁵ MiB: every
kernel in one call). The chunking is recorded at :func:`diffmech.memory.clamp`, so the tests also
check that the tiny budget did chunk and the huge one did not.

Tolerance. Both runs do the same per-profile arithmetic in float32 with the same random starts
(drawn per profile, not per chunk); they differ only in the batch sizes XLA compiles for, whose
CPU kernels may vectorise — and so round — differently: a few ulp (ε = 1.2·10⁻⁷) per operation,
carried through ≤ 5 Adam steps and a mean over ≤ 64 rows. rtol 10⁻⁵ (≈ 100 ε) with atol 10⁻⁶ for
values near zero separates round-off from a real difference (a wrong start, a dropped or
duplicated padded row changes these metrics at 10⁻³ or more).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import diffmech.memory as M
from diffmech.config import EvalConfig, TrainConfig, _dataclass_from
from diffmech.errors import ConfigError
from diffmech.evaluate import evaluate
from diffmech.evaluate_interim import evaluate_interim
from diffmech.mechanisms import mechanism_from_config
from diffmech.settings import setting_from_config

TINY, HUGE = 0.01, 1e5
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture
def chunking(monkeypatch):
    """Records (units per call, total units) of every chunked call."""
    seen: list[tuple[int, int]] = []
    original = M.clamp

    def clamp(size, total, cfg, evals_per_unit=1):
        out = original(size, total, cfg, evals_per_unit)
        seen.append((out, int(total)))
        return out

    monkeypatch.setattr(M, "clamp", clamp)
    return seen


def _compare(a: dict, b: dict, keys) -> None:
    for k in keys:
        assert a[k] == pytest.approx(b[k], rel=RTOL, abs=ATOL), k


def test_ex_post_evaluate_is_the_same_in_one_call_and_in_many(chunking):
    # 2 bidders × 3 items: no exhaustive grid, so the attack uses random starts (2 per profile and
    # bidder, plus the truthful report); the training estimate's 3 random starts, steps and step
    # size are the attack's, so both run one compiled kernel (a short test)
    items = [{"dist": "uniform", "low": 0.0, "high": h} for h in (1.0, 1.5, 2.0)]
    s = setting_from_config({"kind": "multi_item", "priors": [items, items]})
    mech = mechanism_from_config(s, {"kind": "regretnet", "hidden": [8]}, jax.random.PRNGKey(0))
    train = TrainConfig(train_starts=3, inner_steps=5, inner_lr=0.02)
    runs = {}
    for mb in (HUGE, TINY):
        chunking.clear()
        cfg = EvalConfig(samples=20, attack_starts=2, attack_steps=5, attack_lr=0.02, memory_mb=mb)
        runs[mb] = evaluate(mech, s, cfg, train_cfg=train, benchmarks=False), list(chunking)
    (one, calls_one), (many, calls_many) = runs[HUGE], runs[TINY]
    assert calls_one and all(size == total for size, total in calls_one)
    assert all(size < total for size, total in calls_many), calls_many  # every kernel in several calls
    assert one["regret_mean"] > 1e-3 and one["train_regret_mean"] > 1e-3  # an untrained net: regret to measure
    _compare(one, many, ("revenue", "welfare", "regret_mean", "regret_max", "train_regret_mean",
                         "ir_violation", "ir_violation_max"))


def test_interim_evaluate_is_the_same_in_one_call_and_in_many(chunking):
    # n = 2, two goods: quadrature over the other agent, a product report grid, then gradient ascent
    s = setting_from_config({"kind": "public_goods", "n_agents": 2, "n_goods": 2, "prior": {"dist": "uniform", "low": 0, "high": 1}, "cost": 1.0})
    mech = mechanism_from_config(s, {"kind": "public_simple", "hidden": [8]}, jax.random.PRNGKey(0))
    runs = {}
    for mb in (HUGE, TINY):
        chunking.clear()
        cfg = EvalConfig(samples=32, interim_types=8, interim_nodes=8, grid_points=25, attack_steps=3, memory_mb=mb)
        runs[mb] = evaluate_interim(mech, s, cfg, benchmarks=False), list(chunking)
    (one, calls_one), (many, calls_many) = runs[HUGE], runs[TINY]
    assert one["interim_method"] == "quadrature" and one["attack"]["steps"] == 3
    assert all(size == total for size, total in calls_one)
    assert sum(total > size for size, total in calls_many) >= 3  # ex ante rows, reports and own types chunked
    assert one["interim_regret_mean"] > 1e-3
    _compare(one, many, ("surplus", "revenue", "welfare", "cost", "interim_regret_mean", "interim_regret_max",
                         "train_interim_regret_mean", "ir_violation", "ir_violation_max"))


def test_traced_estimate_bounds_the_compiled_memory():
    """The budget's count (inputs + every intermediate of the trace) is an upper bound of what XLA
    allocates for the call (arguments + outputs + temporaries), for the attack's gradient kernel."""
    import equinox as eqx
    import jax.numpy as jnp

    from diffmech.evaluate import _gradient_attack

    s = setting_from_config({"kind": "multi_item", "prior": {"dist": "uniform", "low": 0.0, "high": 1.0}, "n_agents": 2, "n_items": 3})
    mech = mechanism_from_config(s, {"kind": "regretnet", "hidden": [8]}, jax.random.PRNGKey(0))
    types, starts = jnp.zeros((16, 2, 3)), jnp.zeros((16, 4, 2, 3))
    params, static = eqx.partition((mech, s), eqx.is_array)
    call = jax.jit(lambda p, t, m: _gradient_attack(*eqx.combine(p, static), t, m, 5, 0.02))
    stats = call.lower(params, types, starts).compile().memory_analysis()
    if stats is None:
        pytest.skip("this backend gives no compiled memory analysis")
    xla = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    cost = M.unit_cost(_gradient_attack, lambda u: (mech, s, M.shaped(types, u), M.shaped(starts, u), 5, 0.02))
    assert cost.fixed + 16 * cost.per_unit == M.traced_bytes(_gradient_attack, mech, s, types, starts, 5, 0.02)  # affine, exactly
    assert xla <= cost.fixed + 16 * cost.per_unit


def test_memory_budget_is_validated_and_old_chunk_configs_still_load():
    for bad in (0, -1.0, float("inf"), "big", True):
        with pytest.raises(ConfigError, match="memory_mb"):
            EvalConfig(memory_mb=bad)
    with pytest.raises(ConfigError, match="chunk"):
        EvalConfig(chunk=-1)
    cfg = _dataclass_from(EvalConfig, {"chunk": 4096, "memory_mb": 512}, "eval")  # an older [eval] table
    assert cfg.memory_mb == 512.0 and M.budget_bytes(cfg) == 512 << 20
    assert M.clamp(10**6, 10**6, cfg, evals_per_unit=8) == 512  # the cap, in mechanism evaluations
    assert M.clamp(0, 10, EvalConfig()) == 1 and M.clamp(50, 10, EvalConfig()) == 10
    assert M.Cost(fixed=100, per_unit=10).units(155) == 5 and M.Cost(fixed=100, per_unit=10).units(50) == 0
    np.testing.assert_equal(M.shaped(np.zeros((3, 7, 2), np.float32), 5, axis=1).shape, (3, 5, 2))
