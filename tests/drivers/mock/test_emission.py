"""Alice's mock settings per slot: the transmitter reports and the tagger simulates each slot under
the settings it was emitted with, so a re-tune changes Bob's photons from the slot it names."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.mock import EmissionSchedule, LinkParams, MockTransmitter, mock_link_pair
from drivers.mock.alice import alice_states
from drivers.transmitter import RetuneRefused

PARAMS = LinkParams(p_z=0.8, intensities=(0.5, 0.15, 0.0), class_probabilities=(0.6, 0.3, 0.1), sync_every=1000)
NEW_MU, NEW_P = (0.25, 0.075, 0.0), (0.2, 0.3, 0.5)


def test_emitted_slots_keep_their_settings_and_a_later_switch_replaces_an_unemitted_one() -> None:
    schedule = EmissionSchedule(PARAMS)
    schedule.mark_emitted(100)
    with pytest.raises(ValueError, match="already emitted"):
        schedule.switch(PARAMS.replace(intensities=NEW_MU), 99)
    assert schedule.switch(PARAMS.replace(intensities=NEW_MU)) == 100
    assert schedule.switch(PARAMS.replace(intensities=(0.4, 0.1, 0.0)), 100) == 100
    pieces = [(a, b, p.intensities) for a, b, p in schedule.segments(50, 150)]
    assert pieces == [(50, 100, PARAMS.intensities), (100, 150, (0.4, 0.1, 0.0))]


def test_the_transmitter_reports_each_slot_under_the_settings_it_was_emitted_with() -> None:
    tx, _tagger = mock_link_pair(PARAMS, 5)  # the tagger couples the source to a simulated fibre
    tx.schedule.mark_emitted(1000)
    assert tx.retune(NEW_MU, NEW_P) == 1000 and tx.intensities == NEW_MU
    slots = np.arange(0, 2000, dtype=np.int64)
    states = tx.states(slots)
    old = alice_states(5, slots[:1000], PARAMS.p_z, PARAMS.class_probabilities)
    new = alice_states(5, slots[1000:], PARAMS.p_z, NEW_P)
    assert np.array_equal(states.intensity, np.concatenate([old[2], new[2]]))
    assert np.array_equal(states.basis, np.concatenate([old[0], new[0]]))


def test_a_retune_changes_the_photons_bob_receives_from_its_slot() -> None:
    clean = PARAMS.replace(dark_count_hz=0.0, dead_time_ps=(0.0,) * 4, afterpulse_probability=(0.0,) * 4)
    tx, tagger = mock_link_pair(clean, 7, block_s=5e-3)
    tagger.start()
    before = sum(len(tagger.read_block(0.0)) for _ in range(4))  # 2e7 slots
    switched = tx.retune(tuple(m / 2 for m in PARAMS.intensities), PARAMS.class_probabilities)
    assert tagger.simulator is not None and switched == tagger.simulator.next_slot
    after = sum(len(tagger.read_block(0.0)) for _ in range(4))
    syncs = 2e7 / PARAMS.sync_every
    assert (after - syncs) / (before - syncs) == pytest.approx(0.5, rel=0.03)  # half the mean photon number


def test_a_source_no_tagger_reads_cannot_change_live() -> None:
    with pytest.raises(RetuneRefused, match="no simulated fibre"):
        MockTransmitter(PARAMS).retune(NEW_MU, NEW_P)
    tx, _ = mock_link_pair(PARAMS)
    with pytest.raises(RetuneRefused, match="intensities must lie in"):
        tx.retune((5.0, 0.1, 0.0), NEW_P)
