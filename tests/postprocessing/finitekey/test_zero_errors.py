"""The phase-error bound at zero and few observed errors, and every disclosed bit subtracted."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postprocessing.finitekey import DecoyStatistics, finite_key_length
from postprocessing.finitekey.estimates import phase_error_bound, sampling_deviation, sampling_tail_bound

MU, P = (0.5, 0.1, 0.0), (0.5, 0.25, 0.25)
N = [[400_000, 50_000, 8_000], [40_000, 5_000, 800]]


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed term by term in log space."""
    return sum(
        math.exp(
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            + i * math.log(p)
            + (n - i) * math.log1p(-p)
        )
        for i in range(k + 1)
    )


@pytest.mark.parametrize(
    "protocol,mu,p,n",
    [
        ("lim2014", MU, P, N),
        ("rusca2018", (0.5, 0.1), (0.5, 0.5), [[300_000, 40_000], [30_000, 4_000]]),
    ],
)
def test_phase_error_bound_is_positive_at_zero_test_errors(protocol, mu, p, n) -> None:
    m = [[3_000] + [0] * (len(mu) - 1), [0] * len(mu)]
    r = finite_key_length(protocol, DecoyStatistics(mu, p, n, m), 1_000.0, 1e-15, 1e-10)
    assert r.single_photon_errors_test == 0.0
    assert r.phase_error_rate > 0.0
    # about ln(1/eps) / s_X1 (the zero-error sampling bound), not 0
    eps = 1e-10 / (21 if protocol == "lim2014" else 19)
    assert r.phase_error_rate == pytest.approx(
        -math.expm1(math.log(eps) / r.single_photon_test) * (1 + r.single_photon_test / r.single_photon), rel=1e-9
    )


def test_zero_errors_never_give_more_key_than_one_error() -> None:
    lengths = []
    for errors in (0, 1, 2, 5, 20):
        b = errors / 5_722
        lengths.append(sampling_tail_bound(1e-10 / 21, b, 5_722, 200_000))
    assert lengths == sorted(lengths) and lengths[0] > 0


def test_tail_bound_at_zero_errors_matches_the_binomial_tail() -> None:
    """At rate 0 the population error fraction lam* is where P(no error in c draws) = eps."""
    c, eps = 5_722, 1e-10 / 21
    lam = sampling_tail_bound(eps, 0.0, c, 1e12)  # d >> c: the key's rate equals lam*
    assert _binomial_tail(0, c, lam) == pytest.approx(eps, rel=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.integers(500, 50_000), st.floats(1e3, 1e8), st.floats(1e-14, 1e-3))
def test_tail_bound_holds_the_chernoff_inequality(errors: int, c: int, d: float, eps: float) -> None:
    """exp(-c D(b || lam*)) = eps, lam* above the observed rate: the inversion is right."""
    b = min(errors, c - 1) / c
    phi = sampling_tail_bound(eps, b, c, d)
    lam = (phi * d + b * c) / (c + d)
    assert lam > b
    kl = (b * math.log(b / lam) if b > 0 else 0.0) + (1 - b) * math.log((1 - b) / (1 - lam))
    assert math.exp(-c * kl) == pytest.approx(eps, rel=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0, 0.3), st.floats(100.0, 1e6), st.floats(100.0, 1e8))
def test_bound_is_never_below_either_estimate(rate: float, c: float, d: float) -> None:
    eps = 1e-10 / 21
    got_rate, _gamma, phi = phase_error_bound(eps, rate * c, c, d)
    assert phi >= got_rate + sampling_deviation(eps, got_rate, c, d) - 1e-15
    assert phi >= sampling_tail_bound(eps, got_rate, c, d) - 1e-15
    assert phi > 0


def test_hand_worked_lim2014_block_keeps_its_published_length() -> None:
    """The block of test_bounds.test_lim2014_worked_example_by_hand: Lim's gamma dominates there."""
    m = [[8_000, 4_500, 4_000], [800, 450, 400]]
    r = finite_key_length("lim2014", DecoyStatistics(MU, P, N, m), 20_000.0, 1e-15, 1e-10)
    b = r.phase_error_test_rate
    assert r.phase_error_deviation == sampling_deviation(1e-10 / 21, b, r.single_photon_test, r.single_photon)


def test_verification_tag_and_disclosed_counts_are_subtracted() -> None:
    m = [[8_000, 4_500, 4_000], [800, 450, 400]]
    stats = DecoyStatistics(MU, P, N, m)
    paper = finite_key_length("lim2014", stats, 20_000.0, 1e-15, 1e-10)
    ours = finite_key_length("lim2014", stats, 20_000.0, 1e-15, 1e-10, verification_bits=128, disclosed_bits=50.5)
    assert paper.correctness_cost == pytest.approx(math.log2(2e15))  # ~51 bits: less than the 128 sent
    assert ours.correctness_cost == 128 and ours.disclosed_cost == 50.5
    assert ours.length_bound == pytest.approx(paper.length_bound - (128 - math.log2(2e15)) - 50.5, abs=1e-6)
    assert sum(ours.subtracted.values()) == pytest.approx(
        ours.vacuum + ours.single_photon - ours.length_bound, rel=1e-12
    )


def test_node_counts_tag_and_per_class_error_counts() -> None:
    from node.link.distill import LinkSettings, block_key_length, error_count_disclosure_bits
    from postprocessing.sifting import SiftCounts

    settings_ = LinkSettings("L1", MU, P, tag_bits=128)
    counts = SiftCounts(
        np.array(N, np.int64), np.array([[0, 0, 0], N[1]], np.int64), np.array([[0, 0, 0], [800, 450, 400]], np.int64)
    )
    r = block_key_length(settings_, counts, [8_000, 4_500, 4_000], 20_000, 458_000)
    assert r.correctness_cost == 128
    assert r.disclosed_cost == pytest.approx(sum(math.log2(k + 1) for k in N[0]))
    assert error_count_disclosure_bits(np.array(N[0])) == pytest.approx(r.disclosed_cost)


def test_lim2014_block_of_the_issue_stays_within_a_thousandth() -> None:
    """Lim section IV, intensities (0.45, 0.17, 2e-4) with p (0.6, 0.25, 0.15), q = 0.75, 0 km,
    n = 1e7 (rounded counts): l = 2,576,497 before the zero-error bound; the tail bound is below
    Lim's gamma there, so l is unchanged up to the rounding of the counts."""
    from postprocessing.finitekey import LIM2014_SECTION_IV, ProtocolSettings, expected_block

    st = ProtocolSettings((0.45, 0.17, 2e-4), (0.6, 0.25, 0.15), 0.75)
    e = expected_block(LIM2014_SECTION_IV, st, 0.0, 1e7)
    stats = DecoyStatistics(st.intensities, st.probabilities, np.round(e.stats.detections), np.round(e.stats.errors))
    r = finite_key_length("lim2014", stats, e.lambda_ec, 1e-15, 1e-10)
    assert abs(r.length - 2_576_497) <= 0.001 * 2_576_497
    assert r.phase_error_deviation == sampling_deviation(
        1e-10 / 21, r.phase_error_test_rate, r.single_photon_test, r.single_photon
    )
