"""Physical parameters of the mock link (`LinkParams`): Alice's source, the fibre, Bob's passive
basis choice and four detectors, the clocks and the sync channel, with typical detector presets.

Channel map (tagger channels): 0 = sync, 1 = Z0, 2 = Z1, 3 = X0, 4 = X1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.mock.channel import propagation_delay_ps, transmittance
from drivers.mock.clocks import ClockModel
from drivers.mock.detectors import N_DETECTORS, routing

__all__ = ["CHANNEL_SYNC", "DETECTOR_CHANNELS", "DETECTOR_PRESETS", "JITTER_TRUNCATION", "LinkParams", "PerDetector"]

CHANNEL_SYNC = 0
DETECTOR_CHANNELS = (1, 2, 3, 4)  # Z0, Z1, X0, X1
JITTER_TRUNCATION = 8.0  # Gaussian jitter is truncated at this many sigma

# Typical single-photon detectors (order-of-magnitude values from vendor data sheets).
DETECTOR_PRESETS: dict[str, dict[str, Any]] = {
    # superconducting nanowires: high efficiency, few dark counts, no afterpulsing, short dead time
    "snspd": dict(
        efficiency=0.85, dark_count_hz=100.0, afterpulse_probability=0.0, dead_time_ps=50_000.0, jitter_ps=20.0
    ),
    # free-running InGaAs avalanche diodes: long dead time against afterpulsing
    "ingaas": dict(
        efficiency=0.20,
        dark_count_hz=1_000.0,
        afterpulse_probability=0.02,
        afterpulse_time_ps=2_000_000.0,
        dead_time_ps=10_000_000.0,
        jitter_ps=100.0,
    ),
    # silicon avalanche diodes (visible / 800 nm links)
    "si-spad": dict(
        efficiency=0.6,
        dark_count_hz=250.0,
        afterpulse_probability=0.005,
        afterpulse_time_ps=50_000.0,
        dead_time_ps=22_000.0,
        jitter_ps=175.0,
    ),
}


def _per_detector(name: str, value: float | Sequence[float]) -> tuple[float, ...]:
    """`value` as one float per detector (Z0, Z1, X0, X1); a scalar is repeated."""
    if isinstance(value, (int, float)):
        value = (float(value),) * N_DETECTORS
    out = tuple(float(v) for v in value)
    if len(out) != N_DETECTORS:
        raise ValueError(f"{name} must be a scalar or {N_DETECTORS} values (Z0, Z1, X0, X1), got {len(out)}")
    return out


class PerDetector:
    """A `LinkParams` field holding one float per detector: set from a scalar or N_DETECTORS values,
    read as a tuple, so the constructor's scalar form is typed and normalised in one place."""

    def __init__(self, default: Sequence[float]) -> None:
        self._default = _per_detector("default", default)
        self._name = self._slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name, self._slot = name, f"_{name}"

    def __get__(self, obj: object | None, owner: type | None = None) -> tuple[float, ...]:
        # class access (obj None) gives the default, which is how dataclasses finds it
        if obj is None:
            return self._default
        value: tuple[float, ...] = obj.__dict__[self._slot]
        return value

    def __set__(self, obj: object, value: float | Sequence[float]) -> None:
        # reached only from the frozen dataclass's __init__ (object.__setattr__)
        obj.__dict__[self._slot] = _per_detector(self._name, value)


@dataclass(frozen=True)
class LinkParams:
    """Physical parameters of the mock link. Per-detector values are 4-tuples (Z0, Z1, X0, X1);
    a scalar is accepted and repeated. Times in picoseconds, rates in Hz."""

    repetition_rate_hz: float = 1e9
    intensities: tuple[float, ...] = (0.5, 0.1, 0.0)
    class_probabilities: tuple[float, ...] = (0.8, 0.15, 0.05)
    p_z: float = 0.5
    fibre_length_km: float = 25.0
    fibre_loss_db_per_km: float = 0.2
    insertion_loss_db: float = 1.0
    group_index: float = 1.468
    bob_p_z: float = 0.5
    misalignment: float = 0.01
    efficiency: PerDetector = PerDetector((0.2, 0.2, 0.2, 0.2))
    dark_count_hz: PerDetector = PerDetector((500.0, 500.0, 500.0, 500.0))
    afterpulse_probability: PerDetector = PerDetector((0.01, 0.01, 0.01, 0.01))
    afterpulse_time_ps: PerDetector = PerDetector((20_000.0,) * 4)
    dead_time_ps: PerDetector = PerDetector((50_000.0,) * 4)
    jitter_ps: PerDetector = PerDetector((50.0,) * 4)
    detector_delay_ps: PerDetector = PerDetector((0.0, 30.0, 60.0, 90.0))
    clock_offset_ps: float = 1_000_000.0
    clock_drift_ppm: float = 0.0
    clock_drift_rate_ppm_per_s: float = 0.0
    sync_every: int = 1000
    sync_delay_ps: float = 0.0
    sync_jitter_ps: float = 10.0
    eve_fraction: float = 0.0
    resolution_ps: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "intensities", tuple(float(v) for v in self.intensities))
        object.__setattr__(self, "class_probabilities", tuple(float(v) for v in self.class_probabilities))
        self._validate()

    def _validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(what)

        need(
            self.repetition_rate_hz > 0 and math.isfinite(self.repetition_rate_hz),
            f"repetition_rate_hz must be > 0, got {self.repetition_rate_hz}",
        )
        need(1 <= len(self.intensities) <= 255, "intensities must have 1..255 classes")
        need(
            all(m >= 0 and math.isfinite(m) for m in self.intensities),
            f"intensities must be >= 0, got {self.intensities}",
        )
        need(
            len(self.class_probabilities) == len(self.intensities),
            "class_probabilities must have one entry per intensity class",
        )
        need(
            all(p >= 0 for p in self.class_probabilities) and abs(sum(self.class_probabilities) - 1.0) < 1e-9,
            f"class_probabilities must be >= 0 and sum to 1, got {self.class_probabilities}",
        )
        for name in ("p_z", "bob_p_z", "eve_fraction"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1], got {getattr(self, name)}")
        need(0.0 <= self.misalignment <= 0.5, f"misalignment must be in [0, 0.5], got {self.misalignment}")
        need(self.fibre_length_km >= 0, f"fibre_length_km must be >= 0, got {self.fibre_length_km}")
        need(self.fibre_loss_db_per_km >= 0, f"fibre_loss_db_per_km must be >= 0, got {self.fibre_loss_db_per_km}")
        need(self.insertion_loss_db >= 0, f"insertion_loss_db must be >= 0, got {self.insertion_loss_db}")
        need(self.group_index >= 1, f"group_index must be >= 1, got {self.group_index}")
        need(all(0 <= e <= 1 for e in self.efficiency), f"efficiency must be in [0, 1], got {self.efficiency}")
        need(
            all(0 <= p < 1 for p in self.afterpulse_probability),
            f"afterpulse_probability must be in [0, 1), got {self.afterpulse_probability}",
        )
        for name in ("dark_count_hz", "afterpulse_time_ps", "dead_time_ps", "jitter_ps"):
            need(
                all(v >= 0 and math.isfinite(v) for v in getattr(self, name)),
                f"{name} must be >= 0, got {getattr(self, name)}",
            )
        need(all(math.isfinite(v) for v in self.detector_delay_ps), "detector_delay_ps must be finite")
        need(self.clock_offset_ps >= 0, f"clock_offset_ps must be >= 0, got {self.clock_offset_ps}")
        need(abs(self.clock_drift_ppm) < 1e4, f"clock_drift_ppm must be within +-1e4, got {self.clock_drift_ppm}")
        need(
            math.isfinite(self.clock_drift_rate_ppm_per_s) and abs(self.clock_drift_rate_ppm_per_s) <= 1e4,
            f"clock_drift_rate_ppm_per_s must be within +-1e4, got {self.clock_drift_rate_ppm_per_s}",
        )
        need(
            isinstance(self.sync_every, int) and self.sync_every >= 1,
            f"sync_every must be an int >= 1, got {self.sync_every}",
        )
        need(self.sync_jitter_ps >= 0, f"sync_jitter_ps must be >= 0, got {self.sync_jitter_ps}")
        need(
            self.clock_offset_ps + self.sync_delay_ps - JITTER_TRUNCATION * self.sync_jitter_ps >= 0,
            "clock_offset_ps + sync_delay_ps must leave the first sync pulse (slot 0) after the tagger's "
            f"start (8 sigma of sync jitter included), got {self.clock_offset_ps} + {self.sync_delay_ps}",
        )
        need(
            isinstance(self.resolution_ps, int) and self.resolution_ps >= 1,
            f"resolution_ps must be an int >= 1, got {self.resolution_ps}",
        )

    @property
    def period_ps(self) -> float:
        """Slot period on Alice's clock."""
        return 1e12 / self.repetition_rate_hz

    @property
    def channel_transmittance(self) -> float:
        """Fibre plus receiver insertion loss, as a fraction."""
        return transmittance(self.fibre_length_km, self.fibre_loss_db_per_km, self.insertion_loss_db)

    @property
    def fibre_delay_ps(self) -> float:
        """Time of flight through the fibre."""
        return propagation_delay_ps(self.fibre_length_km, self.group_index)

    @property
    def clock(self) -> ClockModel:
        """The slot -> Bob-clock arrival time map."""
        return ClockModel(
            self.period_ps,
            self.clock_offset_ps,
            self.clock_drift_ppm,
            self.fibre_delay_ps,
            self.clock_drift_rate_ppm_per_s,
        )

    def channel_delays_ps(self) -> NDArray[np.float64]:
        """Delay of each tagger channel relative to the sync (index = channel), for slotting."""
        d = np.zeros(1 + N_DETECTORS)
        d[1:] = np.asarray(self.detector_delay_ps) - self.sync_delay_ps * self.clock.scale
        return d

    def with_detectors(self, kind: str) -> LinkParams:
        """A copy with typical detectors of `kind` (a key of DETECTOR_PRESETS)."""
        if kind not in DETECTOR_PRESETS:
            raise ValueError(f"kind must be one of {sorted(DETECTOR_PRESETS)}, got {kind!r}")
        return self.replace(**DETECTOR_PRESETS[kind])

    def replace(self, **changes: Any) -> LinkParams:
        """A copy with some parameters changed."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return LinkParams(**values)

    def mean_photons_detected(self) -> NDArray[np.float64]:
        """`lam[k, a, x, j]`: mean detected photons at detector j per slot of class k, state (a, x)."""
        mu = np.asarray(self.intensities)[:, None, None, None]
        return mu * self.channel_transmittance * routing(self.bob_p_z, self.misalignment, self.efficiency)[None]
