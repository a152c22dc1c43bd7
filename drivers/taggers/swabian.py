"""Swabian Instruments Time Tagger (20, Ultra, X) through the vendor `TimeTagger` module, imported lazily.

From the Time Tagger user manual (API reference: "Channel number schema", "TimeTagStream"):
- `setTimeTaggerChannelNumberScheme(TT_CHANNEL_NUMBER_SCHEME_ONE)` before `createTimeTagger`:
  rising edges are 1..N and falling edges -1..-N, as the front panel counts. Under the ZERO scheme
  (which AUTO picks on Time Tagger 20 and older units) inputs are 0..7 rising and 8..15 falling,
  so front-panel numbers would pick the wrong input and edge. The scheme is read back
  (`getTimeTaggerChannelNumberScheme`) and a mismatch refused.
- `TimeTagStream(tagger, n_max_events, channels)`; `getData()` returns a buffer (`size`,
  `getTimestamps`, `getChannels`, `getEventTypes`, `getMissedEvents`). Overflow intervals and
  missed-event records are counted into `TagBlock.lost` and `overflow`. When the stream's own
  buffer is full (`size == n_max_events`) events arriving after it are discarded without any
  missed-event record: such a block is marked `overflow`, `lost >= 1` (a lower bound) and
  `meta["stream_buffer_full"]`, never passed off as complete.

To verify on hardware (`pytest tests/drivers/taggers/test_swabian.py --hil=lab.toml` with a `[swabian]`
table; then `buffer_events = 1000` in that table at a high input rate): that a full buffer on the
installed software version indeed carries no OverflowBegin record, and the scheme read back.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

import numpy as np

from drivers.errors import DriverError, VendorLibraryMissing
from drivers.timetagger import TagBlock

log = logging.getLogger("drivers.taggers.swabian")

TIME_TAG, ERROR, OVERFLOW_BEGIN, OVERFLOW_END, MISSED_EVENTS = 0, 1, 2, 3, 4
SCHEME_ONE = "TT_CHANNEL_NUMBER_SCHEME_ONE"
INSTALL_HINT = (
    "the Swabian Time Tagger software (it installs the `TimeTagger` Python module) from swabianinstruments.com"
)


def import_vendor_module() -> Any:
    """The `TimeTagger` module, or `VendorLibraryMissing` saying what to install."""
    try:
        return importlib.import_module("TimeTagger")
    except ImportError as exc:
        raise VendorLibraryMissing(
            f"Swabian Time Tagger module `TimeTagger` not importable; install {INSTALL_HINT}"
        ) from exc


class SwabianTagger:
    """A Swabian Time Tagger streaming the rising edges of `channels` (1-based, as the front panel)."""

    def __init__(
        self,
        channels: tuple[int, ...],
        *,
        serial: str = "",
        trigger_levels_v: dict[int, float] | None = None,
        buffer_events: int = 10_000_000,
        poll_interval_s: float = 0.001,
    ) -> None:
        if (
            not channels
            or any(not isinstance(c, int) or not 1 <= c <= 255 for c in channels)
            or len(set(channels)) != len(channels)
        ):
            raise ValueError(f"channels must be distinct rising-edge inputs in [1, 255], got {channels!r}")
        if not isinstance(buffer_events, int) or buffer_events < 1:
            raise ValueError(f"buffer_events must be a positive integer, got {buffer_events!r}")
        levels = trigger_levels_v or {}
        for ch, level in levels.items():
            if ch not in channels or not -2.5 <= level <= 2.5:
                raise ValueError(
                    f"trigger_levels_v must map channels in {channels} to levels in [-2.5, 2.5] V, got {ch}: {level}"
                )
        self._tt = import_vendor_module()
        self._channels = tuple(channels)
        self.buffer_events = buffer_events
        self.poll_interval_s = poll_interval_s
        one = getattr(self._tt, SCHEME_ONE, None)
        if one is None or not hasattr(self._tt, "setTimeTaggerChannelNumberScheme"):
            raise DriverError(
                "the installed Swabian software has no channel number schemes (TT_CHANNEL_NUMBER_SCHEME_ONE); "
                "install version 2.6 or newer so channels can be numbered as on the front panel"
            )
        self._tt.setTimeTaggerChannelNumberScheme(one)  # must precede createTimeTagger
        self._tagger = self._tt.createTimeTagger(serial)
        scheme = self._tt.getTimeTaggerChannelNumberScheme()
        if scheme != one:
            self._tt.freeTimeTagger(self._tagger)
            raise DriverError(
                f"Swabian tagger uses channel number scheme {scheme}, not ONE ({one}); "
                "front-panel channel numbers would select the wrong inputs"
            )
        for ch, level in levels.items():
            self._tagger.setTriggerLevel(ch, float(level))
        self._stream: Any = None
        self._lost = 0
        self._in_overflow = False

    @property
    def channels(self) -> tuple[int, ...]:
        return self._channels

    @property
    def resolution_ps(self) -> int:
        return 1

    @property
    def lost_total(self) -> int:
        return self._lost

    def start(self) -> None:
        self._lost = 0
        self._in_overflow = False
        self._stream = self._tt.TimeTagStream(self._tagger, self.buffer_events, list(self._channels))
        self._stream.start()

    def read_block(self, timeout_s: float) -> TagBlock:
        if self._stream is None:
            raise DriverError("SwabianTagger.read_block called before start()")
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            data = self._stream.getData()
            if data.size or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval_s)
        return self._block(data)

    def _block(self, data: Any) -> TagBlock:
        if not data.size:
            return TagBlock.empty()
        stamps = np.asarray(data.getTimestamps(), dtype=np.int64)
        chans = np.asarray(data.getChannels())
        kinds = np.asarray(data.getEventTypes())
        missed = np.asarray(data.getMissedEvents(), dtype=np.int64)
        lost = int(missed[kinds == MISSED_EVENTS].sum())
        marks = kinds[(kinds == OVERFLOW_BEGIN) | (kinds == OVERFLOW_END)]
        overflow = self._in_overflow or marks.size > 0  # a block inside an overflow interval is marked too
        if marks.size:
            self._in_overflow = bool(marks[-1] == OVERFLOW_BEGIN)
        errors = int(np.count_nonzero(kinds == ERROR))
        tags = kinds == TIME_TAG
        if np.any(tags & ((chans < 1) | (chans > 255))):
            raise DriverError(
                f"Swabian stream reported channels outside 1..255 (falling edges or a ZERO-scheme unit): "
                f"{sorted(set(chans[tags].tolist()))[:5]}"
            )
        meta: dict[str, object] = {"errors": errors} if errors else {}
        if data.size >= self.buffer_events:  # the stream's buffer filled: later events were discarded unrecorded
            lost += 1
            overflow = True
            meta.update(stream_buffer_full=True, lost_is_lower_bound=True)
            log.warning(
                "swabian: stream buffer full (%d events); events were lost, raise buffer_events or read faster",
                data.size,
            )
        self._lost += lost
        log.debug("swabian: %d events, %d tags, %d missed, overflow=%s", kinds.size, int(tags.sum()), lost, overflow)
        return TagBlock(stamps[tags], chans[tags].astype(np.uint8), lost=lost, overflow=overflow, meta=meta)

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()

    def close(self) -> None:
        """Stop and free the tagger; idempotent."""
        if self._tagger is None:
            return
        try:
            self.stop()
        finally:
            self._tt.freeTimeTagger(self._tagger)
            self._tagger = None

    def __enter__(self) -> SwabianTagger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
