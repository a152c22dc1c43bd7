"""The mock time-tagger and transmitter behind the driver protocols."""

from __future__ import annotations

import time

import numpy as np
import pytest

from drivers.mock import LinkParams, MockTimeTagger, MockTransmitter
from drivers.mock.detectors import KIND_PHOTON
from drivers.timetagger import TagBlock, TimeTagger
from drivers.transmitter import SlotStates, Transmitter


def _drain(tagger: MockTimeTagger, limit: int = 10_000) -> list[TagBlock]:
    blocks = []
    for _ in range(limit):
        b = tagger.read_block(0.0)
        if not len(b) and not tagger.running:  # acquisition over
            break
        blocks.append(b)
    return blocks


def test_mocks_implement_the_driver_protocols() -> None:
    assert isinstance(MockTimeTagger(), TimeTagger)
    assert isinstance(MockTransmitter(), Transmitter)


def test_fast_mode_streams_every_tag_in_order_without_loss() -> None:
    p = LinkParams(fibre_length_km=0.0)
    with MockTimeTagger(p, seed=2, block_s=2e-5, duration_s=1e-3, max_tags=700, truth=True) as tagger:
        tagger.start()
        blocks = _drain(tagger)
        assert tagger.lost_total == 0
    assert all(len(b) <= 700 and b.lost == 0 for b in blocks)
    t = np.concatenate([b.time for b in blocks])
    ch = np.concatenate([b.channel for b in blocks])
    assert np.all(np.diff(t) >= 0)
    assert set(np.unique(ch).tolist()) <= {0, 1, 2, 3, 4}
    assert int(np.sum(ch == 0)) == 1_000_000 // p.sync_every


def test_tagger_photons_carry_the_transmitters_states() -> None:
    p = LinkParams(fibre_length_km=0.0, misalignment=0.0, dark_count_hz=0.0, afterpulse_probability=0.0, bob_p_z=1.0)
    tx = MockTransmitter(p, seed=5)
    tagger = MockTimeTagger(p, seed=5, block_s=1e-4, duration_s=5e-4, truth=True)
    tagger.start()
    tx.start()
    blocks = _drain(tagger)
    slot = np.concatenate([b.meta["slot"] for b in blocks])
    kind = np.concatenate([b.meta["kind"] for b in blocks])
    ch = np.concatenate([b.channel for b in blocks])
    z_photon = (kind == KIND_PHOTON) & (ch >= 1)
    states = tx.states(slot[z_photon])
    assert isinstance(states, SlotStates)
    # all light goes to the Z detectors; without misalignment a Z state always hits its own bit
    z_prepared = states.basis == 0
    assert np.array_equal(ch[z_photon][z_prepared] - 1, states.bit[z_prepared])


def test_realtime_mode_counts_tags_dropped_by_a_full_buffer() -> None:
    p = LinkParams(fibre_length_km=0.0)
    tagger = MockTimeTagger(p, seed=1, realtime=True, max_tags=50)
    tagger.start()
    time.sleep(0.01)
    b = tagger.read_block(0.05)
    assert len(b) == 50
    assert b.lost > 0 and b.overflow
    assert tagger.lost_total >= b.lost
    tagger.stop()
    tagger.close()
    tagger.close()


def test_realtime_mode_follows_the_wall_clock() -> None:
    p = LinkParams(fibre_length_km=50.0)
    tagger = MockTimeTagger(p, seed=1, realtime=True, max_lag_s=10.0)
    t0 = time.monotonic()
    tagger.start()
    time.sleep(0.02)
    got = len(tagger.read_block(0.0))
    elapsed = time.monotonic() - t0
    sim = tagger.simulator
    assert sim is not None
    sim_s = sim.next_slot / p.repetition_rate_hz
    # the read simulated up to the wall-clock time of the read, never beyond
    assert 0.02 <= sim_s <= elapsed
    tagger.stop()
    got += sum(len(b) for b in _drain(tagger))
    assert got > 0 and tagger.lost_total == 0


def test_read_before_start_is_empty_and_after_close_is_an_error() -> None:
    tagger = MockTimeTagger()
    assert len(tagger.read_block(0.0)) == 0
    tagger.close()
    with pytest.raises(RuntimeError):
        tagger.read_block(0.0)
    with pytest.raises(ValueError, match="timeout_s"):
        MockTimeTagger().read_block(-1.0)


def test_transmitter_states_are_reproducible_and_shutdown_is_safe() -> None:
    slots = np.array([5, 1, 5, 10**12], np.int64)
    with MockTransmitter(LinkParams(), seed=9) as tx:
        tx.start()
        assert tx.emitting
        a, b = tx.states(slots), tx.states(slots)
        assert np.array_equal(a.bit, b.bit) and a.bit[0] == a.bit[2]
        assert tx.repetition_rate_hz == 1e9 and tx.intensities == (0.5, 0.1, 0.0)
    assert not tx.emitting
    tx.shutdown()
    with pytest.raises(RuntimeError):
        tx.start()


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(block_s=0.0), "block_s"),
        (dict(max_tags=0), "max_tags"),
        (dict(duration_s=-1.0), "duration_s"),
        (dict(seed=-1), "seed"),
    ],
)
def test_tagger_rejects_bad_settings(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        MockTimeTagger(**kwargs)


def test_realtime_mode_that_falls_behind_skips_and_reports_the_gap_as_lost() -> None:
    p = LinkParams(fibre_length_km=0.0)
    tagger = MockTimeTagger(p, seed=3, realtime=True, block_s=1e-6, max_lag_s=1e-5)
    tagger.start()
    time.sleep(0.02)  # 20 ms of acquisition against at most 10 us simulated per read
    b = tagger.read_block(0.0)
    sim = tagger.simulator
    assert sim is not None and sim.counters.skipped_slots > 0
    assert b.overflow and b.lost > 0
    # the reported loss is the expected tag count of the skipped slots
    expect = sim.counters.skipped_slots * sim.expected_tags_per_slot()
    assert abs(b.lost - expect) <= 1 + 1e-9 * expect
    assert tagger.lost_total == b.lost
    assert len(b) <= 2 * 10_000 * sim.expected_tags_per_slot() + 100
    tagger.close()


def test_skip_leaves_a_gap_in_the_tag_times() -> None:
    from drivers.mock.link import LinkEvents, LinkSimulator

    p = LinkParams(fibre_length_km=0.0, dark_count_hz=0.0)
    sim = LinkSimulator(p, 1)
    before = sim.run(100_000)
    sim.skip(1_000_000)
    after = LinkEvents.concatenate([sim.run(100_000), sim.flush()])
    assert sim.next_slot == 1_200_000
    slots = np.concatenate([before.slot, after.slot])[np.concatenate([before.kind, after.kind]) == KIND_PHOTON]
    assert slots.size > 1000
    assert not np.any((slots >= 100_000) & (slots < 1_100_000))  # nothing from the skipped slots
    assert slots.max() >= 1_190_000
    assert sim.counters.skipped_slots == 1_000_000


def test_mock_link_pair_shares_the_link() -> None:
    from drivers.mock import mock_link_pair

    p = LinkParams(fibre_length_km=0.0)
    tx, tagger = mock_link_pair(p, seed=8, block_s=1e-4, duration_s=2e-4, truth=True)
    assert tx.params is p and tagger.channels == (0, 1, 2, 3, 4) and tagger.resolution_ps == 1
    tagger.start()
    blocks = _drain(tagger)
    slot = np.concatenate([b.meta["slot"] for b in blocks])
    kind = np.concatenate([b.meta["kind"] for b in blocks])
    states = tx.states(slot[kind == KIND_PHOTON])
    assert len(states.slot) > 1000
    # photons come from the signal and decoy classes, never from the vacuum class
    assert not np.any(states.intensity == 2)
