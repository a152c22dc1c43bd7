"""The mock `Transmitter`: Alice's source as the counter-based pattern of `alice.py`.

Pair it with a `MockTimeTagger` built from the same `LinkParams` and seed: the tagger's photons
then come from exactly the states this transmitter reports.

Fresh states (DESIGN §5): every slot's state is its own draw, a 64-bit hash of (seed, slot) cut
into basis, bit and class, so no slot replays another's (the pattern never loops); `fresh()` says
so. A seed is a simulation's, never a lab's: the lab transmitter draws from the OS CSPRNG.
"""

from __future__ import annotations

import logging
from types import TracebackType

import numpy as np
from numpy.typing import NDArray

from drivers.mock.alice import alice_states
from drivers.mock.emission import EmissionSchedule
from drivers.mock.params import LinkParams
from drivers.transmitter import RetuneRefused, SlotStates, TransmitterLimits

log = logging.getLogger(__name__)


class MockTransmitter:
    """Alice's decoy-state BB84 source on the mock link; `states(slots)` recomputes any slot."""

    LIMITS = TransmitterLimits(max_intensity=2.0, min_probability=1e-3)
    """What the mock's modulators take: mean photon numbers up to 2, each class at least 0.1 %."""

    def __init__(
        self, params: LinkParams | None = None, seed: int = 0, schedule: EmissionSchedule | None = None
    ) -> None:
        self._params = params if params is not None else LinkParams()
        if not isinstance(self._params, LinkParams):
            raise ValueError(f"params must be a LinkParams, got {type(params).__name__}")
        # the fibre to the tagger's simulation; a restarted source emits its configured settings again
        self._schedule = schedule if schedule is not None else EmissionSchedule(self._params)
        self._schedule.switch(self._params)
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self._seed = int(seed)
        self._emitting = False
        self._shut = False

    @property
    def params(self) -> LinkParams:
        """The link parameters the source belongs to."""
        return self._params

    @property
    def repetition_rate_hz(self) -> float:
        """Pulse (slot) rate in Hz."""
        return self._params.repetition_rate_hz

    @property
    def intensities(self) -> tuple[float, ...]:
        """Mean photon number of each class (as emitted now), class 0 the signal."""
        return self._schedule.current.intensities

    @property
    def schedule(self) -> EmissionSchedule:
        """Which settings the source emits from which slot (shared with the link's tagger)."""
        return self._schedule

    def retune_limits(self) -> TransmitterLimits:
        """The settings this source can switch to live (`retune`)."""
        return self.LIMITS

    def retune(self, intensities: tuple[float, ...], class_probabilities: tuple[float, ...]) -> int:
        """Emit the new settings from the first slot not yet emitted, returned (RetuneRefused when the
        source feeds no simulated fibre in this process, or the settings exceed `retune_limits`)."""
        if not self._schedule.coupled:
            raise RetuneRefused(
                "the mock transmitter feeds no simulated fibre in this process (Bob's tagger simulates the "
                "link in another process), so a change would not reach Bob's photons"
            )
        self.LIMITS.check(intensities, class_probabilities)
        current = self._schedule.current
        if len(intensities) != len(current.intensities):
            raise RetuneRefused(f"the source has {len(current.intensities)} intensity classes, got {len(intensities)}")
        new = current.replace(intensities=tuple(intensities), class_probabilities=tuple(class_probabilities))
        slot = self._schedule.switch(new)
        log.info("mock transmitter: intensities %s from slot %d", "/".join(f"{m:.3g}" for m in intensities), slot)
        return slot

    @property
    def emitting(self) -> bool:
        """Whether the source is on."""
        return self._emitting

    def start(self) -> None:
        """Start emitting (slot 0 is the first pulse)."""
        if self._shut:
            raise RuntimeError("transmitter was shut down")
        self._emitting = True
        log.debug("mock transmitter started")

    def states(self, slots: NDArray[np.int64]) -> SlotStates:
        """The prepared states of the given slots (any order, repeats allowed)."""
        slots = np.asarray(slots)
        if slots.ndim != 1 or slots.dtype != np.int64:
            raise ValueError(f"slots must be a 1-D int64 array, got {slots.dtype}{slots.shape}")
        index, settings = self._schedule.index_of(slots)
        if len(settings) == 1 or not slots.size or index.min() == index.max():
            p = settings[int(index[0]) if slots.size else 0]
            basis, bit, intensity = alice_states(self._seed, slots, p.p_z, p.class_probabilities)
            return SlotStates(slots.copy(), basis, bit, intensity)
        basis, bit, intensity = (np.empty(slots.size, np.uint8) for _ in range(3))
        for i in np.unique(index):  # each slot's state under the settings it was emitted with
            m = index == i
            p = settings[int(i)]
            basis[m], bit[m], intensity[m] = alice_states(self._seed, slots[m], p.p_z, p.class_probabilities)
        return SlotStates(slots.copy(), basis, bit, intensity)

    def fresh(self, slots: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Every slot carries a state of its own (no looping pattern): all True."""
        slots = np.asarray(slots)
        if slots.ndim != 1 or slots.dtype != np.int64:
            raise ValueError(f"slots must be a 1-D int64 array, got {slots.dtype}{slots.shape}")
        return np.ones(slots.size, np.bool_)

    def stop(self) -> None:
        """Stop emitting."""
        self._emitting = False

    def shutdown(self) -> None:
        """Source off; idempotent."""
        self._emitting = False
        self._shut = True

    def __enter__(self) -> MockTransmitter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()
