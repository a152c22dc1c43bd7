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
from drivers.mock.params import LinkParams
from drivers.transmitter import SlotStates

log = logging.getLogger(__name__)


class MockTransmitter:
    """Alice's decoy-state BB84 source on the mock link; `states(slots)` recomputes any slot."""

    def __init__(self, params: LinkParams | None = None, seed: int = 0) -> None:
        self._params = params if params is not None else LinkParams()
        if not isinstance(self._params, LinkParams):
            raise ValueError(f"params must be a LinkParams, got {type(params).__name__}")
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
        """Mean photon number of each class, class 0 the signal."""
        return self._params.intensities

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
        p = self._params
        basis, bit, intensity = alice_states(self._seed, slots, p.p_z, p.class_probabilities)
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
