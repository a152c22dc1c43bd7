"""The two bounds against an independent re-derivation from the papers' appendices, and against
values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from postprocessing.finitekey import (
    LIM2014_SECTION_IV,
    RUSCA2018_SETUP,
    DecoyStatistics,
    ProtocolSettings,
    expected_block,
    finite_key_length,
)
from postprocessing.finitekey.estimates import (
    binary_entropy,
    hoeffding_deviation,
    photon_number_probability,
    sampling_deviation,
)
from tests.postprocessing.finitekey import reference


def _observed(protocol: str, distance: float, block: float, settings: ProtocolSettings, link) -> tuple:
    """Model expectations rounded to whole counts: realistic observed statistics."""
    b = expected_block(link, settings, distance, block)
    n = np.round(b.stats.detections)
    m = np.round(b.stats.errors)
    return DecoyStatistics(settings.intensities, settings.probabilities, n, m), b.lambda_ec


LIM_SETTINGS = ProtocolSettings((0.45, 0.17, 2e-4), (0.75, 0.16, 0.09), 0.75)
RUSCA_SETTINGS = ProtocolSettings((0.45, 0.12), (0.7, 0.3), 0.75)


@pytest.mark.parametrize("distance,block", [(0.0, 1e5), (50.0, 1e6), (100.0, 1e7), (100.0, 1e9), (150.0, 1e8)])
def test_lim2014_matches_appendix_derivation(distance: float, block: float) -> None:
    stats, leak = _observed("lim2014", distance, block, LIM_SETTINGS, LIM2014_SECTION_IV)
    got = finite_key_length("lim2014", stats, leak, 1e-15, 1e-10)
    ell, s0, s1, v1, phi = reference.lim2014_length(
        stats.detections.tolist(),
        stats.errors.tolist(),
        list(LIM_SETTINGS.intensities),
        list(LIM_SETTINGS.probabilities),
        leak,
        1e-15,
        1e-10,
    )
    assert got.vacuum == pytest.approx(s0, rel=1e-9, abs=1e-6)
    assert got.single_photon == pytest.approx(s1, rel=1e-9)
    assert got.single_photon_errors_test == pytest.approx(v1, rel=1e-9)
    assert got.phase_error_rate == pytest.approx(phi, rel=1e-9)
    assert abs(got.length - ell) <= 1  # floor of values equal to ~1e-9 relative
    assert got.single_photon > 0


@pytest.mark.parametrize("distance,block", [(0.0, 1e5), (100.0, 1e6), (150.0, 1e7), (250.0, 1e9)])
def test_rusca2018_matches_appendix_derivation(distance: float, block: float) -> None:
    stats, leak = _observed("rusca2018", distance, block, RUSCA_SETTINGS, RUSCA2018_SETUP)
    got = finite_key_length("rusca2018", stats, leak, 1e-15, 1e-9)
    ell, s0l, s0u, s1, v1, phi = reference.rusca2018_length(
        stats.detections.tolist(),
        stats.errors.tolist(),
        list(RUSCA_SETTINGS.intensities),
        list(RUSCA_SETTINGS.probabilities),
        leak,
        1e-15,
        1e-9,
    )
    assert got.vacuum == pytest.approx(s0l, rel=1e-9, abs=1e-6)
    assert got.vacuum_upper == pytest.approx(s0u, rel=1e-9)
    assert got.single_photon == pytest.approx(s1, rel=1e-9)
    assert got.single_photon_errors_test == pytest.approx(v1, rel=1e-9)
    assert got.phase_error_rate == pytest.approx(phi, rel=1e-9)
    assert abs(got.length - ell) <= 1


def test_hoeffding_deviation_by_hand() -> None:
    # sqrt(10000 / 2 * ln(e^2)) = sqrt(10000) = 100
    assert hoeffding_deviation(10_000, math.exp(-2.0)) == pytest.approx(100.0)


def test_photon_number_probability_by_hand() -> None:
    mu, p = [0.5, 0.1, 0.0], [0.5, 0.3, 0.2]
    assert photon_number_probability(0, mu, p) == pytest.approx(0.5 * math.exp(-0.5) + 0.3 * math.exp(-0.1) + 0.2)
    assert photon_number_probability(1, mu, p) == pytest.approx(0.25 * math.exp(-0.5) + 0.03 * math.exp(-0.1))
    assert photon_number_probability(2, mu, p) == pytest.approx(
        (0.5 * 0.25 * math.exp(-0.5) + 0.3 * 0.01 * math.exp(-0.1)) / 2
    )


def test_sampling_deviation_by_hand() -> None:
    # c = d = 1000, b = 0.1, a = 1e-10: (c+d)/(cd) = 0.002; spread = 0.002*0.09/ln2;
    # argument = 0.002/0.09 * 1e20; gamma = sqrt(spread * log2(argument)).
    spread = 0.002 * 0.09 / math.log(2)
    expected = math.sqrt(spread * math.log2(0.002 / 0.09 * 1e20))
    assert sampling_deviation(1e-10, 0.1, 1000, 1000) == pytest.approx(expected)
    assert sampling_deviation(1e-10, 0.0, 1000, 1000) == 0.0
    assert sampling_deviation(1e-10, 0.1, 0, 1000) == math.inf


def test_binary_entropy_by_hand() -> None:
    assert binary_entropy(0.5) == 1.0
    assert binary_entropy(0.11) == pytest.approx(0.4999, abs=1e-3)
    assert binary_entropy(0.0) == 0.0
    assert binary_entropy(0.7) == 1.0  # a phase-error bound above 1/2 leaves nothing


def test_lim2014_worked_example_by_hand() -> None:
    """A small block worked through Eqs. (1)-(5) step by step in plain arithmetic."""
    mu, p = (0.5, 0.1, 0.0), (0.5, 0.25, 0.25)
    n = [[400_000, 50_000, 8_000], [40_000, 5_000, 800]]
    m = [[8_000, 4_500, 4_000], [800, 450, 400]]
    eps_sec, eps_cor, leak = 1e-10, 1e-15, 20_000.0
    got = finite_key_length("lim2014", DecoyStatistics(mu, p, n, m), leak, eps_cor, eps_sec)

    lg = math.log(21 / eps_sec)
    t0 = 0.5 * math.exp(-0.5) + 0.25 * math.exp(-0.1) + 0.25
    t1 = 0.5 * 0.5 * math.exp(-0.5) + 0.25 * 0.1 * math.exp(-0.1)
    d = math.sqrt(458_000 / 2 * lg)
    # Eq. (2) with mu3 = 0: s0 >= tau0 * n-_{mu3} = tau0 * (1/0.25) (10000 - d)
    s0 = t0 * 4 * (8_000 - d)
    # Eq. (3) with mu3 = 0: s1 >= tau1 mu1 [n-_2 - n+_3 - mu2^2/mu1^2 (n+_1 - s0/tau0)] / (mu1 mu2 - mu2^2)
    n_minus_2 = math.exp(0.1) / 0.25 * (50_000 - d)
    n_plus_3 = 4 * (8_000 + d)
    n_plus_1 = math.exp(0.5) / 0.5 * (400_000 + d)
    s1 = t1 * 0.5 * (n_minus_2 - n_plus_3 - 0.04 * (n_plus_1 - s0 / t0)) / (0.05 - 0.01)
    assert s0 > 0
    assert got.vacuum == pytest.approx(s0, rel=1e-12)
    assert got.single_photon == pytest.approx(s1, rel=1e-12)
    # Eq. (4) on the test basis: v1 <= tau1 (m+_2 - m-_3) / mu2
    dx = math.sqrt(45_800 / 2 * lg)
    sx0 = t0 * 4 * (800 - dx)
    sx1 = (
        t1
        * 0.5
        * (
            math.exp(0.1) / 0.25 * (5_000 - dx)
            - 4 * (800 + dx)
            - 0.04 * (math.exp(0.5) / 0.5 * (40_000 + dx) - sx0 / t0)
        )
        / 0.04
    )
    dm = math.sqrt(1_650 / 2 * lg)
    v1 = t1 * (math.exp(0.1) / 0.25 * (450 + dm) - 4 * (400 - dm)) / 0.1
    assert v1 > 0
    assert got.single_photon_test == pytest.approx(sx1, rel=1e-12)
    assert got.single_photon_errors_test == pytest.approx(v1, rel=1e-12)
    # Eq. (5) and (1)
    b = v1 / sx1
    g = math.sqrt(
        (sx1 + s1)
        * (1 - b)
        * b
        / (sx1 * s1 * math.log(2))
        * math.log2((sx1 + s1) / (sx1 * s1 * (1 - b) * b) * 21**2 / eps_sec**2)
    )
    phi = b + g
    ell = s0 + s1 * (1 - binary_entropy(phi)) - leak - 6 * math.log2(21 / eps_sec) - math.log2(2 / eps_cor)
    assert got.phase_error_rate == pytest.approx(phi, rel=1e-12)
    assert got.length == math.floor(ell)
    assert got.length > 0
    assert got.subtracted["error_correction"] == leak
    assert got.secrecy_cost == pytest.approx(6 * math.log2(21e10))


def test_length_is_zero_when_bounds_leave_nothing() -> None:
    stats = DecoyStatistics((0.5, 0.1, 0.0), (0.5, 0.25, 0.25), [[100, 20, 5], [10, 2, 1]], [[5, 1, 2], [1, 0, 0]])
    r = finite_key_length("lim2014", stats, 50.0, 1e-15, 1e-10)
    assert r.length == 0
    assert r.length_bound < 0


def test_no_test_basis_singles_gives_no_secrecy_from_single_photons() -> None:
    n = [[400_000, 50_000, 10_000], [0, 0, 0]]
    m = [[8_000, 1_500, 5_000], [0, 0, 0]]
    r = finite_key_length("lim2014", DecoyStatistics((0.5, 0.1, 0.0), (0.5, 0.25, 0.25), n, m), 0.0, 1e-15, 1e-10)
    assert r.single_photon_test == 0.0
    assert r.privacy_amplification_cost == pytest.approx(r.single_photon)


def test_result_dictionary_is_json_ready() -> None:
    import json

    stats = DecoyStatistics((0.5, 0.1), (0.7, 0.3), [[100_000, 10_000], [10_000, 1_000]], [[1_000, 100], [100, 10]])
    r = finite_key_length("rusca2018", stats, 10_000.0, 1e-15, 1e-9)
    doc = json.loads(json.dumps(r.as_dict()))
    assert doc["protocol"] == "rusca2018"
    assert doc["length"] == r.length
    assert doc["vacuum_upper"] == pytest.approx(r.vacuum_upper)


def test_rusca2018_worked_example_by_hand() -> None:
    """A block worked through (A16)-(A25) step by step in plain arithmetic."""
    mu, p = (0.5, 0.1), (0.5, 0.5)
    n = [[300_000, 40_000], [30_000, 4_000]]
    m = [[3_000, 1_200], [300, 120]]
    eps_sec, eps_cor, leak = 1e-9, 1e-15, 5_000.0
    got = finite_key_length("rusca2018", DecoyStatistics(mu, p, n, m), leak, eps_cor, eps_sec)

    lg = math.log(19 / eps_sec)
    e1, e2 = math.exp(0.5), math.exp(0.1)
    t0 = 0.5 * math.exp(-0.5) + 0.5 * math.exp(-0.1)
    t1 = 0.5 * 0.5 * math.exp(-0.5) + 0.5 * 0.1 * math.exp(-0.1)
    dz, dmz = math.sqrt(340_000 / 2 * lg), math.sqrt(4_200 / 2 * lg)
    # (A16), k = mu2: s^u_0 = 2 [tau0 e^{0.1}/0.5 (m_2 + delta(m)) + delta(n)]
    s0u = 2 * (t0 * e2 / 0.5 * (1_200 + dmz) + dz)
    # (A19): s^l_0 = tau0/(0.4) (0.5 n-_2 - 0.1 n+_1)
    n2m, n1p = e2 / 0.5 * (40_000 - dz), e1 / 0.5 * (300_000 + dz)
    s0l = max(t0 / 0.4 * (0.5 * n2m - 0.1 * n1p), 0.0)
    # (A17): s^l_1 = tau1 0.5/(0.1*0.4) [n-_2 - 0.04 n+_1 - 0.96 s^u_0/tau0]
    s1 = t1 * 0.5 / 0.04 * (n2m - 0.04 * n1p - 0.96 * s0u / t0)
    assert got.vacuum_upper == pytest.approx(s0u, rel=1e-12)
    assert got.vacuum == pytest.approx(s0l, rel=1e-12, abs=1e-9)
    assert got.single_photon == pytest.approx(s1, rel=1e-12)
    # the same for the test basis, then (A22): v_1 = tau1/0.4 (e^{0.5}/0.5 (m_1 + d) - e^{0.1}/0.5 (m_2 - d))
    dx, dmx = math.sqrt(34_000 / 2 * lg), math.sqrt(420 / 2 * lg)
    sx0u = 2 * (t0 * e2 / 0.5 * (120 + dmx) + dx)
    sx1 = t1 * 0.5 / 0.04 * (e2 / 0.5 * (4_000 - dx) - 0.04 * e1 / 0.5 * (30_000 + dx) - 0.96 * sx0u / t0)
    v1 = t1 / 0.4 * (e1 / 0.5 * (300 + dmx) - e2 / 0.5 * (120 - dmx))
    assert got.single_photon_test == pytest.approx(sx1, rel=1e-12)
    assert got.single_photon_errors_test == pytest.approx(v1, rel=1e-12)
    # (A23) with gamma's 19^2/eps_sec^2, then (A25)
    b = v1 / sx1
    g = math.sqrt(
        (sx1 + s1)
        * (1 - b)
        * b
        / (sx1 * s1 * math.log(2))
        * math.log2((sx1 + s1) / (sx1 * s1 * (1 - b) * b) * 19**2 / eps_sec**2)
    )
    phi = b + g
    ell = s0l + s1 * (1 - binary_entropy(phi)) - leak - 6 * math.log2(19 / eps_sec) - math.log2(2 / eps_cor)
    assert got.phase_error_rate == pytest.approx(phi, rel=1e-12)
    assert got.length == math.floor(ell) > 0
