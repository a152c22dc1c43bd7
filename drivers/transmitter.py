"""The `Transmitter` protocol (Alice's source): which BB84 state each slot carried (DESIGN §2–4).

Real backends (an AWG driving the intensity and phase modulators) and the mock source implement
it alike, so the node asks "what did slots S carry?" without knowing which it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from drivers.errors import DriverError


@dataclass(frozen=True)
class SlotStates:
    """Alice's preparation for a set of slots: basis (0 = Z, 1 = X), bit (0/1), intensity class (0 = signal)."""

    slot: NDArray[np.int64]
    basis: NDArray[np.uint8]
    bit: NDArray[np.uint8]
    intensity: NDArray[np.uint8]

    def __post_init__(self) -> None:
        n = self.slot.size
        for name in ("basis", "bit", "intensity"):
            arr = getattr(self, name)
            if arr.dtype != np.uint8 or arr.shape != (n,):
                raise ValueError(f"SlotStates.{name} must be a uint8 array of shape ({n},), got {arr.dtype}{arr.shape}")
        if self.slot.dtype != np.int64 or self.slot.ndim != 1:
            raise ValueError("SlotStates.slot must be a 1-D int64 array")


class StateReuseError(DriverError, ValueError):
    """A slot's state is not fresh: the source replayed a pattern, or the state was already used.
    Fresh random states per slot are an assumption of the security proof (DESIGN §5)."""


class RetuneRefused(DriverError, ValueError):
    """The transmitter cannot switch to the asked settings live (the reason says why)."""


@dataclass(frozen=True)
class TransmitterLimits:
    """What a transmitter that can change its settings live (`RetunableTransmitter`) accepts."""

    max_intensity: float
    min_probability: float

    def check(self, intensities: tuple[float, ...], class_probabilities: tuple[float, ...]) -> None:
        """RetuneRefused naming the first setting out of range."""
        if not all(0.0 <= m <= self.max_intensity for m in intensities):
            raise RetuneRefused(f"intensities must lie in [0, {self.max_intensity:g}], got {list(intensities)}")
        if not all(p >= self.min_probability for p in class_probabilities):
            raise RetuneRefused(
                f"class probabilities must each be >= {self.min_probability:g}, got {list(class_probabilities)}"
            )


@runtime_checkable
class RetunableTransmitter(Protocol):
    """A source that can switch its intensities and class probabilities while it emits (the mock;
    a lab driver with live set-methods); others keep their settings."""

    def retune_limits(self) -> TransmitterLimits:
        """The settings the source can switch to."""
        ...

    def retune(self, intensities: tuple[float, ...], class_probabilities: tuple[float, ...]) -> int:
        """Switch; returns the first slot emitted with the new settings (RetuneRefused if it cannot)."""
        ...


def fresh_slots(transmitter: object, slots: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Which of `slots` carried a fresh state: the transmitter's own `fresh(slots)` where it has one
    (a source that may replay patterns must), else all (a source with a state drawn per slot)."""
    fresh = getattr(transmitter, "fresh", None)
    if fresh is None:
        return np.ones(np.asarray(slots).size, np.bool_)
    return np.asarray(fresh(slots), dtype=np.bool_)


@runtime_checkable
class Transmitter(Protocol):
    """Alice's source: emits a decoy-state BB84 pattern and tells which state each slot carried."""

    @property
    def repetition_rate_hz(self) -> float:
        """Pulse (slot) rate in Hz."""
        ...

    @property
    def intensities(self) -> tuple[float, ...]:
        """Mean photon number of each intensity class, class 0 the signal (largest)."""
        ...

    def start(self) -> None:
        """Start emitting; slot 0 is the first pulse after this call."""
        ...

    def states(self, slots: NDArray[np.int64]) -> SlotStates:
        """The prepared states of the given slots (any order, repeats allowed). A source that may
        replay a pattern raises `StateReuseError` for a replayed slot and has `fresh(slots)`."""
        ...

    def stop(self) -> None:
        """Stop emitting."""
        ...

    def shutdown(self) -> None:
        """Leave the hardware safe (no light, outputs off); idempotent."""
        ...


@runtime_checkable
class StreamingTransmitter(Protocol):
    """A source that streams fresh patterns while it emits (the lab AWG): what its status shows."""

    @property
    def epochs(self) -> int:
        """Patterns uploaded since start()."""
        ...

    @property
    def stream(self) -> bool:
        """Whether fresh patterns are streamed (else one pattern repeats)."""
        ...

    @property
    def stream_error(self) -> str | None:
        """Why streaming stopped, None while it runs."""
        ...
