"""Figures: training curves, allocation/payment maps (two bidders with one item; one buyer with two
items), revenue bars.

Everything is drawn on a :class:`matplotlib.figure.Figure` rendered by the non-interactive Agg
canvas directly, without pyplot: no global state is touched, so a user who chose another backend
(or works in a notebook) keeps it, and plotting works on headless machines.

Every function creates the parent directories of ``path``, writes the PNG atomically (a temporary
file in the same directory, then :func:`os.replace`), releases the figure and returns the path.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .errors import ConfigError, DiffmechError

__all__ = ["plot_training", "plot_maps", "plot_item_maps", "item_map_arrays", "plot_revenue_bars", "plot_sweep"]

DPI = 110
#: above this many points a curve is drawn without markers
_MARKER_MAX_POINTS = 30


# --------------------------------------------------------------------------------------------
# helpers


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically, then release it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a fresh name next to the target, created with the usual umask-governed permissions
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format="png", dpi=DPI)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    finally:
        fig.clear()
    return path


def _to_float(x: Any) -> float:
    """A float from a Python/numpy/jax scalar; NaN for None or anything unconvertible."""
    if x is None:
        return math.nan
    try:
        return float(np.asarray(x, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        return math.nan


def _to_list(x: Any) -> list[float] | None:
    """A list of floats from a per-agent sequence (or a scalar); ``None`` if absent."""
    if x is None:
        return None
    try:
        arr = np.asarray(x, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return [float(v) for v in arr]


def _plot_kw(n_points: int) -> dict[str, Any]:
    return {"marker": "o", "markersize": 3} if n_points <= _MARKER_MAX_POINTS else {}


def _placeholder(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _per_agent_series(history: Sequence[Mapping], key: str) -> tuple[list[list[float]], list[list[float]]]:
    """For each agent, the (steps, values) of ``history[*][key][agent]`` where present."""
    xs: list[list[float]] = []
    ys: list[list[float]] = []
    for i, rec in enumerate(history):
        vals = _to_list(rec.get(key))
        if not vals:
            continue
        step = _step_of(rec, i)
        while len(xs) < len(vals):
            xs.append([])
            ys.append([])
        for a, v in enumerate(vals):
            xs[a].append(step)
            ys[a].append(v)
    return xs, ys


def _step_of(rec: Mapping, index: int) -> float:
    step = _to_float(rec.get("step"))
    return float(index) if math.isnan(step) else step


# --------------------------------------------------------------------------------------------
# training curves


def plot_training(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    reference: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Training curves against ``step``.

    Args:
        history: one dictionary per logged step with keys ``step``, ``revenue``, ``regret`` (per
            agent; absent or ``None`` for mechanisms that are IC by construction), ``ir`` (per
            agent, optional), ``lam`` (constraint name → per-agent multipliers, optional),
            ``rho`` (optional) and ``loss``. Any key may be missing.
        path: where to write the PNG.
        reference: optional horizontal lines on the revenue panel, label → value
            (e.g. ``{"Myerson": 0.4167}``).
        title: optional figure title.

    Panels: revenue; regret per agent (log scale, nonpositive values skipped) with the IR
    violation dashed if logged; Lagrange multipliers per constraint and agent (log scale when all
    positive); loss, with the penalty weight ``rho`` on a second axis if logged.
    """
    history = [rec for rec in (history or []) if isinstance(rec, Mapping)]
    fig = _new_figure((13.0, 3.4))
    ax_rev, ax_reg, ax_lam, ax_loss = fig.subplots(1, 4)
    if title:
        fig.suptitle(title)

    steps = [_step_of(rec, i) for i, rec in enumerate(history)]
    kw = _plot_kw(len(history))
    for ax in (ax_rev, ax_reg, ax_lam, ax_loss):
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    # objective (revenue, or surplus in public-goods settings) ------------------------------
    objective = "surplus" if any("surplus" in rec for rec in history) else "revenue"
    rev = [_to_float(rec.get(objective)) for rec in history]
    ax_rev.set_title(objective)
    if any(math.isfinite(v) for v in rev):
        ax_rev.plot(steps, rev, color="C0", label=objective, **kw)
    for j, (label, value) in enumerate((reference or {}).items()):
        value = _to_float(value)
        if math.isfinite(value):
            ax_rev.axhline(value, color=f"C{(j + 1) % 10}", linestyle="--", linewidth=1.0,
                           label=f"{label} ({value:.4g})")
    if ax_rev.lines:
        ax_rev.legend(fontsize="small")
    else:
        _placeholder(ax_rev, f"no {objective} logged")

    # constraints: regret / IR (ex post), interim regret / interim IR / budget ----------------
    families = (("regret", "-", "regret"), ("ir", "--", "IR viol."), ("interim_regret", "-", "interim regret"),
                ("interim_ir", "--", "interim IR viol."), ("budget", ":", "budget short."))
    ax_reg.set_title("constraint violations per agent")
    any_positive = False
    for key, style, name in families:
        xs, ys = _per_agent_series(history, key)
        for a, (x, y) in enumerate(zip(xs, ys)):
            pts = [(s, v) for s, v in zip(x, y) if math.isfinite(v) and v > 0]
            if not pts:
                continue
            any_positive = True
            px, py = zip(*pts)
            ax_reg.plot(px, py, linestyle=style, color=f"C{a % 10}", label=f"{name} {a + 1}",
                        **_plot_kw(len(pts)))
    if any_positive:
        ax_reg.set_yscale("log")
        ax_reg.legend(fontsize="small", ncol=2 if len(ax_reg.lines) > 6 else 1)
    else:
        has_any = any(rec.get(k) is not None for rec in history for k, _, _ in families)
        _placeholder(ax_reg, "violations are zero" if has_any else "not tracked\n(IC by construction)")

    # multipliers ----------------------------------------------------------------------------
    ax_lam.set_title("Lagrange multipliers")
    names: list[str] = []
    for rec in history:
        lam = rec.get("lam")
        if isinstance(lam, Mapping):
            names.extend(n for n in lam if n not in names)
    all_vals: list[float] = []
    styles = ["-", "--", ":", "-."]
    for c, cname in enumerate(names):
        sub = [{"step": _step_of(rec, i), cname: (rec.get("lam") or {}).get(cname)}
               for i, rec in enumerate(history) if isinstance(rec.get("lam"), Mapping)]
        xs, ys = _per_agent_series(sub, cname)
        for a, (x, y) in enumerate(zip(xs, ys)):
            pts = [(s, v) for s, v in zip(x, y) if math.isfinite(v)]
            if not pts:
                continue
            px, py = zip(*pts)
            all_vals.extend(py)
            ax_lam.plot(px, py, linestyle=styles[c % len(styles)], color=f"C{a % 10}",
                        label=f"{cname} {a + 1}", **_plot_kw(len(pts)))
    if ax_lam.lines:
        if all(v > 0 for v in all_vals):
            ax_lam.set_yscale("log")
        ax_lam.legend(fontsize="small", ncol=2 if len(ax_lam.lines) > 6 else 1)
    else:
        _placeholder(ax_lam, "no constraints")

    # loss and rho -----------------------------------------------------------------------------
    ax_loss.set_title("loss")
    loss = [_to_float(rec.get("loss")) for rec in history]
    if any(math.isfinite(v) for v in loss):
        ax_loss.plot(steps, loss, color="C0", label="loss", **kw)
    rho_pts = [(s, _to_float(rec.get("rho"))) for s, rec in zip(steps, history)]
    rho_pts = [(s, v) for s, v in rho_pts if math.isfinite(v)]
    if rho_pts:
        ax_rho = ax_loss.twinx()
        px, py = zip(*rho_pts)
        ax_rho.plot(px, py, color="C3", linestyle="--", label="rho", **_plot_kw(len(px)))
        ax_rho.set_ylabel("rho", color="C3")
        if all(v > 0 for v in py):
            ax_rho.set_yscale("log")
        ax_loss.set_title("loss and rho")
    if ax_loss.lines:
        ax_loss.set_ylabel("loss", color="C0")
    elif not rho_pts:
        _placeholder(ax_loss, "no loss logged")

    finite_steps = [s for s in steps if math.isfinite(s)]
    if finite_steps and max(finite_steps) - min(finite_steps) < 2:  # one point: a readable span
        for ax in (ax_rev, ax_reg, ax_lam, ax_loss):
            if ax.lines:
                ax.set_xlim(min(finite_steps) - 1, max(finite_steps) + 1)

    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# allocation / payment maps


def _check_two_bidders(setting) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = setting.type_bounds()
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    n = int(setting.n_agents)
    dim = int(getattr(setting, "type_dim", lo.shape[-1] if lo.ndim else 1))
    if n != 2 or dim != 1:
        raise DiffmechError(
            "allocation maps need a setting with 2 bidders and one-dimensional types; "
            f"this one has {n} bidder(s) with {dim}-dimensional types"
        )
    lo, hi = lo.reshape(2), hi.reshape(2)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise DiffmechError(
            "allocation maps need bounded type spaces; this setting's type bounds are "
            f"low={lo.tolist()}, high={hi.tolist()}"
        )
    return lo, hi


def _grid_outcomes(mechanism, lo: np.ndarray, hi: np.ndarray, grid: int) -> dict[str, np.ndarray]:
    """Evaluate ``mechanism`` on a ``grid × grid`` square in one batched call.

    Returns arrays of shape ``(grid, grid)`` indexed ``[v2 index, v1 index]`` (rows follow
    bidder 2's value, columns bidder 1's, as ``imshow(origin="lower")`` expects) under the keys
    ``alloc1``, ``alloc2``, ``pay1``, ``pay2``.
    """
    import jax.numpy as jnp

    v1 = np.linspace(lo[0], hi[0], grid)
    v2 = np.linspace(lo[1], hi[1], grid)
    V1, V2 = np.meshgrid(v1, v2, indexing="xy")
    reports = np.stack([V1.ravel(), V2.ravel()], axis=1)[..., None]  # (grid², 2, 1)
    outcome = mechanism(jnp.asarray(reports, dtype=jnp.result_type(float)))
    alloc = np.asarray(outcome.alloc, dtype=np.float64)
    pay = np.asarray(outcome.payments, dtype=np.float64)
    if alloc.ndim == 2:  # tolerate (batch, agents) allocations
        alloc = alloc[..., None]
    alloc = alloc.sum(axis=-1)  # one item: its probability; several: expected number of items
    shape = (grid, grid)
    return {
        "alloc1": alloc[:, 0].reshape(shape),
        "alloc2": alloc[:, 1].reshape(shape),
        "pay1": pay[:, 0].reshape(shape),
        "pay2": pay[:, 1].reshape(shape),
    }


def _range(arrays: Sequence[np.ndarray], floor: float, ceil: float | None) -> tuple[float, float]:
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if a.size]
    lo = min([floor] + [float(a.min()) for a in finite])
    hi = max(([ceil] if ceil is not None else []) + [float(a.max()) for a in finite] + [lo])
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def plot_maps(
    mechanism,
    setting,
    path: str | os.PathLike,
    reference=None,
    grid: int = 101,
    label: str = "learned",
    reference_label: str = "Myerson",
) -> Path:
    """Heatmaps of allocations and payments of a two-bidder mechanism over the type square.

    Evaluates ``mechanism`` (and ``reference`` if given) on a ``grid × grid`` square spanning
    ``setting.type_bounds()`` in one batched call each, and draws the allocation of bidder 1 and
    of bidder 2 and the payment of bidder 1 and of bidder 2 against (v1, v2). ``reference`` gets
    a second row with the same colour scales.

    Raises:
        DiffmechError: the setting does not have exactly 2 bidders with one-dimensional types, or
            its type space is unbounded; ``grid`` is smaller than 2.
    """
    lo, hi = _check_two_bidders(setting)
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
        raise DiffmechError(f"allocation maps need a grid of at least 2 points per axis, got {grid!r}")
    grid = int(grid)

    rows = [(label, _grid_outcomes(mechanism, lo, hi, grid))]
    if reference is not None:
        rows.append((reference_label, _grid_outcomes(reference, lo, hi, grid)))

    panels = [
        ("alloc1", "allocation, bidder 1", "viridis"),
        ("alloc2", "allocation, bidder 2", "viridis"),
        ("pay1", "payment, bidder 1", "magma"),
        ("pay2", "payment, bidder 2", "magma"),
    ]
    # the same scale down a column; both payment columns share one scale too
    alloc_range = {k: _range([r[k] for _, r in rows], 0.0, 1.0) for k in ("alloc1", "alloc2")}
    pay_range = _range([r[k] for _, r in rows for k in ("pay1", "pay2")], 0.0, None)
    ranges = {**alloc_range, "pay1": pay_range, "pay2": pay_range}

    extent = (lo[0], hi[0], lo[1], hi[1])
    fig = _new_figure((4 * 3.5, len(rows) * 3.3 + 0.3))
    _heatmap_rows(fig, rows, panels, ranges, extent)
    return _save(fig, path)


def _heatmap_rows(fig, rows, panels, ranges, extent, decorate=None) -> None:
    """One sub-figure per (label, data) row, one heatmap per (key, title, cmap) panel over the
    (v1, v2) rectangle ``extent``, colour limits from ``ranges``; ``decorate(ax)`` adds overlays."""
    subfigs = fig.subfigures(len(rows), 1, squeeze=False)[:, 0]
    for subfig, (row_label, data) in zip(subfigs, rows):
        subfig.suptitle(row_label, fontweight="bold")
        axes = subfig.subplots(1, len(panels))
        for ax, (key, title, cmap) in zip(axes, panels):
            vmin, vmax = ranges[key]
            im = ax.imshow(data[key], extent=extent, origin="lower", aspect="auto",
                           cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if decorate is not None:
                decorate(ax)
            ax.set_title(title, fontsize="medium")
            ax.set_xlabel("v1")
            ax.set_ylabel("v2")
            subfig.colorbar(im, ax=ax, shrink=0.9)


# --------------------------------------------------------------------------------------------
# allocation / payment maps of one buyer with two items


def _check_one_buyer_two_items(setting) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(lo, hi, sorted_types)`` of a one-buyer two-item setting; ``ConfigError`` otherwise."""
    kind = getattr(setting, "kind", type(setting).__name__)
    n = int(getattr(setting, "n_agents", 0))
    m = int(getattr(setting, "n_items", 0))
    if kind not in ("multi_item", "identical_items") or n != 1 or m != 2:
        raise ConfigError(
            "item maps need a multi_item setting with 1 bidder and 2 items or an identical_items setting "
            f"with 2 units; this one is {kind!r} with {n} bidder(s) and {m} item(s) (use plot_maps for 2 bidders, 1 item)"
        )
    lo, hi = setting.type_bounds()
    lo = np.asarray(lo, dtype=np.float64).reshape(2)
    hi = np.asarray(hi, dtype=np.float64).reshape(2)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise ConfigError(
            "item maps need bounded type spaces; this setting's type bounds are "
            f"low={lo.tolist()}, high={hi.tolist()}"
        )
    return lo, hi, kind == "identical_items"


def _check_grid(grid) -> int:
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ConfigError(f"allocation maps need a grid of at least 2 points per axis, got {grid!r}")
    return int(grid)


def item_map_arrays(mechanism, setting, grid: int = 101) -> dict[str, np.ndarray]:
    """The values :func:`plot_item_maps` draws: ``mechanism`` on a ``grid × grid`` type square.

    The buyer's types (v1, v2) span ``setting.type_bounds()``; the mechanism is called once on
    all ``grid²`` reports, shape ``(grid², 1, 2)``. Returns ``(grid, grid)`` arrays indexed
    ``[v2 index, v1 index]`` (rows follow v2, columns v1, as ``imshow(origin="lower")`` expects):
    ``q1`` and ``q2``, the probabilities of item (unit) 1 and 2 — for ``identical_items``, q_k is
    the probability of at least k units —, ``t`` the payment, and the axes ``v1`` (grid,) and
    ``v2`` (grid,). For ``identical_items`` the types are sorted, v1 ≥ v2, so cells with v2 > v1
    lie outside the type space and are NaN.

    Raises:
        ConfigError: the setting is not one buyer with two items (or two identical units), its
            type space is unbounded, or ``grid`` < 2.
    """
    import jax.numpy as jnp

    lo, hi, sorted_types = _check_one_buyer_two_items(setting)
    grid = _check_grid(grid)
    v1 = np.linspace(lo[0], hi[0], grid)
    v2 = np.linspace(lo[1], hi[1], grid)
    V1, V2 = np.meshgrid(v1, v2, indexing="xy")
    reports = np.stack([V1.ravel(), V2.ravel()], axis=-1)[:, None, :]  # (grid², 1, 2)
    outcome = mechanism(jnp.asarray(reports, dtype=jnp.result_type(float)))
    alloc = np.asarray(outcome.alloc, dtype=np.float64).reshape(grid * grid, -1)
    pay = np.asarray(outcome.payments, dtype=np.float64).reshape(grid * grid, -1)
    if alloc.shape[1] != 2 or pay.shape[1] != 1:
        raise ConfigError(
            f"item maps need a mechanism for 1 buyer and 2 items; it returned allocations of "
            f"shape {tuple(np.shape(outcome.alloc))} and payments of shape {tuple(np.shape(outcome.payments))}"
        )
    shape = (grid, grid)
    out = {"q1": alloc[:, 0].reshape(shape), "q2": alloc[:, 1].reshape(shape), "t": pay[:, 0].reshape(shape)}
    if sorted_types:
        outside = V2 > V1
        for a in out.values():
            a[outside] = np.nan
    out["v1"], out["v2"] = v1, v2
    return out


def _label_of(mechanism) -> str:
    kind = getattr(mechanism, "kind", None)
    return kind if isinstance(kind, str) and kind else type(mechanism).__name__


def plot_item_maps(mechanism, setting, path: str | os.PathLike, reference=None, grid: int = 101) -> Path:
    """Heatmaps of the allocations q_1(v), q_2(v) and the payment t(v) of a one-buyer, two-item
    mechanism over the buyer's type square (v1, v2).

    For ``multi_item`` with 1 bidder and 2 items (additive or unit-demand) q_j is the probability
    of item j; for ``identical_items`` with 2 units, q_k is the probability of at least k units and
    only the cone v1 ≥ v2 is drawn (the rest is outside the type space and left blank). Values come
    from :func:`item_map_arrays` (one batched call per mechanism). Allocations use the colour scale
    [0, 1]; the payment scale spans 0 to the largest payment of either row. ``reference`` (e.g. the
    Manelli–Vincent menu) gets a second row with the same panels, titled with its kind. The figure
    is titled with ``setting.describe()``.

    Raises:
        ConfigError: the setting is not one buyer with two items / two identical units, its type
            space is unbounded, or ``grid`` < 2.
    """
    lo, hi, sorted_types = _check_one_buyer_two_items(setting)
    rows = [(_label_of(mechanism), item_map_arrays(mechanism, setting, grid))]
    if reference is not None:
        rows.append((_label_of(reference), item_map_arrays(reference, setting, grid)))

    unit = "at least {} unit{}" if sorted_types else "item {}{}"
    panels = [
        ("q1", f"q1: {unit.format(1, '')}", "viridis"),
        ("q2", f"q2: {unit.format(2, 's' if sorted_types else '')}", "viridis"),
        ("t", "payment t", "magma"),
    ]
    ranges = {"q1": (0.0, 1.0), "q2": (0.0, 1.0), "t": _range([r["t"] for _, r in rows], 0.0, None)}

    extent = (lo[0], hi[0], lo[1], hi[1])
    fig = _new_figure((3 * 3.7, len(rows) * 3.4 + 0.5))
    fig.suptitle(setting.describe())

    def decorate(ax):
        if sorted_types:  # the boundary of the type space v1 ≥ v2
            a, b = max(lo[0], lo[1]), min(hi[0], hi[1])
            ax.plot([a, b], [a, b], color="0.5", linewidth=0.8)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])

    _heatmap_rows(fig, rows, panels, ranges, extent, decorate)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# revenue bars


def plot_revenue_bars(
    results: Mapping[str, float],
    path: str | os.PathLike,
    errors: Mapping[str, float] | None = None,
    title: str = "expected revenue",
) -> Path:
    """A bar chart of mechanism name → revenue, with optional error bars (name → half-width)."""
    names = list(results)
    values = [_to_float(results[n]) for n in names]
    errs = None
    if errors:
        errs = [_to_float(errors.get(n)) for n in names]
        errs = [e if math.isfinite(e) and e >= 0 else 0.0 for e in errs]
    fig = _new_figure((max(4.0, 1.1 * len(names) + 2.0), 3.6))
    ax = fig.subplots()
    ax.set_title(title)
    if not names:
        _placeholder(ax, "no results")
        return _save(fig, path)
    xs = np.arange(len(names))
    heights = [v if math.isfinite(v) else 0.0 for v in values]
    bars = ax.bar(xs, heights, yerr=errs, capsize=4 if errs else 0,
                  color=[f"C{i % 10}" for i in range(len(names))])
    ax.bar_label(bars, labels=[f"{v:.4g}" if math.isfinite(v) else "n/a" for v in values],
                 padding=3, fontsize="small")
    ax.set_xticks(xs)
    long_names = max(len(n) for n in names) > 10 or len(names) > 5
    ax.set_xticklabels(names, rotation=30 if long_names else 0, ha="right" if long_names else "center")
    ax.set_ylabel("revenue")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.margins(y=0.15)
    return _save(fig, path)


def plot_sweep(summary: Sequence[Mapping], keys: Sequence[str], objective: str, path: str | os.PathLike) -> Path:
    """A sweep's results: the objective and the regret of every grid point, mean ± sd over seeds.

    ``summary`` rows come from :func:`diffmech.sweep.summarise`; ``keys`` are the grid's keys.
    """
    labels = [", ".join(f"{k.split('.')[-1]}={s.get(k)}" for k in keys) or "base" for s in summary]
    regret = next((m for m in ("regret_max", "interim_regret_max", "regret_mean") if any(m in s for s in summary)), None)
    panels = [objective] + ([regret] if regret else [])
    fig = _new_figure((max(4.0, 1.1 * len(summary) + 2.5), 3.2 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    x = np.arange(len(summary))
    for ax, metric in zip(axes, panels):
        mean = np.array([s.get(metric, np.nan) for s in summary], dtype=float)
        sd = np.array([s.get(f"{metric}_sd", 0.0) for s in summary], dtype=float)
        ax.errorbar(x, mean, yerr=sd, fmt="o", capsize=4)
        ax.set_ylabel(metric)
        ax.set_xticks(x, labels if ax is axes[-1] else [""] * len(x), rotation=30 if len(summary) > 3 else 0, ha="right" if len(summary) > 3 else "center")
        ax.grid(alpha=0.3)
    axes[0].set_title("sweep: mean ± sd over seeds")
    return _save(fig, path)
