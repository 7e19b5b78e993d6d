"""Efficient allocation with ex post budget balance and ex post IR (the settings of Ke, "Auctioning
social surplus").

n agents with one-dimensional private types θ_i ~ F_i (independent, possibly asymmetric), utility
u_i = v_i(x_i, θ_i) − M_i, a cost c(x) of the allocation x and a reservation utility u̲_i(θ_i). The
allocation is fixed at the efficient rule

    x*(θ) ∈ argmax_x Σ_i v_i(x_i, θ_i) − c(x),        S(θ) = Σ_i v_i(x_i*(θ), θ_i) − c(x*(θ)),

and only the payments M(θ̂) are designed: interim (Bayesian) IC, ex post IR
v_i(x_i*(θ), θ_i) − M_i(θ) ≥ u̲_i(θ_i) and ex post budget balance Σ_i M_i(θ) = c(x*(θ))
(Ke Definition 2, "ex post socially efficient"). The models (``model`` key), all closed form:

- ``private_good``: one indivisible good (production already folded into the winner's surplus
  S(θ) = θ^γ/γ, ``gamma``, default 1: S(θ) = θ). x_i* = 1 for the highest type (ties split),
  v_i = S(θ_i)·x_i, c = 0, u̲ = 0 (Ke Section 3; power-law priors F_i = θ^{a_i} give Example 2).
- ``public_good``: the endogenous-quantity public good of Example 3: v_i = θ_i(2x − x²) for the
  common quantity x, c(x) = C x² (``cost`` C, default 1), so x* = Σθ/(C + Σθ) and
  S = (Σθ)²/(C + Σθ); reservation ``"autarky"`` (build alone: u̲(θ) = θ²/(C + θ), the default) or
  ``"zero"``.
- ``endowment``: the fixed-endowment good of Example 4: v_i = θ_i(2x_i − x_i²), Σ_i x_i = 1, c = 0;
  x_i* = max(0, 1 − λ/(2θ_i)) with λ the multiplier that makes the shares sum to 1 (for n = 2,
  x_i* = θ_i/(θ_1 + θ_2)). Reservation 0, or, with ``shares`` (initial endowments x̄_i summing to
  1), the value of the own endowment u̲_i = v(x̄_i, θ_i).
- ``partnership``: a linear partnership (Cramton–Gibbons–Klemperer): v_i = θ_i x_i, Σ x_i = 1, the
  whole asset to the highest type; ``shares`` x̄ (default equal) with u̲_i = θ_i x̄_i
  (``reservation = "zero"`` drops the outside option: then it is the private good with S(θ) = θ).

Budget: Σ_i M_i = c(x*) (payments are net transfers to the mechanism, which pays the cost).
Types and reports have shape ``(batch, n, 1)``; an outcome's ``alloc`` is ``(batch, n, 1)`` = x_i.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import ConfigError
from ..outcome import Outcome
from ..priors import Prior, prior_from_config, priors_from_list
from .base import Setting

MODELS = ("private_good", "public_good", "endowment", "partnership")
MAX_AGENTS = 10
RESERVATIONS = {"public_good": ("autarky", "zero")}
#: bisection steps for the multiplier of the endowment model (n > 2)
BISECTION = 80


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Efficient(Setting):
    """An efficient-allocation setting of Ke's paper (see the module docstring).

    Attributes:
        priors: one continuous prior per agent.
        model: ``private_good``, ``public_good``, ``endowment`` or ``partnership``.
        gamma: S(θ) = θ^γ/γ of the private good.
        cost: C of c(x) = C x² (public good).
        reservation: ``"zero"``, ``"autarky"`` (public good) or ``"shares"`` (endowment, partnership).
        shares: the initial endowments x̄_i (``endowment`` with shares, ``partnership``), else ``None``.
    """

    priors: tuple[Prior, ...]
    model: str = eqx.field(static=True)
    gamma: float = eqx.field(static=True)
    cost: float = eqx.field(static=True)
    reservation: str = eqx.field(static=True)
    shares: tuple[float, ...] | None = eqx.field(static=True)

    kind: ClassVar[str] = "efficient"
    summary: ClassVar[str] = (
        "Ke's efficient allocation with designed payments: interim IC, ex post IR, ex post budget balance "
        "(keys: model = private_good | public_good | endowment | partnership, n_agents + prior | priors, "
        "gamma, cost, reservation, shares)"
    )
    objective: ClassVar[str] = "surplus"
    ic: ClassVar[str] = "interim"
    ir: ClassVar[str] = "ex_post"
    #: training constraint families (``train.constraints`` picks among them); budget balance is
    #: left to the mechanism (the learned payments are balanced by construction)
    constraint_families: ClassVar[tuple[str, ...]] = ("interim_regret", "ex_post_ir", "ex_post_ir_worst", "monotonicity")
    default_constraints: ClassVar[tuple[str, ...]] = ("interim_regret", "ex_post_ir")
    finite: ClassVar[bool] = False
    quantile_dim: ClassVar[int] = 1

    def __init__(self, priors, model: str = "private_good", *, gamma: float = 1.0, cost: float = 1.0,
                 reservation: str | None = None, shares=None):
        priors = tuple(priors)
        if model not in MODELS:
            raise ConfigError(f"setting.model must be one of {', '.join(MODELS)}, got {model!r}")
        if not 2 <= len(priors) <= MAX_AGENTS:
            raise ConfigError(f"efficient settings need between 2 and {MAX_AGENTS} agents, got {len(priors)}")
        for p in priors:
            if p.discrete:
                raise ConfigError("efficient settings need continuous priors (the payments are built from densities)")
        if not _number(gamma) or gamma <= 0:
            raise ConfigError(f"setting.gamma must be a number > 0, got {gamma!r}")
        if not _number(cost) or cost <= 0:
            raise ConfigError(f"setting.cost must be a number > 0, got {cost!r}")
        if model in ("public_good", "endowment", "partnership") and min(p.low for p in priors) < 0:
            raise ConfigError(f"model {model!r} needs types >= 0 (values θ·(...)); shift the priors' support")
        n = len(priors)
        if model == "partnership" and shares is None:
            shares = [1.0 / n] * n
        if shares is not None:
            if model not in ("endowment", "partnership"):
                raise ConfigError(f"setting.shares is for the endowment and partnership models, not {model!r}")
            if not isinstance(shares, (list, tuple)) or len(shares) != n or not all(_number(s) and s >= 0 for s in shares):
                raise ConfigError(f"setting.shares must be a list of {n} numbers >= 0 (one initial endowment per agent)")
            if abs(math.fsum(shares) - 1.0) > 1e-9:
                raise ConfigError(f"setting.shares must sum to 1, got {math.fsum(shares)!r}")
            shares = tuple(float(s) for s in shares)
        if reservation is None:
            reservation = {"public_good": "autarky"}.get(model, "shares" if shares is not None else "zero")
        allowed = RESERVATIONS.get(model, ("shares", "zero") if shares is not None else ("zero",))
        if reservation not in allowed:
            raise ConfigError(
                f"setting.reservation for model {model!r} must be one of {', '.join(allowed)}, got {reservation!r}"
                + ("" if model != "endowment" else " (give 'shares' for a reservation at the own endowment)")
            )
        self.priors = priors
        self.model = model
        self.gamma = float(gamma)
        self.cost = float(cost)
        self.reservation = reservation
        self.shares = shares

    # ------------------------------------------------------------------ config

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Efficient":
        cfg = dict(cfg)
        cfg.pop("kind", None)
        model = cfg.pop("model", "private_good")
        has_list, has_iid = "priors" in cfg, "prior" in cfg
        if has_list == has_iid:
            raise ConfigError("setting needs exactly one of 'priors' (one table per agent) or 'prior' with 'n_agents' (iid agents)")
        if has_list:
            priors = priors_from_list(cfg.pop("priors"), "setting.priors", "agent")
            if "n_agents" in cfg and cfg.pop("n_agents") != len(priors):
                raise ConfigError("setting.n_agents disagrees with the length of setting.priors; drop one of them")
        else:
            n = cfg.pop("n_agents", None)
            if not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= MAX_AGENTS:
                raise ConfigError(f"setting.n_agents must be an integer between 2 and {MAX_AGENTS}, got {n!r}")
            priors = [prior_from_config(cfg.pop("prior"), "setting.prior")] * n
        opts = {k: cfg.pop(k) for k in ("gamma", "cost", "reservation", "shares") if k in cfg}
        if cfg:
            raise ConfigError(f"unknown key(s) in [setting] for efficient: {', '.join(sorted(cfg))}")
        if not isinstance(model, str):
            raise ConfigError(f"setting.model must be one of {', '.join(MODELS)}, got {model!r}")
        for k in ("gamma", "cost"):
            if k in opts and model != {"gamma": "private_good", "cost": "public_good"}[k]:
                raise ConfigError(f"setting.{k} does not apply to model {model!r}; drop it")
        return cls(priors, model, **opts)

    def to_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"kind": self.kind, "model": self.model, "priors": [p.to_config() for p in self.priors]}
        if self.model == "private_good":
            cfg["gamma"] = self.gamma
        if self.model == "public_good":
            cfg["cost"] = self.cost
        cfg["reservation"] = self.reservation
        if self.shares is not None:
            cfg["shares"] = list(self.shares)
        return cfg

    # ------------------------------------------------------------------ shape and prior

    @property
    def n_agents(self) -> int:
        return len(self.priors)

    @property
    def type_dim(self) -> int:
        return 1

    @property
    def symmetric(self) -> bool:
        """iid agents (one prior) with symmetric reservation utilities: payments may be permutation
        equivariant."""
        same = len({repr(p.to_config()) for p in self.priors}) == 1
        return same and (self.shares is None or len(set(self.shares)) == 1)

    def sample(self, key, n):
        keys = jax.random.split(key, self.n_agents)
        return jnp.stack([p.sample(keys[i], (n,)) for i, p in enumerate(self.priors)], axis=1)[..., None]

    def from_quantiles(self, u: Float[Array, "agents ... 1"]) -> Float[Array, "agents ... 1"]:
        """Types from quantiles, agent by agent: θ_i = F_i⁻¹(u_i) (leading axis = agents)."""
        return jnp.stack([p.icdf(u[i]) for i, p in enumerate(self.priors)])

    def quadrature(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` Gauss–Legendre nodes per agent in quantile space, θ = F_i⁻¹(u): points
        ``(agents, k, 1)`` and weights ``(agents, k)``, float64."""
        from .._compat import enable_x64

        x, w = np.polynomial.legendre.leggauss(k)
        u = (x + 1.0) / 2.0
        with enable_x64(), jax.ensure_compile_time_eval():
            pts = np.stack([np.asarray(p.icdf(jnp.asarray(u, jnp.float64)), np.float64) for p in self.priors])
        return pts[..., None], np.broadcast_to(w / 2.0, pts.shape).copy()

    def type_bounds(self):
        lo = np.array([[p.low] for p in self.priors], np.float64)
        hi = np.array([[p.high] for p in self.priors], np.float64)
        return lo, hi

    def attack_grid(self, n_points: int):
        """``n_points`` even reports over each agent's support (types are one-dimensional)."""
        lo, hi = self.type_bounds()
        return jnp.asarray(np.stack([np.linspace(lo[i, 0], hi[i, 0], max(2, n_points)) for i in range(self.n_agents)])[..., None])

    # ------------------------------------------------------------------ the model

    def allocation(self, theta: Float[Array, "batch agents"]) -> Float[Array, "batch agents"]:
        """The efficient allocation x*(θ) (one entry per agent; the public good repeats its quantity)."""
        if self.model in ("private_good", "partnership"):
            top = theta >= jnp.max(theta, axis=1, keepdims=True)
            return top / jnp.sum(top, axis=1, keepdims=True)
        if self.model == "public_good":
            total = jnp.sum(theta, axis=1, keepdims=True)
            return jnp.broadcast_to(total / (self.cost + total), theta.shape)
        return _endowment_shares(theta)

    def value(self, x: Float[Array, "batch agents"], theta: Float[Array, "batch agents"]) -> Float[Array, "batch agents"]:
        """v_i(x_i, θ_i)."""
        if self.model == "private_good":
            g = self.gamma
            return x * (theta if g == 1.0 else jnp.maximum(theta, 0.0) ** g / g)
        if self.model == "partnership":
            return x * theta
        return theta * (2.0 * x - x * x)

    def production_cost(self, x: Float[Array, "batch agents"]) -> Float[Array, " batch"]:
        """c(x): C x² for the public good, 0 otherwise."""
        if self.model == "public_good":
            return self.cost * x[:, 0] ** 2
        return jnp.zeros(x.shape[:1], x.dtype)

    def welfare(self, theta: Float[Array, "batch agents"]) -> Float[Array, " batch"]:
        """S(θ) = Σ_i v_i(x_i*(θ), θ_i) − c(x*(θ))."""
        x = self.allocation(theta)
        return jnp.sum(self.value(x, theta), axis=1) - self.production_cost(x)

    def reservation_utility(self, theta: Float[Array, "batch agents"]) -> Float[Array, "batch agents"]:
        """u̲_i(θ_i)."""
        if self.reservation == "autarky":
            return theta * theta / (self.cost + theta)
        if self.reservation == "shares":
            return self.value(jnp.asarray(self.shares, theta.dtype), theta)
        return jnp.zeros_like(theta)

    # ------------------------------------------------------------------ Setting interface

    def values(self, types, outcome: Outcome):
        return self.value(outcome.alloc[..., 0], types[..., 0])

    def utility(self, types, outcome: Outcome):
        return self.values(types, outcome) - outcome.payments

    def objective_value(self, types, outcome):
        """Social surplus Σ_i v_i − c(x) of the played allocation (S(θ) when it is efficient)."""
        x = outcome.alloc[..., 0]
        return jnp.sum(self.value(x, types[..., 0]), axis=-1) - self.production_cost(x)

    def budget_residual(self, outcome: Outcome) -> Float[Array, " batch"]:
        """Σ_i M_i − c(x) per profile (0 under ex post budget balance)."""
        return jnp.sum(outcome.payments, axis=-1) - self.production_cost(outcome.alloc[..., 0])

    def ir_slack(self, types, outcome: Outcome) -> Float[Array, "batch agents"]:
        """Ex post IR slack v_i(x_i, θ_i) − M_i − u̲_i(θ_i) (≥ 0 when ex post IR)."""
        return self.utility(types, outcome) - self.reservation_utility(types[..., 0])

    def feasibility_violation(self, outcome):
        """The allocation is fixed by the setting; nothing to violate."""
        return jnp.zeros(outcome.payments.shape[:1], outcome.payments.dtype)

    def benchmark_names(self) -> tuple[str, ...]:
        """VCG always; AGV where its expected externalities are tabulated (any n for the
        winner-take-all models, n ≤ 4 otherwise); Ke's M1 for the private good (one support, zero
        reservation), M2 for the public good and M3 for the fixed-supply models (two iid agents)."""
        from ..mechanisms import MECHANISMS

        winner_take_all = self.model in ("private_good", "partnership")
        names = ["vcg"]
        if winner_take_all or self.n_agents <= 4:
            names.append("agv")
        one_support = len({(p.low, p.high) for p in self.priors}) == 1
        if winner_take_all and self.reservation == "zero" and one_support:
            names.append("ke_m1")
        iid_pair = self.n_agents == 2 and len({repr(p.to_config()) for p in self.priors}) == 1
        if iid_pair and self.model == "public_good":
            names.append("ke_m2")
        if iid_pair and self.model in ("endowment", "partnership"):
            names.append("ke_m3")
        return tuple(n for n in names if n in MECHANISMS)

    def describe(self) -> str:
        sym = "iid" if self.symmetric else "asymmetric"
        return f"{self.model.replace('_', ' ')} (Ke), {self.n_agents} agents, {sym} types, reservation {self.reservation}"


def _endowment_shares(theta: Float[Array, "batch agents"]) -> Float[Array, "batch agents"]:
    """x_i = max(0, 1 − λ/(2θ_i)) with Σ_i x_i = 1 (the KKT solution of max Σ θ_i(2x_i − x_i²)
    over the simplex): θ_i/(θ_1 + θ_2) for two agents, λ by bisection beyond (equal shares when
    every θ is 0)."""
    n = theta.shape[1]
    if n == 2:
        total = jnp.sum(theta, axis=1, keepdims=True)
        safe = jnp.where(total > 0, total, 1.0)
        return jnp.where(total > 0, theta / safe, 0.5)
    hi0 = 2.0 * jnp.max(theta, axis=1, keepdims=True)

    def shares(lam):
        return jnp.maximum(0.0, 1.0 - lam / jnp.maximum(2.0 * theta, 1e-300))

    def body(_, lh):
        lo, hi = lh
        mid = 0.5 * (lo + hi)
        over = jnp.sum(shares(mid), axis=1, keepdims=True) > 1.0
        return jnp.where(over, mid, lo), jnp.where(over, hi, mid)

    lo, hi = jax.lax.fori_loop(0, BISECTION, body, (jnp.zeros_like(hi0), hi0))
    x = shares(0.5 * (lo + hi))
    x = x / jnp.maximum(jnp.sum(x, axis=1, keepdims=True), 1e-300)
    return jnp.where(hi0 > 0, x, 1.0 / n)
