"""Interim (Bayesian) expectations: the kernels behind interim IC, interim IR and ex ante budget.

For agent i with true type θ_i who reports r, the interim utility is

    U_i(θ_i, r) = E_{θ_−i}[ u_i(θ_i; (r, θ_−i)) ],

an expectation over the other agents' types. Bayesian incentive compatibility asks
U_i(θ_i, θ_i) ≥ U_i(θ_i, r) for all r; the interim regret of (i, θ_i) is the best gain
max_r U_i(θ_i, r) − U_i(θ_i, θ_i), and interim IR asks U_i(θ_i, θ_i) ≥ 0.

The expectation over θ_−i is a weighted sum over *others profiles* ``others[i, s]`` (shape
``(agents, S, agents − 1, dim)``, the types of the agents other than i in order) with weights
``weights[i, s]``:

- exact on a finite type space: every profile of the others, weighted by its probability
  (:func:`others_profiles` of :func:`exact_nodes`);
- quadrature: a product of Gauss–Legendre nodes in quantile space (:func:`quadrature_nodes`),
  the right choice for n = 2 where θ_−i is one agent's type;
- Monte Carlo with common random numbers: the same S sampled profiles for every own type and every
  report (:func:`sampled_others`), so that differences U_i(θ, r) − U_i(θ, θ) have small variance.

Everything is one batched computation: the mechanism runs once on the ``agents × R × S`` profiles
in which agent i reports r and the others play profile s, and the utilities of all K own types
come from that same outcome (vmapped over K). No Python loop runs over agents, types or reports.
"""

from __future__ import annotations

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .errors import ConfigError

#: the largest number of others profiles built by enumeration (exact or quadrature)
MAX_PRODUCT = 1 << 16


class Nodes(eqx.Module):
    """A weighted discrete stand-in for each agent's type distribution.

    Attributes:
        points: ``(agents, K, dim)`` type vectors.
        weights: ``(agents, K)`` nonnegative weights summing to 1 per agent.
        exact: the nodes *are* the prior (a finite type space), so sums over them are exact.
    """

    points: Float[Array, "agents K dim"]
    weights: Float[Array, "agents K"]
    exact: bool = eqx.field(static=True, default=False)


def exact_nodes(setting, dtype=None) -> Nodes:
    """All type vectors of a finite type space with their probabilities (iid agents)."""
    pts, probs = setting.type_support()
    n = setting.n_agents
    dtype = dtype or jnp.result_type(float)
    return Nodes(
        jnp.asarray(np.broadcast_to(pts, (n,) + pts.shape), dtype),
        jnp.asarray(np.broadcast_to(probs, (n,) + probs.shape), dtype),
        exact=True,
    )


def gauss_legendre_unit(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on (0, 1), float64."""
    x, w = np.polynomial.legendre.leggauss(k)
    return (x + 1.0) / 2.0, w / 2.0


def quadrature_nodes(setting, k: int, dtype=None) -> Nodes:
    """Product Gauss–Legendre nodes in quantile space: θ^j = F_j⁻¹(u) at k nodes u per good
    (discrete goods keep their atoms), so that E h(θ_i) ≈ Σ w h(θ_i) to quadrature accuracy for
    smooth h. With a common weight the product runs over the M + 1 quantiles of (x, z) and
    θ = ``setting.from_quantiles(u)``. Needs the ``good_priors`` form."""
    if hasattr(setting, "quadrature"):  # a setting with its own per-agent rule
        pts, wts = setting.quadrature(k)
        dtype = dtype or jnp.result_type(float)
        return Nodes(jnp.asarray(pts, dtype), jnp.asarray(wts, dtype))
    if getattr(setting, "good_priors", None) is None:
        raise ConfigError("quadrature nodes need independent goods (good_priors); use Monte Carlo nodes")
    from ._compat import enable_x64

    u, w = gauss_legendre_unit(k)
    if getattr(setting, "common_weight", 0.0):
        axes = [(u, w)] * setting.quantile_dim
    else:
        axes = []
        for p in setting.good_priors:
            if p.discrete:
                axes.append((np.asarray(p.atoms(), np.float64), np.asarray(p.probs, np.float64)))
            else:
                with enable_x64(), jax.ensure_compile_time_eval():  # constants, also when called under jit
                    axes.append((np.asarray(p.icdf(jnp.asarray(u, jnp.float64)), np.float64), w))
    size = math.prod(len(a) for a, _ in axes)
    if size > MAX_PRODUCT:
        raise ConfigError(f"{size} quadrature nodes per agent are too many; lower the number of nodes per good")
    pts = np.array(list(itertools.product(*[a for a, _ in axes])), np.float64)
    wts = np.array([math.prod(c) for c in itertools.product(*[w for _, w in axes])], np.float64)
    if getattr(setting, "common_weight", 0.0):
        with enable_x64(), jax.ensure_compile_time_eval():
            pts = np.asarray(setting.from_quantiles(jnp.asarray(pts, jnp.float64)), np.float64)
    n = setting.n_agents
    dtype = dtype or jnp.result_type(float)
    return Nodes(jnp.asarray(np.broadcast_to(pts, (n,) + pts.shape), dtype), jnp.asarray(np.broadcast_to(wts, (n,) + wts.shape), dtype))


def sample_nodes(setting, key, k: int) -> Nodes:
    """``k`` own types per agent drawn from the prior, equal weights."""
    pts = jnp.swapaxes(setting.sample(key, k), 0, 1)  # (agents, k, dim)
    return Nodes(pts, jnp.full(pts.shape[:2], 1.0 / k, pts.dtype))


def others_profiles(nodes: Nodes) -> tuple[Float[Array, "agents S others dim"], Float[Array, "agents S"]]:
    """Every profile of the agents other than i built from ``nodes``, with product weights.

    S = K^(n−1); refused beyond :data:`MAX_PRODUCT` (use :func:`sampled_others` instead).
    """
    n, k, d = nodes.points.shape
    s = k ** (n - 1)
    if s > MAX_PRODUCT:
        raise ConfigError(
            f"{k}^{n - 1} = {s} profiles of the other agents are too many to enumerate; use Monte Carlo "
            "(sampled) expectations or fewer nodes"
        )
    idx = np.array(list(itertools.product(range(k), repeat=n - 1)), np.int32).reshape(s, n - 1)
    rows, wts = [], []
    for i in range(n):  # builds index tables once, outside any compiled code
        others = [j for j in range(n) if j != i]
        rows.append(nodes.points[np.asarray(others, np.int32)[None, :], idx])  # (S, n-1, d)
        w = jnp.ones((s,), nodes.weights.dtype)
        for c, j in enumerate(others):
            w = w * nodes.weights[j][idx[:, c]]
        wts.append(w)
    return jnp.stack(rows), jnp.stack(wts)


def sampled_others(setting, key, s: int) -> tuple[Float[Array, "agents S others dim"], Float[Array, "agents S"]]:
    """``s`` profiles drawn from the prior and shared by every agent, own type and report
    (common random numbers): ``others[i]`` is the draw with agent i's column removed."""
    prof = setting.sample(key, s)  # (S, n, d)
    n = prof.shape[1]
    take = jnp.asarray(_others_index(n))  # (n, n-1)
    others = jnp.moveaxis(prof[:, take], 1, 0)  # (n, S, n-1, d)
    return others, jnp.full((n, s), 1.0 / s, prof.dtype)


def product_profiles(nodes: Nodes) -> tuple[Float[Array, "P agents dim"], Float[Array, "P"]]:
    """All K^n profiles of the nodes with product weights (exact ex ante expectations on a
    finite type space)."""
    n, k, d = nodes.points.shape
    p = k**n
    if p > MAX_PRODUCT:
        raise ConfigError(f"{k}^{n} = {p} profiles are too many to enumerate; use sampled profiles")
    idx = np.array(list(itertools.product(range(k), repeat=n)), np.int32)  # (P, n)
    prof = nodes.points[np.arange(n)[None, :], idx]
    w = jnp.prod(nodes.weights[np.arange(n)[None, :], idx], axis=1)
    return prof, w


def _others_index(n: int) -> np.ndarray:
    return np.array([[j for j in range(n) if j != i] for i in range(n)], np.int32).reshape(n, max(n - 1, 0))


def insert_reports(others: Float[Array, "agents S others dim"], reports: Float[Array, "agents R dim"]):
    """Profiles ``(agents, R, S, agents, dim)`` in which agent i reports ``reports[i, r]`` and the
    others play ``others[i, s]``."""
    n, s = others.shape[:2]
    r = reports.shape[1]
    # column c of a full profile for deviator i is others column c (c < i), the report (c = i), or
    # others column c − 1 (c > i)
    col = np.array([[c if c < i else max(c - 1, 0) for c in range(n)] for i in range(n)], np.int32)
    if n > 1:
        from_others = others[:, :, col]  # (n, S, n[i], n[c], d) — index per deviator below
        from_others = from_others[np.arange(n), :, np.arange(n)]  # (n, S, n, d)
    else:
        from_others = jnp.zeros((n, s, n, reports.shape[-1]), reports.dtype)
    eye = jnp.eye(n, dtype=bool)[:, None, None, :, None]  # (n, 1, 1, n, 1)
    return jnp.where(eye, reports[:, :, None, None, :], from_others[:, None])


def _deviation_outcomes(mechanism, reports, others):
    n, s = others.shape[:2]
    r, d = reports.shape[1], reports.shape[2]
    prof = insert_reports(others, reports).astype(reports.dtype)  # (n, R, S, n, d)
    return prof, mechanism(prof.reshape(n * r * s, n, d))


def _own_utility(setting, own_k, prof, out):
    """u_i(own_k[i]; prof[i, r, s]) for every agent i: ``(n, R, S)``."""
    n, r, s, _, d = prof.shape
    eye = jnp.eye(n, dtype=bool)[:, None, None, :, None]
    true = jnp.where(eye, own_k[:, None, None, None, :], prof)
    u = setting.utility(true.reshape(n * r * s, n, d), out).reshape(n, r, s, n)
    return jnp.moveaxis(jnp.diagonal(u, axis1=0, axis2=3), -1, 0)


def utility_samples(mechanism, setting, own, reports, others) -> Float[Array, "agents K R S"]:
    """u_i(own[i, k]; (reports[i, r], others[i, s])) for every agent, own type, report and others
    profile (unweighted; for standard errors). The mechanism runs once on the agents × R × S
    deviation profiles; the K own types reuse its outcome."""
    prof, out = _deviation_outcomes(mechanism, reports, others)
    return jnp.moveaxis(jax.vmap(lambda o: _own_utility(setting, o, prof, out), in_axes=1)(own), 0, 1)


def interim_utility(mechanism, setting, own, reports, others, weights) -> Float[Array, "agents K R"]:
    """U[i, k, r] = Σ_s weights[i, s] · u_i(own[i, k]; (reports[i, r], others[i, s])).

    ``own`` ``(agents, K, dim)`` are true types, ``reports`` ``(agents, R, dim)`` candidate reports.
    The mechanism runs once on all agents × R × S profiles; the sum over s is taken per own type,
    so memory stays at agents × R × S whatever K is.
    """
    prof, out = _deviation_outcomes(mechanism, reports, others)
    per_type = lambda o: jnp.einsum("irs,is->ir", _own_utility(setting, o, prof, out), weights)
    return jnp.moveaxis(jax.vmap(per_type, in_axes=1)(own), 0, 1)


def interim_outcome(mechanism, reports, others, weights):
    """Interim consumption Q[i, r, j] = E_{−i} alloc_ij and transfer T[i, r] = E_{−i} t_i when
    agent i reports ``reports[i, r]`` (the (B5) quantities of a mechanism)."""
    n, s = others.shape[:2]
    r, d = reports.shape[1], reports.shape[2]
    prof = insert_reports(others, reports).astype(reports.dtype)
    out = mechanism(prof.reshape(n * r * s, n, d))
    alloc = out.alloc.reshape(n, r, s, n, -1)
    pay = out.payments.reshape(n, r, s, n)
    idx = jnp.arange(n)
    q = jnp.einsum("irsj,is->irj", alloc[idx, :, :, idx], weights)
    t = jnp.einsum("irs,is->ir", pay[idx, :, :, idx], weights)
    return q, t


def interim_regret(table: Float[Array, "agents K R"], truthful: Float[Array, "agents K"]) -> Float[Array, "agents K"]:
    """max(0, max_r U[i, k, r] − U_i(θ_k, θ_k)) per agent and own type."""
    return jnp.maximum(jnp.max(table, axis=-1) - truthful, 0.0)


def ex_ante(setting, mechanism, profiles, weights):
    """Weighted expectations over profiles: (surplus, Σ transfers, Σ cost, welfare)."""
    out = mechanism(profiles)
    surplus = jnp.sum(weights * setting.objective_value(profiles, out))
    revenue = jnp.sum(weights * jnp.sum(out.payments, axis=-1))
    cost = jnp.sum(weights * setting.provision_cost(out))
    welfare = jnp.sum(weights * jnp.sum(setting.values(profiles, out), axis=-1))
    return surplus, revenue, cost, welfare


# ----------------------------------------------------------------------------- training batches

#: constraint families of interim settings, in the order of the rows of g
INTERIM_CONSTRAINTS = ("interim_regret", "interim_ir", "budget")


class InterimBatch(eqx.Module):
    """What one training step measures: own types with weights, candidate reports (the first K
    are the own types themselves, so the truthful utility is the diagonal), others profiles with
    weights (the interim expectation) and full profiles with weights (ex ante surplus and budget)."""

    own: Float[Array, "agents K dim"]
    own_weights: Float[Array, "agents K"]
    reports: Float[Array, "agents R dim"]
    others: Float[Array, "agents S others dim"]
    others_weights: Float[Array, "agents S"]
    profiles: Float[Array, "P agents dim"]
    profile_weights: Float[Array, " P"]
    #: optional: own types in classes of equal payoffs (they differ only in a payoff-irrelevant
    #: coordinate), ``(agents, K)`` class indices, and the first own type of each class ``(agents, C)``
    own_class: Int[Array, "agents K"] | None = None
    class_first: Int[Array, "agents C"] | None = None


def stratified_nodes(setting, key, k: int) -> Nodes:
    """``k`` Latin-hypercube draws per agent in quantile space (u stratified in k cells with an
    independent random order per quantile, θ = ``setting.from_quantiles(u)``), equal weights: a
    randomised quadrature whose nodes move from step to step, so training sees the whole type
    space. A setting with its own stratified rule (``setting.stratified(key, k)``, e.g. atoms ×
    stratified u for a dithered social choice) supplies points and weights itself."""
    if hasattr(setting, "stratified") and getattr(setting, "stratified_others", False):
        pts, wts = setting.stratified(key, k)
        return Nodes(pts, wts)
    n, m = setting.n_agents, setting.quantile_dim
    k_u, k_perm = jax.random.split(key)
    u = (jnp.arange(k)[None, None, :] + jax.random.uniform(k_u, (n, m, k))) / k
    perms = jax.vmap(lambda kk: jax.random.permutation(kk, k))(jax.random.split(k_perm, n * m)).reshape(n, m, k)
    u = jnp.take_along_axis(u, perms, axis=-1)
    pts = setting.from_quantiles(jnp.swapaxes(u, 1, 2))  # (n, k, goods)
    return Nodes(pts, jnp.full((n, k), 1.0 / k, pts.dtype))


def expectation_method(setting) -> str:
    """How interim expectations are taken, in training and in evaluation: ``exact`` on a finite
    type space; ``quadrature`` for n = 2 with a quantile form of the prior (the other agent by fixed
    Gauss–Legendre nodes, so that U_i(θ, r) carries no sampling noise — with noisy estimates a
    truly incentive-compatible mechanism shows positive regret and the multipliers grow without
    end); otherwise ``monte_carlo`` (others' profiles sampled, common random numbers)."""
    if setting.finite:
        return "exact"
    if setting.n_agents == 2 and (hasattr(setting, "quadrature") or getattr(setting, "good_priors", None) is not None):
        return "quadrature"
    if setting.n_agents == 1 and hasattr(setting, "quadrature"):  # no others: the expectation is one empty profile
        return "quadrature"
    return "monte_carlo"


def training_batch(setting, key, cfg, dtype=None) -> InterimBatch:
    """The :class:`InterimBatch` of one training step (jit-compatible). With
    :func:`expectation_method` ``quadrature`` the own types are ``interim_nodes`` stratified draws
    per step (so training covers the whole type space) and the other agent ⌊interim_nodes^(1/M)⌋
    Gauss–Legendre nodes per good — or, for a setting with ``stratified_others`` (a dithered social
    choice, whose deterministic mechanisms jump in the others' u), ``interim_samples`` fresh
    stratified nodes per atom of the other agent every step (a fixed node set could be fitted, and
    the attack's maximum over u' exploits the draws by about one node per jump: a bias O(1/k) that
    needs many of them), with the own types grouped in classes of equal payoffs
    (``setting.stratified_classes``) so that best responses are computed once per class; with
    ``monte_carlo`` ``interim_nodes`` sampled own types and
    ``interim_samples`` sampled others' profiles."""
    mode = expectation_method(setting)
    if mode == "exact":
        nodes = exact_nodes(setting, dtype)
        others, ow = others_profiles(nodes)
        prof, pw = product_profiles(nodes)
        return InterimBatch(nodes.points, nodes.weights, nodes.points, others, ow, prof, pw)
    k_own, k_rep, k_oth = jax.random.split(key, 3)
    extra = jnp.swapaxes(setting.sample(k_rep, cfg.interim_reports), 0, 1)
    classes = first = None
    if mode == "quadrature":
        nodes = stratified_nodes(setting, k_own, cfg.interim_nodes)
        per = max(2, int(math.floor(cfg.interim_nodes ** (1.0 / setting.quantile_dim) + 1e-9)))
        if getattr(setting, "stratified_others", False):
            others, ow = others_profiles(stratified_nodes(setting, k_oth, cfg.interim_samples))
            classes, first = (jnp.asarray(c) for c in setting.stratified_classes(cfg.interim_nodes))
        else:
            others, ow = others_profiles(quadrature_nodes(setting, per, nodes.points.dtype))
        prof, pw = product_profiles(nodes)
    else:
        nodes = sample_nodes(setting, k_own, cfg.interim_nodes)
        others, ow = sampled_others(setting, k_oth, cfg.interim_samples)
        prof = setting.sample(jax.random.fold_in(k_oth, 1), cfg.interim_samples)
        pw = jnp.full((cfg.interim_samples,), 1.0 / cfg.interim_samples, prof.dtype)
    reports = jnp.concatenate([nodes.points, extra.astype(nodes.points.dtype)], axis=1)
    return InterimBatch(nodes.points, nodes.weights, reports, others, ow, prof, pw, classes, first)


def batch_objective(mechanism, setting, batch: InterimBatch):
    """Expected objective (surplus) over the batch's profiles, from ``training_outcome``."""
    out = mechanism.training_outcome(batch.profiles)
    return jnp.sum(batch.profile_weights * setting.objective_value(batch.profiles, out))


def batch_constraints(mechanism, setting, batch: InterimBatch, names) -> Float[Array, "constraints agents"]:
    """Per-agent constraint values g ≥ 0 (0 = satisfied), one row per name:

    - ``interim_regret``: Σ_k w_k max(0, max_r U_i(θ_k, r) − U_i(θ_k, θ_k));
    - ``interim_ir``: Σ_k w_k max(0, −U_i(θ_k, θ_k));
    - ``budget``: ex ante, max(0, E Σ_j ρ^j C^j − E Σ_i t_i); ex post, E|Σ_i t_i − Σ_j ρ^j C^j| —
      one number shared by all agents, so each agent's entry holds 1/n of it;
    - ``ex_post_ir``: E max(0, −slack_i) over :func:`ex_post_profiles`, slack_i = v_i − M_i − u̲_i(θ_i)
      (``setting.ir_slack``);
    - ``ex_post_ir_worst``: the largest shortfall max(0, −slack_i) over the same profiles (an ex
      post constraint must hold everywhere; a violation on a set of small measure barely moves
      the mean);
    - ``monotonicity``: E max(0, −(u_i(θ_i + δ, θ_−i) − u_i(θ))/δ) over the same profiles, the ex
      post payoff's decrease when agent i's type (true and reported) rises by δ = 1% of its
      support (Ke Definition 3).
    """
    n, k = batch.own.shape[:2]
    rows = []
    if ("interim_regret" in names or "interim_ir" in names) and batch.own_class is not None:
        # own types of one class have equal payoffs: U_i(θ, r) once per class, then spread
        reps = jnp.take_along_axis(batch.own, batch.class_first[..., None], axis=1)
        table = interim_utility(mechanism, setting, reps, batch.reports, batch.others, batch.others_weights)
        table = jnp.take_along_axis(table, batch.own_class[..., None], axis=1)
        truthful = jnp.diagonal(table[:, :, :k], axis1=1, axis2=2)
    elif "interim_regret" in names or "interim_ir" in names:
        table = interim_utility(mechanism, setting, batch.own, batch.reports, batch.others, batch.others_weights)
        truthful = jnp.diagonal(table[:, :, :k], axis1=1, axis2=2)
    for name in names:
        if name == "interim_regret":
            rows.append(jnp.sum(batch.own_weights * interim_regret(table, truthful), axis=1))
        elif name == "interim_ir":
            rows.append(jnp.sum(batch.own_weights * jnp.maximum(-truthful, 0.0), axis=1))
        elif name == "budget":
            out = mechanism(batch.profiles)
            gap = setting.budget_surplus(out)
            if setting.budget == "ex_post":
                short = jnp.sum(batch.profile_weights * jnp.abs(gap))
            else:
                short = jnp.maximum(-jnp.sum(batch.profile_weights * gap), 0.0)
            rows.append(jnp.full((n,), short / n, gap.dtype))
        elif name == "ex_post_ir":
            prof, w = ex_post_profiles(setting, batch)
            rows.append(w @ jnp.maximum(-setting.ir_slack(prof, mechanism(prof)), 0.0))
        elif name == "ex_post_ir_worst":
            prof, _ = ex_post_profiles(setting, batch)
            rows.append(jnp.max(jnp.maximum(-setting.ir_slack(prof, mechanism(prof)), 0.0), axis=0))
        elif name == "monotonicity":
            prof, w = ex_post_profiles(setting, batch)
            rows.append(w @ payoff_decrease(mechanism, setting, prof))
    return jnp.stack(rows)


def ex_post_profiles(setting, batch: InterimBatch) -> tuple[Float[Array, "Q agents dim"], Float[Array, " Q"]]:
    """Where ex post constraints are penalised: the batch's profiles and the same profiles pulled
    toward the lowest types, θ̲ + s_p (θ − θ̲) with s_p = ((p + ½)/P)², each half with half the
    weight. An ex post constraint must hold at every profile, so any measure with full support
    serves as a penalty; the prior puts almost no mass near the all-low corner (probability ~εⁿ),
    where budget-balanced rules are most likely to break ex post IR."""
    prof = batch.profiles
    p = prof.shape[0]
    lo = jnp.asarray(setting.type_bounds()[0], prof.dtype)
    s = ((jnp.arange(p, dtype=prof.dtype) + 0.5) / p) ** 2
    pulled = lo + s[:, None, None] * (prof - lo)
    w = 0.5 * batch.profile_weights
    return jnp.concatenate([prof, pulled]), jnp.concatenate([w, w])


def payoff_decrease(mechanism, setting, profiles: Float[Array, "P agents dim"], step: float = 0.01) -> Float[Array, "P agents"]:
    """max(0, −(u_i(θ_i + δ, θ_−i) − u_i(θ))/δ) per profile and agent, δ = ``step`` × the width of
    agent i's support (the raised type is clipped to the support): the violation of ex post payoff
    monotonicity (Ke Definition 3) at that scale."""
    p, n, d = profiles.shape
    lo, hi = setting.type_bounds()
    delta = jnp.asarray(step * (hi - lo), profiles.dtype)  # (n, d)
    base = setting.utility(profiles, mechanism(profiles))  # (P, n)
    eye = jnp.eye(n, dtype=profiles.dtype)[:, None, :, None]  # (i, 1, n, 1)
    raised = jnp.minimum(profiles[None] + eye * delta[None, None], jnp.asarray(hi, profiles.dtype))  # (n, P, n, d)
    flat = raised.reshape(n * p, n, d)
    u = setting.utility(flat, mechanism(flat)).reshape(n, p, n)
    up = jnp.diagonal(u, axis1=0, axis2=2)  # (P, n): agent i's payoff when i's type rose
    return jnp.maximum(base - up, 0.0) / delta[:, 0]
