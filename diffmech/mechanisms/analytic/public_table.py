"""A public-goods mechanism given as a table over every profile of a finite type space."""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ...errors import ConfigError
from ...outcome import public_goods_outcome
from ..base import Mechanism


def profile_index(atoms, reports) -> jnp.ndarray:
    """Row of the profile table for each reported profile: reports are snapped to the nearest
    type vector k_i and the row is Σ_i k_i K^(n−1−i) (lexicographic order of
    ``itertools.product(range(K), repeat=n)``)."""
    d = jnp.sum((reports[..., None, :] - atoms) ** 2, axis=-1)  # (batch, n, K)
    k = jnp.argmin(d, axis=-1)
    n, big_k = reports.shape[1], atoms.shape[0]
    place = big_k ** jnp.arange(n - 1, -1, -1)
    return jnp.sum(k * place, axis=-1)


def all_profiles(atoms: np.ndarray, n: int) -> np.ndarray:
    """Every profile of n agents over the type vectors ``atoms`` (K, M), shape (K^n, n, M), in
    the row order of :func:`profile_index`."""
    idx = np.array(list(itertools.product(range(len(atoms)), repeat=n)), np.int64).reshape(-1, n)
    return np.asarray(atoms)[idx]


class PublicGoodsTable(Mechanism):
    """ρ^j(θ), η_i^j(θ) and t_i(θ) stored for each of the K^n profiles of a finite type space.

    Row order: profile (k_1, …, k_n) of type-vector indices is row Σ_i k_i K^(n−1−i). Reports
    off the type space are snapped to the nearest type vector. Built by the LP
    (:mod:`diffmech.public_lp`) and by the transforms; not from a config on its own.
    """

    atoms: Float[Array, "K goods"]
    provision: Float[Array, "P goods"]
    inclusion: Float[Array, "P agents goods"]
    payments: Float[Array, "P agents"]

    kind: ClassVar[str] = "public_table"
    summary: ClassVar[str] = "a public-goods mechanism as a table over a finite type space (built by the LP)"

    def __init__(self, atoms, provision, inclusion, payments):
        self.atoms = jnp.asarray(atoms)
        self.provision = jnp.asarray(provision)
        self.inclusion = jnp.asarray(inclusion)
        self.payments = jnp.asarray(payments)

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "PublicGoodsTable":
        raise ConfigError("public_table is built by the LP or a transform, not from a config; use kind = \"public_lp\"")

    def __call__(self, reports):
        dtype = reports.dtype if jnp.issubdtype(reports.dtype, jnp.floating) else jnp.result_type(float)
        row = profile_index(self.atoms.astype(dtype), reports.astype(dtype))
        return public_goods_outcome(
            self.provision[row].astype(dtype), self.inclusion[row].astype(dtype), self.payments[row].astype(dtype)
        )
