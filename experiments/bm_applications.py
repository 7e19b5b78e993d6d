"""Two applications of Bikhchandani–Mishra, measured (issue 3 experiments).

1. Revenue monotonicity (Section 5.1). For 2 units and the family of priors F_a(x) = x^a on [0, 1]
   (larger a first-order stochastically dominates), the exact grid optimum in the identical-objects
   model (the fast path of the equivalence; equal to the heterogeneous optimum, checked) rises with
   a. For each optimum the script also checks condition (8), t(v̂) ≥ t(v) for v̂ ≥ v, which makes
   a mechanism revenue monotone, and whether the optimum is deterministic.

2. Uniform-price robustness (Proposition 6). With n = 2 units and average marginal G_avg = U[0,1],
   the optimal uniform price p† = 1/2 earns n·p(1 − p) = 1/2 under every joint distribution with
   that average marginal (eq. (12)). The Manelli–Vincent mechanism, optimal for iid values, earns
   more under iid values but less under another such distribution. Measured by Monte Carlo on
   three joint distributions of sorted types: sorted iid U[0,1], comonotone (v_1 = v_2 = U) and
   antithetic (U, 1 − U) sorted.

    python experiments/bm_applications.py            # about a minute on a 2-core CPU

Writes experiments/results/cpu/bm_applications.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import diffmech as dm
from diffmech import lp

HERE = Path(__file__).resolve().parent
U01 = {"dist": "uniform", "low": 0.0, "high": 1.0}


def monotonicity(points: int = 20, exponents=(0.5, 1.0, 2.0, 4.0)) -> list[dict]:
    rows = []
    for a in exponents:
        prior = dm.priors.PowerLaw(0.0, 1.0, a)
        types, probs = lp.grid_from_marginals([prior, prior], points)
        both = lp.solve_both_models(types, probs)
        ident: lp.MenuLP = both["identical"]
        v, t = ident.types, ident.payments
        dominated = np.all(v[:, None, :] >= v[None, :, :], axis=-1)  # [i, j]: v_i ≥ v_j
        drop = np.max(np.where(dominated, t[None, :] - t[:, None], 0.0))  # max t(v) − t(v̂) over v̂ ≥ v
        rows.append({
            "a": a,
            "identical_revenue": ident.revenue,
            "heterogeneous_revenue": both["heterogeneous_revenue"],
            "identical_types": both["identical_types"],
            "heterogeneous_types": both["heterogeneous_types"],
            "payment_monotone_(8)": bool(drop <= 1e-7),
            "largest_payment_drop": float(drop),
            "deterministic": bool(np.all(np.minimum(ident.alloc, 1 - ident.alloc) < 1e-7)),
        })
    return rows


def robustness(samples: int = 1_000_000) -> dict:
    key = jax.random.PRNGKey(0)
    u = jax.random.uniform(key, (samples, 2), dtype=jnp.float32)
    joint = {
        "sorted iid U[0,1]": u,
        "comonotone (U, U)": jnp.stack([u[:, 0], u[:, 0]], axis=1),
        "antithetic (U, 1-U)": jnp.stack([u[:, 0], 1 - u[:, 0]], axis=1),
    }
    identical = dm.setting_from_config({"kind": "identical_items", "prior": U01, "n_items": 2})
    hetero = identical.heterogeneous()
    mechanisms = {
        "uniform_price (p = 1/2)": dm.mechanism_from_config(identical, {"kind": "uniform_price"}),
        "manelli_vincent": dm.mechanism_from_config(hetero, {"kind": "manelli_vincent"}),
    }
    out = {}
    for jname, v in joint.items():
        v = -jnp.sort(-v, axis=-1)[:, None, :]
        for mname, mech in mechanisms.items():
            pay = np.asarray(mech(v).payments[:, 0], np.float64)
            out.setdefault(mname, {})[jname] = {"revenue": float(pay.mean()), "se": float(pay.std() / math.sqrt(samples))}
    for mname, row in out.items():
        row["worst case"] = min(r["revenue"] for r in row.values())
    return out


def main() -> None:
    res = {"monotonicity_power_law_2_units": monotonicity(), "uniform_price_robustness_2_units": robustness()}
    dest = HERE / "results" / "cpu" / "bm_applications.json"
    dest.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
