"""Learn a symmetric auction and its bidding strategies for revenue under a Bayes–Nash constraint.

Deb–Pai (2017) symmetric auctions (issue 6 parts 4b and 6). The auction is a payment rule p^s(b, b_−)
(the same for every bidder, symmetric in the others' bids) with the allocation "the highest bid
wins if it is ≥ the reserve r"; bidder i bids σ_i(v_i). We learn p^s and σ = (σ_1, …, σ_n) jointly:

    max  R = E_v Σ_i p^s(σ_i(v_i), σ_−i(v_−i))
    s.t. g_i = E_{v_i}[regret_i(v_i)] = 0     (σ is a Bayes–Nash equilibrium: no profitable bid)
         h_i = E_{v_i}[(−U_i(v_i))⁺] = 0       (interim IR)
    [+ optionally the ex post IR penalty w · E Σ_i (p^s − v_i a^s_i)⁺].

Reserve gate. With a reserve, bidder i's interim allocation A_i(b) = 1{b ≥ r} Π_{j≠i} G_j(b) jumps by
A_i(r) at b = r, and in equilibrium her interim payment must jump by v_i* A_i(r) there (v_i*, the type
bidding r, is indifferent between winning sometimes and never). A continuous p^s cannot do that: the
types just below v_i* would gain ≈ v_i* A_i(r) by bidding r. :class:`ReserveGate` therefore writes the
rule as p^s(b, b_−) = 1{b ≥ r} · q(b, b_−) with a learned q (bids below the reserve lose and pay
nothing), which puts the jump where the allocation jumps. Restricting bids below r to pay 0 loses
nothing for revenue: such bids never win, and in the optimal (Myerson) mechanism the types that never
win pay 0 (an interim IR constraint that binds).

Training allocation (smooth relaxation; the evaluation always uses the hard auction). At temperature
τ the allocation is a softmax over the bids and a reserve slot,

    ã_i(b) = exp(b_i/τ) / (exp(r/τ) + Σ_j exp(b_j/τ)),                                     (S1)

and the reserve gate becomes σ((b − r)/τ) (logistic), the same smoothing of the same step. As τ → 0,
(S1) → 1{b_i > max(b_−i, r)}; τ is annealed geometrically from τ_0 to τ_1 over training.
The relaxation can be exploited: bids within a few τ of r are only partly allocated *and* partly
charged, so a violation of interim IR there is seen as σ((b − r)/τ)·U, and training learns to crowd the
marginal types' bids next to r and overcharge them, which the hard auction reveals as a gain from
bidding below r. Straight-through estimates remove this: a quantity takes the value of the hard
auction and the gradient of the relaxation, x = x_hard + x_soft − stop_gradient(x_soft).
With ``straight_through=True`` (or for the last fraction f of the steps) ã, p̃ in (S2) take the hard
auction's values, so the regret, IR and revenue estimates are those of the auction that is evaluated
(with the 1/S staircase of a hard allocation against S sampled bids); only the gradients are smoothed.
The gradients with respect to a bid location carry factors 1/τ (the slopes of the logistic steps), so
when switching late, at small τ, keep the strategies fixed (``straight_through_strategy_lr=0``) and let
the hard-valued phase correct the rule only.

Sampling. Each step draws B own values per bidder, stratified (v_ik = F_i⁻¹((k + U_k)/B)), and S
profiles of the others' values by Latin hypercube sampling (column j: F_j⁻¹((π_j(s) + U_sj)/S) with a
random permutation π_j), independent of the own values. Bidder i's "others" are the S profiles with
column i removed; all her bids in a step are evaluated against the same S profiles (common random
numbers), so differences between bids have little Monte Carlo noise, and each interim mean is
unbiased:

    Â_i(b) = (1/S) Σ_s ã(b, σ_−i(v_−i^s)),    P̂_i(b) = (1/S) Σ_s p̃^s(b, σ_−i(v_−i^s)).       (S2)

Deviations. A grid of D bids covering the bid range [min_i σ_i(low_i), max_i σ_i(high_i)] (and r)
extended by ``margin`` × its width on both sides, so bids off every bidder's bid space are tried,
each grid point drawn uniformly inside its cell (a jittered grid, fresh each step); plus the
equilibrium bid σ_i(v) itself. With U_i(v, b) = v Â_i(b) − P̂_i(b),

    regret_i(v) = max_{b ∈ grid ∪ {σ_i(v)}} U_i(v, b) − U_i(v, σ_i(v)) ≥ 0,                    (S3)

exactly 0 when the grid is empty; g_i is its mean over the B own values. The grid is computed from
stopped gradients, so the max passes gradients to the rule and to the others' strategies (through
Â_i, P̂_i) but never moves a deviation bid; U_i(v, σ_i(v)) also moves σ_i.

Interim IR: h_i = mean_k (−U_i(v_ik, σ_i(v_ik)))⁺. Revenue: R̂ = Σ_i mean_k P̂_i(σ_i(v_ik)), an unbiased
estimate of E Σ_i p^s (own values independent of the others' profiles). Ex post IR (Deb–Pai
Section 5): each pair (own value v_ik, others' profile s) is an equilibrium profile, and
Ê_ep = Σ_i mean_{k,s} (p̃^s(σ_i(v_ik), b_−i^s) − v_ik ã(σ_i(v_ik), b_−i^s))⁺.

Objective (augmented Lagrangian, as RegretNet, Dütting et al. 2019):

    L = −R̂ + Σ_i λ_i g_i + (ρ/2) Σ_i g_i² + Σ_i μ_i h_i + (ρ/2) Σ_i h_i² + w Ê_ep,

minimised by Adam (separate learning rates for the rule and the strategies, cosine decay to
``lr_final`` × lr) in one jitted step covering every bidder (vmap over bidders; no Python loop over
samples, bids or bidders in the compiled step). Every ``update_every`` steps λ_i ← λ_i + ρ ḡ_i,
μ_i ← μ_i + ρ h̄_i (means over those steps) and ρ ← min(ρ·``rho_growth``, ``rho_max``).

Learned rules. Any :class:`~diffmech.mechanisms.symmetric_auction.PaymentRule` with array leaves can be
trained (e.g. :class:`~diffmech.mechanisms.neural.symmetric_payment.DeepSetsPayment`, which costs one
network call per (bid, profile) pair, B·S per bidder and step). :class:`SeparablePayment` is the
low-rank form Σ_k α_k(b) ψ̄_k(b_−) of Deb–Pai's event rules, which costs B + S calls, so S can be in
the thousands. Equilibrium payments have kinks where A_i has kinks (at the ends of the other bidders'
bid spaces, e.g. P_i is flat above the others' highest bid), so ReLU networks (piecewise linear, kinks
anywhere) fit them far better than tanh networks.

Warm start (:func:`warm_start`, or ``init_from=h`` in :func:`train_symmetric`): strategies from a hierarchical mechanism's index
(:meth:`~diffmech.mechanisms.neural.bid_strategy.MonotoneStrategy.init`) and the rule from
:func:`~diffmech.symmetric_fit.fit_payment_rule` of that mechanism (which fits the interim payments
(5) under index bidding).

Evaluation: :func:`estimate` computes the same quantities with large samples (chunked) at any τ or
with the hard auction (τ = None); :func:`~diffmech.equilibrium.check_equilibrium` is the independent
check (hard allocation, deterministic quadrature over the others, bid grid of step 0.005).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .errors import ConfigError, TrainingDiverged
from .mechanisms.neural.symmetric_payment import ReserveGate, relaxed_payment_outer
from .mechanisms.symmetric_auction import PaymentRule, Strategy, SymmetricAuction, allocation_against, others_index

__all__ = ["StepSizes", "SymmetricOptions", "estimate", "soft_allocation_outer", "train_run", "train_symmetric", "warm_start"]

#: Adam's moment estimates; the learning rates are applied separately (dynamic, per parameter group)
_ADAM = optax.scale_by_adam()


def soft_allocation_outer(own: Float[Array, " B"], others: Float[Array, "S m"], reserve, tau) -> Float[Array, "B S"]:
    """ã(own[b], others[s]) of (S1): σ(own/τ − c_s) with c_s = logsumexp(r/τ, others[s]/τ)."""
    z = jnp.concatenate([jnp.full(others.shape[:1] + (1,), reserve, others.dtype), others], axis=1) / tau
    c = jax.nn.logsumexp(z, axis=1)  # (S,)
    return jax.nn.sigmoid(own[:, None] / tau - c[None, :])


def _hard_allocation_outer(own, others, reserve):
    shape = (own.shape[0], others.shape[0])
    return allocation_against(jnp.broadcast_to(own[:, None], shape), jnp.broadcast_to(others[None], shape + others.shape[1:]), reserve)


def _straight_through(hard, soft):
    """The value of ``hard`` with the gradient of ``soft`` (and none of ``hard``'s)."""
    return jax.lax.stop_gradient(hard) + (soft - jax.lax.stop_gradient(soft))


def _bid_tables(rule, bids, vals, others, reserve, tau, mode: str = "none"):
    """For one bidder: bids ``(M,)`` (with the values ``vals`` ``(M,)`` they are played at), others
    ``(S, m)`` → Â, P̂ (S2), the ex post excess mean_s (p − v a)⁺ and rate mean_s 1{p > v a + 1e-9}.
    ``tau`` None: the hard auction. Otherwise the relaxation; with ``mode`` "all" the values of the
    hard auction and the gradients of the relaxation (module docstring)."""
    if tau is None:
        a, p = _hard_allocation_outer(bids, others, reserve), relaxed_payment_outer(rule, bids, others, None)
    else:
        a, p = soft_allocation_outer(bids, others, reserve, tau), relaxed_payment_outer(rule, bids, others, tau)
        if mode == "all":
            a = _straight_through(_hard_allocation_outer(bids, others, reserve), a)
            p = _straight_through(relaxed_payment_outer(rule, bids, others, None), p)
    excess = p - vals[:, None] * a
    return a.mean(axis=1), p.mean(axis=1), jax.nn.relu(excess).mean(axis=1), (excess > 1e-9).mean(axis=1)


def _tables(rule, bids, vals, others, reserve, tau, chunk: int | None, mode: str = "none"):
    """:func:`_bid_tables` for every bidder (vmap): bids, vals ``(n, M)``, others ``(n, S, m)``; with
    ``chunk`` the bids are processed ``chunk`` at a time by ``lax.map`` (M must be a multiple)."""
    one = jax.vmap(lambda b, v, o: _bid_tables(rule, b, v, o, reserve, tau, mode))
    if chunk is None or chunk >= bids.shape[1]:
        return one(bids, vals, others)
    n, M = bids.shape
    bc = bids.reshape(n, M // chunk, chunk).transpose(1, 0, 2)
    vc = vals.reshape(n, M // chunk, chunk).transpose(1, 0, 2)
    out = jax.lax.map(lambda bv: one(bv[0], bv[1], others), (bc, vc))
    return tuple(x.transpose(1, 0, 2).reshape(n, M) for x in out)


def _icdf_columns(priors, u: Float[Array, "N n"]) -> Float[Array, "N n"]:
    """Column j of ``u`` mapped through F_j⁻¹ (one icdf per prior, assembled at trace time)."""
    return jnp.stack([jnp.asarray(p.icdf(u[:, j]), u.dtype) for j, p in enumerate(priors)], axis=1)


def _sample(priors, key, batch: int, others: int, dtype):
    """Stratified own values ``(B, n)`` and Latin-hypercube others' profiles ``(S, n)`` (docstring)."""
    n = len(priors)
    k1, k2, k3 = jax.random.split(key, 3)
    u_own = (jnp.arange(batch, dtype=dtype)[:, None] + jax.random.uniform(k1, (batch, n), dtype)) / batch
    perm = jax.vmap(lambda k: jax.random.permutation(k, others))(jax.random.split(k2, n)).T.astype(dtype)  # (S, n)
    u_oth = (perm + jax.random.uniform(k3, (others, n), dtype)) / others
    return _icdf_columns(priors, u_own), _icdf_columns(priors, u_oth)


def _deviation_grid(strategy, priors, key, deviations: int, margin: float, reserve, dtype):
    """The jittered grid of ``deviations`` bids over the extended bid range (stopped gradient)."""
    lows = jnp.asarray([p.low for p in priors], dtype)
    highs = jnp.asarray([p.high for p in priors], dtype)
    ends = jax.lax.stop_gradient(strategy(jnp.stack([lows, highs])))  # (2, n): σ_i at the support ends
    lo = jnp.minimum(jnp.min(ends), reserve)
    hi = jnp.maximum(jnp.max(ends), reserve)
    width = jnp.maximum(hi - lo, 1e-3)
    lo, hi = lo - margin * width, hi + margin * width
    cell = (hi - lo) / deviations
    return lo + (jnp.arange(deviations, dtype=dtype) + jax.random.uniform(key, (deviations,), dtype)) * cell


class StepSizes(NamedTuple):
    """Static sizes of one step: own values per bidder (B), others' profiles (S), grid bids (D),
    the grid's margin (fraction of the bid range on each side), and the bid chunk for big estimates."""

    batch: int
    others: int
    deviations: int
    margin: float = 0.25
    chunk: int | None = None
    mode: str = "none"


def _quantities(rule, strategy, priors, key, reserve, tau, cfg: StepSizes) -> dict[str, Array]:
    """Everything the objective needs, estimated on one draw (module docstring, (S2)–(S3))."""
    n = len(priors)
    dtype = jnp.result_type(float)
    k_s, k_g = jax.random.split(key)
    own_vals, prof = _sample(priors, k_s, cfg.batch, cfg.others, dtype)
    own_bids = strategy(own_vals)  # (B, n)
    prof_bids = strategy(prof)  # (S, n)
    others = jnp.transpose(prof_bids[:, others_index(n)], (1, 0, 2))  # (n, S, n − 1)
    D = cfg.deviations
    v = own_vals.T  # (n, B)
    if D > 0:
        grid = _deviation_grid(strategy, priors, k_g, D, cfg.margin, reserve, dtype)
        bids = jnp.concatenate([jnp.broadcast_to(grid, (n, D)), own_bids.T], axis=1)
        vals = jnp.concatenate([jnp.zeros((n, D), dtype), v], axis=1)
    else:
        bids, vals = own_bids.T, v
    A, P, ep_amount, ep_rate = _tables(rule, bids, vals, others, reserve, tau, cfg.chunk, cfg.mode)
    u_eq = v * A[:, D:] - P[:, D:]  # (n, B)
    if D > 0:
        u_dev = v[:, :, None] * A[:, None, :D] - P[:, None, :D]  # (n, B, D)
        regret = jax.nn.relu(jnp.max(u_dev, axis=2) - u_eq)
    else:
        regret = jnp.zeros_like(u_eq)
    return {
        "revenue": jnp.sum(jnp.mean(P[:, D:], axis=1)),
        "regret": regret.mean(axis=1),
        "regret_max": regret.max(axis=1),
        "ir": jax.nn.relu(-u_eq).mean(axis=1),
        "ex_post": jnp.sum(ep_amount[:, D:].mean(axis=1)),
        "ex_post_rate": ep_rate[:, D:].mean(),
        "regret_values": regret,
        "values": v,
    }


def _loss(params, static, key, hyper, priors, cfg: StepSizes):
    rule, strategy = eqx.combine(params, static)
    q = _quantities(rule, strategy, priors, key, hyper["reserve"], hyper["tau"], cfg)
    g, h = q["regret"], q["ir"]
    rho = hyper["rho"]
    loss = (
        -q["revenue"]
        + jnp.sum(hyper["lam"] * g) + 0.5 * rho * jnp.sum(g * g)
        + jnp.sum(hyper["mu"] * h) + 0.5 * rho * jnp.sum(h * h)
        + hyper["ex_post_weight"] * q["ex_post"]
    )
    aux = {k: q[k] for k in ("revenue", "regret", "regret_max", "ir", "ex_post", "ex_post_rate")}
    aux["loss"] = loss
    return loss, aux


@eqx.filter_jit
def _step(params, static, opt_state, duals, key, hyper, priors, cfg: StepSizes, update_every: int, ir_constraint: bool):
    """One Adam step on the augmented Lagrangian (module docstring), every bidder at once, and the
    dual update on the device: sum_g += g, sum_h += h, and when ``hyper["update"]`` (step t with
    (t + 1) % update_every == 0) λ ← λ + ρ sum_g/K, μ ← μ + ρ sum_h/K (if ``ir_constraint``), sums reset
    (selected by ``jnp.where``, so the loop never reads the estimates back to the host)."""
    hyper = {**hyper, "lam": duals["lam"], "mu": duals["mu"]}
    (_, aux), grads = eqx.filter_value_and_grad(_loss, has_aux=True)(params, static, key, hyper, priors, cfg)
    updates, opt_state = _ADAM.update(grads, opt_state)
    rule_u, strat_u = updates
    updates = (jax.tree.map(lambda u: -hyper["lr_rule"] * u, rule_u), jax.tree.map(lambda u: -hyper["lr_strategy"] * u, strat_u))
    sum_g, sum_h = duals["sum_g"] + aux["regret"], duals["sum_h"] + aux["ir"]
    update, rho = hyper["update"], hyper["rho"]
    lam = jnp.where(update, duals["lam"] + rho * (sum_g / update_every), duals["lam"])
    mu = jnp.where(update, duals["mu"] + rho * (sum_h / update_every), duals["mu"]) if ir_constraint else duals["mu"]
    duals = {"lam": lam, "mu": mu, "sum_g": jnp.where(update, 0.0, sum_g), "sum_h": jnp.where(update, 0.0, sum_h)}
    return eqx.apply_updates(params, updates), opt_state, duals, aux


@eqx.filter_jit
def _estimate_jit(rule, strategy, priors, key, reserve, tau, cfg: StepSizes):
    return _quantities(rule, strategy, priors, key, reserve, tau, cfg)


def estimate(auction: SymmetricAuction, priors, *, key: PRNGKeyArray, temperature: float | None = None, batch: int = 1024,
             others: int = 1024, deviations: int = 512, margin: float = 0.25, chunk: int = 64,
             straight_through: bool = False) -> dict[str, Any]:
    """The training estimator (S1)–(S3) on one large draw: ``temperature`` τ (soft allocation and gate)
    or ``None`` for the hard auction; ``straight_through``: at τ, the values of the hard auction with the
    relaxation's gradients (what the straight-through phase of training sees). Returns numpy/float: ``revenue``, per bidder ``regret`` (mean),
    ``regret_max`` (over the B own values), ``ir``, ``ex_post`` (mean excess), ``ex_post_rate``, and
    the ``(n, B)`` arrays ``values`` and ``regret_values`` (regret_i at each own value)."""
    priors = tuple(priors)
    if temperature is not None and not temperature > 0:
        raise ConfigError(f"temperature must be positive (or None for the hard auction), got {temperature!r}")
    M = deviations + batch
    chunk = max(1, min(chunk, M))
    if M % chunk or deviations % chunk:
        raise ConfigError(f"deviations ({deviations}) and batch ({batch}) must be multiples of chunk ({chunk})")
    cfg = StepSizes(batch, others, deviations, margin, chunk, "all" if straight_through else "none")
    dtype = jnp.result_type(float)
    tau = None if temperature is None else jnp.asarray(temperature, dtype)
    q = _estimate_jit(auction.rule, auction.strategy, priors, key, jnp.asarray(auction.reserve, dtype), tau, cfg)
    out = {}
    for k in ("revenue", "ex_post", "ex_post_rate"):
        out[k] = float(q[k])
    for k in ("regret", "regret_max", "ir", "regret_values", "values"):
        out[k] = np.asarray(q[k], np.float64)
    return out


def warm_start(h, rule: PaymentRule, *, key: PRNGKeyArray, n_knots: int = 16, reserve: float = 0.0, gate: bool = True,
               **fit_options) -> tuple[PaymentRule, Strategy]:
    """Rule and strategies that start at the hierarchical mechanism ``h``: σ_i fitted to the index
    I_i (:meth:`MonotoneStrategy.init`) and the rule (reserve-gated if ``gate``) fitted to h's interim
    payments by :func:`~diffmech.symmetric_fit.fit_payment_rule` (``fit_options`` go there)."""
    from .mechanisms.neural.bid_strategy import MonotoneStrategy
    from .symmetric_fit import fit_payment_rule

    if gate and not isinstance(rule, ReserveGate):
        rule = ReserveGate(rule, float(reserve))
    rule, _ = fit_payment_rule(rule, h, key=key, **fit_options)
    return rule, MonotoneStrategy.init(h, n_knots)


def _temperatures(temperature, steps: int) -> np.ndarray:
    if isinstance(temperature, (tuple, list)):
        if len(temperature) != 2:
            raise ConfigError(f"temperature must be a number or a (start, end) pair, got {temperature!r}")
        t0, t1 = float(temperature[0]), float(temperature[1])
    else:
        t0 = t1 = float(temperature)
    if not (t0 > 0 and t1 > 0 and math.isfinite(t0) and math.isfinite(t1)):
        raise ConfigError(f"temperature must be positive and finite, got {temperature!r}")
    frac = np.arange(steps) / max(steps - 1, 1)
    return t0 * (t1 / t0) ** frac


class _Plan(NamedTuple):
    """Everything fixed for one training run: the priors, the schedules and the dual rule."""

    priors: tuple
    steps: int
    taus: np.ndarray
    st_from: int  # the straight-through phase: steps st_from … steps − 1
    sizes: tuple  # (relaxed, straight-through) StepSizes
    lr: float
    lr_strategy: float
    lr_strategy_st: float
    lr_final: float
    ex_post_ir_weight: float
    reserve: float
    update_every: int
    rho_growth: float
    rho_max: float
    ir_constraint: bool


def _initial_state(params, n: int, lam0: float, rho0: float, ir_constraint: bool) -> dict:
    """The training state after 0 steps. The multipliers λ, μ live on the device and are updated
    inside the compiled step every ``update_every`` steps, from ``sum_g``/``sum_h`` (the constraint
    estimates accumulated since the last update). ρ depends on the step count only
    (ρ_k = min(ρ_0·growth^k, ρ_max) after k updates), so it is kept on the host (float64). The whole
    dict is saved for resume (array leaves only)."""
    dtype = jnp.result_type(float)
    return {
        "params": params,
        "opt_state": _ADAM.init(params),
        "lam": jnp.full(n, float(lam0), dtype),
        "mu": jnp.full(n, float(lam0) if ir_constraint else 0.0, dtype),
        "rho": np.asarray(float(rho0)),
        "sum_g": jnp.zeros(n, dtype),
        "sum_h": jnp.zeros(n, dtype),
        "step": np.asarray(0, np.int64),
    }


def _advance(plan: _Plan, static, state: dict, key: PRNGKeyArray, until: int, log_every: int = 0, on_log=None) -> dict:
    """Run steps ``state["step"]`` … ``until − 1`` and return the new state. Step t uses the key
    ``fold_in(key, t)`` and the schedules at t, so stopping after any step and continuing from the
    saved state gives the same numbers as one uninterrupted run. ``on_log(record)`` is called every
    ``log_every`` steps and after the last step of the run (the training estimates of that step).

    The loop sends only host-known numbers to the device (schedules, ρ, the update flag); the
    multiplier update happens in the compiled step, so the only device→host transfers are the
    explicit ``jax.device_get`` of a log record (and the caller's checkpoints)."""
    dtype = jnp.result_type(float)
    params, opt_state = state["params"], state["opt_state"]
    rho = float(state["rho"])
    duals = {k: jnp.asarray(state[k], dtype) for k in ("lam", "mu", "sum_g", "sum_h")}
    for t in range(int(state["step"]), until):
        decay = plan.lr_final + (1.0 - plan.lr_final) * 0.5 * (1.0 + math.cos(math.pi * t / max(plan.steps - 1, 1)))
        update = (t + 1) % plan.update_every == 0
        hyper = {
            "lr_rule": jnp.asarray(plan.lr * decay, dtype),
            "lr_strategy": jnp.asarray((plan.lr_strategy_st if t >= plan.st_from else plan.lr_strategy) * decay, dtype),
            "tau": jnp.asarray(plan.taus[t], dtype),
            "rho": jnp.asarray(rho, dtype),
            "update": jnp.asarray(update),
            "ex_post_weight": jnp.asarray(plan.ex_post_ir_weight, dtype),
            "reserve": jnp.asarray(plan.reserve, dtype),
        }
        params, opt_state, duals, aux = _step(params, static, opt_state, duals, jax.random.fold_in(key, t), hyper, plan.priors,
                                              plan.sizes[int(t >= plan.st_from)], plan.update_every, plan.ir_constraint)
        if update:
            rho = min(rho * plan.rho_growth, plan.rho_max)
        if on_log is not None and ((log_every and (t + 1) % log_every == 0) or t + 1 == plan.steps):
            host_aux, lam, mu = jax.device_get((aux, duals["lam"], duals["mu"]))
            rec = {"step": t + 1, "tau": float(plan.taus[t]), "lam": np.asarray(lam, np.float64).tolist(),
                   "mu": np.asarray(mu, np.float64).tolist(), "rho": rho}
            for k, val in host_aux.items():
                arr = np.asarray(val, np.float64)
                rec[k] = float(arr) if arr.ndim == 0 else arr.tolist()
            if not (np.isfinite(rec["loss"]) and np.all(np.isfinite(lam)) and np.all(np.isfinite(mu))):
                raise TrainingDiverged(f"training diverged before step {t + 1} (non-finite loss or multipliers); lower train.lr or the growth of rho")
            on_log(rec)
    return {"params": params, "opt_state": opt_state, **duals, "rho": np.asarray(rho),
            "step": np.asarray(max(until, int(state["step"])), np.int64)}


def _make_plan(priors, *, steps, lr, strategy_lr, lr_final, batch, deviations, others, temperature, reserve, ex_post_ir_weight,
               margin, rho0, rho_growth, rho_max, lam0, update_every, ir_constraint, straight_through,
               straight_through_strategy_lr) -> _Plan:
    n = len(priors)
    if n < 2:
        raise ConfigError("a symmetric auction needs at least two bidders")
    for name, val in (("steps", steps), ("batch", batch), ("others", others), ("update_every", update_every)):
        if not isinstance(val, int) or val < 1:
            raise ConfigError(f"{name} must be a positive integer, got {val!r}")
    if not isinstance(deviations, int) or deviations < 0:
        raise ConfigError(f"deviations must be a non-negative integer, got {deviations!r}")
    if not (lr >= 0 and math.isfinite(lr)) or (strategy_lr is not None and not strategy_lr >= 0):
        raise ConfigError(f"learning rates must be non-negative, got lr={lr!r}, strategy_lr={strategy_lr!r}")
    if not 0 < lr_final <= 1:
        raise ConfigError(f"lr_final must be in (0, 1], got {lr_final!r}")
    if not ex_post_ir_weight >= 0:
        raise ConfigError(f"ex_post_ir_weight must be >= 0, got {ex_post_ir_weight!r}")
    if not (margin >= 0 and rho0 > 0 and rho_growth >= 1 and rho_max >= rho0 and lam0 >= 0):
        raise ConfigError("symmetric-auction training needs margin >= 0, rho > 0, rho_growth >= 1, rho_max >= rho and lambda_init >= 0")
    st = float(straight_through)
    if not 0.0 <= st <= 1.0:
        raise ConfigError(f"straight_through must be a bool or a fraction of the steps in [0, 1], got {straight_through!r}")
    lr_s = lr if strategy_lr is None else float(strategy_lr)
    return _Plan(
        priors=priors, steps=steps, taus=_temperatures(temperature, steps), st_from=steps - int(round(st * steps)),
        sizes=(StepSizes(batch, others, deviations, float(margin), None, "none"), StepSizes(batch, others, deviations, float(margin), None, "all")),
        lr=float(lr), lr_strategy=lr_s, lr_strategy_st=lr_s if straight_through_strategy_lr is None else float(straight_through_strategy_lr),
        lr_final=float(lr_final), ex_post_ir_weight=float(ex_post_ir_weight), reserve=float(reserve), update_every=update_every,
        rho_growth=float(rho_growth), rho_max=float(rho_max), ir_constraint=bool(ir_constraint),
    )


def _gated(rule: PaymentRule, reserve: float) -> PaymentRule:
    if isinstance(rule, ReserveGate):
        if rule.reserve != float(reserve):
            raise ConfigError(f"the rule's reserve gate is at {rule.reserve} but reserve={reserve}; make them equal")
        return rule
    return ReserveGate(rule, float(reserve))


def train_symmetric(
    priors: Sequence,
    rule: PaymentRule,
    strategy: Strategy,
    *,
    key: PRNGKeyArray,
    steps: int = 2000,
    lr: float = 1e-3,
    strategy_lr: float | None = None,
    lr_final: float = 0.1,
    batch: int = 128,
    deviations: int = 128,
    others: int = 128,
    temperature: float | tuple[float, float] = (0.05, 0.005),
    reserve: float = 0.0,
    ex_post_ir_weight: float = 0.0,
    margin: float = 0.25,
    gate: bool = True,
    lam0: float = 1.0,
    rho0: float = 1.0,
    rho_growth: float = 1.2,
    rho_max: float = 1e4,
    update_every: int = 50,
    ir_constraint: bool = True,
    straight_through: bool | float = False,
    straight_through_strategy_lr: float | None = None,
    init_from=None,
    fit_options: dict[str, Any] | None = None,
    log_every: int = 100,
) -> tuple[SymmetricAuction, list[dict[str, Any]]]:
    """Train ``rule`` and ``strategy`` for revenue under the interim regret (and IR) constraints
    (module docstring). ``rule`` is wrapped in :class:`ReserveGate` unless ``gate`` is False or it
    already is one; ``temperature`` is τ or (τ_0, τ_1) (geometric annealing); ``ex_post_ir_weight``
    is w; the learning rates decay by a cosine to ``lr_final`` × their start. ``straight_through``:
    the estimates (S2)–(S3) take the values of the hard auction and the gradients of the relaxation
    (module docstring); True for every step, a fraction f for the last f·steps (a relaxed phase
    first, then a hard-valued one), in which the strategies learn at ``straight_through_strategy_lr``
    (default: their learning rate; 0 freezes them). ``init_from`` (a hierarchical mechanism): warm
    start by :func:`warm_start` (the strategy is replaced by the index fit with
    ``strategy.n_knots`` knots, or 16; ``fit_options`` go to ``fit_payment_rule``). Returns
    ``SymmetricAuction(rule, strategy, reserve)`` and a history of the training estimates (every
    ``log_every`` steps and at the end: step, τ, loss, revenue, per-bidder regret, regret_max, ir,
    ex_post, ex_post_rate, λ, μ, ρ). ``diffmech train`` runs the same loop from a config, with
    checkpoints and resume (:func:`train_run`)."""
    priors = tuple(priors)
    plan = _make_plan(priors, steps=steps, lr=lr, strategy_lr=strategy_lr, lr_final=lr_final, batch=batch, deviations=deviations,
                      others=others, temperature=temperature, reserve=reserve, ex_post_ir_weight=ex_post_ir_weight, margin=margin,
                      rho0=rho0, rho_growth=rho_growth, rho_max=rho_max, lam0=lam0, update_every=update_every,
                      ir_constraint=ir_constraint, straight_through=straight_through,
                      straight_through_strategy_lr=straight_through_strategy_lr)
    if init_from is not None:
        rule, strategy = warm_start(init_from, rule, key=jax.random.fold_in(key, 2**31 - 1), n_knots=getattr(strategy, "n_knots", 16),
                                    reserve=reserve, gate=gate, **(fit_options or {}))
    if gate:
        rule = _gated(rule, reserve)
    params, static = eqx.partition((rule, strategy), eqx.is_inexact_array)
    state = _initial_state(params, len(priors), lam0, rho0, ir_constraint)
    history: list[dict[str, Any]] = []
    state = _advance(plan, static, state, key, steps, log_every, history.append)
    rule, strategy = eqx.combine(state["params"], static)
    return SymmetricAuction(rule=rule, strategy=strategy, reserve=float(reserve)), history


# ----------------------------------------------------------------------------- diffmech train


@dataclass(frozen=True)
class SymmetricOptions:
    """Options of this trainer that the generic ``[train]`` table lacks: the ``[train.symmetric]``
    table. ``strategy_lr`` (default ``train.lr``), ``temperature`` τ or [τ_0, τ_1], ``margin`` of the
    deviation grid, ``rho_growth`` (ρ ← min(ρ·growth, ``train.rho_max``) every ``train.lambda_every``
    steps), ``straight_through`` (fraction of the last steps with hard-valued estimates) and
    ``straight_through_strategy_lr``, ``ex_post_ir_weight`` w, and ``fit_steps`` of the warm start's
    payment fit (mechanism option ``init``)."""

    strategy_lr: float | None = None
    temperature: Any = (0.05, 0.005)
    margin: float = 0.25
    rho_growth: float = 1.2
    straight_through: float = 0.0
    straight_through_strategy_lr: float | None = None
    ex_post_ir_weight: float = 0.0
    fit_steps: int = 1500

    @classmethod
    def from_table(cls, table: Any) -> "SymmetricOptions":
        from .config import _is_number
        if not isinstance(table, dict):
            raise ConfigError("[train.symmetric] must be a table of key = value pairs")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) in [train.symmetric]: {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        for k, v in table.items():
            if k == "temperature":
                ok = (_is_number(v) and v > 0) or (isinstance(v, list) and len(v) == 2 and all(_is_number(x) and x > 0 for x in v))
                if not ok:
                    raise ConfigError(f"train.symmetric.temperature must be a positive number or [start, end], got {v!r}")
            elif k == "fit_steps":
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise ConfigError(f"train.symmetric.fit_steps must be a positive integer, got {v!r}")
            elif not _is_number(v) or v < 0 or not math.isfinite(v):
                raise ConfigError(f"train.symmetric.{k} must be a non-negative number, got {v!r}")
        opts = cls(**table)
        if opts.rho_growth < 1 or opts.straight_through > 1:
            raise ConfigError("train.symmetric needs rho_growth >= 1 and straight_through in [0, 1]")
        return opts


def train_run(run, out_dir=None, *, resume: bool = False, progress: bool = True, callback=None):
    """``diffmech train`` for a learned symmetric auction (``[mechanism] kind = "symmetric_auction"``
    with a ``rule``): the loop of :func:`train_symmetric` with the ``[train]`` table mapped onto it —
    ``batch`` own values per bidder (B), ``interim_samples`` others' profiles (S), ``interim_reports``
    deviation bids (D), ``lr`` (cosine schedule: to 1% of lr; constant: none), ``lambda_init``,
    ``rho``, ``rho_max``, ``lambda_every`` (the multiplier updates), ``constraints``
    (``interim_regret`` and, unless left out, ``interim_ir``) — plus ``[train.symmetric]``
    (:class:`SymmetricOptions`). Checkpoints every ``ckpt_every`` steps (weights, config, history
    and the resume state) and resumes from them; a non-finite loss raises :class:`TrainingDiverged`
    and keeps the last good checkpoint."""
    import time

    from .mechanisms.analytic.hierarchical import Hierarchical
    from .trainer import TrainResult, open_run_dir, save_checkpoint

    cfg = run.train
    opts = SymmetricOptions.from_table(cfg.symmetric)
    if cfg.method != "augmented_lagrangian":
        raise ConfigError(f"symmetric auctions train with train.method = \"augmented_lagrangian\", not {cfg.method!r}")
    chosen = set(cfg.constraints or ("interim_regret", "interim_ir"))
    if not chosen <= {"interim_regret", "interim_ir"} or "interim_regret" not in chosen:
        raise ConfigError(f"train.constraints for a symmetric auction must be [\"interim_regret\"] or [\"interim_regret\", \"interim_ir\"], got {list(cfg.constraints)}")
    priors = tuple(run.setting.priors)
    key = jax.random.PRNGKey(cfg.seed)
    k_init, k_fit, k_train = jax.random.split(key, 3)
    auction = run.build_mechanism(k_init)
    plan = _make_plan(priors, steps=cfg.steps, lr=cfg.lr, strategy_lr=opts.strategy_lr, lr_final=0.01 if cfg.lr_schedule == "cosine" else 1.0,
                      batch=cfg.batch, deviations=cfg.interim_reports, others=cfg.interim_samples, temperature=opts.temperature,
                      reserve=auction.reserve, ex_post_ir_weight=opts.ex_post_ir_weight, margin=opts.margin, rho0=cfg.rho,
                      rho_growth=opts.rho_growth, rho_max=max(cfg.rho_max, cfg.rho), lam0=cfg.lambda_init, update_every=cfg.lambda_every,
                      ir_constraint="interim_ir" in chosen, straight_through=opts.straight_through,
                      straight_through_strategy_lr=opts.straight_through_strategy_lr)
    params, static = eqx.partition((auction.rule, auction.strategy), eqx.is_inexact_array)
    state = _initial_state(params, len(priors), cfg.lambda_init, cfg.rho, plan.ir_constraint)
    out, config_toml, state, history = open_run_dir(run, out_dir, resume, state)
    if int(state["step"]) == 0 and run.mechanism_cfg.get("init") is not None:
        h = Hierarchical.from_config(run.setting, {"index": run.mechanism_cfg["init"]})
        rule, strategy = warm_start(h, auction.rule, key=k_fit, n_knots=auction.strategy.n_knots, reserve=auction.reserve, steps=opts.fit_steps)
        params, static = eqx.partition((rule, strategy), eqx.is_inexact_array)
        state = {**state, "params": params, "opt_state": _ADAM.init(params)}

    def mechanism(st):
        rule, strategy = eqx.combine(st["params"], static)
        return SymmetricAuction(rule=rule, strategy=strategy, reserve=auction.reserve)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=int(state["step"]), desc="train", dynamic_ncols=True, leave=True)

    def on_log(rec):
        rec["time"] = round(time.perf_counter() - t0, 3)
        history.append(rec)
        if callback is not None:
            callback(rec)
        if bar is not None:
            bar.update(rec["step"] - bar.n)
            bar.set_postfix({"rev": f"{rec['revenue']:.4f}", "rgt": f"{max(rec['regret_max']):.2e}"})

    t0 = time.perf_counter()
    try:
        while int(state["step"]) < cfg.steps:
            done = min((int(state["step"]) // cfg.ckpt_every + 1) * cfg.ckpt_every, cfg.steps)
            state = _advance(plan, static, state, k_train, done, cfg.log_every, on_log)
            if out is not None:
                save_checkpoint(out, mechanism(state), state, history, config_toml, cfg.seed, done)
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(mechanism(state), state, history, run, out, time.perf_counter() - t0)
