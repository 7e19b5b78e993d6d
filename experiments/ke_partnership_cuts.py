"""A necessary condition for the linear partnership with ex post IR, from cuts of a flow network.

Two partners, θ_i ~ U[0, 1], shares (q, 1 − q), efficient dissolution (the higher type buys the
other's share at a unit price ρ(θ_1, θ_2)). Ex post IR and budget balance hold iff
min(θ_1, θ_2) ≤ ρ ≤ max(θ_1, θ_2); write ρ = min + σ. Bayesian IC (envelope, U_i(θ) = U_i(0) + θ²/2)
and U_1(0) + U_2(0) = 1/3 (= E Δ, Lemma 3 with equality) turn into one linear equation per type:

    row a (partner 1):  ∫_{b<a} σ_A(a, b) db − ∫_{b>a} σ_B(a, b) db = q(a − a²/2) − U_1(0),
    col b (partner 2):  ∫_{a<b} σ_B(a, b) da − ∫_{a>b} σ_A(a, b) da = (1 − q)(b − b²/2) − U_2(0),

with σ_A = (1 − q)σ ∈ [0, (1 − q)(a − b)] where partner 1 wins and σ_B = qσ ∈ [0, q(b − a)] where
partner 2 wins. That is a flow on a bipartite network (arcs col b → row a of capacity
(1 − q)(a − b), row a → col b of capacity q(b − a)) with the right-hand sides as demands; by
Gale's theorem a flow exists only if no set S of nodes demands more than the capacity into it.
This script checks the sets S = {rows a ≥ α or ≤ α} ∪ {cols b ≥ β or ≤ β} on an N-point midpoint
grid, for U_1(0) on a grid of [q²/2, q/2] (the interim-IR range), and prints the smallest
(over U_1(0)) worst excess demand: > 0 proves that no efficient, Bayesian IC, ex post IR and
budget-balanced mechanism exists at q (up to the O(1/N²) midpoint error of the integrals).

    python experiments/ke_partnership_cuts.py 0.30 0.33 0.3333 0.34 [--n 600]
"""

from __future__ import annotations

import argparse

import numpy as np


def worst_cut(q: float, u1: float, n: int) -> float:
    """max over threshold cuts of (demand of S − capacity into S), U_1(0) = u1."""
    x = (np.arange(n) + 0.5) / n
    h = 1.0 / n
    r = (q * (x - x**2 / 2) - u1) * h
    c = ((1 - q) * (x - x**2 / 2) - (1 / 3 - u1)) * h
    A = np.clip(x[:, None] - x[None, :], 0, None) * (1 - q) * h * h  # col b -> row a (a > b)
    B = np.clip(x[None, :] - x[:, None], 0, None) * q * h * h  # row a -> col b (b > a)
    up = np.vstack([x >= t for t in x] + [np.zeros(n, bool)])
    down = np.vstack([x <= t for t in x] + [np.zeros(n, bool)])
    best = -np.inf
    for rin in (up, down):
        for cin in (up, down):
            demand = (rin @ r)[:, None] + (cin @ c)[None, :]
            cap = rin.astype(float) @ A @ (~cin).astype(float).T + (~rin).astype(float) @ B @ cin.astype(float).T
            best = max(best, float(np.max(demand - cap)))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("q", nargs="+", type=float)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--u-points", type=int, default=41)
    args = ap.parse_args()
    for q in args.q:
        lo, hi = q * q / 2, q / 2
        us = np.linspace(lo, hi, args.u_points)
        vals = [worst_cut(q, u, args.n) for u in us]
        k = int(np.argmin(vals))
        # refine around the best U_1(0)
        fine = np.linspace(us[max(k - 1, 0)], us[min(k + 1, len(us) - 1)], args.u_points)
        vals_f = [worst_cut(q, u, args.n) for u in fine]
        j = int(np.argmin(vals_f))
        print(f"q = {q:.4f}: min over U_1(0) of the worst cut excess = {vals_f[j]:+.3e} (U_1(0) = {fine[j]:.5f})", flush=True)


if __name__ == "__main__":
    main()
