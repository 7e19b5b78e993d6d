"""User-facing errors.

Every error a user can cause (a malformed config, an unknown distribution, a negative width, a
tampered checkpoint) is raised as a :class:`DiffmechError` whose message is one line that says what
is wrong and how to fix it. The command line prints that line on stderr and exits with code 2.
"""


class DiffmechError(Exception):
    """An error caused by the user's input; its message is one actionable line."""


class ConfigError(DiffmechError):
    """A configuration (TOML file or ``--set`` override) is malformed or infeasible."""


class CheckpointError(DiffmechError):
    """A checkpoint or run directory is missing, truncated, tampered with or incompatible."""


class TrainingDiverged(DiffmechError):
    """Training produced a non-finite loss or parameters; the last good checkpoint is kept."""
