"""Checkpoints: data only (no pickle), written atomically, verified on load.

A *published checkpoint* is a directory holding

- ``weights.eqx`` — the mechanism's array leaves (equinox leaf serialisation: one ``.npy`` record
  per leaf, read back with ``allow_pickle=False``),
- ``config.toml`` — the resolved config (setting, mechanism, training) that rebuilds the module
  skeleton the weights are loaded into,
- ``metrics.json`` — the evaluation metrics, ``history.json`` — the training curve,
- ``manifest.json`` — format version, library and JAX versions, seed, step and the SHA-256 of
  the weights and the config, plus figures (``*.png``).

Loading never runs code from the files: TOML and JSON are parsed as data, the weights are raw
arrays, and a checksum mismatch (truncated or tampered file) raises :class:`CheckpointError`.

Resume state (optimizer state, multipliers, PRNG key, misreport cache) lives under ``resume/`` in
the run directory and is not part of a published checkpoint.

Atomicity: every file is written to a temporary name in the same directory and moved into place
with :func:`os.replace`. New weights are first staged under a step-specific name; the manifest,
which carries the checksums, is the commit point: it names the staged file until that file has
been renamed to ``weights.eqx``. A run killed at any moment of a save leaves either the old
consistent checkpoint or the new one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .errors import CheckpointError

FORMAT_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)
MANIFEST = "manifest.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def serialise(tree) -> bytes:
    """Array leaves of a pytree as bytes (equinox leaf serialisation, no pickle)."""
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    return buf.getvalue()


def _load_leaf(f, x):
    if isinstance(x, (jax.Array, np.ndarray, np.generic)) or eqx.is_array(x):
        arr = np.load(f, allow_pickle=False)
        if arr.shape != np.shape(x):
            raise ValueError(f"leaf shape {arr.shape} does not match the expected {np.shape(x)}")
        return jax.numpy.asarray(arr) if isinstance(x, jax.Array) else arr
    if isinstance(x, (bool, int, float, complex)):
        val = np.load(f, allow_pickle=False).item()
        return type(x)(val)
    return x


def deserialise(data: bytes, like, what: str):
    """Inverse of :func:`serialise` into the skeleton ``like``; errors become CheckpointError."""
    try:
        buf = io.BytesIO(data)
        out = eqx.tree_deserialise_leaves(buf, like, filter_spec=_load_leaf)
        if buf.read(1):
            raise ValueError("trailing bytes after the last array")
        return out
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure means a bad file
        raise CheckpointError(f"{what} is truncated or does not match its config ({e}); re-train or restore it") from None


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{what} is missing: {path}") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{what} at {path} is unreadable or not valid JSON ({e})") from None


def _versions() -> dict[str, str]:
    from . import __version__

    return {"diffmech": __version__, "jax": jax.__version__, "equinox": eqx.__version__}


def save_published(directory: Path, mechanism, config_toml: str, *, seed: int, step: int) -> None:
    """Write weights, config and manifest of a checkpoint atomically (manifest last)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    current = {}
    if (directory / MANIFEST).exists():
        try:
            current = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError):
            current = {}
    for stale in directory.glob("weights.step*.eqx"):
        if stale.name != current.get("staged_weights"):  # the manifest may still point at it
            stale.unlink(missing_ok=True)
    weights = serialise(mechanism)
    manifest = {
        "format_version": FORMAT_VERSION,
        **_versions(),
        "seed": int(seed),
        "step": int(step),
        "files": {
            "weights.eqx": sha256_bytes(weights),
            "config.toml": sha256_bytes(config_toml.encode("utf-8")),
        },
    }
    # Write the new weights under a step-specific name first; the manifest is the commit point.
    staged = directory / f"weights.step{int(step)}.eqx"
    atomic_write_bytes(staged, weights)
    atomic_write_text(directory / "config.toml", config_toml)
    atomic_write_json(directory / MANIFEST, {**manifest, "staged_weights": staged.name})
    os.replace(staged, directory / "weights.eqx")
    atomic_write_json(directory / MANIFEST, manifest)


def verified_bytes(directory: Path, name: str, manifest: dict) -> bytes:
    """Read ``name`` from the checkpoint and check it against the manifest's checksum."""
    directory = Path(directory)
    path = directory / name
    staged = manifest.get("staged_weights")
    if staged is not None and not (isinstance(staged, str) and re.fullmatch(r"weights\.step\d+\.eqx", staged)):
        raise CheckpointError(f"{directory}/{MANIFEST} names an unexpected staged file {staged!r}; the manifest was modified")
    if name == "weights.eqx" and staged and (directory / staged).exists():
        path = directory / staged  # killed between staging and the final rename
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {directory} has no {name}; it is incomplete") from None
    expected = manifest.get("files", {}).get(name)
    if expected is None or sha256_bytes(data) != expected:
        raise CheckpointError(
            f"checksum mismatch for {name} in {directory}: the file is truncated or was modified; "
            "do not use it (re-train or restore the original)"
        )
    return data


def read_manifest(directory: Path) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoint directory at {directory}; pass a directory written by 'diffmech train'")
    manifest = read_json(directory / MANIFEST, f"checkpoint manifest of {directory}")
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory}/{MANIFEST} has format version {manifest.get('format_version') if isinstance(manifest, dict) else '?'}; "
            f"this diffmech reads version {FORMAT_VERSION}"
        )
    return manifest


# ----------------------------------------------------------------------------- resume state


def save_resume(run_dir: Path, state, meta: dict) -> None:
    """Resume state under ``run_dir/resume``: the serialised TrainState plus a JSON pointer."""
    rdir = Path(run_dir) / "resume"
    data = serialise(state)
    name = f"state.step{int(meta['step'])}.eqx"
    atomic_write_bytes(rdir / name, data)
    atomic_write_json(rdir / "state.json", {**meta, "file": name, "sha256": sha256_bytes(data)})
    for p in rdir.glob("state.step*.eqx"):
        if p.name != name:
            p.unlink(missing_ok=True)


def load_resume(run_dir: Path, like):
    rdir = Path(run_dir) / "resume"
    meta = read_json(rdir / "state.json", f"resume state of {run_dir}")
    try:
        data = (rdir / meta["file"]).read_bytes()
    except (KeyError, FileNotFoundError, TypeError):
        raise CheckpointError(f"resume state in {rdir} is incomplete; start a fresh run without --resume") from None
    if sha256_bytes(data) != meta.get("sha256"):
        raise CheckpointError(f"resume state in {rdir} is truncated or modified; start a fresh run without --resume")
    return deserialise(data, like, f"resume state in {rdir}"), meta


@dataclass
class Checkpoint:
    """A loaded checkpoint: what :func:`diffmech.load` returns."""

    path: Path
    mechanism: Any
    setting: Any
    config: dict
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    manifest: dict = field(default_factory=dict)


def load(path) -> Checkpoint:
    """Load a checkpoint directory written by ``diffmech train`` (or a published one).

    Verifies the manifest's checksums, rebuilds the setting and the mechanism skeleton from
    ``config.toml`` and reads the weights into it. Never executes code from the files.
    """
    from .config import parse_toml, resolve

    directory = Path(path)
    manifest = read_manifest(directory)
    cfg_text = verified_bytes(directory, "config.toml", manifest).decode("utf-8")
    raw = parse_toml(cfg_text, str(directory / "config.toml"))
    run = resolve(raw)
    skeleton = run.build_mechanism(jax.random.PRNGKey(0))
    weights = verified_bytes(directory, "weights.eqx", manifest)
    mechanism = deserialise(weights, skeleton, f"weights of {directory}")
    metrics = read_json(directory / "metrics.json", "metrics") if (directory / "metrics.json").exists() else {}
    history = read_json(directory / "history.json", "history") if (directory / "history.json").exists() else []
    return Checkpoint(directory, mechanism, run.setting, run.config, metrics, history, manifest)
