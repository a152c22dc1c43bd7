"""The lab transmitter streams fresh patterns: a slot's state is never a replay of an earlier slot's,
slots the AWG replayed while an upload ran are marked stale and refused."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from drivers.awg import AWGTransmitter, ModulatorLevels
from drivers.awg.transmitter import decode_waveforms
from drivers.transmitter import StateReuseError

MU = (0.5, 0.1, 0.02)
LEVELS = ModulatorLevels((1.0, 0.5, 0.25), (-0.75, -0.25, 0.25, 0.75))
P = 64


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class RecordingAWG:
    """A WaveformGenerator that keeps every upload; each upload takes `upload_s` of the clock."""

    channels = (1, 2)

    def __init__(self, sample_rate_hz: float, clock: FakeClock | None = None, upload_s: float = 0.0) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.clock, self.upload_s = clock, upload_s
        self.uploads: list[dict[int, np.ndarray]] = []
        self._pending: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()

    def check_length(self, n_samples: int) -> None:
        pass

    def upload(self, channel: int, samples: np.ndarray, amplitude_vpp: float) -> None:
        if self.clock is not None:
            self.clock.t += self.upload_s / 2
        self._pending[channel] = samples.copy()

    def run(self) -> None:
        with self.lock:
            self.uploads.append(self._pending)
        self._pending = {}

    def stop(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _decoded(awg: RecordingAWG, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return decode_waveforms(awg.uploads[i][1], awg.uploads[i][2], LEVELS, 2)


def _transmitter(awg: RecordingAWG, **kw) -> AWGTransmitter:
    options = dict(
        intensities=MU,
        levels=LEVELS,
        samples_per_slot=2,
        pulse_samples=1,
        pattern_slots=P,
        p_z=0.8,
        p_intensity=(0.6, 0.3, 0.1),
        stream=False,
        guard_slots=0,
    )
    options.update(kw)
    return AWGTransmitter(awg, **options)  # type: ignore[arg-type]


def test_a_streaming_awg_never_gives_the_same_slot_state_twice_across_pattern_periods() -> None:
    clock = FakeClock()
    awg = RecordingAWG(2e6, clock)  # 1 Mslot/s: one pattern period is 64 us
    tx = _transmitter(awg, clock=clock)
    tx.start()
    for _ in range(7):  # the next upload as soon as the pattern has played through: no replay
        clock.t = tx._t0 + (int(tx._firsts[-1]) + P) / tx.repetition_rate_hz
        tx.refresh()
    firsts = tx._firsts.tolist()
    assert firsts == [i * P for i in range(8)]  # back to back
    slots = np.arange(8 * P, dtype=np.int64)
    assert tx.fresh(slots).all()
    got = tx.states(slots)
    for e in range(8):  # epoch e's slots carry exactly the e-th uploaded pattern
        basis, bit, cls = _decoded(awg, e)
        window = slice(e * P, (e + 1) * P)
        assert np.array_equal(got.basis[window], basis) and np.array_equal(got.bit[window], bit)
        assert np.array_equal(got.intensity[window], cls)
    # slot s and slot s + P are independent draws, not the pattern mod P
    symbols = got.basis * 6 + got.bit * 3 + got.intensity
    assert all(not np.array_equal(symbols[e * P : (e + 1) * P], symbols[(e + 1) * P : (e + 2) * P]) for e in range(7))
    assert tx.epochs == 8


def test_a_slow_awg_replays_and_those_slots_are_stale_and_refused() -> None:
    clock = FakeClock()
    awg = RecordingAWG(2e6, clock, upload_s=2.5 * P / 1e6)  # an upload takes 2.5 pattern periods
    tx = _transmitter(awg, clock=clock, guard_slots=4)
    tx.start()
    clock.t = tx._t0 + P / 1e6
    first = tx.refresh()
    fresh_end = P  # the upload began right after the first period (minus the guard: 60 fresh)
    assert tx._fresh_len[0] == fresh_end - 4
    assert first == pytest.approx(P + 2.5 * P + 4, abs=1)
    slots = np.arange(first + P, dtype=np.int64)
    fresh = tx.fresh(slots)
    assert fresh[:60].all() and not fresh[60:first].any() and fresh[first:].all()
    with pytest.raises(StateReuseError, match="replayed an earlier pattern"):
        tx.states(np.array([10, P + 10], dtype=np.int64))  # P + 10 replays slot 10's state
    ok = tx.states(slots[fresh])
    assert ok.slot.size == 60 + P


def test_every_epoch_draws_from_the_configured_random_source() -> None:
    calls: list[int] = []

    def qrng(n: int) -> bytes:
        calls.append(n)
        return np.random.default_rng(len(calls)).integers(0, 256, n, dtype=np.uint8).tobytes()

    clock = FakeClock()
    tx = _transmitter(RecordingAWG(2e6, clock), clock=clock, random_source=qrng)
    assert len(calls) == 2  # the first pattern: 8 bytes per slot for basis and class, 1 for the bit
    tx.start()
    clock.t = 1.0
    tx.refresh()
    assert len(calls) == 4 and calls[:2] == [8 * P, P]


def test_states_of_forgotten_epochs_are_refused() -> None:
    clock = FakeClock()
    tx = _transmitter(RecordingAWG(2e6, clock), clock=clock, keep_epochs=2)
    tx.start()
    for _ in range(3):
        clock.t = tx._t0 + (int(tx._firsts[-1]) + P) / tx.repetition_rate_hz
        tx.refresh()
    with pytest.raises(StateReuseError, match="older than the 2 patterns kept"):
        tx.states(np.array([0], dtype=np.int64))


def test_the_stream_thread_keeps_uploading_fresh_patterns_until_stopped() -> None:
    awg = RecordingAWG(2e5)  # 100 kslot/s: a 64-slot pattern plays for 0.64 ms
    tx = _transmitter(awg, stream=True, guard_slots=8)
    tx.start()
    deadline = time.monotonic() + 30.0
    while tx.epochs < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    tx.stop()
    assert tx.epochs >= 5 and tx.stream_error is None
    n = tx.epochs
    time.sleep(0.01)
    assert tx.epochs == n  # stopped
    firsts = tx._firsts
    assert np.all(np.diff(firsts) >= P)  # an epoch's pattern plays through before the next upload
    for e in range(1, n):
        slots = np.arange(firsts[e], firsts[e] + tx._fresh_len[e], dtype=np.int64)
        basis, _bit, cls = _decoded(awg, e)
        got = tx.states(slots)
        assert np.array_equal(got.basis, basis[: slots.size]) and np.array_equal(got.intensity, cls[: slots.size])
