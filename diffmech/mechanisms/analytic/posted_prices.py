"""Posted-price baselines for one buyer and several items: a grand-bundle price, one price per item.

Both mechanisms are *menus* that the buyer chooses from; a mechanism that hands every report the
menu option that is best for that report is DSIC (a misreport can only obtain another option of
the same menu, which the truthful report already weighed) and ex post IR (the empty option at
price 0 is on the menu).

Pure bundling (``bundle_price``; one buyer, additive values). Price p ≥ 0:

    a_j(b) = 1{Σ_j b_j ≥ p} for every item j,        t(b) = p · 1{Σ_j b_j ≥ p}.                (B1)

Menu {nothing at 0, all items at p}: utility (Σ_j v_j − p)·1{buy} is maximised by buying iff
Σ_j v_j ≥ p, which truthful reporting does (DSIC), and the buyer pays only when Σ_j v_j ≥ p (IR).
Expected revenue and the optimal price:

    Rev_B(p) = p · P(Σ_j v_j ≥ p),        p* = argmax_{p ≥ 0} Rev_B(p).                          (B2)

For 1 buyer × 2 items iid U[0,1], P(v_1 + v_2 ≥ p) = 1 − p²/2 on [0, 1], so p* = √(2/3) and
Rev_B = (2/3)·√(2/3) ≈ 0.544331 ("pure bundling", REFERENCES.md).

One price for every item (``uniform_item_price``; one buyer). Price p ≥ 0:

- unit demand: the buyer gets one item j* = argmax_j (b_j − p) (the first maximiser on ties) iff
  b_j* ≥ p, and pays p. Menu {nothing at 0, any single item at p}. Revenue
  Rev_U(p) = p · P(max_j v_j ≥ p) = p · (1 − Π_j F_j(p⁻)) for independent items.            (U1)
- additive: the buyer gets every item with b_j ≥ p and pays p per item (selling separately at a
  common price; menu: any set S at p·|S|). Revenue
  Rev_A(p) = p · Σ_j P(v_j ≥ p) = p · Σ_j (1 − F_j(p⁻)).                                      (U2)

For unit demand, 2 items iid U[0,1]: Rev_U = p(1 − p²), p = 1/√3, revenue 2/(3√3) ≈ 0.3849.

How P(·) is computed (all in float64):

- Independent priors (``common_weight`` = 0), (U1)/(U2): exactly from the priors' cdfs
  (F(p⁻) = F(p) − P(v = p) at an atom of a discrete prior).
- Independent priors, (B2): the law of the sum S = Σ_j v_j by one of three deterministic methods:
  all items uniform (at most 8 of them, and well conditioned): the exact piecewise-polynomial cdf
  P(S ≤ s) = Σ_{A ⊆ items} (−1)^|A| (s − Σ_j lo_j − Σ_{j∈A} w_j)₊^m / (m! Π_j w_j) with
  w_j = hi_j − lo_j; all items discrete: exact enumeration of the support of S (when it has at most
  2^20 points); otherwise a lattice convolution: every item but one continuous item c is replaced
  by the lattice variable with masses E[hat_k(v_j)] on the points lo_j + k·h (hat_k the tent of
  half-width h around the k-th point; E[hat_k] = (∫_{x_k}^{x_{k+1}} F − ∫_{x_{k−1}}^{x_k} F)/h,
  by 6-point Gauss–Legendre on each cell), which keeps every item's mean and perturbs the sum by
  a zero-mean noise of variance ≤ m·h²/4; their convolution (FFT) is combined exactly with item c:
  P(S ≥ p) ≈ Σ_k w_k (1 − F_c(p − s_k)). The error is O(h²) with h = Σ_j (hi_j − lo_j) / 2^18
  (below 1e-9 for two U[0,1] items, 2e-10 for eight uniforms). The maximising price is only
  accurate to about h (≈ 1e-6 for two U[0,1] items): between lattice points the approximation is
  piecewise smooth, its slope is off by O(h), and the revenue curve is flat at its top, so this
  moves the maximiser by O(h) while the optimal revenue stays accurate to O(h²).
- Correlated priors (``common_weight`` > 0), and the rare all-discrete case with more than 2^20
  support points: from a fixed sample of 2^20 draws of ``setting.sample`` (PRNGKey(0), generated
  in 16 chunks with keys fold_in(PRNGKey(0), c), float64). The optimal price is then the exact
  maximiser of the empirical revenue p·#{draws with statistic ≥ p}/2^20, one of the sampled
  values; it and the revenue carry Monte Carlo error (revenue s.e. ≈ 1e-3 × price).

The optimum of a smooth revenue curve is found by a scan of 4097 even prices (plus every atom and
support end, where the revenue can jump or kink) followed by bounded Brent on the two cells around
the best scanned price (``scipy.optimize.minimize_scalar``, xatol 1e-12); the better of the two
is kept.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, ClassVar, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy import optimize, signal

from ..._compat import enable_x64
from ...errors import ConfigError
from ...outcome import Outcome
from ...priors import Prior, Uniform
from ..base import Mechanism, check_options, float_dtype

#: draws of the fixed sample used for correlated priors (PRNGKey(0))
SAMPLE_DRAWS = 1 << 20
SAMPLE_CHUNK = 1 << 16
#: lattice points over the total value range in the convolution method
LATTICE_POINTS = 1 << 18
#: the exact uniform-sum formula is used up to this many items
EXACT_UNIFORM_MAX_ITEMS = 8
#: largest support of a sum of discrete items that is enumerated exactly
MAX_DISCRETE_SUPPORT = 1 << 20
#: even prices scanned before the Brent refinement
SCAN_POINTS = 4097


# ----------------------------------------------------------------------------- option checks


def parse_price(kind: str, options: dict[str, Any]) -> float | None:
    """The ``price`` option (a finite number ≥ 0), ``None`` when absent; other keys are errors."""
    check_options(kind, options, ("price",))
    if "price" not in options:
        return None
    p = options["price"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p < 0:
        raise ConfigError(f"mechanism.price for {kind!r} must be a finite number ≥ 0, got {p!r}")
    return float(p)


def _check_one_buyer(kind: str, setting, valuation: str | None, hint: str) -> None:
    """One-line ConfigError unless ``setting`` is a one-buyer multi_item setting (with the valuation)."""
    got = getattr(setting, "kind", type(setting).__name__)
    if got != "multi_item":
        raise ConfigError(f"mechanism {kind!r} needs a one-buyer multi_item setting, got {got!r}{hint}")
    if setting.n_agents != 1:
        raise ConfigError(
            f"mechanism {kind!r} is for one buyer; this setting has {setting.n_agents} bidders "
            "(set n_agents = 1, or use 'vcg' / 'itemwise_myerson' for several bidders)"
        )
    if valuation is not None and setting.valuation != valuation:
        raise ConfigError(
            f"mechanism {kind!r} needs {valuation} values, the setting has {setting.valuation} values{hint}"
        )


def _check_bundle_setting(setting) -> None:
    hint = (
        "; for identical units use 'uniform_price'"
        if getattr(setting, "kind", "") == "identical_items"
        else "; for unit-demand values use 'uniform_item_price'"
    )
    _check_one_buyer("bundle_price", setting, "additive", hint)


def _check_item_setting(setting) -> None:
    hint = "; for identical units use 'uniform_price'" if getattr(setting, "kind", "") == "identical_items" else ""
    _check_one_buyer("uniform_item_price", setting, None, hint)


# ----------------------------------------------------------------------------- float64 helpers


def _cdf(prior: Prior, x) -> np.ndarray:
    """F(x) in float64, clipped to [0, 1]."""
    with enable_x64():
        F = prior.cdf(jnp.asarray(x, jnp.float64))
        return np.clip(np.asarray(F, np.float64), 0.0, 1.0)


def survival_ge(prior: Prior, p) -> np.ndarray:
    """P(v ≥ p) = 1 − F(p⁻) in float64; at an atom of a discrete prior F(p⁻) = F(p) − P(v = p)."""
    with enable_x64():
        x = jnp.asarray(p, jnp.float64)
        F = prior.cdf(x)
        if prior.discrete:
            F = F - prior.pdf(x)  # a discrete prior's pdf is its probability mass
        return np.clip(1.0 - np.asarray(F, np.float64), 0.0, 1.0)


def _special_points(priors: Sequence[Prior]) -> list[float]:
    """Support ends, density breakpoints and atoms: where a revenue curve can jump or kink."""
    pts: list[float] = []
    for p in priors:
        pts += [float(p.low), float(p.high)] + [float(b) for b in p._breakpoints()]
        atoms = p.atoms()
        if atoms is not None:
            pts += np.asarray(atoms, np.float64).tolist()
    return pts


def maximise_price(revenue: Callable[[np.ndarray], np.ndarray], top: float, special: Sequence[float] = ()) -> tuple[float, float]:
    """max over p ∈ [0, top] of a vectorised ``revenue(p)``: scan ``SCAN_POINTS`` even prices plus
    ``special`` (points where the revenue may jump), then bounded Brent on the two cells around the
    best one; returns ``(price, revenue)`` of the better of the two."""
    top = max(float(top), 0.0)
    extra = [s for s in special if 0.0 <= s <= top]
    grid = np.unique(np.concatenate([np.linspace(0.0, top, SCAN_POINTS), np.asarray(extra, np.float64)]))
    vals = np.asarray(revenue(grid), np.float64)
    k = int(np.argmax(vals))
    best_p, best_r = float(grid[k]), float(vals[k])
    lo, hi = float(grid[max(k - 1, 0)]), float(grid[min(k + 1, grid.size - 1)])
    if hi > lo:
        res = optimize.minimize_scalar(
            lambda x: -float(np.asarray(revenue(np.asarray([x], np.float64)))[0]),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-12},
        )
        r = float(np.asarray(revenue(np.asarray([res.x], np.float64)))[0])
        if r > best_r:
            best_p, best_r = float(res.x), r
    return best_p, best_r


def fixed_sample_statistic(setting, statistic: Callable[[Array], Array]) -> np.ndarray:
    """``statistic(v)`` (one row per draw) for ``SAMPLE_DRAWS`` float64 draws of ``setting.sample``,
    generated in chunks with keys fold_in(PRNGKey(0), c): deterministic."""
    key = jax.random.PRNGKey(0)
    out = []
    with enable_x64():
        draw = jax.jit(lambda k: statistic(jnp.asarray(setting.sample(k, SAMPLE_CHUNK), jnp.float64)))
        for c in range(SAMPLE_DRAWS // SAMPLE_CHUNK):
            out.append(np.asarray(draw(jax.random.fold_in(key, c)), np.float64))
    return np.concatenate(out)


class _Empirical:
    """Weighted empirical law of sampled values x, each with weight 1/``per``:
    ``survival(p)`` = #{x ≥ p}/per (per = number of draws times values used per draw)."""

    def __init__(self, x: np.ndarray, per: int):
        self.xs = np.sort(np.asarray(x, np.float64).ravel())
        self.per = float(per)

    def survival(self, p) -> np.ndarray:
        p = np.asarray(p, np.float64)
        return (self.xs.size - np.searchsorted(self.xs, p, side="left")) / self.per

    def optimum(self) -> tuple[float, float]:
        """argmax_p p·survival(p): the step function p·#{x ≥ p} is maximised at a sample value."""
        count = self.xs.size - np.searchsorted(self.xs, self.xs, side="left")
        rev = np.where(self.xs >= 0, self.xs * count / self.per, -np.inf)
        k = int(np.argmax(rev))
        if not np.isfinite(rev[k]) or rev[k] <= 0:
            return 0.0, 0.0
        return float(self.xs[k]), float(rev[k])


# ----------------------------------------------------------------------------- sum of independent values


class _TooLarge(Exception):
    pass


def _hat_masses(prior: Prior, lo: float, h: float, K: int) -> np.ndarray:
    """Masses E[hat_k(v)] on the lattice lo + k·h, k = 0..K (lo + K·h ≥ high): linear splitting
    of atoms for a discrete prior; (I_k − I_{k−1})/h with I_k = ∫ F over cell k (6-point
    Gauss–Legendre) for a continuous one. Sums to 1, keeps the mean."""
    if prior.discrete:
        atoms = np.asarray(prior.atoms(), np.float64)
        probs = np.asarray(prior.probs, np.float64)
        pos = (atoms - lo) / h
        k = np.clip(np.floor(pos).astype(np.int64), 0, K)
        frac = np.clip(pos - k, 0.0, 1.0)
        mass = np.zeros(K + 2)
        np.add.at(mass, k, probs * (1.0 - frac))
        np.add.at(mass, k + 1, probs * frac)
        return mass[: K + 1] if mass[K + 1] == 0 else mass
    nodes, weights = np.polynomial.legendre.leggauss(6)
    t, wts = (nodes + 1.0) / 2.0, weights / 2.0
    x = lo + h * (np.arange(K, dtype=np.float64)[:, None] + t[None, :])
    cell = h * (_cdf(prior, x) @ wts)  # I_k, k = 0..K-1
    ext = np.concatenate([[0.0], cell, [h]])  # I_{-1} = 0, I_K = h (F = 1 above high)
    return np.diff(ext) / h


class _IndependentSum:
    """P(Σ_j v_j ≥ p) for independent item priors, in float64 (see the module docstring).

    ``method``: "auto" (exact uniform formula if it applies, else exact discrete enumeration if it
    applies, else the lattice convolution), or one of "uniform", "discrete", "lattice".
    """

    def __init__(self, priors: Sequence[Prior], method: str = "auto"):
        self.priors = tuple(priors)
        self.lo = float(sum(p.low for p in self.priors))
        self.hi = float(sum(p.high for p in self.priors))
        if method == "auto":
            if self._uniform_ok():
                method = "uniform"
            elif all(p.discrete for p in self.priors):
                method = "discrete"
            else:
                method = "lattice"
        self.method = method
        getattr(self, f"_init_{method}")()

    # exact formula for uniforms ------------------------------------------------------------
    def _uniform_ok(self) -> bool:
        m = len(self.priors)
        if not all(isinstance(p, Uniform) for p in self.priors) or m > EXACT_UNIFORM_MAX_ITEMS:
            return False
        w = np.asarray([p.high - p.low for p in self.priors], np.float64)
        # each of the 2^m terms is at most (Σw)^m/(m!Πw); keep their rounding error below ~1e-10
        return 2.0**m * float(np.sum(w)) ** m / (math.factorial(m) * float(np.prod(w))) <= 1e6

    def _init_uniform(self):
        w = np.asarray([p.high - p.low for p in self.priors], np.float64)
        m = w.size
        subsets = np.asarray(list(itertools.product((0, 1), repeat=m)), np.float64)  # (2^m, m)
        self._shifts = subsets @ w
        self._signs = (-1.0) ** subsets.sum(axis=1)
        self._norm = math.factorial(m) * float(np.prod(w))
        self._m = m

    def _survival_uniform(self, p: np.ndarray) -> np.ndarray:
        x = p[:, None] - self.lo - self._shifts[None, :]
        F = (self._signs * np.maximum(x, 0.0) ** self._m).sum(axis=1) / self._norm
        F = np.where(p >= self.hi, 1.0, np.where(p <= self.lo, 0.0, F))
        return np.clip(1.0 - F, 0.0, 1.0)

    # exact enumeration for discrete items --------------------------------------------------
    def _init_discrete(self):
        vals, probs = np.zeros(1), np.ones(1)
        for p in self.priors:
            a, q = np.asarray(p.atoms(), np.float64), np.asarray(p.probs, np.float64)
            vals = (vals[:, None] + a[None, :]).ravel()
            probs = (probs[:, None] * q[None, :]).ravel()
            order = np.argsort(vals, kind="stable")
            vals, probs = vals[order], probs[order]
            tol = 1e-12 * (1.0 + float(np.max(np.abs(vals))))
            start = np.concatenate([[True], np.diff(vals) > tol])  # merge sums equal up to rounding
            idx = np.flatnonzero(start)
            vals, probs = vals[idx], np.add.reduceat(probs, idx)
            if vals.size > MAX_DISCRETE_SUPPORT:
                raise _TooLarge
        self._vals = vals
        self._tail = np.concatenate([np.cumsum(probs[::-1])[::-1], [0.0]])  # P(S ≥ vals[k])

    def _survival_discrete(self, p: np.ndarray) -> np.ndarray:
        return np.clip(self._tail[np.searchsorted(self._vals, p - 1e-12 * (1.0 + abs(self.hi)), side="left")], 0.0, 1.0)

    # lattice convolution ---------------------------------------------------------------------
    def _init_lattice(self):
        cont = [j for j, p in enumerate(self.priors) if not p.discrete]
        if not cont:
            raise _TooLarge  # all discrete: enumerate or sample instead
        widths = [p.high - p.low for p in self.priors]
        c = max(cont, key=lambda j: widths[j])  # the item kept exact (the widest continuous one)
        h = float(sum(widths)) / LATTICE_POINTS
        w, s0 = np.ones(1), 0.0
        for j, p in enumerate(self.priors):
            if j == c:
                continue
            K = max(1, int(math.ceil((p.high - p.low) / h)))
            w = signal.fftconvolve(w, _hat_masses(p, float(p.low), h, K))
            s0 += float(p.low)
        w = np.maximum(w, 0.0)
        self._w = w / w.sum()
        self._s0, self._h, self._c = s0, h, self.priors[c]
        self._offsets = s0 + h * np.arange(self._w.size, dtype=np.float64)

    def _survival_lattice(self, p: np.ndarray) -> np.ndarray:
        out = np.empty(p.size)
        for i, x in enumerate(p):
            out[i] = self._w @ (1.0 - _cdf(self._c, x - self._offsets))
        return np.clip(out, 0.0, 1.0)

    def _lattice_optimum(self) -> tuple[float, float]:
        """Scan the lattice prices s0 + lo_c + n·h (all at once: an FFT convolution of the lattice
        masses with the survival of item c sampled on the same lattice), then Brent-refine."""
        c, h = self._c, self._h
        K = max(1, int(math.ceil((c.high - c.low) / h)))
        g = 1.0 - _cdf(c, c.low + h * np.arange(K + 1, dtype=np.float64))
        conv = signal.fftconvolve(self._w, g)  # Σ_{k ≤ n} w_k g_{n−k}
        n = np.arange(conv.size)
        tail = np.where(n < self._w.size, 1.0 - np.cumsum(np.concatenate([self._w, np.zeros(conv.size - self._w.size)])), 0.0)
        Q = np.clip(conv + np.maximum(tail, 0.0), 0.0, 1.0)  # terms with n − k < 0 have g = 1
        prices = self._s0 + c.low + h * n
        rev = np.where(prices >= 0, prices * Q, -np.inf)
        k = int(np.argmax(rev))
        if not np.isfinite(rev[k]) or rev[k] <= 0:
            return 0.0, 0.0
        lo, hi = float(prices[max(k - 1, 0)]), float(prices[min(k + 1, prices.size - 1)])
        lo = max(lo, 0.0)
        best_p = float(prices[k])
        best_r = best_p * float(self.survival(np.asarray([best_p]))[0])
        res = optimize.minimize_scalar(
            lambda x: -x * float(self.survival(np.asarray([x]))[0]), bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}
        )
        r = float(res.x) * float(self.survival(np.asarray([res.x]))[0])
        if r > best_r:
            best_p, best_r = float(res.x), r
        return best_p, best_r

    # public ------------------------------------------------------------------------------------
    def survival(self, p) -> np.ndarray:
        """P(S ≥ p), vectorised over p."""
        p = np.atleast_1d(np.asarray(p, np.float64))
        s = getattr(self, f"_survival_{self.method}")(p)
        return np.where(p <= self.lo, 1.0, np.where(p > self.hi, 0.0, s))

    def optimum(self) -> tuple[float, float]:
        """(p*, p*·P(S ≥ p*)) maximising (B2)."""
        if self.method == "discrete":
            rev = np.where(self._vals >= 0, self._vals * self._tail[:-1], -np.inf)
            k = int(np.argmax(rev))
            return (float(self._vals[k]), float(rev[k])) if rev[k] > 0 else (0.0, 0.0)
        if self.method == "lattice":
            return self._lattice_optimum()
        return maximise_price(lambda p: p * self.survival(p), self.hi, [self.lo])


def _bundle_law(setting):
    """An object with ``survival(p)`` = P(Σ_j v_j ≥ p) and ``optimum()`` for the setting."""
    if setting.independent:
        try:
            return _IndependentSum(setting.priors[0])
        except _TooLarge:
            pass
    return _Empirical(fixed_sample_statistic(setting, lambda v: jnp.sum(v[:, 0, :], axis=-1)), SAMPLE_DRAWS)


def bundle_revenue(setting, price):
    """Expected revenue (B2) p·P(Σ_j v_j ≥ p) of the bundle price ``price`` (scalar or array).

    Deterministic for independent priors; from the fixed 2^20-draw sample for correlated ones."""
    _check_bundle_setting(setting)
    p = np.asarray(price, np.float64)
    rev = p * _bundle_law(setting).survival(p.ravel()).reshape(p.shape)
    return float(rev) if rev.ndim == 0 else rev


def optimal_bundle_price(setting) -> tuple[float, float]:
    """The revenue-maximising grand-bundle price p* of (B2) and its revenue ``(p*, Rev_B(p*))``."""
    _check_bundle_setting(setting)
    return _bundle_law(setting).optimum()


# ----------------------------------------------------------------------------- one price per item


def _item_survival(setting) -> tuple[Callable[[np.ndarray], np.ndarray] | None, _Empirical | None, float]:
    """For the setting's valuation: the exact 'expected units sold at p' function (U1)/(U2) for
    independent priors, or an empirical law with that survival for correlated ones; and a factor
    the empirical survival is multiplied with."""
    priors = setting.priors[0]
    m = len(priors)
    if setting.independent:
        if setting.valuation == "unit_demand":
            return (lambda p: 1.0 - np.prod([1.0 - survival_ge(q, p) for q in priors], axis=0)), None, 1.0
        return (lambda p: np.sum([survival_ge(q, p) for q in priors], axis=0)), None, 1.0
    if setting.valuation == "unit_demand":
        return None, _Empirical(fixed_sample_statistic(setting, lambda v: jnp.max(v[:, 0, :], axis=-1)), SAMPLE_DRAWS), 1.0
    # additive, exchangeable: every item has the same marginal; Σ_j P(v_j ≥ p) = m·P(v_1 ≥ p),
    # estimated from the first min(m, 4) items of every draw
    k = min(m, 4)
    emp = _Empirical(fixed_sample_statistic(setting, lambda v: v[:, 0, :k]), SAMPLE_DRAWS * k)
    return None, emp, float(m)


def item_price_revenue(setting, price):
    """Expected revenue (U1) or (U2) of the common item price ``price`` (scalar or array)."""
    _check_item_setting(setting)
    p = np.asarray(price, np.float64)
    exact, emp, factor = _item_survival(setting)
    flat = p.ravel()
    units = exact(flat) if exact is not None else factor * emp.survival(flat)
    rev = p * units.reshape(p.shape)
    return float(rev) if rev.ndim == 0 else rev


def optimal_item_price(setting) -> tuple[float, float]:
    """The revenue-maximising common item price for (U1) (unit demand) or (U2) (additive) and its
    revenue ``(price, revenue)``: exact 1-D maximisation for independent priors (scan + Brent),
    the empirical optimum of the fixed sample for correlated ones."""
    _check_item_setting(setting)
    exact, emp, factor = _item_survival(setting)
    if exact is None:
        p, r = emp.optimum()
        return p, factor * r
    priors = setting.priors[0]
    return maximise_price(lambda p: p * exact(p), max(q.high for q in priors), _special_points(priors))


# ----------------------------------------------------------------------------- mechanisms


class BundlePrice(Mechanism):
    """Pure bundling (B1): the buyer gets all items and pays p iff Σ_j b_j ≥ p.

    Option ``price`` (a number ≥ 0); by default the optimal price p* of (B2) for the setting's prior
    (:func:`optimal_bundle_price`; correlated priors: from a fixed 2^20-draw sample with
    PRNGKey(0)). DSIC and ex post IR: a posted price for the grand bundle is a two-option menu
    and the rule picks the buyer's preferred option for her report (module docstring).

    Attributes:
        price: the bundle price p.
    """

    price: float = eqx.field(static=True)

    kind: ClassVar[str] = "bundle_price"
    summary: ClassVar[str] = "one buyer, additive: the grand bundle at the revenue-optimal (or given) price (option: price)"
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "BundlePrice":
        price = parse_price(cls.kind, options)
        _check_bundle_setting(setting)
        if price is None:
            price, _ = optimal_bundle_price(setting)
        return cls(price=float(price))

    def __call__(self, reports: Float[Array, "batch 1 items"]) -> Outcome:
        b = jnp.asarray(reports)
        dtype = float_dtype(b)
        b = b.astype(dtype)
        p = jnp.asarray(self.price, dtype)
        buy = (jnp.sum(b, axis=-1) >= p).astype(dtype)  # (batch, 1)
        return Outcome(alloc=jnp.broadcast_to(buy[..., None], b.shape), payments=buy * p)


class UniformItemPrice(Mechanism):
    """One price p for every item, for one buyer: (U1) with unit-demand values (one item j* =
    first argmax_j (b_j − p) iff b_j* ≥ p, pays p), (U2) with additive values (every item with
    b_j ≥ p, p per item).

    Option ``price`` (a number ≥ 0); by default the optimal common price of (U1)/(U2)
    (:func:`optimal_item_price`; exact for independent priors, fixed 2^20-draw sample with
    PRNGKey(0) for correlated ones). DSIC and ex post IR: the buyer faces the menu {nothing at 0,
    any single item at p} (unit demand) or {any set S at p·|S|} (additive), and the rule hands her
    report a utility-maximising option of that menu.

    Attributes:
        price: the common item price p.
        valuation: ``"unit_demand"`` or ``"additive"`` (from the setting).
    """

    price: float = eqx.field(static=True)
    valuation: str = eqx.field(static=True)

    kind: ClassVar[str] = "uniform_item_price"
    summary: ClassVar[str] = "one buyer: every item at one revenue-optimal (or given) price; unit-demand or additive (option: price)"
    dsic_by_construction: ClassVar[bool] = True
    ir_by_construction: ClassVar[bool] = True

    @classmethod
    def from_config(cls, setting, options: dict[str, Any], key=None) -> "UniformItemPrice":
        price = parse_price(cls.kind, options)
        _check_item_setting(setting)
        if price is None:
            price, _ = optimal_item_price(setting)
        return cls(price=float(price), valuation=setting.valuation)

    def __call__(self, reports: Float[Array, "batch 1 items"]) -> Outcome:
        b = jnp.asarray(reports)
        dtype = float_dtype(b)
        b = b.astype(dtype)
        p = jnp.asarray(self.price, dtype)
        if self.valuation == "unit_demand":
            j = jnp.argmax(b, axis=-1)  # first maximiser of b_j − p
            buy = (jnp.max(b, axis=-1) >= p).astype(dtype)
            alloc = jax.nn.one_hot(j, b.shape[-1], dtype=dtype) * buy[..., None]
            return Outcome(alloc=alloc, payments=buy * p)
        alloc = (b >= p).astype(dtype)
        return Outcome(alloc=alloc, payments=p * jnp.sum(alloc, axis=-1))
