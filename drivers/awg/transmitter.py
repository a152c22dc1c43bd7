"""Alice's source on an AWG: decoy-state BB84 symbol patterns played by the modulators' signal sources.

One channel drives the intensity modulator (a pulse per slot whose height selects the intensity
class), another the phase modulator (a level held for the slot: phase k·π/2, with k = basis + 2·bit,
so Z carries 0/π and X carries π/2 and 3π/2).

Fresh states (DESIGN §5): an AWG loops the pattern in its memory, and a looping pattern is public
after one period of sifting (Eve then knows basis and intensity of every later slot). So the
transmitter streams: each *epoch* is a new pattern of P slots drawn from the OS CSPRNG (or a QRNG's
`random_source`), uploaded and started once the previous one has played through. Epoch e starts at
slot `first_slot[e]` (when its `run()` returned, plus a guard); its first P slots are fresh unless
the next upload began earlier, and every later slot until the next epoch replays the same pattern
(or, while an upload runs, carries none): `fresh(slots)` is False there and `states()` refuses
them with `StateReuseError`. `states()` is keyed by (epoch, slot within the pattern), never
`slot mod P`. An AWG that uploads a pattern within one period streams at the slot rate; a slower
one costs key rate, never secrecy, and the node reports the fresh fraction.

Epoch boundaries are placed from the host clock with a guard of `guard_slots` on each side; a lab
aligning them to the tagger should use the AWG's marker output (not modelled here).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from drivers.awg.base import WaveformGenerator
from drivers.instrument import check_range
from drivers.jit import kernel
from drivers.transmitter import SlotStates, StateReuseError

U32 = float(2**32)


@dataclass(frozen=True)
class ModulatorLevels:
    """Normalised AWG levels (in [-1, 1]) that produce each intensity class and each BB84 phase.

    `intensity[c]` is the pulse height for class c (calibrated against the mean photon numbers),
    `phase[k]` the level giving phase k·π/2 (calibrated against the phase modulator's Vπ).
    """

    intensity: tuple[float, ...]
    phase: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        if not self.intensity or any(not -1.0 <= v <= 1.0 for v in self.intensity):
            raise ValueError(f"ModulatorLevels.intensity must be levels within [-1, 1], got {self.intensity}")
        if len(self.phase) != 4 or any(not -1.0 <= v <= 1.0 for v in self.phase):
            raise ValueError(f"ModulatorLevels.phase must be 4 levels within [-1, 1], got {self.phase}")


def random_pattern(
    n_slots: int, p_z: float, p_intensity: tuple[float, ...], random_source: Callable[[int], bytes] = os.urandom
) -> SlotStates:
    """`n_slots` states with P(Z) = p_z and class probabilities `p_intensity`, drawn from
    `random_source` (os.urandom, or a hardware QRNG's read of n bytes)."""
    u = np.frombuffer(random_source(8 * n_slots), dtype=np.uint32).reshape(2, n_slots)
    basis = (u[0] >= np.uint32(min(p_z * U32, U32 - 1))).astype(np.uint8)  # 0 = Z with probability p_z
    edges = np.minimum(np.cumsum(p_intensity)[:-1] * U32, U32 - 1).astype(np.uint32)
    intensity = np.searchsorted(edges, u[1], side="right").astype(np.uint8)
    bit = (np.frombuffer(random_source(n_slots), dtype=np.uint8) & 1).astype(np.uint8)
    return SlotStates(np.arange(n_slots, dtype=np.int64), basis, bit, intensity)


@kernel(inline="always")
def _epoch_of(s, e, firsts):  # pragma: no cover - numba
    """The retained epoch holding slot `s`, walking on from epoch `e` (slots usually ascend) or, for a
    slot before epoch `e`, by binary search from the start."""
    if s < firsts[e]:
        lo, hi = 0, e
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if firsts[mid] <= s:
                lo = mid
            else:
                hi = mid - 1
        e = lo
    while e + 1 < firsts.size and firsts[e + 1] <= s:
        e += 1
    return e


@kernel
def _states_kernel(
    slots, firsts, rows, fresh_len, period, basis, bit, intensity, out_basis, out_bit, out_intensity
):  # pragma: no cover - numba
    """`_locate` and the gather in one pass, for fresh slots only: returns (position of the first
    slot older than the retained epochs or -1, position of the first stale slot or -1)."""
    e = 0
    oldest = firsts[0]
    for i in range(slots.size):
        s = slots[i]
        if s < oldest:
            return i, -1
        e = _epoch_of(s, e, firsts)
        offset = s - firsts[e]
        if offset >= fresh_len[e]:
            return -1, i
        j = rows[e] * period + offset
        out_basis[i] = basis[j]
        out_bit[i] = bit[j]
        out_intensity[i] = intensity[j]
    return -1, -1


@kernel
def _locate(slots, firsts, rows, fresh_len, period, oldest, index, fresh):  # pragma: no cover - numba
    """Per slot: index into the ring of retained patterns (epoch e in ring row rows[e]), and whether
    the slot is the first play of its pattern; returns the position of the first slot that lies before
    the oldest retained epoch (or -1). A merge walk when `slots` ascend, a binary search otherwise."""
    e = 0
    for i in range(slots.size):
        s = slots[i]
        if s < oldest:
            return i
        e = _epoch_of(s, e, firsts)
        offset = s - firsts[e]
        fresh[i] = offset < fresh_len[e]
        if offset >= period:  # a replay: rare, and a division is slow
            offset = offset % period
        index[i] = rows[e] * period + offset
    return -1


class AWGTransmitter:
    """A `Transmitter` on one AWG: streams fresh patterns (epochs), and answers which state each
    slot carried, refusing a slot whose pattern was replayed."""

    def __init__(
        self,
        awg: WaveformGenerator,
        *,
        intensities: tuple[float, ...],
        levels: ModulatorLevels,
        intensity_channel: int | None = None,
        phase_channel: int | None = None,
        samples_per_slot: int = 8,
        pulse_samples: int = 2,
        pattern_slots: int = 4096,
        p_z: float = 0.5,
        p_intensity: tuple[float, ...] | None = None,
        amplitude_vpp: tuple[float, float] = (1.0, 1.0),
        pattern: SlotStates | None = None,
        random_source: Callable[[int], bytes] | None = None,
        stream: bool = True,
        keep_epochs: int = 1024,
        guard_slots: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            len(intensities) < 1
            or any(not mu > 0 for mu in intensities)
            or list(intensities) != sorted(intensities, reverse=True)
        ):
            raise ValueError(
                f"intensities must be positive mean photon numbers, signal (largest) first, got {intensities}"
            )
        if len(levels.intensity) != len(intensities):
            raise ValueError(
                f"levels.intensity must have one level per intensity class ({len(intensities)}), "
                f"got {len(levels.intensity)}"
            )
        # default: the first two channels the AWG generates on (an M8195A in DUAL mode: 1 and 4)
        intensity_channel = awg.channels[0] if intensity_channel is None else intensity_channel
        phase_channel = awg.channels[min(1, len(awg.channels) - 1)] if phase_channel is None else phase_channel
        if intensity_channel == phase_channel or {intensity_channel, phase_channel} - set(awg.channels):
            raise ValueError(
                f"intensity_channel and phase_channel must be two different channels of {awg.channels}, "
                f"got {intensity_channel} and {phase_channel}"
            )
        if not isinstance(samples_per_slot, int) or samples_per_slot < 1:
            raise ValueError(f"samples_per_slot must be an integer >= 1, got {samples_per_slot!r}")
        if not isinstance(pulse_samples, int) or not 1 <= pulse_samples <= samples_per_slot:
            raise ValueError(
                f"pulse_samples must be an integer in [1, samples_per_slot={samples_per_slot}], got {pulse_samples!r}"
            )
        check_range(self, "p_z", p_z, 0.0, 1.0)
        if p_intensity is None:
            p_intensity = tuple([1.0 / len(intensities)] * len(intensities))
        if len(p_intensity) != len(intensities) or any(p < 0 for p in p_intensity) or abs(sum(p_intensity) - 1) > 1e-9:
            raise ValueError(f"p_intensity must be {len(intensities)} probabilities summing to 1, got {p_intensity}")
        if not isinstance(keep_epochs, int) or keep_epochs < 2:
            raise ValueError(f"keep_epochs must be an integer >= 2, got {keep_epochs!r}")
        if random_source is not None and not callable(random_source):
            raise ValueError("random_source must be a callable returning n random bytes (os.urandom or a QRNG read)")
        if pattern is None:
            if not isinstance(pattern_slots, int) or pattern_slots < 1:
                raise ValueError(f"pattern_slots must be an integer >= 1, got {pattern_slots!r}")
        elif (
            pattern.slot.size == 0
            or np.any(pattern.basis > 1)
            or np.any(pattern.bit > 1)
            or np.any(pattern.intensity >= len(intensities))
        ):
            raise ValueError("pattern must be non-empty with basis and bit in {0, 1} and intensity < number of classes")
        else:
            pattern_slots = int(pattern.slot.size)
        awg.check_length(pattern_slots * samples_per_slot)
        self.awg = awg
        self._intensities = tuple(float(mu) for mu in intensities)
        self.levels = levels
        self.intensity_channel = intensity_channel
        self.phase_channel = phase_channel
        self.samples_per_slot = samples_per_slot
        self.pulse_samples = pulse_samples
        self.amplitude_vpp = amplitude_vpp
        self.p_z = float(p_z)
        self.p_intensity = tuple(float(p) for p in p_intensity)
        self.random_source = random_source if random_source is not None else os.urandom
        self.stream = bool(stream)
        self.keep_epochs = keep_epochs
        self._clock = clock
        self._period = int(pattern_slots)
        if guard_slots is not None and (not isinstance(guard_slots, int) or guard_slots < 0):
            raise ValueError(f"guard_slots must be an integer >= 0, got {guard_slots!r}")
        self.guard_slots = self._period if guard_slots is None else guard_slots
        self._first_pattern = pattern
        self._lock = threading.Lock()
        self._firsts = np.empty(0, np.int64)  # first slot of each retained epoch
        self._rows = np.empty(0, np.int64)  # its row in the ring of patterns
        self._fresh_len = np.empty(0, np.int64)  # how many of its slots were fresh (<= P)
        self._basis, self._bit, self._intensity = (
            np.zeros(keep_epochs * int(pattern_slots), np.uint8) for _ in range(3)
        )
        if self._first_pattern is None:
            self._first_pattern = self._draw()
        self._pattern = self._first_pattern
        self.epochs = 0  # patterns uploaded since start()
        self.forgotten_before = 0  # slots before this lost their states (epochs beyond keep_epochs)
        self._t0 = 0.0
        self._stop = threading.Event()
        self._streamer: threading.Thread | None = None
        self.stream_error: str | None = None
        self._running = False

    @property
    def repetition_rate_hz(self) -> float:
        return self.awg.sample_rate_hz / self.samples_per_slot

    @property
    def intensities(self) -> tuple[float, ...]:
        return self._intensities

    @property
    def pattern_slots(self) -> int:
        """Slots in one pattern (one epoch's fresh states)."""
        return self._period

    def _draw(self) -> SlotStates:
        return random_pattern(self._period, self.p_z, self.p_intensity, self.random_source)

    def waveforms(self, pattern: SlotStates | None = None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The (intensity, phase) channel samples of one pattern (default: the latest uploaded)."""
        p = self._pattern if pattern is None else pattern
        level = np.asarray(self.levels.intensity, dtype=np.float64)[p.intensity]
        slot = np.zeros((p.slot.size, self.samples_per_slot))
        slot[:, : self.pulse_samples] = level[:, None]
        k = p.basis.astype(np.int64) + 2 * p.bit.astype(np.int64)
        phase = np.repeat(np.asarray(self.levels.phase, dtype=np.float64)[k], self.samples_per_slot)
        return slot.reshape(-1), phase

    def _play(self, pattern: SlotStates) -> None:
        intensity, phase = self.waveforms(pattern)
        self.awg.upload(self.intensity_channel, intensity, self.amplitude_vpp[0])
        self.awg.upload(self.phase_channel, phase, self.amplitude_vpp[1])
        self.awg.run()

    def _record(self, first_slot: int, pattern: SlotStates) -> None:
        """Add an epoch (its first slot and pattern) in the ring of `keep_epochs` patterns, forgetting
        the oldest when the ring is full."""
        with self._lock:
            row = self.epochs % self.keep_epochs
            cut = slice(row * self._period, (row + 1) * self._period)
            self._basis[cut], self._bit[cut], self._intensity[cut] = pattern.basis, pattern.bit, pattern.intensity
            firsts = np.append(self._firsts, np.int64(first_slot))
            rows = np.append(self._rows, np.int64(row))
            fresh_len = np.append(self._fresh_len, np.int64(self._period))
            if firsts.size > self.keep_epochs:
                firsts, rows, fresh_len = firsts[1:], rows[1:], fresh_len[1:]
                self.forgotten_before = int(firsts[0])
            self._firsts, self._rows, self._fresh_len = firsts, rows, fresh_len
            self._pattern = pattern
            self.epochs += 1

    def _slots_now(self) -> float:
        return (self._clock() - self._t0) * self.repetition_rate_hz

    def start(self) -> None:
        """Upload the first fresh pattern and start it (slot 0 is its first pulse); with `stream`,
        keep uploading fresh patterns until `stop()`."""
        self.stop_streaming()
        with self._lock:
            self._firsts, self._rows, self._fresh_len = (np.empty(0, np.int64) for _ in range(3))
            self.epochs, self.forgotten_before, self.stream_error = 0, 0, None
        pattern = self._first_pattern if self._first_pattern is not None else self._draw()
        self._first_pattern = None  # a pattern is played once, never again: a restart draws a new one
        self._play(pattern)
        self._t0 = self._clock()
        self._record(0, pattern)
        self._running = True
        if self.stream:
            self._stop.clear()
            self._streamer = threading.Thread(target=self._stream_loop, name="awg-stream", daemon=True)
            self._streamer.start()

    def refresh(self) -> int:
        """Draw a fresh pattern, upload and start it; returns its epoch's first slot. The previous
        epoch's fresh slots end a guard before this upload began (an upload replaces the playing
        waveform), the new epoch begins a guard after `run()` returned."""
        pattern = self._draw()
        began = math.floor(self._slots_now()) - self.guard_slots
        with self._lock:
            if self._firsts.size:
                self._fresh_len[-1] = min(self._period, max(0, began - int(self._firsts[-1])))
            previous = int(self._firsts[-1]) if self._firsts.size else -1
        self._play(pattern)
        first = max(previous + 1, math.ceil(self._slots_now()) + self.guard_slots)
        self._record(first, pattern)
        return first

    def _stream_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                done = int(self._firsts[-1]) + self._period + self.guard_slots  # the latest pattern played through
            wait = (done / self.repetition_rate_hz + self._t0) - self._clock()
            if wait > 0 and self._stop.wait(wait):
                return
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - an AWG error stops the stream; Alice sees stale slots and alarms
                self.stream_error = f"{type(exc).__name__}: {exc}"
                return

    def stop_streaming(self) -> None:
        """Stop uploading new patterns (the AWG keeps replaying the last: those slots are stale)."""
        self._stop.set()
        if self._streamer is not None and self._streamer is not threading.current_thread():
            self._streamer.join(timeout=10.0)
        self._streamer = None

    @staticmethod
    def _check_slots(slots: NDArray[np.int64]) -> NDArray[np.int64]:
        s = np.asarray(slots)
        if s.dtype != np.int64 or s.ndim != 1:
            raise ValueError(f"slots must be a 1-D int64 array, got {s.dtype}{s.shape}")
        if s.size and s.min() < 0:
            raise ValueError("slots must be >= 0 (slot 0 is the first pulse after start())")
        return np.ascontiguousarray(s)

    def fresh(self, slots: NDArray[np.int64]) -> NDArray[np.bool_]:
        """True for the slots that were the first play of their pattern (fresh states)."""
        s = self._check_slots(slots)
        index = np.empty(s.size, np.int64)
        fresh = np.empty(s.size, np.bool_)
        with self._lock:
            if self._firsts.size == 0:
                raise ValueError("the transmitter has not been started: no slot carried a state yet")
            old = _locate(
                s,
                self._firsts,
                self._rows,
                self._fresh_len,
                np.int64(self._period),
                np.int64(self._firsts[0]),
                index,
                fresh,
            )
            kept = self._firsts.size
        if old >= 0:
            raise StateReuseError(
                f"slot {int(s[old])} is older than the {kept} patterns kept "
                f"(keep_epochs={self.keep_epochs}): its state is gone"
            )
        return fresh

    def states(self, slots: NDArray[np.int64]) -> SlotStates:
        """The states of fresh slots; `StateReuseError` names the first slot whose pattern was a replay."""
        s = self._check_slots(slots)
        out = tuple(np.empty(s.size, np.uint8) for _ in range(3))
        with self._lock:  # the ring's oldest row is reused by the next epoch: read under the lock
            if self._firsts.size == 0:
                raise ValueError("the transmitter has not been started: no slot carried a state yet")
            old, stale = _states_kernel(
                s,
                self._firsts,
                self._rows,
                self._fresh_len,
                np.int64(self._period),
                self._basis,
                self._bit,
                self._intensity,
                *out,
            )
            kept = self._firsts.size
        if old >= 0:
            raise StateReuseError(
                f"slot {int(s[old])} is older than the {kept} patterns kept "
                f"(keep_epochs={self.keep_epochs}): its state is gone"
            )
        if stale >= 0:
            raise StateReuseError(f"slot {int(s[stale])} replayed an earlier pattern: its state is not fresh")
        return SlotStates(s.copy(), *out)

    def stop(self) -> None:
        self.stop_streaming()
        self.awg.stop()
        self._running = False

    def shutdown(self) -> None:
        self.stop_streaming()
        self.awg.shutdown()
        self._running = False

    def __enter__(self) -> AWGTransmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def decode_waveforms(
    intensity: NDArray[np.float64], phase: NDArray[np.float64], levels: ModulatorLevels, samples_per_slot: int
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]:
    """(basis, bit, intensity class) per slot read back from channel samples: nearest calibrated level.

    What a monitoring photodiode and an interferometer would tell; used to check an upload end to end.
    """
    n = intensity.size // samples_per_slot
    peak = intensity[: n * samples_per_slot].reshape(n, samples_per_slot)[:, 0]
    cls = np.abs(peak[:, None] - np.asarray(levels.intensity)[None, :]).argmin(axis=1).astype(np.uint8)
    mid = phase[: n * samples_per_slot].reshape(n, samples_per_slot)[:, samples_per_slot // 2]
    k = np.abs(mid[:, None] - np.asarray(levels.phase)[None, :]).argmin(axis=1)
    return (k % 2).astype(np.uint8), (k // 2).astype(np.uint8), cls
