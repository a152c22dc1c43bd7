"""Alice's and Bob's clocks: Bob's time-tagger runs with an offset and a fractional drift.

A pulse leaving Alice at true time `t` (Alice's clock, slot `s` at `s * period`) and reaching
Bob after the fibre delay, at `T = t + fibre_delay`, is tagged at
`offset + (1 + drift_ppm * 1e-6) * T + curvature * T**2` on Bob's clock, plus the detector's cable
delay and jitter; `curvature = drift_rate_ppm_per_s * 1e-18 / 2` lets the drift itself change
linearly in time (oscillator ageing or temperature wander). The sync pulse of every `sync_every`-th
slot travels with the signal over the same fibre (wavelength-multiplexed), with its own extra
delay and jitter, and arrives on the sync channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class ClockModel:
    """Maps Alice's slot numbers to arrival times on Bob's clock (picoseconds, float)."""

    period_ps: float
    offset_ps: float
    drift_ppm: float
    fibre_delay_ps: float
    drift_rate_ppm_per_s: float = 0.0

    @property
    def scale(self) -> float:
        """Bob's clock ticks per true picosecond at true time 0."""
        return 1.0 + self.drift_ppm * 1e-6

    @property
    def curvature(self) -> float:
        """Coefficient of the quadratic term (1/ps) from the drift's rate of change."""
        return 0.5 * self.drift_rate_ppm_per_s * 1e-18

    def arrival_ps(self, slot: float | NDArray[np.float64], extra_ps: float = 0.0) -> float | NDArray[np.float64]:
        """Bob-clock arrival time of slot `slot`'s pulse (before detector delay and jitter)."""
        t = np.asarray(slot, dtype=np.float64) * self.period_ps + self.fibre_delay_ps + extra_ps
        return self.offset_ps + t * (self.scale + self.curvature * t)

    def sync_slots(self, start: int, stop: int, sync_every: int) -> NDArray[np.int64]:
        """The slots in [start, stop) that carry a sync pulse (multiples of `sync_every`)."""
        first = -(-start // sync_every) * sync_every
        return np.arange(first, stop, sync_every, dtype=np.int64)

    def sync_times(
        self, slots: NDArray[np.int64], delay_ps: float, jitter_ps: float, rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """Bob-clock times of the sync pulses of `slots`, with Gaussian jitter truncated at 8 sigma."""
        t = np.asarray(self.arrival_ps(slots.astype(np.float64), delay_ps), dtype=np.float64)
        if jitter_ps > 0 and t.size:
            z = np.clip(rng.standard_normal(t.size), -8.0, 8.0)
            t = t + jitter_ps * z
        return t
