"""The replay tagger and transmitter behind the driver protocols: every recorded block is handed back
once, in order, without pacing; states are handed out once in slot order and never again."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.mock import LinkParams, MockTransmitter
from drivers.replay import ReplayTimeTagger, ReplayTransmitter
from drivers.replay.recording import RecordingError, iter_state_chunks, iter_tag_file
from drivers.timetagger import TimeTagger
from drivers.transmitter import StateReuseError, Transmitter
from node.runtime.replay_source import record_mock


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    params = LinkParams(fibre_length_km=25.0)
    return params, record_mock(params, 11, tmp_path_factory.mktemp("rec"), 20_000, block_s=1e-3)


def test_replay_drivers_implement_the_protocols(recording):
    _, info = recording
    assert isinstance(ReplayTimeTagger(info), TimeTagger)
    assert isinstance(ReplayTransmitter(info), Transmitter)


def test_tagger_hands_back_every_recorded_block_then_empty_ones(recording):
    _, info = recording
    tagger = ReplayTimeTagger(info)
    tagger.start()
    recorded = list(iter_tag_file(info.tags))
    for want in recorded:
        got = tagger.read_block(0.0)
        assert np.array_equal(got.time, want.time) and np.array_equal(got.channel, want.channel)
    assert len(tagger.read_block(0.0)) == 0 and tagger.exhausted
    tagger.close()
    with pytest.raises(RuntimeError, match="closed"):
        tagger.read_block(0.0)


def test_transmitter_gives_the_recorded_states_once_in_slot_order(recording):
    params, info = recording
    truth = MockTransmitter(params, 11)
    slots = np.concatenate([s for s, _ in iter_state_chunks(info.states)])
    tx = ReplayTransmitter(info)
    tx.start()
    for part in np.array_split(slots[::3], 7):  # Bob asks for a subset, in increasing batches
        got, want = tx.states(part), truth.states(part)
        assert np.array_equal(got.basis, want.basis) and np.array_equal(got.bit, want.bit)
        assert np.array_equal(got.intensity, want.intensity)
    done = slots[::3][-1]
    assert not tx.fresh(np.array([done], np.int64))[0]
    with pytest.raises(StateReuseError, match="handed out already"):
        tx.states(np.array([done], np.int64))


def test_transmitter_refuses_a_slot_the_recording_lacks(recording):
    _, info = recording
    slots = next(iter_state_chunks(info.states))[0]
    missing = np.setdiff1d(np.arange(slots[0], slots[-1]), slots)[:1]
    tx = ReplayTransmitter(info)
    tx.start()
    with pytest.raises(RecordingError, match="not in the recording"):
        tx.states(missing.astype(np.int64))


def test_transmitter_answers_slots_out_of_order_as_before(recording):
    """A request whose slots do not increase (a forged one: the sifting refuses it afterwards) still gets
    the recorded states of those slots, as a binary search would give them."""
    params, info = recording
    truth = MockTransmitter(params, 11)
    slots = next(iter_state_chunks(info.states))[0][:40]
    shuffled = np.concatenate([slots[20:], slots[:20], slots[:1]])
    tx = ReplayTransmitter(info)
    tx.start()
    got, want = tx.states(shuffled), truth.states(shuffled)
    assert np.array_equal(got.basis, want.basis) and np.array_equal(got.bit, want.bit)
    assert np.array_equal(got.intensity, want.intensity)
