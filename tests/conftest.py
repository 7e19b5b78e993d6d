"""Test session setup: a persistent XLA compilation cache shared by the xdist workers.

Many tests compile the same program more than once (a run, then the same run resumed; the same
mechanism in several tests). The cache lives in a temporary directory made for this session and
removed at its end, so no test sees a compiled program from an earlier session. It changes no
number: a cache hit runs the executable a compilation would have produced.
"""

import shutil
import tempfile

import jax
import pytest


def _enable(directory: str) -> None:
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # an xdist worker: the controller made the directory
        directory = config.workerinput.get("diffmech_jax_cache")
    else:
        directory = config._diffmech_jax_cache = tempfile.mkdtemp(prefix="diffmech-jax-cache-")
    if directory:
        _enable(directory)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):  # xdist, on the controller: hand the directory to each worker
    node.workerinput["diffmech_jax_cache"] = node.config._diffmech_jax_cache


def pytest_unconfigure(config):
    directory = getattr(config, "_diffmech_jax_cache", None)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
