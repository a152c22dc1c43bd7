"""The replay `Transmitter`: Alice's recorded states, read once and in slot order.

Bob asks for slots in increasing order (Alice's slot high-water mark refuses anything else), so
the states are read chunk by chunk and a chunk is forgotten once every slot it holds lies below
the slots asked; memory stays a few chunks whatever the recording's length.

Freshness (DESIGN §5): within one run each recorded state is handed out once; `fresh()` is False
for a slot at or below one already handed out and `states()` refuses it (StateReuseError). Across
runs the states are not fresh at all: they are in a file, so Eve with a copy knows them, and a
second replay reuses them. That is why the node accepts this transmitter only with
`benchmark_only = true` (node.runtime.config).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel
from drivers.replay.recording import (
    RecordingError,
    RecordingInfo,
    iter_state_chunks,
    unpack_states,
)
from drivers.transmitter import SlotStates, StateReuseError


@kernel
def _merge_lookup(window, packed, slots, basis, bit, intensity):  # pragma: no cover - numba
    """States of increasing `slots` from the increasing `window` and its packed states, one merge
    pass (basis bit 0, bit bit 1, class bits 2-7: recording.pack_states); returns the index in
    `slots` of the first slot the window lacks or that breaks the increasing order, -1 if none."""
    j = 0
    for i in range(slots.size):
        s = slots[i]
        if i and s <= slots[i - 1]:
            return i
        while j < window.size and window[j] < s:
            j += 1
        if j == window.size or window[j] != s:
            return i
        p = packed[j]
        basis[i] = p & 1
        bit[i] = (p >> 1) & 1
        intensity[i] = p >> 2
    return -1


class ReplayTransmitter:
    """Alice's source replaying a recording's states (`RecordingInfo`); see the module docstring."""

    def __init__(self, info: RecordingInfo) -> None:
        self.info = info
        self._chunks: Iterator[tuple[NDArray[np.int64], NDArray[np.uint8]]] | None = None
        self._slot = np.empty(0, np.int64)  # the window: recorded slots not yet passed, and their states
        self._packed = np.empty(0, np.uint8)
        self._floor = 0  # slots below were handed out (or passed over) already
        self._emitting = False

    @property
    def repetition_rate_hz(self) -> float:
        """Pulse (slot) rate of the recorded run in Hz."""
        return self.info.repetition_rate_hz

    @property
    def intensities(self) -> tuple[float, ...]:
        """Mean photon number of each class of the recorded run."""
        return self.info.intensities

    def start(self) -> None:
        """Start replaying from the recording's first state."""
        self._chunks = iter_state_chunks(self.info.states)
        self._slot, self._packed = np.empty(0, np.int64), np.empty(0, np.uint8)
        self._floor = 0
        self._emitting = True

    def fresh(self, slots: NDArray[np.int64]) -> NDArray[np.bool_]:
        """False for slots at or below one already handed out in this run (see the module docstring)."""
        return np.asarray(slots, np.int64) >= self._floor

    def states(self, slots: NDArray[np.int64]) -> SlotStates:
        """The recorded states of `slots` (increasing over the run); StateReuseError for a slot
        already handed out, RecordingError for one the recording does not hold."""
        slots = np.asarray(slots)
        if slots.ndim != 1 or slots.dtype != np.int64:
            raise ValueError(f"slots must be a 1-D int64 array, got {slots.dtype}{slots.shape}")
        if not self._emitting:
            raise RuntimeError("replay transmitter is not started")
        if not slots.size:
            empty = np.empty(0, np.uint8)
            return SlotStates(slots.copy(), empty, empty.copy(), empty.copy())
        lo, hi = int(slots.min()), int(slots.max())
        if lo < self._floor:
            raise StateReuseError(f"slot {lo} was handed out already: a replayed state is used once per run")
        self._fill(lo, hi)
        basis, bit, intensity = (np.empty(slots.size, np.uint8) for _ in range(3))
        bad = _merge_lookup(self._slot, self._packed, slots, basis, bit, intensity)
        if bad > 0 and slots[bad] <= slots[bad - 1]:  # not increasing (the sifting refuses it later)
            basis, bit, intensity = self._lookup_any_order(slots)
        elif bad >= 0:
            self._missing(int(slots[bad]))
        self._floor = hi + 1
        return SlotStates(slots.copy(), basis, bit, intensity)

    def _lookup_any_order(self, slots: NDArray[np.int64]) -> tuple[NDArray[np.uint8], ...]:
        """States of `slots` in any order, by binary search (the merge needs increasing slots)."""
        at = np.searchsorted(self._slot, slots)
        found = at < self._slot.size
        found[found] = self._slot[at[found]] == slots[found]
        if not found.all():
            self._missing(int(slots[np.argmin(found)]))
        return unpack_states(self._packed[at])

    def _missing(self, slot: int) -> NoReturn:
        raise RecordingError(
            f"slot {slot} is not in the recording {self.info.root}: Bob's tags and Alice's "
            "states are not of one run, or the slotting differs from the recording's"
        )

    def _fill(self, lo: int, hi: int) -> None:
        """Drop window states below `lo`, then read chunks until the window reaches `hi` (or the end)."""
        keep = np.searchsorted(self._slot, lo)
        parts_s, parts_p = [self._slot[keep:]], [self._packed[keep:]]
        last = int(self._slot[-1]) if self._slot.size else -1
        while last < hi and self._chunks is not None:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._chunks = None
                break
            s, p = chunk
            if s.size and int(s[-1]) < lo:
                continue  # slots Bob never asked for (lost to dead time or gating)
            parts_s.append(s)
            parts_p.append(p)
            if s.size:
                last = int(s[-1])
        self._slot, self._packed = np.concatenate(parts_s), np.concatenate(parts_p)

    def stop(self) -> None:
        """Stop emitting."""
        self._emitting = False

    def shutdown(self) -> None:
        """Nothing to leave safe: release the recording; idempotent."""
        self._emitting = False
        self._chunks = None
