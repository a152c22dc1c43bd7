"""The mock link through Bob's receiver chain (`simulate_detections`) against the analytic model:
detection probabilities, QBER, intercept-resend, dark-count floor and multi-click squashing."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.mock.analytic import AnalyticModel, expected_statistics
from drivers.mock.params import LinkParams
from node.runtime.simulation import SimulatedDetections, simulate_detections
from tests.drivers.mock.test_link import MEMORYLESS, _within


def _check_against_model(d: SimulatedDetections, model: AnalyticModel) -> None:
    """Detections per (class, Alice basis, Bob basis) and errors per (class, sifted basis)."""
    n = d.n_slots
    for k in range(model.p_detect.shape[0]):
        for a in range(2):
            for b in range(2):
                obs = int(np.sum((d.intensity == k) & (d.alice_basis == a) & (d.basis == b)))
                p = model.slot_fraction(k, a) * model.p_measured[k, a, b]
                assert _within(obs, n, p), f"detections class {k} basis {a}->{b}: {obs} vs {n * p:.1f}"
        for b in range(2):
            sifted = (d.intensity == k) & (d.alice_basis == b) & (d.basis == b)
            errors = int(np.sum(d.bit[sifted] != d.alice_bit[sifted]))
            if np.isnan(model.qber[k, b]):  # no light and no dark counts: nothing to sift
                assert not sifted.any()
                continue
            assert _within(errors, int(sifted.sum()), model.qber[k, b]), (
                f"errors class {k} basis {b}: {errors} of {int(sifted.sum())}, QBER {model.qber[k, b]:.4f}"
            )


@pytest.mark.parametrize("length_km", [0.0, 25.0, 50.0, 100.0])
def test_detection_probability_and_qber_match_the_analytic_model(length_km: float) -> None:
    p = LinkParams(
        fibre_length_km=length_km,
        misalignment=0.02,
        efficiency=(0.25, 0.2, 0.22, 0.18),
        bob_p_z=0.6,
        p_z=0.7,
        dark_count_hz=(2e3, 1e3, 3e3, 1e3),
        **MEMORYLESS,
    )
    n_slots = int(6e4 / (p.channel_transmittance * 0.2 * 0.4))
    d = simulate_detections(p, n_slots=n_slots, seed=11 + int(length_km))
    assert len(d) > 40_000
    _check_against_model(d, expected_statistics(p, gate_ps=0.5 * p.period_ps))


def test_dark_counts_set_the_floor_at_large_distance() -> None:
    p = LinkParams(fibre_length_km=400.0, dark_count_hz=(1e5, 2e5, 1e5, 2e5), **MEMORYLESS)
    gate = 0.5 * p.period_ps
    model = expected_statistics(p, gate_ps=gate)
    floor = 1.0 - np.prod(np.exp(-np.asarray(p.dark_count_hz) * gate * 1e-12))
    # every class and basis sees the same dark-count floor, and it is a coin toss
    assert np.allclose(model.p_detect, floor, rtol=1e-3)
    assert np.allclose(model.qber, 0.5, atol=1e-3)
    d = simulate_detections(p, n_slots=50_000_000, seed=2)
    assert _within(len(d), d.n_slots, floor)
    assert d.counters.photon_clicks.sum() < 10
    _check_against_model(d, model)


def test_full_intercept_resend_gives_a_quarter_qber() -> None:
    p = LinkParams(fibre_length_km=10.0, misalignment=0.0, dark_count_hz=0.0, eve_fraction=1.0, **MEMORYLESS)
    model = expected_statistics(p, gate_ps=0.5 * p.period_ps)
    assert np.all(np.abs(model.qber[:2] - 0.25) < 0.01)
    d = simulate_detections(p, n_slots=2_000_000, seed=4)
    _check_against_model(d, model)
    sifted = d.alice_basis == d.basis
    qber = np.mean(d.bit[sifted] != d.alice_bit[sifted])
    assert abs(qber - 0.25) < 0.01


def test_partial_intercept_resend_scales_the_added_error() -> None:
    p = LinkParams(fibre_length_km=10.0, misalignment=0.01, eve_fraction=0.4, **MEMORYLESS)
    model = expected_statistics(p, gate_ps=0.5 * p.period_ps)
    assert abs(model.qber[0, 0] - (0.01 + 0.4 * 0.25 * (1 - 2 * 0.01))) < 0.01
    _check_against_model(simulate_detections(p, n_slots=2_000_000, seed=5), model)


def test_simulate_detections_needs_exactly_one_length() -> None:
    with pytest.raises(ValueError, match="n_slots"):
        simulate_detections(LinkParams(), seed=0)
    with pytest.raises(ValueError, match="n_slots"):
        simulate_detections(LinkParams(), n_slots=10, seed=0)
    d = simulate_detections(LinkParams(), duration_s=1e-4, seed=0)
    assert d.n_slots == 100_000


def test_multi_clicks_are_squashed_and_counted_as_the_model_expects() -> None:
    # bright pulses at 0 km: many slots fire two or more detectors
    p = LinkParams(
        fibre_length_km=0.0,
        intensities=(2.0, 0.5),
        class_probabilities=(0.5, 0.5),
        efficiency=(0.6, 0.5, 0.55, 0.45),
        misalignment=0.05,
        dead_time_ps=0.0,
        afterpulse_probability=0.0,
    )
    d = simulate_detections(p, n_slots=200_000, seed=21, estimate_delays=True)
    model = expected_statistics(p, gate_ps=0.5 * p.period_ps)
    n = d.n_slots
    w = np.array([[model.slot_fraction(k, a) for a in range(2)] for k in range(2)])
    p_double = float((w * model.p_double).sum())
    p_cross = float((w * model.p_cross).sum())
    assert _within(d.n_double, n, p_double) and d.n_double > 1000
    assert _within(d.n_cross, n, p_cross) and d.n_cross > 1000
    z = d.clicks & 3
    x = d.clicks >> 2
    assert int(np.sum((z != 0) & (x != 0))) == d.n_cross
    assert int(np.sum(((z == 3) & (x == 0)) | ((x == 3) & (z == 0)))) == d.n_double
    _check_against_model(d, model)
