"""Exact (quadrature) reference quantities for single-item mechanisms, in float64.

Optimal revenue (Myerson 1981, Lemma 3 and §6). For independent priors the optimal expected revenue
is the expected maximum positive ironed virtual value,

    Rev* = E[max_i φ̄_i(v_i)⁺] = ∫_0^∞ P(max_i φ̄_i(v_i) > t) dt = ∫_0^T (1 − Π_i G_i(t)) dt,     (R1)
    G_i(t) = P(φ̄_i(v_i) ≤ t) = F_i(sup{z : φ̄_i(z) ≤ t})       (continuous prior),            (R2)
    G_i(t) = Σ_{atoms a of F_i : φ̄_i(a) ≤ t} P(v_i = a)        (discrete prior),

with T = max_i φ̄_i(high_i). (R1) holds for the ironed φ̄ because Myerson's allocation is constant on
every ironing interval, so E[φ(v) a(v)] = E[φ̄(v) a(v)].

Interim rules. For bidder i with value v_i, the interim allocation and payment are

    ā_i(v_i) = E_{v_−i}[a_i(v_i, v_−i)],   p̄_i(v_i) = E_{v_−i}[p_i(v_i, v_−i)],                 (R3)

computed from the mechanism itself (evaluated on float64 reports). With two bidders the expectation
over the other bidder's value is one-dimensional and is done by adaptive quadrature
(``scipy.integrate.quad_vec``, which localises the jumps of the integrand) or, for a discrete prior,
as an exact sum over its atoms; with more bidders it is a Monte Carlo mean (documented error
~ std/√n_samples).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate

from ._compat import enable_x64
from .priors import Prior

__all__ = ["myerson_revenue", "interim_allocation", "interim_payment", "interim_outcome"]


def _atom_masses(prior: Prior, atoms: np.ndarray) -> np.ndarray:
    F = np.clip(np.asarray(prior.cdf(jnp.asarray(atoms, jnp.float64)), dtype=np.float64), 0.0, 1.0)
    return np.diff(np.concatenate([[0.0], F]))


def _plateaus(prior: Prior, n: int = 4097) -> list[float]:
    """Values of φ̄ on its flat pieces (ironing intervals): G_i jumps there, so they are breakpoints."""
    z = np.linspace(prior.low, prior.high, n)
    phi = np.asarray(prior.ironed_virtual_value(jnp.asarray(z, jnp.float64)), dtype=np.float64)
    scale = max(1.0, float(np.nanmax(np.abs(phi))))
    flat = np.abs(np.diff(phi)) <= 1e-12 * scale
    return sorted(set(np.round(phi[:-1][flat], 14).tolist()))


def myerson_revenue(priors: Sequence[Prior]) -> float:
    """Optimal expected revenue (R1) for one item and independent priors, in float64.

    The integral over t is split at every φ̄_i(low_i), φ̄_i(high_i), φ̄_i at atoms and the levels of
    ironed flats, and each piece is integrated with ``scipy.integrate.quad``. For uniform priors
    every piece is a polynomial of degree ≤ n and the result is exact to ~1e-14; the sup in (R2) is
    found by bisection to float64 precision.
    """
    from .mechanisms.analytic.myerson import Myerson

    priors = tuple(priors)
    with enable_x64():
        mech = Myerson(priors)
        n = len(priors)
        cont_idx = [i for i, p in enumerate(priors) if p.atoms() is None]
        disc = []  # (index, φ̄ at atoms, masses)
        breaks = [0.0]
        top = 0.0
        for i, p in enumerate(priors):
            atoms = p.atoms()
            if atoms is None:
                ends = np.asarray(p.ironed_virtual_value(jnp.asarray([p.low, p.high], jnp.float64)), np.float64)
                breaks += ends.tolist() + _plateaus(p)
                top = max(top, float(ends[1]))
            else:
                atoms = np.sort(np.asarray(atoms, np.float64))
                phis = np.asarray(p.ironed_virtual_value(jnp.asarray(atoms, jnp.float64)), np.float64)
                disc.append((i, phis, _atom_masses(p, atoms)))
                breaks += phis.tolist()
                top = max(top, float(phis.max()))
        if top <= 0.0:
            return 0.0

        def integrand(t):
            G = jnp.ones((), jnp.float64)
            if cont_idx:
                m = jnp.full((1, n), t, jnp.float64)
                _, z2 = mech.thresholds(m)
                for i in cont_idx:
                    Fi = jnp.asarray(priors[i].cdf(z2[0, i]), jnp.float64)
                    G = G * jnp.clip(Fi, 0.0, 1.0)
            for _, phis, masses in disc:
                G = G * jnp.clip(jnp.sum(jnp.where(jnp.asarray(phis) <= t, jnp.asarray(masses), 0.0)), 0.0, 1.0)
            return 1.0 - G

        f = jax.jit(integrand)
        edges = np.unique(np.clip(np.asarray(breaks, np.float64), 0.0, top))
        total = 0.0
        for a, b in zip(edges[:-1], edges[1:]):
            val, _ = integrate.quad(lambda t: float(f(jnp.asarray(t, jnp.float64))), a, b,
                                    epsabs=1e-14, epsrel=1e-12, limit=200)
            total += val
        return float(total)


def interim_outcome(mech, setting, i: int, v_i, *, n_samples: int = 2**18, key=None,
                    tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Interim allocation and payment (R3) of bidder ``i`` at value(s) ``v_i``.

    Returns two float64 arrays shaped like ``v_i``. One bidder: direct evaluation. Two bidders:
    adaptive quadrature over the other bidder's value against its density (break point at v_i;
    absolute tolerance ``tol``, so the result is accurate to ~1e-8 even with jumps), or an exact sum
    over its atoms if its prior is discrete. Three or more: Monte Carlo over ``n_samples`` draws of
    the others (``key``, default PRNGKey(0)).
    """
    priors = tuple(setting.priors)
    n = len(priors)
    v = np.asarray(v_i, dtype=np.float64)
    flat = v.reshape(-1)
    a_out = np.empty_like(flat)
    p_out = np.empty_like(flat)
    with enable_x64():

        def outcome_i(reports):
            out = mech(reports)
            return out.alloc[:, i, 0], out.payments[:, i]

        run = jax.jit(outcome_i)
        if n == 1:
            a, p = run(jnp.asarray(flat, jnp.float64).reshape(-1, 1, 1))
            a_out[:], p_out[:] = np.asarray(a), np.asarray(p)
        elif n == 2:
            j = 1 - i
            pj = priors[j]
            atoms = pj.atoms()

            def profile(vi, vj):
                cols = [None, None]
                cols[i], cols[j] = vi, vj
                return jnp.stack(cols, axis=-1)[..., None]

            if atoms is not None:
                atoms = np.sort(np.asarray(atoms, np.float64))
                w = _atom_masses(pj, atoms)
                for k, vi in enumerate(flat):
                    r = profile(jnp.full(atoms.shape, vi), jnp.asarray(atoms))
                    a, p = run(r)
                    a_out[k], p_out[k] = float(np.dot(w, a)), float(np.dot(w, p))
            else:

                @jax.jit
                def weighted(vi, vj):
                    a, p = outcome_i(profile(vi[None], vj[None]))
                    dens = jnp.asarray(pj.pdf(vj), jnp.float64)
                    return jnp.stack([a[0], p[0]]) * dens

                lo, hi = float(pj.low), float(pj.high)
                for k, vi in enumerate(flat):
                    vi_j = jnp.asarray(vi, jnp.float64)
                    pts = [float(vi)] if lo < vi < hi else None
                    res, _ = integrate.quad_vec(
                        lambda x: np.asarray(weighted(vi_j, jnp.asarray(x, jnp.float64))),
                        lo, hi, epsabs=tol, epsrel=0.0, points=pts, limit=20000,
                    )
                    a_out[k], p_out[k] = res[0], res[1]
        else:
            key = jax.random.PRNGKey(0) if key is None else key
            others = np.asarray(setting.sample(key, n_samples), np.float64)
            for k, vi in enumerate(flat):
                prof = others.copy()
                prof[:, i, 0] = vi
                a_sum = p_sum = 0.0
                for s in range(0, n_samples, 65536):
                    a, p = run(jnp.asarray(prof[s:s + 65536]))
                    a_sum += float(jnp.sum(a))
                    p_sum += float(jnp.sum(p))
                a_out[k], p_out[k] = a_sum / n_samples, p_sum / n_samples
    return a_out.reshape(v.shape), p_out.reshape(v.shape)


def interim_allocation(mech, setting, i: int, v_i, **kwargs) -> np.ndarray:
    """Interim allocation ā_i(v_i) = E_{v_−i}[a_i(v_i, v_−i)], eq. (R3); see :func:`interim_outcome`."""
    return interim_outcome(mech, setting, i, v_i, **kwargs)[0]


def interim_payment(mech, setting, i: int, v_i, **kwargs) -> np.ndarray:
    """Interim payment p̄_i(v_i) = E_{v_−i}[p_i(v_i, v_−i)], eq. (R3); see :func:`interim_outcome`."""
    return interim_outcome(mech, setting, i, v_i, **kwargs)[1]
