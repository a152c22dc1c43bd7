"""What Alice's mock source emits from which slot: the schedule of her settings (intensities,
class probabilities, key-basis probability) that a `MockTransmitter` and the `MockTimeTagger` of
the same link share, so a re-tune of the transmitter really changes the photons Bob's simulation
draws from the first slot it holds (the mock's fibre between the two).

Slots the tagger has simulated are emitted: their settings never change (`switch` refuses them).
A transmitter whose schedule no tagger reads (Alice's and Bob's nodes in two processes) is not
coupled to any simulated fibre, so it cannot change live (`coupled` is False)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from drivers.mock.params import LinkParams


class EmissionSchedule:
    """Alice's settings per slot range: entry i holds from `starts[i]` up to the next start."""

    def __init__(self, params: LinkParams) -> None:
        if not isinstance(params, LinkParams):
            raise ValueError(f"params must be a LinkParams, got {type(params).__name__}")
        self._lock = threading.Lock()
        self._starts: list[int] = [0]
        self._params: list[LinkParams] = [params]
        self._emitted = 0  # slots below this were simulated (emitted): fixed for good
        self.coupled = False  # a tagger's simulation reads this schedule

    @property
    def emitted_until(self) -> int:
        """The first slot not yet emitted (the earliest a switch may name)."""
        with self._lock:
            return self._emitted

    @property
    def current(self) -> LinkParams:
        """The settings of the last entry (what the source emits from now on)."""
        with self._lock:
            return self._params[-1]

    def mark_emitted(self, slot: int) -> None:
        """The tagger simulated every slot below `slot`."""
        with self._lock:
            self._emitted = max(self._emitted, int(slot))

    def switch(self, params: LinkParams, from_slot: int | None = None) -> int:
        """Emit `params` from `from_slot` (default: the first slot not yet emitted); returns it.
        A slot already emitted keeps its settings (ValueError)."""
        with self._lock:
            slot = self._emitted if from_slot is None else int(from_slot)
            if slot < self._emitted:
                raise ValueError(f"slot {slot} was already emitted (up to {self._emitted - 1}); its settings are fixed")
            while len(self._starts) > 1 and self._starts[-1] >= slot:  # a later switch replaces an unemitted one
                self._starts.pop()
                self._params.pop()
            if self._params[-1] == params:
                return slot
            if self._starts[-1] == slot:
                self._params[-1] = params
            else:
                self._starts.append(slot)
                self._params.append(params)
            return slot

    def segments(self, s0: int, s1: int) -> Iterator[tuple[int, int, LinkParams]]:
        """(start, end, settings) of the pieces of slots [s0, s1) with one setting each."""
        with self._lock:
            starts, params = list(self._starts), list(self._params)
        i = int(np.searchsorted(starts, s0, side="right")) - 1
        a = s0
        while a < s1:
            b = min(s1, starts[i + 1]) if i + 1 < len(starts) else s1
            yield a, b, params[i]
            a, i = b, i + 1

    def index_of(self, slots: NDArray[np.int64]) -> tuple[NDArray[np.intp], list[LinkParams]]:
        """Each slot's entry index, and the entries' settings."""
        with self._lock:
            starts, params = np.asarray(self._starts, np.int64), list(self._params)
        return np.searchsorted(starts, slots, side="right") - 1, params
