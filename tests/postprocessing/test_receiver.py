"""Bob's receiver chain on a batch of tags: slots recovered, common dead time honoured, batch cut."""

from __future__ import annotations

import numpy as np

from drivers.mock.detectors import KIND_PHOTON
from drivers.mock.link import simulate_link
from drivers.mock.params import DETECTOR_CHANNELS, LinkParams
from postprocessing.receiver import receive_batch

QUIET = LinkParams(fibre_length_km=5.0, dark_count_hz=0.0, afterpulse_probability=0.0, dead_time_ps=0.0)


def _receive(p: LinkParams, ev, **options):
    return receive_batch(
        ev.time,
        ev.channel,
        period_ps=p.period_ps,
        sync_every=p.sync_every,
        delay_ps=p.channel_delays_ps(),
        rng=np.random.default_rng(0),
        **options,
    )


def test_every_photon_click_lands_in_the_slot_it_was_sent_in() -> None:
    ev = simulate_link(QUIET, 300_000, seed=1)
    batch = _receive(QUIET, ev)
    truth = np.unique(ev.slot[ev.kind == KIND_PHOTON])
    assert truth.size > 1000
    assert np.array_equal(batch.detections.slot, truth)
    assert abs(batch.fit.drift_ppm) < 1.0


def test_common_dead_time_keeps_no_click_inside_an_open_window() -> None:
    p = QUIET.replace(fibre_length_km=0.0)
    ev = simulate_link(p, 300_000, seed=2)
    dead = 200_000.0
    batch = _receive(p, ev, common_dead_time_ps=dead)
    window = 0.5 * p.period_ps
    t = np.sort(batch.slotted.time[np.isin(batch.slotted.channel, DETECTOR_CHANNELS)])
    opener = t[0]
    for ti in t[1:]:  # each kept click opens a window or is a coincidence of the click that opened one
        if ti - opener > window:
            assert ti - opener >= dead
            opener = ti
    assert len(batch.detections) < len(_receive(p, ev).detections)


def test_slots_from_n_slots_on_are_dropped() -> None:
    ev = simulate_link(QUIET, 300_000, seed=3)
    batch = _receive(QUIET, ev, n_slots=100_000)
    assert len(batch.detections) > 100
    assert batch.detections.slot.max() < 100_000
