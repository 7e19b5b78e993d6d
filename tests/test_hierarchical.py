"""Hierarchical mechanisms (Deb and Pai, Section 4) against hand-derived closed forms.

Notation: I_i the index of bidder i, G_i(b) = P(I_i(v_i) ≤ b) the bid distribution, a_i, p_i the
interim allocation and payment (payoff equivalence, the lowest type pays 0). For two bidders with
no ties a_1(v) = G_2(I_1(v)) if I_1(v) ≥ 0, and p_i(v) = v a_i(v) − ∫_{low_i}^v a_i. Interim
quantities are float64 numpy by construction (checked at 1e-9: piecewise Gauss–Legendre is exact
for these piecewise polynomials); ex post comparisons run in float64 inside ``enable_x64``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffmech as dm
from diffmech._compat import enable_x64
from diffmech.errors import ConfigError
from diffmech.mechanisms import mechanism_from_config
from diffmech.mechanisms.analytic.hierarchical import AffineIndex, Hierarchical, VirtualValueIndex
from diffmech.mechanisms.analytic.myerson import Myerson
from diffmech.mechanisms.analytic.second_price import SecondPrice
from diffmech.priors import Discrete, Uniform, UniformMixture
from diffmech.settings.single_item import SingleItem

TOL = 1e-9


def affine(*pairs):
    return [AffineIndex(scale, shift) for scale, shift in pairs]


def myerson_h(priors):
    return Hierarchical(priors, [VirtualValueIndex(p) for p in priors])


def profiles(rows):
    return jnp.asarray(np.asarray(rows, dtype=np.float64)[..., None])


class TwoStep(UniformMixture):
    """Density 1.6 on [0, ½], 0.4 on (½, 1] (test_analytic's TwoStep as a uniform mixture), with
    its ironing given by hand (so that no numeric hull runs and the flat is exact).

    φ = v − (1 − 1.6v)/1.6 = 2v − 0.625 on [0, ½), v − (1 − F)/0.4 = 2v − 1 on (½, 1]; ironing
    (test_analytic) gives φ̄ = ¼ on [0.4375, 0.625), reserve φ̄ = 0 at 0.3125;
    F(0.4375) = 0.7, F(0.625) = 0.8 + 0.4·0.125 = 0.85.
    """

    def __init__(self):
        super().__init__(0.0, 0.5, 0.5, 1.0, 0.8)
        self._ironing = ((0.4375, 0.625, 0.25),)


def two_step():
    return TwoStep()


# ------------------------------------------------------------------------------- Example 1
def test_example_1_myerson_index_interim_closed_forms():
    """v1 ~ U[2,4], v2 ~ U[1,2]; φ1 = 2v1 − 4, φ2 = 2v2 − 2 (paper's Example 1).

    B1 = [0, 4], B2 = [0, 2]; G1(b) = b/4, G2(b) = b/2 on them, so G1(1) = 1/4, G2(1) = 1/2.
    a1(v1) = G2(2v1 − 4) = min(v1 − 2, 1); a2(v2) = G1(2v2 − 2) = (v2 − 1)/2.
    p1 = v1(v1 − 2) − (v1 − 2)²/2 = v1²/2 − 2 on [2, 3] and 3 − ½ − 0 … = 5/2 on (3, 4];
    p2 = v2(v2 − 1)/2 − (v2 − 1)²/4 = (v2² − 1)/4.
    In bids: p1(φ1⁻¹(b)) = ((b + 4)/2)²/2 − 2 = b²/8 + b on [0, 2], 5/2 above; p2(φ2⁻¹(b)) = b²/16 + b/4.
    Revenue: E p1 = ½∫_2^3 (v²/2 − 2) dv + ½·5/2 = ½·(19/6 − 2) + 5/4 = 7/12 + 5/4 = 11/6;
    E p2 = ∫_1^2 (v² − 1)/4 dv = (7/3 − 1)/4 = 1/3; total 13/6 (paper).
    """
    h = myerson_h([Uniform(2.0, 4.0), Uniform(1.0, 2.0)])
    assert h.n_agents == 2
    assert h.bid_space(0) == pytest.approx((0.0, 4.0), abs=TOL)
    assert h.bid_space(1) == pytest.approx((0.0, 2.0), abs=TOL)
    assert abs(float(h.bid_cdf(0, 1.0)) - 0.25) < TOL and abs(float(h.bid_cdf(1, 1.0)) - 0.5) < TOL
    assert abs(float(h.bid_cdf(1, 1.0, strict=True)) - 0.5) < TOL  # continuous: no atom
    v1 = np.array([2.0, 2.2, 2.5, 2.9, 3.0, 3.3, 3.9, 4.0])
    np.testing.assert_allclose(h.interim_allocation(0, v1), np.minimum(v1 - 2, 1), atol=TOL)
    np.testing.assert_allclose(h.interim_payment(0, v1), np.where(v1 <= 3, v1**2 / 2 - 2, 2.5), atol=TOL)
    v2 = np.array([1.0, 1.1, 1.4, 1.75, 1.95, 2.0])
    np.testing.assert_allclose(h.interim_allocation(1, v2), (v2 - 1) / 2, atol=TOL)
    np.testing.assert_allclose(h.interim_payment(1, v2), (v2**2 - 1) / 4, atol=TOL)
    b = np.array([0.0, 0.5, 1.0, 1.7, 2.0, 2.5, 4.0])
    np.testing.assert_allclose(h.inverse_index(0, b), (b + 4) / 2, atol=TOL)
    np.testing.assert_allclose(h.allocation_at_bid(0, b), np.minimum(b / 2, 1), atol=TOL)
    np.testing.assert_allclose(h.payment_at_bid(0, b), np.where(b <= 2, b**2 / 8 + b, 2.5), atol=TOL)
    b2 = b[b <= 2]
    np.testing.assert_allclose(h.allocation_at_bid(1, b2), b2 / 4, atol=TOL)
    np.testing.assert_allclose(h.payment_at_bid(1, b2), b2**2 / 16 + b2 / 4, atol=TOL)
    assert abs(h.expected_payment(0) - 11 / 6) < TOL and abs(h.expected_payment(1) - 1 / 3) < TOL
    assert abs(h.revenue() - 13 / 6) < TOL


def test_myerson_index_equals_myerson_ex_post():
    """Hierarchical(φ̄) and Myerson differ only where the top φ̄ is exactly 0 (probability 0 here),
    so on sampled profiles they agree; asymmetric and irregular (ironed) priors, float64."""
    priors = [two_step(), Uniform(0.0, 1.0), two_step()]
    with enable_x64():
        v = SingleItem(priors).sample(jax.random.PRNGKey(3), 2000)
        a, b = jax.jit(myerson_h(priors))(v), jax.jit(Myerson(priors))(v)
        assert a.payments.dtype == jnp.float64
        assert float(a.alloc[:, [0, 2]].mean()) > 0.05  # the ironed bidders win sometimes
        np.testing.assert_array_equal(a.alloc, b.alloc)
        np.testing.assert_allclose(a.payments, b.payments, atol=1e-12)
    built = Hierarchical.from_config(SingleItem([Uniform()] * 2), {"index": "myerson"})
    assert built.indices == (VirtualValueIndex(Uniform()),) * 2


def test_ironed_flat_ties_interim():
    """Iid two_step bidders with the Myerson index: the flat φ̄ = ¼ on [0.4375, 0.625] is an atom
    of G of mass 0.15 above G(¼−) = 0.7, so with n bidders a(v on the flat) = ∫_0^1 (0.7 + 0.15t)^{n−1} dt:
    n = 2: 0.7 + 0.075 = 0.775; n = 3: 0.49 + 0.105 + 0.0075 = 0.6025 (both below, one on the flat
    (½), both on it (⅓)). Below the flat a = F(v)^{n−1} from the reserve 0.3125, above likewise.
    n = 2: ∫_{0.3125}^{0.4375} 1.6z dz = 0.8(0.4375² − 0.3125²) = 0.075, so p = 0.775·0.4375 − 0.075
    = 0.2640625 on the flat; at 0.9, a = 0.8 + 0.4·0.4 = 0.96, ∫_{0.625}^{0.9} (0.8 + 0.4(z − ½)) dz
    = 0.22 + 0.2(0.4² − 0.125²) = 0.248875, ∫ on the flat 0.775·0.1875 = 0.1453125, so
    p(0.9) = 0.864 − 0.4691875 = 0.3948125. Revenue 1277/4800 (test_analytic, hand integration).
    """
    tp = two_step()
    h = myerson_h([tp, tp])
    v = np.array([0.2, 0.3125, 0.4, 0.4375, 0.5, 0.6, 0.9])
    a_ref = np.where(v < 0.3125, 0, np.where(v < 0.4375, 1.6 * v, np.where(v < 0.625, 0.775, 0.8 + 0.4 * (v - 0.5))))
    np.testing.assert_allclose(h.interim_allocation(0, v), a_ref, atol=TOL)
    np.testing.assert_allclose(h.interim_payment(0, np.array([0.5, 0.6, 0.9])), [0.2640625, 0.2640625, 0.3948125], atol=TOL)
    assert abs(float(h.bid_cdf(0, 0.25, strict=True)) - 0.7) < TOL and abs(float(h.bid_cdf(0, 0.25)) - 0.85) < TOL
    assert float(h.inverse_index(0, 0.25)) == 0.4375
    assert abs(h.revenue() - 1277 / 4800) < TOL
    h3 = myerson_h([tp, tp, tp])
    assert abs(float(h3.interim_allocation(2, 0.5)) - 0.6025) < TOL


# ------------------------------------------------------------------------ Vickrey, subsidies
def test_vickrey_index_is_second_price_ex_post():
    """I = v: the winner pays inf{z ∈ [low_i, high_i] : z ≥ max(0, max_{j≠i} b_j)}
    = max(low_i, max_{j≠i} b_j) (the lowest type pays 0), i.e. second price when every low is 0."""
    with enable_x64():
        priors = [Uniform(0.0, 1.0), Uniform(0.0, 2.0), Uniform(0.0, 1.5)]
        v = SingleItem(priors).sample(jax.random.PRNGKey(0), 1000)
        h = jax.jit(Hierarchical.from_config(SingleItem(priors), {"index": "vickrey"}))
        a, b = h(v), SecondPrice()(v)
        np.testing.assert_array_equal(a.alloc, b.alloc)
        np.testing.assert_allclose(a.payments, b.payments, atol=1e-12)
        # low_2 = 0.5 > the other bid 0.3: bidder 2 pays 0.5, not 0.3; ties at 0.7 split and pay ½·0.7
        h2 = Hierarchical([Uniform(0.0, 1.0), Uniform(0.5, 1.5)], affine((1, 0), (1, 0)))
        out = jax.jit(h2)(profiles([[0.3, 0.6], [0.9, 0.6], [0.7, 0.7], [0.2, 1.4]]))
        np.testing.assert_array_equal(out.alloc[..., 0], [[0, 1], [1, 0], [0.5, 0.5], [0, 1]])
        np.testing.assert_allclose(out.payments, [[0, 0.5], [0.6, 0], [0.35, 0.35], [0, 0.5]], atol=1e-12)


def test_flat_subsidy_interim_closed_forms():
    """Two U[0,1] bidders, I1 = v + s, I2 = v, s = ¼.

    a1(v) = P(v2 ≤ v + s) = min(1, v + s); a2(w) = P(v1 + s ≤ w) = max(0, w − s).
    p1 = v(v + s) − (v²/2 + sv) = v²/2 for v ≤ 1 − s, and (1 − s)²/2 above (continuous, flat a1 = 1);
    p2 = w(w − s) − (w − s)²/2 = (w² − s²)/2 for w ≥ s, 0 below.
    E p1 = (1 − s)³/6 + s(1 − s)²/2 = 0.0703125 + 0.0703125; E p2 = ½[(1 − s³)/3 − s²(1 − s)] = 9/64;
    revenue 9/32.
    """
    s = 0.25
    h = Hierarchical.from_config(
        SingleItem([Uniform()] * 2),
        {"index": [{"kind": "affine", "scale": 1.0, "shift": s}, {"kind": "vickrey"}]},
    )
    v = np.linspace(0.0, 1.0, 21)
    np.testing.assert_allclose(h.interim_allocation(0, v), np.minimum(1, v + s), atol=TOL)
    np.testing.assert_allclose(h.interim_allocation(1, v), np.maximum(0, v - s), atol=TOL)
    np.testing.assert_allclose(h.interim_payment(0, v), np.where(v <= 1 - s, v**2 / 2, (1 - s) ** 2 / 2), atol=TOL)
    np.testing.assert_allclose(h.interim_payment(1, v), np.where(v >= s, (v**2 - s**2) / 2, 0), atol=TOL)
    assert abs(h.revenue() - 9 / 32) < TOL


# --------------------------------------------------------------------- Examples 2 and 3
EX2 = [Uniform(0.0, 1.0), Uniform(0.5, 1.0)]


def test_example_2_constant_indices_and_lottery_pieces():
    """Example 2: v1 ~ U[0,1], v2 ~ U[½,1], I1 = I2 = 0 (constant, equal, ≥ 0): a coin flip.

    G1 = G2 = a unit atom at 0, so a_i = ∫_0^1 t dt = ½ (the ≥ 0 rule sells at index 0);
    p1 = v/2 − ∫_0^v ½ = 0, p2 = v/2 − ∫_½^v ½ = ¼; revenue ¼. Ex post each pays ½·low_i.
    Lottery pieces: "1 always wins" (I1 = 1, I2 = −1): a1 = 1, p1 = v − ∫_0^v 1 = 0, p2 = 0;
    "2 always wins" (I1 = −1, I2 = 1): p2 = v − ∫_½^v 1 = ½. Their 50/50 mix has the interim
    outcome of Example 2: allocations ½, payments 0 and ¼, revenue ¼.
    """
    coin = Hierarchical(EX2, affine((0, 0), (0, 0)))
    assert float(coin.bid_cdf(0, 0.0, strict=True)) == 0.0 and float(coin.bid_cdf(0, 0.0)) == 1.0
    v1, v2 = np.array([0.0, 0.3, 1.0]), np.array([0.5, 0.8, 1.0])
    np.testing.assert_allclose(coin.interim_allocation(0, v1), 0.5, atol=TOL)
    np.testing.assert_allclose(coin.interim_allocation(1, v2), 0.5, atol=TOL)
    np.testing.assert_allclose(coin.interim_payment(0, v1), 0.0, atol=TOL)
    np.testing.assert_allclose(coin.interim_payment(1, v2), 0.25, atol=TOL)
    assert abs(coin.revenue() - 0.25) < TOL
    with enable_x64():
        out = jax.jit(coin)(profiles([[0.3, 0.8], [1.0, 0.5]]))
        np.testing.assert_array_equal(out.alloc[..., 0], [[0.5, 0.5]] * 2)
        np.testing.assert_allclose(out.payments, [[0.0, 0.25]] * 2, atol=1e-12)

    one = Hierarchical(EX2, affine((0, 1), (0, -1)))
    two = Hierarchical(EX2, affine((0, -1), (0, 1)))
    np.testing.assert_allclose(one.interim_allocation(0, v1), 1.0, atol=TOL)
    np.testing.assert_allclose(one.interim_payment(0, v1), 0.0, atol=TOL)
    np.testing.assert_allclose(one.interim_payment(1, v2), 0.0, atol=TOL)
    np.testing.assert_allclose(two.interim_allocation(1, v2), 1.0, atol=TOL)
    np.testing.assert_allclose(two.interim_payment(1, v2), 0.5, atol=TOL)
    assert abs(one.revenue()) < TOL and abs(two.revenue() - 0.5) < TOL
    for i, v in ((0, v1), (1, v2)):
        mix_a = (one.interim_allocation(i, v) + two.interim_allocation(i, v)) / 2
        mix_p = (one.interim_payment(i, v) + two.interim_payment(i, v)) / 2
        np.testing.assert_allclose(mix_a, coin.interim_allocation(i, v), atol=TOL)
        np.testing.assert_allclose(mix_p, coin.interim_payment(i, v), atol=TOL)


def test_example_3_subsidy_by_one():
    """Example 3: v1 ~ U[0,1], v2 ~ U[1,2], I1 = v, I2 = v − 1; G1 = G2 = U[0,1].

    a1(v) = P(v2 − 1 ≤ v) = v, a2(w) = w − 1; p1 = v² − v²/2 = v²/2,
    p2(w) = w(w − 1) − (w − 1)²/2, so p2(v + 1) = v²/2 + v = p1(v) + a1(v) (the paper's identity).
    Revenue E[v²/2] + E[v²/2 + v] = 1/6 + 2/3 = 5/6.
    """
    h = Hierarchical([Uniform(0.0, 1.0), Uniform(1.0, 2.0)], affine((1, 0), (1, -1)))
    b = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(h.bid_cdf(0, b), b, atol=TOL)
    np.testing.assert_allclose(h.bid_cdf(1, b), b, atol=TOL)
    v = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(h.interim_allocation(0, v), v, atol=TOL)
    np.testing.assert_allclose(h.interim_allocation(1, v + 1), v, atol=TOL)
    np.testing.assert_allclose(h.interim_payment(0, v), v**2 / 2, atol=TOL)
    np.testing.assert_allclose(h.interim_payment(1, v + 1), h.interim_payment(0, v) + v, atol=TOL)
    np.testing.assert_allclose(h.payment_at_bid(1, b) - h.payment_at_bid(0, b), b, atol=TOL)
    assert abs(h.revenue() - 5 / 6) < TOL


def test_discrete_priors_interim_equals_ex_post_enumeration():
    """Two bidders, v ∈ {1, 2} with probability ½ each, Vickrey index: ties at equal values.

    Ex post: (2, 1) → bidder 1 wins and pays the threshold 1; (2, 2) → ½ each, pays ½·2 = 1;
    (1, 1) → ½ each, pays ½·1. Interim: a(1) = ¼, p(1) = ¼; a(2) = ¾, p(2) = ½·1 + ½·1 = 1;
    revenue 2·(½·¼ + ½·1) = 5/4 (= E[v_(2)]). The interim methods agree with the average of the
    mechanism over the other bidder's atoms.
    """
    prior = Discrete([1.0, 2.0], [0.5, 0.5])
    h = Hierarchical([prior, prior], affine((1, 0), (1, 0)))
    atoms = np.array([1.0, 2.0])
    np.testing.assert_allclose(h.interim_allocation(0, atoms), [0.25, 0.75], atol=TOL)
    np.testing.assert_allclose(h.interim_payment(0, atoms), [0.25, 1.0], atol=TOL)
    assert abs(h.revenue() - 1.25) < TOL
    with enable_x64():
        out = jax.jit(h)(profiles([[v, w] for v in atoms for w in atoms]))
        a = np.asarray(out.alloc[:, 0, 0]).reshape(2, 2).mean(axis=1)
        p = np.asarray(out.payments[:, 0]).reshape(2, 2).mean(axis=1)
    np.testing.assert_allclose(a, h.interim_allocation(0, atoms), atol=1e-12)
    np.testing.assert_allclose(p, h.interim_payment(0, atoms), atol=1e-12)


# --------------------------------------------------------------------------------- DSIC
def test_dsic_and_ir_on_report_grid():
    """No report on a grid over the support (and beyond it: clipped) beats the truth, for a mix of
    indices: 2v − 0.6 (reserve 0.3), the ironed φ̄ of TwoStep, v − 0.5 and the constant 0 (which
    wins or ties at the ≥ 0 boundary); and 0 ≤ p ≤ v·a. Two hand profiles: (0.1, 0.1, 0.3, 0.5) has
    indices (−0.4, −0.425, −0.2, 0), so bidder 4 wins alone at index 0 and pays her low 0;
    (0.3, 0.1, 0.3, 0.5) ties bidders 1 and 4 at index 0: ½ each, bidder 1 pays ½·0.3 (her threshold
    z1 = 0.3), bidder 4 pays ½·0.
    """
    priors = [Uniform(0.0, 1.0), two_step(), Uniform(0.2, 1.2), Uniform(0.0, 1.0)]
    h = Hierarchical(priors, [AffineIndex(2.0, -0.6), VirtualValueIndex(priors[1]), AffineIndex(1.0, -0.5), AffineIndex(0.0, 0.0)])
    n_prof, n_grid = 34, 81
    hand = np.array([[0.1, 0.1, 0.3, 0.5], [0.3, 0.1, 0.3, 0.5]])
    v = np.asarray(SingleItem(priors).sample(jax.random.PRNGKey(7), n_prof - 2), np.float64)[..., 0]
    v = np.concatenate([hand, v])  # (34, 4)
    batches = [v]  # truthful profiles first, then bidder i's grid deviations, all in one call
    for i, p in enumerate(priors):
        prof = np.repeat(v[:, None, :], n_grid, axis=1)
        prof[:, :, i] = np.linspace(p.low - 0.1, p.high + 0.1, n_grid)[None, :]  # outside: clipped
        batches.append(prof.reshape(-1, 4))
    with enable_x64():
        out = jax.jit(h)(jnp.asarray(np.concatenate(batches)[..., None]))
    alloc, pay = np.asarray(out.alloc[..., 0]), np.asarray(out.payments)
    ta, tp = alloc[:n_prof], pay[:n_prof]
    assert np.all(tp <= v * ta + 1e-12) and np.all(tp >= -1e-12)
    np.testing.assert_array_equal(ta[:2], [[0, 0, 0, 1], [0.5, 0, 0, 0.5]])
    np.testing.assert_allclose(tp[:2], [[0, 0, 0, 0], [0.15, 0, 0, 0]], atol=1e-12)
    u_true = v * ta - tp
    for i in range(4):
        rows = slice(n_prof * (1 + i * n_grid), n_prof * (1 + (i + 1) * n_grid))
        util = v[:, i, None] * alloc[rows, i].reshape(n_prof, n_grid) - pay[rows, i].reshape(n_prof, n_grid)
        assert np.all(util <= u_true[:, i, None] + 1e-12)


# ------------------------------------------------------------------------------- config
def test_config_and_errors():
    setting = SingleItem([Uniform(), Uniform(0.0, 2.0)])
    h = mechanism_from_config(setting, {"kind": "hierarchical", "index": [{"kind": "myerson"}, {"kind": "affine", "scale": 2}]})
    assert isinstance(h, Hierarchical) and h.indices[1] == AffineIndex(2.0, 0.0)
    assert Hierarchical.dsic_by_construction and Hierarchical.ir_by_construction and not Hierarchical.trainable
    bad = [
        {"index": "bogus"},
        {"index": [{"kind": "bogus"}, {"kind": "vickrey"}]},
        {"index": [{"kind": "affine", "scale": -1.0}, {"kind": "vickrey"}]},
        {"index": [{"kind": "affine", "scale": "x"}, {"kind": "vickrey"}]},
        {"index": [{"kind": "affine", "slope": 1.0}, {"kind": "vickrey"}]},
        {"index": [{"kind": "myerson", "scale": 1.0}, {"kind": "vickrey"}]},
        {"index": ["vickrey"]},
        {"index": 3},
        {},
        {"index": "vickrey", "reserve": 0.1},
    ]
    for opts in bad:
        with pytest.raises(ConfigError) as err:
            Hierarchical.from_config(setting, opts)
        assert "\n" not in str(err.value)
    others = (
        dm.setting_from_config({"kind": "multi_item", "prior": {"dist": "uniform"}, "n_agents": 1, "n_items": 2}),
        dm.setting_from_config({"kind": "efficient", "model": "private_good", "n_agents": 2, "prior": {"dist": "uniform"}}),
    )
    for other in others:
        with pytest.raises(ConfigError) as err:
            Hierarchical.from_config(other, {"index": "vickrey"})
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        AffineIndex(-0.5, 0.0)
    with pytest.raises(ConfigError):
        Hierarchical([Uniform()] * 2, [AffineIndex()])
