"""TOML configs → validated objects, with one-line errors.

A config has three tables: ``[setting]`` (``kind`` plus the kind's keys), ``[mechanism]``
(``kind`` plus the mechanism's options) and ``[train]`` (see :class:`TrainConfig`), and an
optional ``[eval]`` table (see :class:`EvalConfig`). ``--set key=value`` overrides take dotted
keys with list indices (``setting.priors.1.high=3``); the value is parsed as a TOML value
(``3``, ``0.5``, ``"tanh"``, ``[64, 64]``, ``true``) and falls back to a plain string.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import jax

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

METHODS = ("augmented_lagrangian", "penalty", "regret_budget")
LR_SCHEDULES = ("constant", "cosine")
CONSTRAINTS = ("regret", "ir", "interim_regret", "interim_ir", "budget", "ex_post_ir", "ex_post_ir_worst", "monotonicity")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters (the ``[train]`` table).

    Attributes:
        steps: optimiser steps. batch: profiles per step. train_size: size of the fixed training
            set (a multiple of ``batch``); each example keeps its own cached misreports.
        lr: Adam learning rate; ``lr_schedule = "cosine"`` decays it to 1% of ``lr`` over ``steps``
            (so that the last iterate settles), ``"constant"`` keeps it. seed: PRNG seed
            (initialisation, data, attacks).
        method: ``augmented_lagrangian`` (RegretNet: loss −obj + Σλ_i g_i + ρ/2 Σ g_i²,
            λ_i += ρ g_i every ``lambda_every`` steps, ρ += ``rho_increment`` every ``rho_every``
            steps up to ``rho_max``), ``penalty`` (loss −obj + ρ Σ g_i, fixed ρ) or
            ``regret_budget`` (loss −obj + Σλ_i g_i with λ_i ← λ_i·exp(budget_rate·(log(g_i/obj)
            − log b_t)) every ``lambda_every`` steps, the budget b_t decaying geometrically from
            ``budget_start`` to ``budget_end``).
        inner_steps, inner_lr, train_starts: the training-time misreport search (gradient steps
            per training step from the cached misreports, Adam step relative to the type range,
            misreports per example).
        log_every: steps between host synchronisations (progress bar, history, NaN check).
        ckpt_every: steps between checkpoints.
        constraints: the constraint families trained with their own multipliers; empty = the
            setting's own set (ex post: ``regret``, ``ir``; interim settings: ``interim_regret``,
            ``interim_ir``, ``budget``). Families a mechanism satisfies by construction are dropped.
        interim_nodes, interim_samples, interim_reports: interim settings with continuous types —
            own types per agent per step (stratified), sampled profiles of the others where they
            cannot be enumerated (Monte Carlo with common random numbers), and random reports tried
            besides the own types. Finite type spaces are always exact. Learned symmetric auctions
            read ``batch`` as own values per bidder, ``interim_samples`` as the others' profiles
            and ``interim_reports`` as the deviation bids per step.
        symmetric: the ``[train.symmetric]`` table, options of the symmetric-auction trainer only
            (:class:`diffmech.symmetric_train.SymmetricOptions`).
    """

    steps: int = 2000
    batch: int = 512
    train_size: int = 16384
    lr: float = 1e-3
    lr_schedule: str = "constant"
    seed: int = 0
    method: str = "augmented_lagrangian"
    rho: float = 1.0
    rho_increment: float = 1.0
    rho_every: int = 1000
    rho_max: float = 100.0
    lambda_init: float = 1.0
    lambda_every: int = 100
    budget_start: float = 1e-2
    budget_end: float = 1e-4
    budget_rate: float = 0.1
    inner_steps: int = 25
    inner_lr: float = 0.05
    train_starts: int = 1
    log_every: int = 100
    ckpt_every: int = 500
    constraints: tuple = ()
    interim_nodes: int = 32
    interim_samples: int = 256
    interim_reports: int = 16
    symmetric: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.symmetric:
            from .symmetric_train import SymmetricOptions

            SymmetricOptions.from_table(self.symmetric)
        if not isinstance(self.constraints, (list, tuple)) or not all(c in CONSTRAINTS for c in self.constraints):
            raise ConfigError(f"train.constraints must be a list drawn from {', '.join(CONSTRAINTS)}, got {self.constraints!r}")
        if len(set(self.constraints)) != len(self.constraints):
            raise ConfigError(f"train.constraints lists a family twice: {list(self.constraints)}")
        object.__setattr__(self, "constraints", tuple(self.constraints))
        positive_ints = ("steps", "batch", "train_size", "rho_every", "lambda_every", "train_starts", "log_every", "ckpt_every",
                         "interim_nodes", "interim_samples", "interim_reports")
        for name in positive_ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {v!r}")
        if not isinstance(self.inner_steps, int) or self.inner_steps < 0:
            raise ConfigError(f"train.inner_steps must be a non-negative integer, got {self.inner_steps!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"train.seed must be a non-negative integer, got {self.seed!r}")
        for name in ("lr", "rho", "inner_lr", "budget_start", "budget_end", "budget_rate", "rho_max"):
            v = getattr(self, name)
            if not _is_number(v) or not v > 0 or not math.isfinite(v):
                raise ConfigError(f"train.{name} must be a positive finite number, got {v!r}")
        for name in ("rho_increment", "lambda_init"):
            v = getattr(self, name)
            if not _is_number(v) or v < 0 or not math.isfinite(v):
                raise ConfigError(f"train.{name} must be a non-negative number, got {v!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"train.lr_schedule {self.lr_schedule!r} is unknown; choose one of: {', '.join(LR_SCHEDULES)}")
        if self.method not in METHODS:
            raise ConfigError(f"train.method {self.method!r} is unknown; choose one of: {', '.join(METHODS)}")
        if self.train_size % self.batch:
            raise ConfigError(
                f"train.train_size ({self.train_size}) must be a multiple of train.batch ({self.batch})"
            )


@dataclass(frozen=True)
class EvalConfig:
    """Strength of the test-time evaluation (the ``[eval]`` table and ``diffmech eval`` flags).

    Attributes:
        samples: profiles evaluated. seed: PRNG seed of the evaluation samples and attack starts.
        grid_points: own reports tried exhaustively per (profile, agent) when the own type is
            one-dimensional (at least 1000 for the published figures).
        attack_starts, attack_steps, attack_lr: gradient-ascent attack (random starting points
            per (profile, agent), steps, Adam step relative to the type range). Where the own
            type is one-dimensional the exhaustive grid replaces the random starts and the
            gradient ascent refines the best grid point.
        memory_mb: the memory budget of one compiled evaluation call, in MiB (default 2048).
            Every evaluator works in chunks (of profiles, reports, own types) sized so that the
            arrays of one call fit in it, estimated by tracing the kernel (:mod:`diffmech.memory`:
            the sum of all its intermediate arrays, an upper bound of XLA's real use). Results
            do not depend on it beyond float32 round-off. Raise it on a GPU with memory to spare.
        chunk: optional cap on the mechanism evaluations per compiled call, on top of
            ``memory_mb`` (0, the default: no cap). Older configs set it as the memory knob;
            they still load, and the budget still holds.
        symmetry_samples: profiles on which symmetry and rank preservation are measured
            (multi-item settings whose items share one prior).
        interim_types, interim_nodes, interim_samples: interim settings with continuous types —
            own types per agent whose interim regret is measured (an even grid when there are at
            most two goods), Gauss–Legendre nodes for the others' expectation when n = 2 (at most
            16384 in all: fewer per good when there are several goods),
            and sampled profiles of the others (common random numbers) when n > 2.
    """

    samples: int = 10000
    seed: int = 1
    grid_points: int = 1000
    attack_starts: int = 8
    attack_steps: int = 100
    attack_lr: float = 0.02
    memory_mb: float = 2048.0
    chunk: int = 0
    symmetry_samples: int = 2000
    interim_types: int = 200
    interim_nodes: int = 2048
    interim_samples: int = 4096

    def __post_init__(self):
        for name in ("samples", "grid_points", "symmetry_samples", "interim_types", "interim_nodes", "interim_samples"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"eval.{name} must be a positive integer, got {v!r}")
        for name in ("attack_starts", "attack_steps", "seed", "chunk"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"eval.{name} must be a non-negative integer, got {v!r}")
        if not _is_number(self.attack_lr) or not self.attack_lr > 0 or not math.isfinite(self.attack_lr):
            raise ConfigError(f"eval.attack_lr must be a positive number, got {self.attack_lr!r}")
        if not _is_number(self.memory_mb) or not self.memory_mb > 0 or not math.isfinite(self.memory_mb):
            raise ConfigError(f"eval.memory_mb must be a positive number of MiB (e.g. 2048), got {self.memory_mb!r}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dataclass_from(cls, table: Any, name: str):
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table of key = value pairs")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(unknown)}; known keys: {', '.join(known)}")
    kwargs = {}
    for k, v in table.items():
        default = known[k].default
        if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        kwargs[k] = v
    return cls(**kwargs)


@dataclass(frozen=True)
class Run:
    """A resolved config: the setting object, the mechanism table and the training options."""

    config: dict
    setting: Any
    mechanism_cfg: dict
    train: TrainConfig
    eval: EvalConfig

    @property
    def mechanism_class(self):
        from .mechanisms import MECHANISMS

        return MECHANISMS[self.mechanism_cfg["kind"]]

    @property
    def trainable(self) -> bool:
        options = {k: v for k, v in self.mechanism_cfg.items() if k != "kind"}
        return self.mechanism_class.is_trainable(options)

    def build_mechanism(self, key: jax.Array):
        from .mechanisms import mechanism_from_config

        return mechanism_from_config(self.setting, self.mechanism_cfg, key)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.config)


def parse_toml(text: str, where: str = "config") -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where} is not valid TOML: {e}") from None


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None
    return parse_toml(text, str(path))


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(cfg: dict, overrides: list[str] | None) -> dict:
    """Apply ``key=value`` overrides (dotted keys, integer list indices) to a copy of ``cfg``."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like key=value, e.g. --set train.steps=500")
        key, value = item.split("=", 1)
        set_value(cfg, key.strip(), _parse_value(value.strip()), where=f"--set {item!r}")
    return cfg


def set_value(cfg: dict, key: str, value: Any, where: str = "") -> None:
    """Set the dotted ``key`` (integer components index lists) of ``cfg`` in place, creating
    missing tables; ``where`` prefixes the error message."""
    where = where or key
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{where}: empty component in the key {key!r}")
    node: Any = cfg
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{where}: {here} is not an index of a list of length {len(node)}")
            idx: Any = int(part)
        elif isinstance(node, dict):
            idx = part
        else:
            raise ConfigError(f"{where}: {'.'.join(parts[:depth])} is a value, not a table or list")
        if last:
            node[idx] = value
        else:
            if isinstance(node, dict) and idx not in node:
                node[idx] = {}
            node = node[idx]


def resolve(cfg: dict) -> Run:
    """Validate a config dictionary and fill in defaults. Raises ConfigError with one line."""
    from .mechanisms import MECHANISMS
    from .settings import setting_from_config

    if not isinstance(cfg, dict):
        raise ConfigError("a config must be a TOML document with [setting] and [mechanism] tables")
    unknown = sorted(set(cfg) - {"setting", "mechanism", "train", "eval"})
    if unknown:
        raise ConfigError(f"unknown top-level table(s): {', '.join(unknown)}; expected [setting], [mechanism], [train], [eval]")
    if "setting" not in cfg:
        raise ConfigError("the config has no [setting] table; add one with kind = \"single_item\" and priors")
    if "mechanism" not in cfg:
        raise ConfigError("the config has no [mechanism] table; add one with kind = \"regretnet\" (or see 'diffmech list')")
    setting = setting_from_config(cfg["setting"])
    mcfg = cfg["mechanism"]
    if not isinstance(mcfg, dict) or not isinstance(mcfg.get("kind"), str) or mcfg.get("kind") not in MECHANISMS:
        kind = mcfg.get("kind") if isinstance(mcfg, dict) else None
        raise ConfigError(f"unknown mechanism kind {kind!r}; choose one of: {', '.join(MECHANISMS)}")
    train = _dataclass_from(TrainConfig, cfg.get("train"), "train")
    ev = _dataclass_from(EvalConfig, cfg.get("eval"), "eval")
    # Build once to validate the mechanism's options (cheap: analytic ones compute constants).
    from .mechanisms import mechanism_from_config

    mechanism_from_config(setting, mcfg, jax.random.PRNGKey(0))
    resolved = {
        "setting": setting.to_config(),
        "mechanism": dict(mcfg),
        "train": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(train).items() if k != "symmetric" or v},
        "eval": dataclasses.asdict(ev),
    }
    return Run(resolved, setting, dict(mcfg), train, ev)
