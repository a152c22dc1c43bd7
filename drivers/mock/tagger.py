"""The mock `TimeTagger`: streams the simulated link's tags in `TagBlock`s.

Blocks are shaped like a Swabian `TimeTagStream.getData()` buffer: all tags recorded since the
previous read, time-sorted, up to the stream's buffer size `max_tags`. In real-time mode the
simulation follows the wall clock and tags that overflow the buffer between reads are dropped
and counted in `lost` (as the hardware reports them); when the simulation falls more than
`max_lag_s` behind the wall clock it skips the excess, like a tagger whose USB link overflows,
and reports the expected number of tags of the gap as lost (block flagged `overflow`). In fast
mode each read advances the simulation by `block_s` of acquisition time and nothing is ever
dropped (excess tags wait for the next read). Channel map: 0 sync, 1-4 detectors Z0, Z1, X0, X1.
"""

from __future__ import annotations

import logging
import time as _time
from collections import deque
from types import TracebackType

import numpy as np

from drivers.mock.emission import EmissionSchedule
from drivers.mock.link import LinkEvents, LinkSimulator
from drivers.mock.onset import set_photon_model
from drivers.mock.params import CHANNEL_SYNC, DETECTOR_CHANNELS, LinkParams
from drivers.timetagger import TagBlock

log = logging.getLogger(__name__)


class MockTimeTagger:
    """Bob's time-tagger on the mock link (same `LinkParams` and seed as the `MockTransmitter`)."""

    def __init__(
        self,
        params: LinkParams | None = None,
        seed: int = 0,
        *,
        realtime: bool = False,
        block_s: float = 1e-3,
        max_tags: int = 1 << 22,
        duration_s: float | None = None,
        truth: bool = False,
        max_lag_s: float = 0.05,
        schedule: EmissionSchedule | None = None,
    ) -> None:
        self._params = params if params is not None else LinkParams()
        if not isinstance(self._params, LinkParams):
            raise ValueError(f"params must be a LinkParams, got {type(params).__name__}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not block_s > 0:
            raise ValueError(f"block_s must be > 0 seconds, got {block_s}")
        if not isinstance(max_tags, (int, np.integer)) or max_tags < 1:
            raise ValueError(f"max_tags must be a positive integer, got {max_tags!r}")
        if not max_lag_s > 0:
            raise ValueError(f"max_lag_s must be > 0 seconds, got {max_lag_s}")
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"duration_s must be > 0 seconds or None, got {duration_s}")
        self._seed = int(seed)
        self._realtime = bool(realtime)
        self._block_slots = max(1, int(round(block_s * self._params.repetition_rate_hz)))
        # at most this much acquisition time is simulated per read in real-time mode
        self._max_slots_per_read = max(self._block_slots, int(round(max_lag_s * self._params.repetition_rate_hz)))
        self._max_tags = int(max_tags)
        self._end_slot = None if duration_s is None else int(round(duration_s * self._params.repetition_rate_hz))
        self._truth = bool(truth)
        self._schedule = schedule  # Alice's settings per slot (a re-tuned MockTransmitter), None: fixed
        if schedule is not None:
            schedule.coupled = True
        self._sim: LinkSimulator | None = None
        self._queue: deque[LinkEvents] = deque()
        self._reset_stream()
        self._running = False
        self._closed = False
        self._t0 = 0.0

    @property
    def channels(self) -> tuple[int, ...]:
        """Sync channel and the four detectors."""
        return (CHANNEL_SYNC,) + DETECTOR_CHANNELS

    @property
    def resolution_ps(self) -> int:
        """Tag resolution in picoseconds."""
        return self._params.resolution_ps

    @property
    def detector_dead_time_ps(self) -> tuple[float, ...]:
        """The detectors' dead times (Z0, Z1, X0, X1), as a lab driver reads them from the instrument
        where it can: Bob's common dead time is built from the longest."""
        return tuple(self._params.dead_time_ps)

    @property
    def lost_total(self) -> int:
        """Tags dropped for a full buffer since `start()`."""
        return self._lost_total

    @property
    def running(self) -> bool:
        """Whether acquisition goes on (False before start, after stop or after `duration_s`)."""
        return self._running

    @property
    def simulator(self) -> LinkSimulator | None:
        """The running simulation (its counters hold the physics: dead-time losses, afterpulses)."""
        return self._sim

    def _reset_stream(self) -> None:
        """Empty the event queue and zero the loss and overflow counters (a fresh acquisition)."""
        self._queue.clear()
        self._queued = 0
        self._lost_total = 0
        self._lost_pending = 0
        self._overflow_pending = False
        self._flushed = False

    def start(self) -> None:
        """Start acquisition: a fresh simulation whose time 0 is now."""
        if self._closed:
            raise RuntimeError("time tagger is closed")
        self._sim = LinkSimulator(self._params, self._seed)
        self._reset_stream()
        self._running = True
        self._t0 = _time.monotonic()
        log.debug("mock time tagger started (realtime=%s)", self._realtime)

    def stop(self) -> None:
        """Stop acquisition; the tags already recorded can still be read."""
        if self._running and self._sim is not None:
            self._running = False
            self._finish()

    def close(self) -> None:
        """Release the mock instrument; idempotent."""
        self._running = False
        self._closed = True
        self._queue.clear()
        self._queued = 0

    def __enter__(self) -> MockTimeTagger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read_block(self, timeout_s: float) -> TagBlock:
        """The tags recorded since the previous read (at most `max_tags`); empty after `timeout_s`."""
        if not timeout_s >= 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        if self._closed:
            raise RuntimeError("time tagger is closed")
        if self._running:
            if self._realtime:
                self._advance_realtime(timeout_s)
            elif self._queued == 0:
                self._advance(self._block_slots)
        return self._take()

    # -- internals ------------------------------------------------------------------------------

    def _advance(self, n_slots: int) -> None:
        assert self._sim is not None
        if self._end_slot is not None:
            n_slots = min(n_slots, self._end_slot - self._sim.next_slot)
        if n_slots > 0:
            self._push(self._run(n_slots))
        if self._end_slot is not None and self._sim.next_slot >= self._end_slot:
            self._running = False
            self._finish()

    def _advance_realtime(self, timeout_s: float) -> None:
        assert self._sim is not None
        deadline = _time.monotonic() + timeout_s
        while True:
            elapsed = _time.monotonic() - self._t0
            target = int(elapsed * self._params.repetition_rate_hz)
            if self._end_slot is not None:
                target = min(target, self._end_slot)
            behind = target - self._sim.next_slot
            if behind > self._max_slots_per_read:
                # the simulation cannot keep up with the wall clock: like a tagger whose link
                # overflows, skip the excess and report the tags it would have held as lost
                gap = behind - self._max_slots_per_read
                self._sim.skip(gap)
                lost = int(round(gap * self._sim.expected_tags_per_slot()))
                self._lost_total += lost
                self._lost_pending += lost
                self._overflow_pending = True
                behind = self._max_slots_per_read
            if behind > 0:
                self._advance(behind)
            if self._queued or self._lost_pending or not self._running or _time.monotonic() >= deadline:
                return
            _time.sleep(min(1e-3, max(0.0, deadline - _time.monotonic())))

    def _run(self, n_slots: int) -> LinkEvents:
        """Simulate the next slots, switching Alice's settings at the exact slots of her schedule."""
        sim = self._sim
        assert sim is not None
        if self._schedule is None:
            return sim.run(n_slots)
        parts = []
        s0 = sim.next_slot
        for a, b, params in self._schedule.segments(s0, s0 + n_slots):
            if params != sim.source_params:
                sim.source_params = params
                set_photon_model(sim, params)
            self._schedule.mark_emitted(a)  # from here on the slot's settings are fixed
            parts.append(sim.run(b - a))
            self._schedule.mark_emitted(b)
        return parts[0] if len(parts) == 1 else LinkEvents.concatenate(parts)

    def _finish(self) -> None:
        if not self._flushed and self._sim is not None:
            self._flushed = True
            self._push(self._sim.flush())

    def _push(self, events: LinkEvents) -> None:
        if not len(events):
            return
        if self._realtime:
            room = self._max_tags - self._queued
            if len(events) > room:
                dropped = len(events) - max(room, 0)
                self._lost_total += dropped
                self._lost_pending += dropped
                events = LinkEvents(events.time[:room], events.channel[:room], events.slot[:room], events.kind[:room])
                if not len(events):
                    return
        self._queue.append(events)
        self._queued += len(events)

    def _take(self) -> TagBlock:
        lost, self._lost_pending = self._lost_pending, 0
        overflow, self._overflow_pending = self._overflow_pending or lost > 0, False
        if not self._queued:
            block = TagBlock.empty(lost=lost)
            return TagBlock(block.time, block.channel, lost=lost, overflow=overflow)
        parts: list[LinkEvents] = []
        n = 0
        while self._queue and n < self._max_tags:
            head = self._queue.popleft()
            room = self._max_tags - n
            if len(head) > room:
                rest = LinkEvents(head.time[room:], head.channel[room:], head.slot[room:], head.kind[room:])
                head = LinkEvents(head.time[:room], head.channel[:room], head.slot[:room], head.kind[:room])
                self._queue.appendleft(rest)
            parts.append(head)
            n += len(head)
        self._queued -= n
        ev = parts[0] if len(parts) == 1 else LinkEvents.concatenate(parts)
        meta: dict[str, object] = {}
        if self._truth:
            meta = {"slot": ev.slot, "kind": ev.kind}
        return TagBlock(
            np.ascontiguousarray(ev.time), np.ascontiguousarray(ev.channel), lost=lost, overflow=overflow, meta=meta
        )
