"""The Monte-Carlo link's time tags: the detector effects (dead time, afterpulses, jitter), the clock model,
streaming and parameter checks. Its detections through Bob's chain against the analytic model are
checked in tests/node/runtime/test_simulation.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from drivers.mock.detectors import KIND_AFTERPULSE, KIND_DARK, KIND_PHOTON, KIND_SYNC
from drivers.mock.link import LinkEvents, LinkSimulator, simulate_link
from drivers.mock.params import DETECTOR_PRESETS, LinkParams

SIGMAS = 5.0
# dead time and afterpulsing couple slots; the analytic model is exact without them
MEMORYLESS: dict[str, Any] = dict(dead_time_ps=0.0, afterpulse_probability=0.0, class_probabilities=(0.6, 0.3, 0.1))


def _within(observed: float, n: int, p: float) -> bool:
    """Binomial(n, p) count within SIGMAS standard deviations (plus one count of slack)."""
    return abs(observed - n * p) <= SIGMAS * np.sqrt(n * p * (1.0 - p)) + 1.0


def test_no_detector_clicks_twice_within_its_dead_time() -> None:
    dead = (40_000.0, 10_000.0, 25_000.0, 60_000.0)
    p = LinkParams(fibre_length_km=0.0, dead_time_ps=dead, afterpulse_probability=0.05)
    ev = simulate_link(p, 2_000_000, seed=6)
    sim_lost = 0
    for j in range(4):
        t = ev.time[ev.channel == j + 1]
        assert t.size > 1000
        assert np.diff(t).min() >= dead[j]
    sim = LinkSimulator(p, 6)
    LinkEvents.concatenate([sim.run(2_000_000), sim.flush()])
    sim_lost = int(sim.counters.dead_time_lost.sum())
    assert sim_lost > 0  # at 0 km the detectors saturate: clicks are lost to dead time


def test_dead_time_lowers_the_count_rate_as_a_non_paralysable_detector() -> None:
    # one detector, Poisson-like arrivals at rate R: registered rate R / (1 + R * tau)
    base: dict[str, Any] = dict(
        fibre_length_km=0.0,
        afterpulse_probability=0.0,
        dark_count_hz=0.0,
        intensities=(0.2,),
        class_probabilities=(1.0,),
        efficiency=(0.05, 0.0, 0.0, 0.0),
        bob_p_z=1.0,
        p_z=1.0,
        misalignment=0.0,
    )
    free = simulate_link(LinkParams(dead_time_ps=0.0, **base), 4_000_000, seed=8)
    tau = 100_000.0
    dead = simulate_link(LinkParams(dead_time_ps=tau, **base), 4_000_000, seed=8)
    n_free = int(np.sum(free.kind == KIND_PHOTON))
    n_dead = int(np.sum(dead.kind == KIND_PHOTON))
    duration_ps = 4_000_000 * 1000.0
    rate = n_free / duration_ps
    assert abs(n_dead - n_free / (1 + rate * tau)) < 0.02 * n_dead


def test_afterpulses_follow_each_registered_click_with_the_given_probability() -> None:
    p_ap = 0.05
    p = LinkParams(fibre_length_km=20.0, dead_time_ps=0.0, afterpulse_probability=p_ap, afterpulse_time_ps=5000.0)
    ev = simulate_link(p, 20_000_000, seed=7)
    detector = ev.kind != KIND_SYNC
    n_clicks = int(detector.sum())
    n_ap = int(np.sum(ev.kind == KIND_AFTERPULSE))
    # every registered click (afterpulses included) spawns one with probability p_ap
    assert _within(n_ap, n_clicks, p_ap)
    assert np.all(ev.slot[ev.kind == KIND_AFTERPULSE] == -1)
    assert np.all(ev.slot[ev.kind == KIND_DARK] == -1)


def test_streaming_in_chunks_gives_one_sorted_consistent_stream() -> None:
    p = LinkParams(
        fibre_length_km=0.0,
        repetition_rate_hz=10e9,
        jitter_ps=(30.0, 80.0, 50.0, 50.0),
        detector_delay_ps=(0.0, 150.0, -40.0, 20.0),
    )
    sim = LinkSimulator(p, 9)
    rng = np.random.default_rng(1)
    parts = [sim.run(int(c)) for c in rng.integers(0, 300_000, 30)] + [sim.flush()]
    ev = LinkEvents.concatenate(parts)
    assert np.all(np.diff(ev.time) >= 0)
    assert ev.time.min() >= 0
    photon = ev.kind == KIND_PHOTON
    assert np.all(ev.slot[photon] < sim.next_slot)
    sync = ev.kind == KIND_SYNC
    assert np.array_equal(ev.slot[sync], np.arange(0, sim.next_slot, p.sync_every))
    assert int(photon.sum()) + int(sim.counters.dead_time_lost.sum()) >= int(sim.counters.photon_clicks.sum()) - 0
    for j in range(4):
        assert np.diff(ev.time[ev.channel == j + 1]).min() >= p.dead_time_ps[j]


def test_same_seed_same_stream_and_different_seed_different_stream() -> None:
    p = LinkParams()
    a, b, c = (simulate_link(p, 1_000_000, s) for s in (3, 3, 4))
    assert np.array_equal(a.time, b.time) and np.array_equal(a.channel, b.channel)
    assert not np.array_equal(a.time[:100], c.time[:100])


def test_photon_times_follow_the_clock_model() -> None:
    p = LinkParams(
        fibre_length_km=5.0, clock_drift_ppm=-20.0, clock_drift_rate_ppm_per_s=500.0, jitter_ps=0.0, resolution_ps=1
    )
    ev = simulate_link(p, 200_000, seed=1)
    for j in range(4):
        sel = (ev.kind == KIND_PHOTON) & (ev.channel == j + 1)
        expect = p.clock.arrival_ps(ev.slot[sel].astype(float)) + p.detector_delay_ps[j]
        assert np.all(np.abs(ev.time[sel] - expect) <= 0.5 + 1e-6)


@pytest.mark.parametrize(
    "change, word",
    [
        (dict(intensities=(0.5, -0.1)), "intensities"),
        (dict(class_probabilities=(0.5, 0.4, 0.2)), "class_probabilities"),
        (dict(efficiency=(0.2, 0.2)), "efficiency"),
        (dict(efficiency=1.5), "efficiency"),
        (dict(misalignment=0.7), "misalignment"),
        (dict(sync_every=0), "sync_every"),
        (dict(repetition_rate_hz=0.0), "repetition_rate_hz"),
        (dict(fibre_length_km=-1.0), "fibre_length_km"),
        (dict(resolution_ps=0), "resolution_ps"),
        (dict(afterpulse_probability=1.0), "afterpulse_probability"),
    ],
)
def test_bad_parameters_are_rejected_naming_the_parameter(change: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        LinkParams(**change)


def test_timing_jitter_is_gaussian_with_the_given_width() -> None:
    from scipy.special import ndtr

    sigma = 40.0
    p = LinkParams(
        fibre_length_km=0.0,
        jitter_ps=sigma,
        dead_time_ps=0.0,
        afterpulse_probability=0.0,
        resolution_ps=1,
        clock_drift_ppm=0.0,
    )
    ev = simulate_link(p, 4_000_000, seed=12)
    photon = ev.kind == KIND_PHOTON
    expect = (
        np.asarray(p.clock.arrival_ps(ev.slot[photon].astype(float)))
        + np.asarray(p.detector_delay_ps)[ev.channel[photon] - 1]
    )
    z = (ev.time[photon] - expect) / sigma
    n = z.size
    assert n > 200_000
    for a in (0.5, 1.0, 2.0, 3.0, 4.0):
        # rounding to 1 ps blurs the edge by at most 0.5 ps
        p_in = 1.0 - 2.0 * ndtr(-a)
        observed = int(np.sum(np.abs(z) < a))
        assert abs(observed - n * p_in) <= SIGMAS * np.sqrt(n * p_in * (1 - p_in)) + n * 0.5 / sigma * 0.8 * np.exp(
            -a * a / 2
        )
    assert np.abs(z).max() <= 8.0 + 0.5 / sigma


@pytest.mark.parametrize("kind", ["snspd", "ingaas", "si-spad"])
def test_detector_presets_give_valid_links_that_respect_their_dead_time(kind: str) -> None:
    p = LinkParams(fibre_length_km=10.0).with_detectors(kind)
    assert p.efficiency == (DETECTOR_PRESETS[kind]["efficiency"],) * 4
    ev = simulate_link(p, 2_000_000, seed=1)
    for j in range(4):
        t = ev.time[ev.channel == j + 1]
        if t.size > 1:
            assert np.diff(t).min() >= p.dead_time_ps[j]
    with pytest.raises(ValueError, match="kind"):
        LinkParams().with_detectors("pmt")


def test_no_tag_precedes_the_start_of_acquisition() -> None:
    p = LinkParams(
        fibre_length_km=0.0,
        clock_offset_ps=0.0,
        detector_delay_ps=(-300.0, -200.0, 0.0, 0.0),
        sync_delay_ps=100.0,
        dark_count_hz=1e6,
    )
    ev = simulate_link(p, 100_000, seed=2)
    assert len(ev) > 1000 and ev.time.min() >= 0
    assert ev.slot[ev.channel == 0][0] == 0  # the first sync pulse is recorded
    with pytest.raises(ValueError, match="sync pulse"):
        LinkParams(clock_offset_ps=0.0, sync_delay_ps=-100.0)
