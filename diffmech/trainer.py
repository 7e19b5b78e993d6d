"""Training: objective + constraints + dual rule + optimizer, one jit-compiled step.

The trainer maximises the setting's objective (revenue for auctions) subject to per-agent
constraints g_i ≥ 0 measured on the batch:

- ``regret``: ex post regret rgt_i (Dütting et al. 2019, eq. (3)) against misreports cached per
  training example and refreshed by ``inner_steps`` of projected gradient ascent at every step;
  omitted for mechanisms that are DSIC by construction;
- ``ir``: ex post IR shortfall E max(0, −u_i); omitted for mechanisms that are IR by construction.

The dual rule decides how constraints enter the loss and how multipliers move (see
:class:`~diffmech.config.TrainConfig` for the three rules). The whole state — parameters, optimizer
state, multipliers, ρ, step, PRNG key and misreport cache — is one pytree (:class:`TrainState`), so
it can be saved, restored and vmapped over seeds. The Python loop dispatches the compiled step and
synchronises with the host only every ``log_every`` steps.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from . import constraints as C
from . import interim as I
from . import parallel
from .checkpoint import atomic_write_json, load_resume, read_json, save_published, save_resume
from .config import Run
from .errors import CheckpointError, ConfigError, TrainingDiverged


class TrainState(eqx.Module):
    """Everything that changes during training; a pytree of arrays."""

    params: Any
    opt_state: Any
    lam: Float[Array, "constraints agents"]
    rho: Float[Array, ""]
    step: Int[Array, ""]
    key: PRNGKeyArray
    mis_cache: Float[Array, "train_size starts agents dim"]
    nonfinite: Any  # bool scalar: a non-finite loss was seen since the last check
    lr: Float[Array, ""]  # the peak learning rate, a state leaf so that runs can be vmapped over it


# ----------------------------------------------------------------------------- dual rules


class DualRule(eqx.Module):
    """How constraint values g (constraints × agents) enter the loss and update the multipliers."""

    def penalty(self, lam, rho, g):
        raise NotImplementedError

    def update(self, lam, rho, g, objective, step):
        return lam, rho

    def initial_rho(self, cfg) -> float:
        """The initial value of the rule's scalar state ρ (a penalty weight for most rules)."""
        return cfg.rho


class AugmentedLagrangian(DualRule):
    """RegretNet schedule: Σλg + ρ/2 Σg²; λ += ρ·g every K steps; ρ += Δ every M steps."""

    lambda_every: int
    rho_increment: float
    rho_every: int
    rho_max: float

    def penalty(self, lam, rho, g):
        return jnp.sum(lam * g) + 0.5 * rho * jnp.sum(g**2)

    def update(self, lam, rho, g, objective, step):
        lam = jnp.where((step + 1) % self.lambda_every == 0, lam + rho * g, lam)
        rho = jnp.where((step + 1) % self.rho_every == 0, jnp.minimum(rho + self.rho_increment, self.rho_max), rho)
        return lam, rho


class Penalty(DualRule):
    """Fixed linear penalty ρ Σ g."""

    def penalty(self, lam, rho, g):
        return rho * jnp.sum(g)


class RegretBudget(DualRule):
    """Multipliers driven by log(g/objective) toward a budget that decays geometrically.

    λ_i ← λ_i · exp(rate · (log(g_i / R_t) − log b_t)), b_t = b_0 (b_T/b_0)^{t/T}, clipped to
    [1e-3, 1e6], where R_t = max_{s ≤ t} |obj_s| is the best objective so far (kept in the state's
    ρ slot). The loss is −obj + Σ λ_i g_i. Measuring regret against the best objective rather than
    the current one breaks a feedback loop: with the current one, a rising λ lowers the objective,
    which raises g/obj and λ further, until the mechanism sells nothing.
    """

    lambda_every: int
    start: float
    end: float
    steps: int
    rate: float

    def penalty(self, lam, rho, g):
        return jnp.sum(lam * g)

    def initial_rho(self, cfg) -> float:
        return 0.0  # the best objective so far

    def update(self, lam, rho, g, objective, step):
        best = jnp.maximum(rho, jnp.abs(objective))
        frac = jnp.minimum(step / self.steps, 1.0)
        log_budget = jnp.log(self.start) + frac * (jnp.log(self.end) - jnp.log(self.start))
        ratio = jnp.log(jnp.maximum(g, 1e-12)) - jnp.log(jnp.maximum(best, 1e-12))
        new = jnp.clip(lam * jnp.exp(self.rate * (ratio - log_budget)), 1e-3, 1e6)
        return jnp.where((step + 1) % self.lambda_every == 0, new, lam), best


def dual_rule(cfg) -> DualRule:
    if cfg.method == "augmented_lagrangian":
        return AugmentedLagrangian(cfg.lambda_every, cfg.rho_increment, cfg.rho_every, cfg.rho_max)
    if cfg.method == "penalty":
        return Penalty()
    return RegretBudget(cfg.lambda_every, cfg.budget_start, cfg.budget_end, cfg.steps, cfg.budget_rate)


def constraint_names(mechanism, setting, cfg=None) -> tuple[str, ...]:
    """The constraint families trained, one multiplier row each.

    Ex post settings: ``regret`` unless the mechanism is DSIC by construction, ``ir`` unless it is IR
    by construction. Interim settings (``setting.ic == "interim"``): the setting's
    ``default_constraints`` (public goods: ``interim_regret``, ``interim_ir`` and ``budget``; Ke's
    efficient settings: ``interim_regret`` and ``ex_post_ir``, ``monotonicity`` on request). ``train.constraints`` selects a subset of the setting's families.
    """
    if setting.ic == "interim":
        valid = getattr(setting, "constraint_families", I.INTERIM_CONSTRAINTS)
        names = getattr(setting, "default_constraints", valid)
    else:
        valid = ("regret", "ir")
        names = [n for n, by_construction in zip(valid, (mechanism.dsic_by_construction, mechanism.ir_by_construction)) if not by_construction]
    chosen = tuple(getattr(cfg, "constraints", ()) or ())
    bad = [c for c in chosen if c not in valid]
    if bad:
        raise ConfigError(f"train.constraints {bad} do not apply to this setting; choose from {', '.join(valid)}")
    if setting.ic == "interim":  # any family of the setting may be chosen
        return tuple(chosen or names)
    return tuple(c for c in (chosen or names) if c in names)


# ----------------------------------------------------------------------------- the step


class TrainingView(eqx.Module):
    """A mechanism seen through its ``training_outcome``: interim training measures the objective
    and every constraint on it (for most mechanisms the mechanism itself; for the social-choice
    ``dither`` head the exact expectation of its hard choice over the dither)."""

    base: Any

    def __call__(self, reports):
        return self.base.training_outcome(reports)

    def training_outcome(self, reports):
        return self.base.training_outcome(reports)


@dataclass(frozen=True)
class Trainer:
    """The pure pieces of a training run: build with :func:`make_trainer`."""

    setting: Any
    static: Any  # non-trainable part of the mechanism
    optimizer: optax.GradientTransformation
    dual: DualRule
    names: tuple[str, ...]
    cfg: Any

    def mechanism(self, params):
        return eqx.combine(params, self.static)

    def init(self, mechanism, key: PRNGKeyArray, data) -> TrainState:
        params = eqx.filter(mechanism, eqx.is_inexact_array)
        n, d = self.setting.n_agents, self.setting.type_dim
        k_mis, key = jax.random.split(key)
        if "regret" in self.names:
            mis = self.setting.sample(k_mis, data.shape[0] * self.cfg.train_starts)
            mis = mis.reshape(data.shape[0], self.cfg.train_starts, n, d)
        else:
            mis = jnp.zeros((0, self.cfg.train_starts, n, d), data.dtype)
        return TrainState(
            params=params,
            opt_state=self.optimizer.init(params),
            lam=jnp.full((len(self.names), n), self.cfg.lambda_init, data.dtype),
            rho=jnp.asarray(self.dual.initial_rho(self.cfg), data.dtype),
            step=jnp.asarray(0, jnp.int32),
            key=key,
            mis_cache=mis,
            nonfinite=jnp.asarray(False),
            lr=jnp.asarray(self.cfg.lr, data.dtype),
        )

    def batch_indices(self, step, key):
        """Indices of this step's batch: a fresh permutation of the training set every epoch."""
        size, batch = self.cfg.train_size, self.cfg.batch
        epoch = (step * batch) // size
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), size)
        return jax.lax.dynamic_slice(perm, ((step * batch) % size,), (batch,))

    def constraint_values(self, mechanism, types, mis):
        rows = []
        for name in self.names:
            if name == "regret":
                rows.append(C.regret_from_misreports(mechanism, self.setting, types, mis))
            elif name == "ir":
                rows.append(jnp.mean(C.ir_violation(mechanism, self.setting, types), axis=0))
        if not rows:
            return jnp.zeros((0, self.setting.n_agents), types.dtype)
        return jnp.stack(rows)

    def _interim_loss(self, state: TrainState, data):
        """Loss of an interim setting: exact / quadrature / Monte Carlo expectations (see
        :func:`diffmech.interim.training_batch`)."""
        key = jax.random.fold_in(jax.random.fold_in(state.key, 2), state.step)
        batch = I.training_batch(self.setting, key, self.cfg, data.dtype)

        def loss_fn(params):
            mech = TrainingView(self.mechanism(params))
            obj = I.batch_objective(mech, self.setting, batch)
            g = I.batch_constraints(mech, self.setting, batch, self.names) if self.names else jnp.zeros((0, self.setting.n_agents), data.dtype)
            return -obj + self.dual.penalty(state.lam, state.rho, g), (obj, g)

        return loss_fn

    def step(self, state: TrainState, data) -> tuple[TrainState, dict]:
        """One optimiser step (pure; jit it).

        On several devices the batch (types and their cached misreports) is split along its
        leading axis and everything else is replicated (:mod:`diffmech.parallel`): the loss is a
        mean over the batch, so XLA computes per-device partial sums and all-reduces them and the
        gradient. Interim settings draw their batch inside the step and run replicated."""
        if self.setting.ic == "interim":
            return self._finish(state, self._interim_loss(state, data), state.mis_cache)
        data_key = jax.random.fold_in(state.key, 1)
        idx = self.batch_indices(state.step, data_key)
        types = parallel.constrain_batch(data[idx])  # data parallel over the batch (no-op on one device)
        mechanism = self.mechanism(state.params)
        if "regret" in self.names:
            mis = parallel.constrain_batch(state.mis_cache[idx])
            mis, _ = C.ascend_misreports(mechanism, self.setting, types, mis, self.cfg.inner_steps, self.cfg.inner_lr)
            cache = state.mis_cache.at[idx].set(mis)
        else:
            mis, cache = None, state.mis_cache

        def loss_fn(params):
            mech = self.mechanism(params)
            out = mech.training_outcome(types)
            obj = jnp.mean(self.setting.objective_value(types, out))
            g = self.constraint_values(mech, types, mis)
            return -obj + self.dual.penalty(state.lam, state.rho, g), (obj, g)

        return self._finish(state, loss_fn, cache)

    def _finish(self, state: TrainState, loss_fn, cache) -> tuple[TrainState, dict]:
        (loss, (obj, g)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        updates = jax.tree_util.tree_map(lambda u: -state.lr * u, updates)  # the optimizer has unit rate
        params = eqx.apply_updates(state.params, updates)
        lam, rho = self.dual.update(state.lam, state.rho, g, obj, state.step)
        new = TrainState(
            params=params,
            opt_state=opt_state,
            lam=lam,
            rho=rho,
            step=state.step + 1,
            key=state.key,
            mis_cache=cache,
            nonfinite=state.nonfinite | ~jnp.isfinite(loss),
            lr=state.lr,
        )
        # parameters, state and metrics stay replicated, so that the next step sees the same input
        # shardings (no recompilation) and every host can read them (no-op on one device)
        return parallel.constrain_replicated((new, {"loss": loss, "objective": obj, "g": g, "lam": lam, "rho": rho}))


def make_trainer(run: Run, mechanism) -> Trainer:
    _, static = eqx.partition(mechanism, eqx.is_inexact_array)
    cfg = run.train
    return Trainer(run.setting, static, unit_rate_adam(cfg), dual_rule(cfg), constraint_names(mechanism, run.setting, cfg), cfg)


def unit_rate_adam(cfg) -> optax.GradientTransformation:
    """Adam's direction times the schedule's shape, at unit learning rate.

    The step multiplies the result by −``state.lr``: Adam is equivariant to the rate, so this is
    ``optax.adam(lr)`` with the rate held in the state, where runs vmapped together can differ.
    """
    if cfg.lr_schedule == "cosine":
        return optax.chain(optax.scale_by_adam(), optax.scale_by_schedule(optax.cosine_decay_schedule(1.0, cfg.steps, alpha=0.01)))
    return optax.scale_by_adam()


def training_data(run: Run, key: PRNGKeyArray):
    """The fixed training set (regenerated from the seed on resume)."""
    return run.setting.sample(key, run.train.train_size)


# ----------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    mechanism: Any
    state: TrainState
    history: list
    run: Run
    out_dir: Path | None
    seconds: float


def _record(trainer: Trainer, metrics: dict, step: int, elapsed: float) -> dict:
    host = jax.device_get(metrics)
    # loss, objective and constraint values are means over the steps since the last record
    rec: dict[str, Any] = {"step": step, "time": round(elapsed, 3), "loss": float(host["loss"])}
    rec[trainer.setting.objective] = float(host["objective"])
    for c, name in enumerate(trainer.names):
        rec[name] = [float(x) for x in np.asarray(host["g"][c])]
    rec["lam"] = {name: [float(x) for x in np.asarray(host["lam"][c])] for c, name in enumerate(trainer.names)}
    if trainer.names:
        rec["rho"] = float(host["rho"])
    return rec


_AVERAGED = ("loss", "objective", "g")


def _step_and_accumulate(trainer: Trainer, state: TrainState, data, acc: dict):
    """One step plus running sums of the logged quantities, in one compiled call."""
    state, metrics = trainer.step(state, data)
    return state, metrics, {k: acc[k] + metrics[k] for k in _AVERAGED}


def _zero_sums(trainer: Trainer, dtype) -> dict:
    n_constraints, n = len(trainer.names), trainer.setting.n_agents
    return {"loss": jnp.zeros((), dtype), "objective": jnp.zeros((), dtype), "g": jnp.zeros((n_constraints, n), dtype)}


def _mean(acc, count):
    return jax.tree_util.tree_map(lambda x: x / count, acc)


def _finite_tree(tree) -> bool:
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(x)]
    return all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)


def init_run(run: Run):
    """The mechanism, trainer, training set and initial state of ``run`` (all from its seed)."""
    key = jax.random.PRNGKey(run.train.seed)
    k_init, k_data, k_state = jax.random.split(key, 3)
    mechanism = run.build_mechanism(k_init)
    trainer = make_trainer(run, mechanism)
    data = training_data(run, k_data)
    return trainer, data, trainer.init(mechanism, k_state, data)


def fit(
    trainer: Trainer,
    state: TrainState,
    data,
    *,
    lanes: int | None,
    on_record: Callable[[int, dict, Any, float], None],
    on_checkpoint: Callable[[int, TrainState], None],
    progress: bool,
    desc: str = "train",
) -> tuple[TrainState, float]:
    """Advance ``state`` to ``train.steps``: the compiled step is dispatched without host
    synchronisation, which happens only every ``log_every`` steps, when
    ``on_record(step, metrics, nonfinite, elapsed)`` receives the host copies of the metrics
    (averaged since the last record) and of the non-finite flag. ``on_checkpoint(step, state)`` runs
    every ``ckpt_every`` steps and at the end.

    ``lanes = K`` trains K runs stacked on a leading axis (state and data) in one vmapped step.
    On several devices the state, the training set and the sums are replicated once here; the
    step splits each batch over the devices (see :meth:`Trainer.step`).
    Returns the final state and the seconds spent.
    """
    cfg = trainer.cfg
    one = functools.partial(_step_and_accumulate, trainer)
    step_fn = eqx.filter_jit(one if lanes is None else jax.vmap(one))
    zeros = _zero_sums(trainer, data.dtype)
    if lanes is not None:
        zeros = jax.tree_util.tree_map(lambda z: jnp.broadcast_to(z, (lanes, *z.shape)), zeros)
    if parallel.is_parallel():  # placed once, not transferred at every step
        state, data, zeros = parallel.replicate((state, data, zeros))
    start = int(np.max(jax.device_get(state.step)))
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=desc, dynamic_ncols=True, leave=True)
    acc, count = zeros, 0
    try:
        for step in range(start, cfg.steps):
            state, metrics, acc = step_fn(state, data, acc)  # dispatched; no host sync
            count += 1
            done = step + 1
            if bar is not None:
                bar.update(1)
            if done % cfg.log_every == 0 or done == cfg.steps:
                host, nonfinite = jax.device_get(({**metrics, **_mean(acc, count)}, state.nonfinite))
                acc, count = zeros, 0
                on_record(done, host, nonfinite, time.perf_counter() - t0)
                if bar is not None:
                    post = {trainer.setting.objective[:3]: f"{np.mean(host['objective']):.4f}"}
                    if "regret" in trainer.names:
                        post["rgt"] = f"{np.mean(np.asarray(host['g'])[..., trainer.names.index('regret'), :]):.2e}"
                    bar.set_postfix(post)
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                on_checkpoint(done, state)
    finally:
        if bar is not None:
            bar.close()
    return state, time.perf_counter() - t0


def diverged_message(step: int, out, last_saved: int) -> str:
    return (
        f"training diverged before step {step} (non-finite loss); "
        + (f"the last good checkpoint (step {last_saved}) is kept in {out}; " if out is not None and last_saved > 0 else "")
        + "lower train.lr or the penalty (train.rho) and try again"
    )


def train(
    run: Run,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train the mechanism described by ``run`` (a resolved config).

    With ``out_dir``, writes a checkpoint every ``ckpt_every`` steps (weights, config, manifest,
    history) plus resume state under ``out_dir/resume``; ``resume=True`` continues from it.
    Raises :class:`TrainingDiverged` if the loss or the parameters become non-finite; the last
    good checkpoint is kept.
    """
    cfg = run.train
    if not run.trainable:
        raise ConfigError(f"mechanism {run.mechanism_cfg['kind']!r} is analytic and has nothing to train; use 'diffmech eval'")
    if getattr(run.mechanism_class, "played_in_equilibrium", False):  # trained with its bidding strategies
        from .symmetric_train import train_run

        return train_run(run, out_dir, resume=resume, progress=progress, callback=callback)
    trainer, data, state = init_run(run)
    out, config_toml, state, history = open_run_dir(run, out_dir, resume, state)
    saved = [int(state.step)]

    def on_record(done, host, nonfinite, elapsed):
        rec = _record(trainer, host, done, elapsed)
        if bool(nonfinite) or not np.isfinite(rec["loss"]):
            raise TrainingDiverged(diverged_message(done, out, saved[0]))
        history.append(rec)
        if callback is not None:
            callback(rec)

    def on_checkpoint(done, state):
        if out is not None:
            if jax.process_index() == 0:  # several processes (hosts) train one run: one writer
                save_checkpoint(out, trainer.mechanism(state.params), state, history, config_toml, cfg.seed, done)
            elif not _finite_tree(state):  # the others stop where process 0 does
                raise TrainingDiverged(f"parameters became non-finite before step {done}; lower train.lr")
            saved[0] = done

    state, seconds = fit(trainer, state, data, lanes=None, on_record=on_record, on_checkpoint=on_checkpoint, progress=progress)
    return TrainResult(trainer.mechanism(state.params), state, history, run, out, seconds)


def _without_steps(toml_text: str) -> dict | None:
    """The resolved config without ``train.steps`` (which may change on resume). Resolving fills
    in defaults, so a run saved before a new option existed still matches its own config."""
    from .config import parse_toml, resolve

    try:
        cfg = resolve(parse_toml(toml_text)).config
    except Exception:  # noqa: BLE001 - an unreadable saved config simply does not match
        return None
    cfg["train"].pop("steps", None)
    return cfg


def open_run_dir(run: Run, out_dir, resume: bool, state):
    """The run directory and the state to start from: ``state`` itself for a fresh run (refused if
    ``out_dir`` already holds one), or the saved state (same pytree structure) and the history up to
    it with ``resume`` (refused if the config differs other than in ``train.steps``). Returns
    ``(out, config_toml, state, history)``."""
    out = Path(out_dir) if out_dir is not None else None
    config_toml = run.to_toml()
    history: list[dict] = []
    if resume:
        if out is None or not (out / "resume" / "state.json").exists():
            raise CheckpointError(f"nothing to resume in {out}; run without --resume to start fresh")
        saved_cfg = (out / "config.toml").read_text() if (out / "config.toml").exists() else None
        if saved_cfg is not None and _without_steps(saved_cfg) != _without_steps(config_toml):
            raise ConfigError(f"{out} was started with a different config; use the same config (train.steps may change) or a new --out")
        state, meta = load_resume(out, state)
        step = int(meta["step"])
        history = [r for r in read_json(out / "history.json", "history") if r["step"] <= step] if (out / "history.json").exists() else []
        (out / "metrics.json").unlink(missing_ok=True)  # it described the weights about to change
    elif out is not None and ((out / "resume" / "state.json").exists() or (out / "manifest.json").exists()):
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    return out, config_toml, state, history


def save_checkpoint(out: Path, mechanism, state, history: list, config_toml: str, seed: int, step: int):
    """Publish ``mechanism`` (weights, config, manifest), the history and the resume state, each
    file written atomically; refuses non-finite weights (the previous checkpoint is kept)."""
    if not _finite_tree(state):
        raise TrainingDiverged(f"parameters became non-finite before step {step}; the last good checkpoint is kept in {out}; lower train.lr")
    save_published(out, mechanism, config_toml, seed=seed, step=step)
    atomic_write_json(out / "history.json", history)
    save_resume(out, state, {"step": step, "seed": seed})
