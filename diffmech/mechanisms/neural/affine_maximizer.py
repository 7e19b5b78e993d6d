"""Affine-maximizer auctions (Roberts 1979; VVCA and AMA of Sandholm & Likhodedov 2015) with the
softmax training relaxation of Curry, Sandholm & Dickerson (2023), and multi-item VCG.

Mathematics. n bidders, m items, values v_i ∈ R^m_{≥0}. The allocation set A is every
deterministic feasible allocation, enumerated once at construction: additive values — each item
to one bidder or to nobody, (n + 1)^m allocations; unit demand — the partial matchings of bidders
to items, Σ_k C(n,k) C(m,k) k! of them. Writing v_i(a) = Σ_j v_ij · 1{a gives j to i}, the rule
with bidder weights w_i > 0 (w_i = exp(θ_i)) and boosts λ(a) is

    a*(v) = argmax_{a ∈ A} Σ_i w_i v_i(a) + λ(a)                              (ties: first in A)
    p_i(v) = (1/w_i) [ max_{a ∈ A} (Σ_{l≠i} w_l v_l(a) + λ(a)) − (Σ_{l≠i} w_l v_l(a*) + λ(a*)) ].

Boosts (option ``boosts``): ``"vvca"`` — λ(a) = Σ_i λ_i(S_i(a)), one learned boost per bidder
and bundle S_i(a) ⊆ items that bidder i receives in a (virtual valuations combinatorial auction);
``"ama"`` — one free λ(a) per allocation.

Why DSIC and IR for every parameter value. Let h_i(v_−i) = max_a Σ_{l≠i} w_l v_l(a) + λ(a),
which does not depend on i's report. Reporting b_i, bidder i gets

    v_i(a*(b)) − p_i(b) = (1/w_i) [ Σ_l w_l v_l(a*(b)) + λ(a*(b)) − h_i(v_−i) ]     (v_l = b_l, l ≠ i),

and the truthful report maximises the bracket over all of A (Groves' argument with the affine
welfare), so no report does better: DSIC. At the truthful report the bracket is
max_a [Σ_l w_l v_l(a) + λ(a)] − h_i ≥ 0, because Σ_l w_l v_l(a) + λ(a) ≥ Σ_{l≠i} w_l v_l(a) + λ(a)
for every a when v_i ≥ 0: IR. Payments are ≥ 0 because a* is one of the allocations in the max.
(Hence settings with negative values are refused.)

Training (``training_outcome``, Curry et al. 2023): with temperature τ (option ``temperature``,
value units, default 0.01 × the value scale of :func:`~diffmech.mechanisms.neural.rochetnet.value_scale`)
the argmax becomes the softmax weights s(a) = softmax_a((Σ_l w_l v_l(a) + λ(a)) / τ), the
allocation Σ_a s(a)·a, and the max in the payment the log-sum-exp:

    p_i = (1/w_i) [ τ log Σ_a exp((Σ_{l≠i} w_l v_l(a) + λ(a)) / τ)
                    − Σ_a s(a) (Σ_{l≠i} w_l v_l(a) + λ(a)) − τ H(s) ],

with H(s) = −Σ_a s(a) log s(a): the lottery s maximises the entropy-regularised affine welfare,
so these are its Groves payments and the relaxation is itself IC and IR (without the τH term the
relaxed revenue grows like τH/w_i and training drives the weights to zero). As τ → 0 both tend
to the hard rule at every profile without ties.

VCG is the affine maximiser with w = 1 and λ = 0 (Clarke pivot payments). :class:`MultiItemVCG` is
that instance as a subclass with ``trainable = False`` and kind ``"vcg"``; it is not registered on
its own: the registered kind ``"vcg"`` (:class:`~diffmech.mechanisms.analytic.second_price.VCG`)
builds it for multi_item settings via :func:`multi_item_vcg`. With additive values VCG separates
by item (the welfare is a sum over items and so are the Clarke payments), so when A is too large
to enumerate :func:`multi_item_vcg` returns :class:`ItemwiseVCG`: a second-price auction per item.

Vectorisation: with X ∈ {0,1}^{|A|×n×m} the allocations, V = einsum('bij,aij->bai', v, X) is
every bidder's value of every allocation in one contraction, and everything else is a reduction
over the allocation axis. A is stored as a static tuple (it is configuration, rebuilt from the
setting, never trained or checkpointed); the learnable leaves are ``weight_logits`` (n,) and
``boosts`` ((n, #bundles) for VVCA, (|A|,) for AMA).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ...errors import ConfigError
from ...outcome import Outcome
from ..analytic.second_price import SecondPrice
from ..base import Mechanism, check_options
from .rochetnet import parse_temperature, value_scale

MAX_ALLOCATIONS = 4096
BOOSTS = ("vvca", "ama")


def count_allocations(n: int, m: int, valuation: str) -> int:
    """|A|: (n+1)^m for additive values, Σ_k C(n,k) C(m,k) k! partial matchings for unit demand."""
    if valuation == "unit_demand":
        return sum(math.comb(n, k) * math.comb(m, k) * math.factorial(k) for k in range(min(n, m) + 1))
    return (n + 1) ** m


def enumerate_allocations(n: int, m: int, valuation: str) -> tuple[tuple[int, ...], ...]:
    """Every deterministic feasible allocation as a tuple (owner of item 1, …, owner of item m),
    owner −1 meaning nobody; in lexicographic order, so the empty allocation comes first."""
    if valuation != "unit_demand":
        return tuple(itertools.product(range(-1, n), repeat=m))
    out: list[tuple[int, ...]] = []

    def extend(prefix: tuple[int, ...], used: frozenset):
        if len(prefix) == m:
            out.append(prefix)
            return
        for owner in range(-1, n):
            if owner < 0 or owner not in used:
                extend(prefix + (owner,), used | {owner} if owner >= 0 else used)

    extend((), frozenset())
    return tuple(out)


@functools.lru_cache(maxsize=32)
def _tables(assign: tuple[tuple[int, ...], ...], n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Allocation tensor X (|A|, n, m) in {0,1}, bundle index (|A|, n) of what each bidder gets
    (into the distinct bundles, the empty one first) and the number of distinct bundles."""
    owners = np.asarray(assign, dtype=np.int64).reshape(len(assign), -1)  # (A, m)
    X = (owners[:, None, :] == np.arange(n)[None, :, None]).astype(np.float64)  # (A, n, m)
    rows = X.reshape(-1, X.shape[-1])  # every (allocation, bidder) bundle as a 0/1 row
    uniq, index = np.unique(rows, axis=0, return_inverse=True)  # sorted: the empty bundle first
    return X, np.asarray(index).reshape(X.shape[:2]), int(uniq.shape[0])


def _check_setting(kind: str, setting) -> tuple[int, int, str]:
    if getattr(setting, "kind", "") != "multi_item":
        raise ConfigError(f"mechanism {kind!r} needs a multi_item setting (n bidders, m items); got {getattr(setting, 'kind', '?')!r}")
    n, m, valuation = setting.n_agents, setting.n_items, setting.valuation
    lo, _ = setting.type_bounds()
    if np.any(np.asarray(lo) < 0):
        raise ConfigError(f"mechanism {kind!r} is IR only for values ≥ 0; the setting's priors allow negative values")
    count = count_allocations(n, m, valuation)
    if count > MAX_ALLOCATIONS:
        raise ConfigError(
            f"mechanism {kind!r} enumerates every allocation: {n} bidders × {m} items ({valuation}) have {count}, "
            f"more than {MAX_ALLOCATIONS}; use a setting with fewer bidders or items"
        )
    return n, m, valuation


class AffineMaximizer(Mechanism):
    """Affine maximiser over all deterministic allocations: VVCA or AMA boosts, learned weights.

    See the module docstring. Options: ``boosts`` ∈ {vvca, ama} (default vvca), ``temperature``
    (τ of the training relaxation, value units, default 0.01 × value scale). Parameters start at
    VCG (w = 1, λ = 0); the PRNG key is not used.
    """

    weight_logits: Float[Array, " agents"]
    boosts: Float[Array, "..."]
    assign: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    n_agents: int = eqx.field(static=True)
    n_items: int = eqx.field(static=True)
    boost_kind: str = eqx.field(static=True)
    temperature: float = eqx.field(static=True)

    kind: ClassVar[str] = "affine_maximizer"
    summary: ClassVar[str] = (
        "affine-maximizer auction over all allocations (VVCA/AMA; Sandholm-Likhodedov, Curry et al. 2023); "
        "keys boosts (vvca|ama), temperature"
    )
    trainable: ClassVar[bool] = True
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def build(cls, setting, boosts: str = "vvca", temperature: float | None = None):
        """Unit weights and zero boosts (VCG) on ``setting``'s allocations."""
        n, m, valuation = _check_setting(cls.kind, setting)
        if boosts not in BOOSTS:
            raise ConfigError(f"mechanism.boosts must be one of {', '.join(BOOSTS)}, got {boosts!r}")
        assign = enumerate_allocations(n, m, valuation)
        _, _, n_bundles = _tables(assign, n)
        shape = (n, n_bundles) if boosts == "vvca" else (len(assign),)
        tau = parse_temperature(cls.kind, temperature, value_scale(setting, cls.kind), relative=0.01)
        return cls(jnp.zeros((n,)), jnp.zeros(shape), assign, n, m, boosts, tau)

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key: PRNGKeyArray | None = None) -> "AffineMaximizer":
        check_options(cls.kind, options, ("boosts", "temperature"))
        return cls.build(setting, options.get("boosts", "vvca"), options.get("temperature"))

    # ------------------------------------------------------------------ the rule

    @property
    def n_allocations(self) -> int:
        return len(self.assign)

    def allocations(self) -> np.ndarray:
        """The allocation set as a 0/1 array (|A|, n, m)."""
        return _tables(self.assign, self.n_agents)[0]

    def weights(self) -> Float[Array, " agents"]:
        return jnp.exp(self.weight_logits)

    def boost_per_allocation(self) -> Float[Array, " allocations"]:
        """λ(a) for every allocation: Σ_i λ_i(S_i(a)) (VVCA) or the free λ(a) (AMA)."""
        if self.boost_kind == "ama":
            return self.boosts
        _, bundle, _ = _tables(self.assign, self.n_agents)
        return jnp.sum(self.boosts[np.arange(self.n_agents)[None, :], bundle], axis=-1)

    def _scores(self, reports):
        """X (|A|, n, m), weights (n,), affine welfare (batch, |A|) and the others' part
        Σ_{l≠i} w_l v_l(a) + λ(a) (batch, |A|, n)."""
        reports = jnp.asarray(reports)
        dtype = jnp.result_type(reports.dtype, self.weight_logits.dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = self.weight_logits.dtype
        b = reports.astype(dtype)
        X = jnp.asarray(self.allocations(), dtype)
        w = self.weights().astype(dtype)
        lam = self.boost_per_allocation().astype(dtype)
        wv = jnp.einsum("bij,aij->bai", b, X) * w  # w_i v_i(a), (batch, A, n)
        total = jnp.sum(wv, axis=-1) + lam  # (batch, A)
        others = total[..., None] - wv  # (batch, A, n)
        return X, w, total, others

    def __call__(self, reports: Float[Array, "batch agents items"]) -> Outcome:
        X, w, total, others = self._scores(reports)
        star = jnp.argmax(total, axis=-1)  # (batch,), first maximiser
        h = jnp.max(others, axis=1)  # (batch, n)
        at_star = jnp.take_along_axis(others, star[:, None, None], axis=1)[:, 0]  # (batch, n)
        return Outcome(alloc=X[star], payments=(h - at_star) / w)

    def training_outcome(self, reports: Float[Array, "batch agents items"], temperature: float | None = None) -> Outcome:
        """The entropy-regularised affine maximiser (Curry et al. 2023): the lottery
        s = softmax(total/τ) maximises Σ_a s_a total_a + τ·H(s), and its Groves payments are

            p_i = (1/w_i) [τ·LSE_a(others_ia/τ) − (Σ_a s_a others_ia + τ·H(s))],

        so the relaxation is itself IC and IR. Without the τ·H(s) term the relaxed payments
        exceed the value by τ·H/w_i, which training exploits by driving the weights to zero."""
        tau = self.temperature if temperature is None else float(temperature)
        X, w, total, others = self._scores(reports)
        log_s = jax.nn.log_softmax(total / tau, axis=-1)  # (batch, A)
        s = jnp.exp(log_s)
        entropy = -jnp.sum(s * log_s, axis=-1)  # (batch,)
        alloc = jnp.einsum("ba,aij->bij", s, X)
        h = tau * jax.nn.logsumexp(others / tau, axis=1)  # (batch, n)
        expected = jnp.einsum("ba,ban->bn", s, others) + tau * entropy[:, None]
        return Outcome(alloc=alloc, payments=(h - expected) / w)


class MultiItemVCG(AffineMaximizer):
    """VCG for several items: the affine maximiser with w = 1 and λ = 0 (Clarke payments
    p_i = max_a Σ_{l≠i} v_l(a) − Σ_{l≠i} v_l(a*)). Nothing to learn; built by kind ``"vcg"``."""

    kind: ClassVar[str] = "vcg"
    summary: ClassVar[str] = "VCG over all allocations (affine maximiser with unit weights, no boosts)"
    trainable: ClassVar[bool] = False

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "MultiItemVCG":
        check_options(cls.kind, options, ())
        return cls.build(setting)


class ItemwiseVCG(Mechanism):
    """VCG for additive values: a second-price auction (no reserve) on every item separately.

    With additive values the welfare and every Clarke payment are sums over items, so VCG is the
    item-wise Vickrey auction; used when the allocations are too many to enumerate.
    """

    kind: ClassVar[str] = "vcg"
    summary: ClassVar[str] = "VCG for additive values: a second-price auction per item"
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "ItemwiseVCG":
        check_options(cls.kind, options, ())
        if getattr(setting, "kind", "") != "multi_item" or setting.valuation != "additive":
            raise ConfigError("item-wise VCG needs a multi_item setting with additive values")
        return cls()

    def __call__(self, reports: Float[Array, "batch agents items"]) -> Outcome:
        reports = jnp.asarray(reports)
        batch, n, m = reports.shape
        per_item = jnp.moveaxis(reports, 2, 1).reshape(batch * m, n, 1)  # items into the batch
        out = SecondPrice(reserve=0.0)(per_item)
        alloc = jnp.moveaxis(out.alloc.reshape(batch, m, n), 1, 2)
        return Outcome(alloc=alloc, payments=out.payments.reshape(batch, m, n).sum(axis=1))


def multi_item_vcg(setting) -> Mechanism:
    """VCG on a multi_item setting. Additive values: welfare separates over items, so VCG is a
    second-price auction per item (:class:`ItemwiseVCG`, exact and cheap at any size). Unit demand:
    :class:`MultiItemVCG` over the enumerated partial matchings (≤ MAX_ALLOCATIONS), else
    ConfigError."""
    n, m, valuation = setting.n_agents, setting.n_items, setting.valuation
    if valuation == "additive":
        return ItemwiseVCG()
    if count_allocations(n, m, valuation) <= MAX_ALLOCATIONS:
        return MultiItemVCG.build(setting)
    raise ConfigError(
        f"VCG with unit demand enumerates the partial matchings: {n} bidders × {m} items have "
        f"{count_allocations(n, m, valuation)}, more than {MAX_ALLOCATIONS}; use fewer bidders or items"
    )
