"""diffmech: differentiable mechanism design in JAX.

Public entry points:

- :func:`load` — a checkpoint directory → ``Checkpoint`` with ``.mechanism``, ``.setting``,
  ``.config``, ``.metrics``;
- :func:`train` — a config (dict, TOML path or resolved ``Run``) → ``TrainResult``;
- :func:`evaluate` — metrics of any mechanism on a setting (strong regret attack, benchmarks).
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import symmetry
from .checkpoint import Checkpoint, load
from .config import EvalConfig, Run, TrainConfig, apply_overrides, load_config, resolve
from .errors import CheckpointError, ConfigError, DiffmechError, TrainingDiverged
from .evaluate import evaluate
from .mechanisms import MECHANISMS, Mechanism, mechanism_from_config, transforms
from .outcome import Outcome
from .priors import PRIORS, Prior
from .settings import SETTINGS, IdenticalItems, MultiItem, PublicGoods, Setting, SingleItem, setting_from_config


def train(config, out_dir=None, *, resume: bool = False, progress: bool = False, overrides=None):
    """Train from a config: a dict, a path to a TOML file, or a resolved :class:`Run`.

    Returns a :class:`~diffmech.train.TrainResult` whose ``.mechanism`` is the trained mechanism.
    """
    from pathlib import Path

    from .trainer import train as _train

    if isinstance(config, Run):
        run = config
    else:
        raw = load_config(config) if isinstance(config, (str, Path)) else config
        run = resolve(apply_overrides(raw, overrides))
    return _train(run, out_dir, resume=resume, progress=progress)


__all__ = [
    "Checkpoint", "CheckpointError", "ConfigError", "DiffmechError", "EvalConfig", "MECHANISMS", "Mechanism",
    "IdenticalItems", "MultiItem", "Outcome", "PublicGoods", "PRIORS", "Prior", "Run", "SETTINGS", "Setting", "SingleItem", "TrainConfig",
    "TrainingDiverged", "symmetry", "transforms",
    "apply_overrides", "evaluate", "load", "load_config", "mechanism_from_config", "resolve", "setting_from_config",
    "train",
]
