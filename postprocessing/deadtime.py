"""Bob's common dead time: one dead window for all detectors, applied before slotting and sifting.

Why (the dead-time attack, Weier et al., New J. Phys. 13, 073024 (2011)): with a dead time per
detector, a click shortly after another must come from a detector that was not dead, so the bits
of two close key-basis clicks are anticorrelated and Eve, who sees the public slot numbers and
bases, learns b_t XOR b_t' without touching the channel. The proof's assumption (every detector
equally able to click at a kept slot) is restored by discarding every click that falls within
`dead_time_ps` after *any* earlier click of *any* detector, kept or discarded: at a kept click no
detector has clicked for at least one dead time, so all of them are live and the kept click's
detector is independent of the earlier clicks. `dead_time_ps` must be at least the longest
detector dead time plus a margin for timing jitter, the detectors' recovery and the cable delays
between detector channels.

Clicks within `coincidence_ps` of the click that opened a live window are kept with it: they are the
same pulse seen by two detectors (a multi-click), which the slotting squashes to a random bit;
dropping the later of two coincident clicks would instead favour the detector with the shorter
cable.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel

_UNSORTED = "time_ps: must be sorted (all clicks of all detectors, in time order)"
NO_CLICK = np.iinfo(np.int64).min // 4  # "no earlier click": far enough back that no window reaches it


@kernel
def _mask_kernel(t, dead, coincidence, last, opened, keep):  # pragma: no cover - numba
    """keep[i] = no click in (t[i] - dead, t[i]), or t[i] within `coincidence` of the click that
    opened the current live window; returns (time of the last click, start of the last window,
    whether the times were out of order). Branch-free: whether a click is kept is random."""
    unsorted = False
    for i in range(t.size):
        ti = t[i]
        unsorted |= ti < last
        opened = ti if ti - last >= dead else opened
        keep[i] = ti - opened <= coincidence
        last = ti
    return last, opened, unsorted


@kernel
def _apply_kernel(
    time, channel, is_det, dead, coincidence, last, opened, drop_det, out_t, out_ch, discarded
):  # pragma: no cover - numba
    """`_mask_kernel` over the detector clicks of a block of all tags, in one pass: kept tags (every
    non-detector tag) are compacted into out_t/out_ch, discards counted per channel. Returns (tags
    kept, last click, window start, detector clicks, status: 0 ok, 1 first click before `last`,
    2 clicks out of order)."""
    n = 0
    seen = 0
    status = 0
    for i in range(time.size):
        ti = time[i]
        c = channel[i]
        keep = True
        if is_det[c]:
            if ti < last and status == 0:
                status = 1 if seen == 0 else 2
            opened = ti if ti - last >= dead else opened
            keep = (ti - opened <= coincidence) and not drop_det
            discarded[c] += not keep
            last = ti
            seen += 1
        out_t[n] = ti
        out_ch[n] = c
        n += keep
    return n, last, opened, seen, status


def _check(
    time_ps: NDArray[np.int64], dead_time_ps: int | float, coincidence_ps: int | float
) -> tuple[NDArray[np.int64], int, int]:
    t = np.asarray(time_ps)
    if t.ndim != 1 or t.dtype != np.int64:
        raise ValueError(f"time_ps: must be a 1-D int64 array of picoseconds, got {t.dtype}{t.shape}")
    dead = float(dead_time_ps)
    coincidence = float(coincidence_ps)
    if not np.isfinite(dead) or dead < 0:
        raise ValueError(f"dead_time_ps: must be a finite number >= 0, got {dead_time_ps!r}")
    if not np.isfinite(coincidence) or not 0 <= coincidence < max(dead, 1.0):
        raise ValueError(f"coincidence_ps: must lie in [0, dead_time_ps), got {coincidence_ps!r}")
    return np.ascontiguousarray(t), int(np.ceil(dead)), int(np.floor(coincidence))


def common_dead_time_mask(
    time_ps: NDArray[np.int64],
    dead_time_ps: int | float,
    *,
    coincidence_ps: int | float = 0,
    last_click_ps: int | None = None,
) -> NDArray[np.bool_]:
    """True for the clicks to keep: those with no click of any detector in the `dead_time_ps`
    before them (kept or discarded), plus clicks within `coincidence_ps` of such a click.

    `time_ps`: sorted int64 picoseconds of every click of every detector (no sync tags).
    `last_click_ps`: the last click before this array, when a stream is cut into blocks.
    """
    t, dead, coincidence = _check(time_ps, dead_time_ps, coincidence_ps)
    keep = np.empty(t.size, np.bool_)
    if t.size:
        last = NO_CLICK if last_click_ps is None else int(last_click_ps)
        if last_click_ps is not None and t[0] < last:
            raise ValueError("last_click_ps: must not be later than the first click")
        _, _, unsorted = _mask_kernel(
            t, np.int64(dead), np.int64(coincidence), np.int64(last), np.int64(NO_CLICK), keep
        )
        if unsorted:
            raise ValueError(_UNSORTED)
    return keep


def default_margin_ps(longest_dead_time_ps: float) -> float:
    """The margin added to the longest detector dead time when none is configured: 10 % of it, at
    least 1 ns (jitter, recovery and the cable delays between detector channels)."""
    return max(0.1 * longest_dead_time_ps, 1_000.0)


def pulse_window_ps(gate_ps: float, period_ps: float) -> float:
    """The coincidence window for clicks of one pulse: within the gate, never reaching the next
    slot's gate."""
    return min(gate_ps, period_ps - gate_ps)


class CommonDeadTime:
    """The common dead time over a stream of tag blocks (Bob's acquisition path): detector tags are
    filtered, other channels (the sync) pass untouched; counts what it discarded per channel."""

    def __init__(
        self, dead_time_ps: float, detector_channels: tuple[int, ...] = (1, 2, 3, 4), coincidence_ps: float = 0.0
    ) -> None:
        _check(np.empty(0, np.int64), dead_time_ps, coincidence_ps)
        if not detector_channels or any(not 0 <= int(c) < 256 for c in detector_channels):
            raise ValueError(f"detector_channels: must be channel numbers 0..255, got {detector_channels!r}")
        self.dead_time_ps = float(dead_time_ps)
        self.coincidence_ps = float(coincidence_ps)
        self.detector_channels = tuple(int(c) for c in detector_channels)
        self._is_det = np.zeros(256, np.bool_)
        self._is_det[list(self.detector_channels)] = True
        self._last = NO_CLICK
        self._opened = NO_CLICK
        self.seen = 0  # detector clicks looked at
        self.discarded = np.zeros(256, np.int64)  # per channel

    @property
    def discarded_total(self) -> int:
        """Detector clicks discarded so far."""
        return int(self.discarded.sum())

    @property
    def discarded_fraction(self) -> float:
        """Share of the detector clicks discarded so far (0 before any)."""
        return self.discarded_total / self.seen if self.seen else 0.0

    def mask(self, time: NDArray[np.int64], channel: NDArray[np.uint8], lost: int = 0) -> NDArray[np.bool_]:
        """True for the tags of one time-sorted block to keep (every non-detector tag is kept);
        the filter's state moves on past this block. A block whose hardware `lost` tags cannot be
        filtered (a lost click may lie in any window): all its detector clicks are discarded."""
        time = np.asarray(time)
        channel = np.asarray(channel)
        if channel.shape != time.shape or channel.dtype != np.uint8:
            raise ValueError("channel: must be a uint8 array as long as time")
        det = self._is_det[channel]
        t, dead, coincidence = _check(np.ascontiguousarray(time[det]), self.dead_time_ps, self.coincidence_ps)
        if t.size and t[0] < self._last:
            raise ValueError("time: blocks must follow each other in time")
        keep_det = np.empty(t.size, np.bool_)
        if t.size:
            last, opened, unsorted = _mask_kernel(
                t, np.int64(dead), np.int64(coincidence), np.int64(self._last), np.int64(self._opened), keep_det
            )
            if unsorted:
                raise ValueError(_UNSORTED)
            self._last, self._opened = int(last), int(opened)
        self.seen += int(t.size)
        if lost and t.size:
            keep_det[:] = False
            self._opened = NO_CLICK
        keep = np.ones(time.size, np.bool_)
        dropped = ~keep_det
        if dropped.any():
            self.discarded += np.bincount(channel[det][dropped], minlength=256)
            keep[np.flatnonzero(det)[dropped]] = False
        return keep

    def apply(
        self, time: NDArray[np.int64], channel: NDArray[np.uint8], lost: int = 0
    ) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
        """One time-sorted tag block with the detector clicks inside the common dead time removed
        (what `mask` keeps, in one pass over the block: Bob's acquisition runs it on every tag)."""
        channel = np.ascontiguousarray(channel)
        if channel.shape != np.shape(time) or channel.dtype != np.uint8:
            raise ValueError("channel: must be a uint8 array as long as time")
        t, dead, coincidence = _check(np.ascontiguousarray(time), self.dead_time_ps, self.coincidence_ps)
        out_t, out_ch = np.empty_like(t), np.empty_like(channel)
        discarded = np.zeros(256, np.int64)
        n, last, opened, seen, status = _apply_kernel(
            t,
            channel,
            self._is_det,
            np.int64(dead),
            np.int64(coincidence),
            np.int64(self._last),
            np.int64(self._opened),
            bool(lost),
            out_t,
            out_ch,
            discarded,
        )
        if status:
            raise ValueError("time: blocks must follow each other in time" if status == 1 else _UNSORTED)
        if seen:
            self._last, self._opened = int(last), NO_CLICK if lost else int(opened)
        self.seen += int(seen)
        self.discarded += discarded
        return out_t[:n], out_ch[:n]
