"""Excludable, non-rival public goods with a budget (the setting of the Fang–Norman appendix).

n agents, M goods. Agent i's type θ_i ∈ R^M holds her value for each good; types are iid across
agents and may be correlated across goods within an agent. A mechanism (eq. (B1)) chooses, per
profile, the probability ρ^j(θ) that good j is provided, the probability η_i^j that agent i is
included given that it is provided, and transfers t_i. Agent i's value is

    value_i = Σ_j ρ^j η_i^j θ_i^j,

providing good j costs C^j(n), and the designer maximises expected social surplus

    S = E[ Σ_j ρ^j(θ) ( Σ_i η_i^j θ_i^j − C^j(n) ) ]

subject to Bayesian (interim) incentive compatibility, interim individual rationality and ex ante
budget balance E[Σ_i t_i] ≥ E[Σ_j ρ^j C^j(n)] (or, with ``budget = "ex_post"``, Σ_i t_i = Σ_j ρ^j
C^j(n) at every profile).

Priors (three config forms): ``prior`` (one table, iid over goods), ``good_priors`` (one table per
good, independent goods) or ``types`` + ``probs`` (a finite joint distribution of the whole type
vector, which may correlate goods). A type space is *finite* when every good's prior is discrete
or the joint form is used; interim expectations are then exact sums.

Continuous values correlated across goods: ``common_weight`` w ∈ [0, 1) with one continuous base
prior F for every good (the ``prior`` form),

    θ_i^j = w · z_i + (1 − w) · x_i^j,      z_i, x_i^j iid ~ F,

an agent-specific common taste plus idiosyncratic parts (the same form as ``multi_item``). Goods
stay exchangeable, the support stays [θ̲, θ̄], and the correlation between two goods is
w² / (w² + (1 − w)²). Quadrature runs in the M + 1 quantiles (u_z, u_1, …, u_M) of (z, x).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from ..outcome import Outcome
from ..priors import Prior, prior_from_config, priors_from_list
from .base import Setting

MAX_AGENTS = 12
MAX_GOODS = 6
MAX_TYPES = 4096
BUDGETS = ("ex_ante", "ex_post")


def _positive_int(cfg: dict, key: str, top: int) -> int:
    v = cfg.pop(key, None)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top:
        raise ConfigError(f"setting.{key} must be an integer between 1 and {top}, got {v!r}")
    return v


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class PublicGoods(Setting):
    """``n`` agents, ``M`` excludable public goods, cost C^j(n) per good provided.

    Attributes:
        good_priors: one prior per good (independent goods), or ``None`` with a joint finite prior.
        atoms, atom_probs: the joint finite prior of one agent's type vector (``types``/``probs``),
            or ``None``.
        costs: C^j(n) for each good (already evaluated at this n).
        budget: ``"ex_ante"`` or ``"ex_post"`` budget balance.
    """

    good_priors: tuple[Prior, ...] | None
    atoms: tuple[tuple[float, ...], ...] | None = eqx.field(static=True)
    atom_probs: tuple[float, ...] | None = eqx.field(static=True)
    costs: tuple[float, ...] = eqx.field(static=True)
    agents: int = eqx.field(static=True)
    budget: str = eqx.field(static=True)
    cost_per_agent: tuple[float, ...] | None = eqx.field(static=True)
    common_weight: float = eqx.field(static=True)

    kind: ClassVar[str] = "public_goods"
    summary: ClassVar[str] = (
        "n agents, M excludable public goods, cost per good, interim IC/IR and budget balance "
        "(keys: n_agents, n_goods, prior | good_priors | types+probs, common_weight, cost | cost_per_agent, budget)"
    )
    objective: ClassVar[str] = "surplus"
    ic: ClassVar[str] = "interim"
    ir: ClassVar[str] = "interim"
    #: all benchmarks this setting may use; :meth:`benchmark_names` picks those that apply
    benchmarks: ClassVar[tuple[str, ...]] = ("first_best", "public_lp", "separate_provision", "no_exclusion", "optimal_cutoff", "separate_optimal")

    def __init__(self, n_agents: int, costs, *, good_priors=None, atoms=None, atom_probs=None,
                 budget: str = "ex_ante", cost_per_agent=None, common_weight: float = 0.0):
        if not isinstance(n_agents, int) or not 1 <= n_agents <= MAX_AGENTS:
            raise ConfigError(f"public_goods needs between 1 and {MAX_AGENTS} agents, got {n_agents!r}")
        if (good_priors is None) == (atoms is None):
            raise ConfigError("public_goods needs either one prior per good or a joint finite prior (types, probs)")
        if good_priors is not None:
            good_priors = tuple(good_priors)
            m = len(good_priors)
        else:
            atoms, atom_probs = _check_joint(atoms, atom_probs)
            m = len(atoms[0])
        if not 1 <= m <= MAX_GOODS:
            raise ConfigError(f"public_goods needs between 1 and {MAX_GOODS} goods, got {m}")
        costs = tuple(float(c) for c in costs)
        if len(costs) != m or not all(math.isfinite(c) and c >= 0 for c in costs):
            raise ConfigError(f"public_goods needs one finite cost >= 0 per good ({m}), got {costs}")
        if budget not in BUDGETS:
            raise ConfigError(f"setting.budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
        if not _number(common_weight) or not 0.0 <= common_weight < 1.0:
            raise ConfigError(f"setting.common_weight must be a number in [0, 1), got {common_weight!r}")
        if common_weight > 0:
            if good_priors is None or len({repr(p.to_config()) for p in good_priors}) != 1:
                raise ConfigError("setting.common_weight needs one prior for every good; use the 'prior' form with n_goods")
            if good_priors[0].discrete:
                raise ConfigError(
                    "setting.common_weight needs a continuous prior; for correlated finite types give the joint "
                    "distribution with 'types' + 'probs'"
                )
        self.common_weight = float(common_weight)
        self.good_priors = good_priors
        self.atoms = atoms
        self.atom_probs = atom_probs
        self.costs = costs
        self.agents = n_agents
        self.budget = budget
        self.cost_per_agent = None if cost_per_agent is None else tuple(float(c) for c in cost_per_agent)

    # ------------------------------------------------------------------ config

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "PublicGoods":
        cfg = dict(cfg)
        cfg.pop("kind", None)
        n = _positive_int(cfg, "n_agents", MAX_AGENTS)
        forms = [k for k in ("prior", "good_priors", "types") if k in cfg]
        if len(forms) != 1:
            raise ConfigError(
                "public_goods needs exactly one of 'prior' (iid over goods, with n_goods), 'good_priors' "
                "(one table per good) or 'types' + 'probs' (a finite joint prior of the type vector)"
            )
        good_priors = atoms = probs = None
        if forms[0] == "prior":
            m = _positive_int(cfg, "n_goods", MAX_GOODS)
            good_priors = [prior_from_config(cfg.pop("prior"), "setting.prior")] * m
        elif forms[0] == "good_priors":
            good_priors = priors_from_list(cfg.pop("good_priors"), "setting.good_priors", "good")
            m = len(good_priors)
            if "n_goods" in cfg and cfg.pop("n_goods") != m:
                raise ConfigError("setting.n_goods disagrees with the length of setting.good_priors; drop one")
        else:
            if "probs" not in cfg:
                raise ConfigError("setting.types needs setting.probs (one probability per type vector)")
            atoms, probs = _check_joint(cfg.pop("types"), cfg.pop("probs"))
            m = len(atoms[0])
            if "n_goods" in cfg and cfg.pop("n_goods") != m:
                raise ConfigError("setting.n_goods disagrees with the length of the type vectors; drop one")
        has_cost, has_per = "cost" in cfg, "cost_per_agent" in cfg
        if has_cost == has_per:
            raise ConfigError(
                "public_goods needs exactly one of 'cost' (C^j, a number or one per good) or 'cost_per_agent' "
                "(C^j(n) = c·n, a number or one per good)"
            )
        raw = cfg.pop("cost" if has_cost else "cost_per_agent")
        key = "cost" if has_cost else "cost_per_agent"
        values = raw if isinstance(raw, list) else [raw] * m
        if len(values) != m or not all(_number(v) and v >= 0 for v in values):
            raise ConfigError(f"setting.{key} must be a number >= 0 or a list of {m} such numbers, got {raw!r}")
        per_agent = [float(v) for v in values] if has_per else None
        costs = [v * n for v in values] if has_per else values
        budget = cfg.pop("budget", "ex_ante")
        common_weight = cfg.pop("common_weight", 0.0)
        if cfg:
            raise ConfigError(f"unknown key(s) in [setting] for public_goods: {', '.join(sorted(cfg))}")
        return cls(n, costs, good_priors=good_priors, atoms=atoms, atom_probs=probs, budget=budget, cost_per_agent=per_agent,
                   common_weight=common_weight)

    def to_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"kind": self.kind, "n_agents": self.agents}
        if self.good_priors is not None:
            cfg["good_priors"] = [p.to_config() for p in self.good_priors]
        else:
            cfg["types"] = [list(a) for a in self.atoms]
            cfg["probs"] = list(self.atom_probs)
        if self.cost_per_agent is not None:
            cfg["cost_per_agent"] = list(self.cost_per_agent)
        else:
            cfg["cost"] = list(self.costs)
        if self.budget != "ex_ante":
            cfg["budget"] = self.budget
        if self.common_weight:
            cfg["common_weight"] = self.common_weight
        return cfg

    # ------------------------------------------------------------------ shape and prior

    @property
    def n_agents(self) -> int:
        return self.agents

    @property
    def n_goods(self) -> int:
        return len(self.costs)

    @property
    def type_dim(self) -> int:
        return self.n_goods

    @property
    def cost(self) -> np.ndarray:
        """C^j(n), shape ``(goods,)``."""
        return np.asarray(self.costs, np.float64)

    @property
    def finite(self) -> bool:
        """Whether each agent's type space is finite (interim expectations are exact sums)."""
        return self.atoms is not None or all(p.discrete for p in self.good_priors)

    @property
    def independent(self) -> bool:
        """Whether the goods' values are independent (``good_priors`` without a common weight)."""
        return self.good_priors is not None and self.common_weight == 0.0

    @property
    def quantile_dim(self) -> int:
        """Number of independent uniform quantiles that generate one agent's type: M, or M + 1
        with a common weight (the common taste z)."""
        return self.n_goods + (1 if self.common_weight else 0)

    def from_quantiles(self, u: jax.Array) -> jax.Array:
        """Types ``(..., M)`` from quantiles ``(..., quantile_dim)`` in (0, 1): θ^j = F_j⁻¹(u_j),
        and with a common weight θ^j = w F⁻¹(u_M) + (1 − w) F⁻¹(u_j) (needs ``good_priors``)."""
        if self.good_priors is None:
            raise ConfigError("this public_goods setting has a joint finite prior; it has no quantile form")
        x = jnp.stack([p.icdf(u[..., j]) for j, p in enumerate(self.good_priors)], axis=-1)
        if self.common_weight:
            w = self.common_weight
            x = w * self.good_priors[0].icdf(u[..., self.n_goods])[..., None] + (1.0 - w) * x
        return x

    @property
    def exchangeable_goods(self) -> bool:
        """Whether the prior and the costs are invariant under permutations of the goods (the
        condition of Fang–Norman Proposition 2)."""
        if len(set(self.costs)) > 1:
            return False
        if self.good_priors is not None:
            return len({repr(p.to_config()) for p in self.good_priors}) == 1
        table = {tuple(a): p for a, p in zip(self.atoms, self.atom_probs)}
        m = self.n_goods
        for perm in itertools.permutations(range(m)):
            for a, p in table.items():
                b = tuple(a[perm[j]] for j in range(m))
                if abs(table.get(b, -1.0) - p) > 1e-12:
                    return False
        return True

    def type_support(self) -> tuple[np.ndarray, np.ndarray]:
        """The finite type space of one agent: atoms ``(K, goods)`` and probabilities ``(K,)``
        (float64), in lexicographic order. Raises ConfigError for a continuous type space."""
        if not self.finite:
            raise ConfigError("this public_goods setting has continuous types; use quadrature or Monte Carlo nodes")
        if self.atoms is not None:
            return np.asarray(self.atoms, np.float64), np.asarray(self.atom_probs, np.float64)
        axes = [(np.asarray(p.atoms(), np.float64), np.asarray(p.probs, np.float64)) for p in self.good_priors]
        pts = np.array(list(itertools.product(*[a for a, _ in axes])), np.float64)
        probs = np.array([math.prod(c) for c in itertools.product(*[w for _, w in axes])], np.float64)
        return pts, probs

    def sample(self, key, n):
        if self.atoms is not None:
            idx = jax.random.choice(key, len(self.atoms), (n, self.agents), p=jnp.asarray(self.atom_probs))
            return jnp.asarray(self.atoms, jnp.result_type(float))[idx]
        keys = jax.random.split(key, self.n_goods)
        cols = [p.sample(keys[j], (n, self.agents)) for j, p in enumerate(self.good_priors)]
        v = jnp.stack(cols, axis=-1)
        if self.common_weight:
            w = self.common_weight
            z = self.good_priors[0].sample(jax.random.fold_in(key, self.n_goods), (n, self.agents, 1)).astype(v.dtype)
            v = w * z + (1.0 - w) * v
        return v

    def type_bounds(self):
        if self.atoms is not None:
            a = np.asarray(self.atoms, np.float64)
            lo, hi = a.min(axis=0), a.max(axis=0)
        else:
            lo = np.array([p.low for p in self.good_priors], np.float64)
            hi = np.array([p.high for p in self.good_priors], np.float64)
        return np.tile(lo, (self.agents, 1)), np.tile(hi, (self.agents, 1))

    def project(self, reports):
        """Clip to the support; on a finite type space, snap to the nearest type vector."""
        if self.finite:
            pts, _ = self.type_support()
            pts = jnp.asarray(pts, reports.dtype)
            d = jnp.sum((reports[..., None, :] - pts) ** 2, axis=-1)
            return pts[jnp.argmin(d, axis=-1)]
        return super().project(reports)

    def benchmark_names(self) -> tuple[str, ...]:
        """First best always; on a finite type space the LP optimum, separate provision and the
        best mechanism without exclusion (exact LPs, when small enough); with continuous,
        independent, regular goods the optimal separate provision (and, for one good, the optimal
        rule without exclusion)."""
        from ..mechanisms import MECHANISMS

        names = ["first_best"]
        if self.finite:
            if len(self.type_support()[0]) ** self.agents <= 4096:
                names += ["public_lp", "separate_provision", "no_exclusion"]
        elif self.independent and all(not p.discrete and not p.ironing_intervals() for p in self.good_priors):
            names += ["optimal_cutoff"] if self.n_goods == 1 else []
            names.append("separate_optimal")
        return tuple(n for n in names if n in MECHANISMS)

    # ------------------------------------------------------------------ payoffs

    def values(self, types, outcome: Outcome):
        """value_i = Σ_j ρ^j η_i^j θ_i^j (``outcome.alloc`` holds ρ^j η_i^j)."""
        return jnp.sum(types * outcome.alloc, axis=-1)

    def provision_cost(self, outcome) -> jax.Array:
        """Σ_j ρ^j C^j(n) per profile."""
        return outcome.provision @ jnp.asarray(self.cost, outcome.provision.dtype)

    def objective_value(self, types, outcome):
        """Social surplus Σ_i value_i − Σ_j ρ^j C^j(n) per profile (transfers cancel)."""
        return jnp.sum(self.values(types, outcome), axis=-1) - self.provision_cost(outcome)

    def budget_surplus(self, outcome) -> jax.Array:
        """Σ_i t_i − Σ_j ρ^j C^j(n) per profile (≥ 0 in expectation for ex ante BB, = 0 everywhere
        for ex post BB)."""
        return jnp.sum(outcome.payments, axis=-1) - self.provision_cost(outcome)

    @property
    def feasibility(self) -> str:
        return "public_goods"

    def feasibility_violation(self, outcome):
        """Largest amount by which ρ or η leave [0, 1] in each profile."""
        parts = [outcome.provision, outcome.inclusion.reshape(outcome.inclusion.shape[0], -1)]
        worst = [jnp.max(jnp.maximum(jnp.maximum(-x, x - 1.0), 0.0), axis=1) for x in parts]
        return jnp.maximum(worst[0], worst[1])

    def attack_grid(self, n_points: int):
        """All type vectors of a finite type space, else an even product grid when M ≤ 2."""
        if self.finite:
            pts, _ = self.type_support()
            return jnp.asarray(np.broadcast_to(pts, (self.agents,) + pts.shape).copy())
        if self.n_goods > 2:
            return None
        per = max(2, int(np.floor(n_points ** (1.0 / self.n_goods) + 1e-9)))
        lo, hi = self.type_bounds()
        axes = [np.linspace(lo[0, j], hi[0, j], per) for j in range(self.n_goods)]
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, self.n_goods)
        return jnp.asarray(np.broadcast_to(mesh, (self.agents,) + mesh.shape).copy())

    def describe(self) -> str:
        kind = "finite" if self.finite else "continuous"
        if self.common_weight:
            kind += f" correlated (common weight {self.common_weight:g})"
        return f"{self.n_goods} excludable public good(s), {self.agents} agents, {kind} types, {self.budget.replace('_', ' ')} budget"


def _check_joint(atoms, probs):
    if not isinstance(atoms, (list, tuple)) or not atoms or not all(isinstance(a, (list, tuple)) and a for a in atoms):
        raise ConfigError("setting.types must be a non-empty list of type vectors, e.g. [[1, 1], [1, 3], [3, 1], [3, 3]]")
    widths = {len(a) for a in atoms}
    if len(widths) != 1:
        raise ConfigError("setting.types: every type vector needs the same number of goods")
    if not all(_number(x) for a in atoms for x in a):
        raise ConfigError("setting.types must hold finite numbers")
    if not isinstance(probs, (list, tuple)) or len(probs) != len(atoms) or not all(_number(p) and p >= 0 for p in probs):
        raise ConfigError(f"setting.probs must be a list of {len(atoms)} numbers >= 0, one per type vector")
    if abs(math.fsum(probs) - 1.0) > 1e-9:
        raise ConfigError(f"setting.probs must sum to 1 (within 1e-9), got {math.fsum(probs)!r}")
    if len({tuple(a) for a in atoms}) != len(atoms):
        raise ConfigError("setting.types lists a type vector twice; merge their probabilities")
    if len(atoms) > MAX_TYPES:
        raise ConfigError(f"setting.types has more than {MAX_TYPES} type vectors")
    pairs = sorted((tuple(float(x) for x in a), float(p)) for a, p in zip(atoms, probs) if p > 0)
    if not pairs:
        raise ConfigError("setting.probs: at least one type vector needs positive probability")
    return tuple(a for a, _ in pairs), tuple(p for _, p in pairs)
