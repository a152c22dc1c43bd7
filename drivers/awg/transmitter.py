"""Alice's source on an AWG: a decoy-state BB84 symbol pattern played by the modulators' signal sources.

One channel drives the intensity modulator (a pulse per slot whose height selects the intensity
class), another the phase modulator (a level held for the slot: phase k·π/2, with k = basis + 2·bit,
so Z carries 0/π and X carries π/2 and 3π/2). The AWG loops the pattern, so slot s carried
pattern entry s mod P, counted from the first pulse after `start()`.

The pattern is drawn from `os.urandom` (DESIGN §5). A looping pattern repeats every P slots: with
AWG memory as the only source of randomness, P bounds the key that can be secure; a lab feeding a
QRNG into the AWG replaces `pattern` per upload.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from drivers.awg.base import WaveformGenerator
from drivers.instrument import check_range
from drivers.transmitter import SlotStates

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


def random_pattern(n_slots: int, p_z: float, p_intensity: tuple[float, ...]) -> SlotStates:
    """`n_slots` states with P(Z) = p_z and class probabilities `p_intensity`, drawn from os.urandom."""
    u = np.frombuffer(os.urandom(8 * n_slots), dtype=np.uint32).reshape(2, n_slots)
    basis = (u[0] >= np.uint32(min(p_z * U32, U32 - 1))).astype(np.uint8)  # 0 = Z with probability p_z
    edges = np.minimum(np.cumsum(p_intensity)[:-1] * U32, U32 - 1).astype(np.uint32)
    intensity = np.searchsorted(edges, u[1], side="right").astype(np.uint8)
    bit = (np.frombuffer(os.urandom(n_slots), dtype=np.uint8) & 1).astype(np.uint8)
    return SlotStates(np.arange(n_slots, dtype=np.int64), basis, bit, intensity)


class AWGTransmitter:
    """A `Transmitter` on one AWG: uploads the pattern, starts it, and answers which state each slot carried."""

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
    ) -> None:
        if len(intensities) < 1 or any(not mu > 0 for mu in intensities) or list(intensities) != sorted(intensities, reverse=True):
            raise ValueError(f"intensities must be positive mean photon numbers, signal (largest) first, got {intensities}")
        if len(levels.intensity) != len(intensities):
            raise ValueError(f"levels.intensity must have one level per intensity class ({len(intensities)}), "
                             f"got {len(levels.intensity)}")
        # default: the first two channels the AWG generates on (an M8195A in DUAL mode: 1 and 4)
        intensity_channel = awg.channels[0] if intensity_channel is None else intensity_channel
        phase_channel = awg.channels[min(1, len(awg.channels) - 1)] if phase_channel is None else phase_channel
        if intensity_channel == phase_channel or {intensity_channel, phase_channel} - set(awg.channels):
            raise ValueError(f"intensity_channel and phase_channel must be two different channels of {awg.channels}, "
                             f"got {intensity_channel} and {phase_channel}")
        if not isinstance(samples_per_slot, int) or samples_per_slot < 1:
            raise ValueError(f"samples_per_slot must be an integer >= 1, got {samples_per_slot!r}")
        if not isinstance(pulse_samples, int) or not 1 <= pulse_samples <= samples_per_slot:
            raise ValueError(f"pulse_samples must be an integer in [1, samples_per_slot={samples_per_slot}], "
                             f"got {pulse_samples!r}")
        check_range(self, "p_z", p_z, 0.0, 1.0)
        if p_intensity is None:
            p_intensity = tuple([1.0 / len(intensities)] * len(intensities))
        if len(p_intensity) != len(intensities) or any(p < 0 for p in p_intensity) or abs(sum(p_intensity) - 1) > 1e-9:
            raise ValueError(f"p_intensity must be {len(intensities)} probabilities summing to 1, got {p_intensity}")
        if pattern is None:
            if not isinstance(pattern_slots, int) or pattern_slots < 1:
                raise ValueError(f"pattern_slots must be an integer >= 1, got {pattern_slots!r}")
            pattern = random_pattern(pattern_slots, p_z, p_intensity)
        elif (pattern.slot.size == 0 or np.any(pattern.basis > 1) or np.any(pattern.bit > 1)
              or np.any(pattern.intensity >= len(intensities))):
            raise ValueError("pattern must be non-empty with basis and bit in {0, 1} and intensity < number of classes")
        awg.check_length(pattern.slot.size * samples_per_slot)
        self.awg = awg
        self._intensities = tuple(float(mu) for mu in intensities)
        self.levels = levels
        self.intensity_channel = intensity_channel
        self.phase_channel = phase_channel
        self.samples_per_slot = samples_per_slot
        self.pulse_samples = pulse_samples
        self.amplitude_vpp = amplitude_vpp
        self._pattern = pattern
        self._running = False

    @property
    def repetition_rate_hz(self) -> float:
        return self.awg.sample_rate_hz / self.samples_per_slot

    @property
    def intensities(self) -> tuple[float, ...]:
        return self._intensities

    @property
    def pattern_slots(self) -> int:
        """Slots in one period of the looping pattern."""
        return int(self._pattern.slot.size)

    def waveforms(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The (intensity, phase) channel samples of one pattern period."""
        p = self._pattern
        level = np.asarray(self.levels.intensity, dtype=np.float64)[p.intensity]
        slot = np.zeros((p.slot.size, self.samples_per_slot))
        slot[:, : self.pulse_samples] = level[:, None]
        k = p.basis.astype(np.int64) + 2 * p.bit.astype(np.int64)
        phase = np.repeat(np.asarray(self.levels.phase, dtype=np.float64)[k], self.samples_per_slot)
        return slot.reshape(-1), phase

    def start(self) -> None:
        """Upload both waveforms and start them together; slot 0 is the first pulse after this call."""
        intensity, phase = self.waveforms()
        self.awg.upload(self.intensity_channel, intensity, self.amplitude_vpp[0])
        self.awg.upload(self.phase_channel, phase, self.amplitude_vpp[1])
        self.awg.run()
        self._running = True

    def states(self, slots: NDArray[np.int64]) -> SlotStates:
        s = np.asarray(slots)
        if s.dtype != np.int64 or s.ndim != 1:
            raise ValueError(f"slots must be a 1-D int64 array, got {s.dtype}{s.shape}")
        if s.size and s.min() < 0:
            raise ValueError("slots must be >= 0 (slot 0 is the first pulse after start())")
        i = s % self.pattern_slots
        p = self._pattern
        return SlotStates(s.copy(), p.basis[i], p.bit[i], p.intensity[i])

    def stop(self) -> None:
        self.awg.stop()
        self._running = False

    def shutdown(self) -> None:
        self.awg.shutdown()
        self._running = False

    def __enter__(self) -> AWGTransmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def decode_waveforms(intensity: NDArray[np.float64], phase: NDArray[np.float64], levels: ModulatorLevels,
                     samples_per_slot: int) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]:
    """(basis, bit, intensity class) per slot read back from channel samples: nearest calibrated level.

    What a monitoring photodiode and an interferometer would tell; used to check an upload end to end.
    """
    n = intensity.size // samples_per_slot
    peak = intensity[: n * samples_per_slot].reshape(n, samples_per_slot)[:, 0]
    cls = np.abs(peak[:, None] - np.asarray(levels.intensity)[None, :]).argmin(axis=1).astype(np.uint8)
    mid = phase[: n * samples_per_slot].reshape(n, samples_per_slot)[:, samples_per_slot // 2]
    k = np.abs(mid[:, None] - np.asarray(levels.phase)[None, :]).argmin(axis=1)
    return (k % 2).astype(np.uint8), (k // 2).astype(np.uint8), cls
