"""A fake of Swabian's `TimeTagger` module, from the Time Tagger user manual's API reference.

Modelled behaviour (manual sections named):
- "Channel number schema": `setTimeTaggerChannelNumberScheme(scheme)` takes effect for taggers
  created afterwards. With TT_CHANNEL_NUMBER_SCHEME_ONE, front-panel input k is channel k (rising)
  and -k (falling). With TT_CHANNEL_NUMBER_SCHEME_ZERO, inputs are 0..7 rising and 8..15 falling
  (input k rising = k-1, falling = k-1+8). AUTO resolves to ZERO on this model (a Time Tagger 20).
- "TimeTagStream": `TimeTagStream(tagger, n_max_events, channels)` buffers at most n_max_events
  between `getData()` calls; events beyond are discarded with no record. `getData()` returns a
  buffer with `size`, `getTimestamps()`, `getChannels()`, `getEventTypes()`, `getMissedEvents()`,
  `hasOverflows()`. Overflows of the USB link appear as OverflowBegin/MissedEvents/OverflowEnd.
- `createTimeTagger(serial)`, `freeTimeTagger`, `setTriggerLevel`, `getTriggerLevel`, `getSerial`,
  `getModel`.

`install(monkeypatch)` or `install_module()` put it in `sys.modules["TimeTagger"]`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np

TT_CHANNEL_NUMBER_SCHEME_AUTO = 0
TT_CHANNEL_NUMBER_SCHEME_ZERO = 1
TT_CHANNEL_NUMBER_SCHEME_ONE = 2
TIME_TAG, ERROR, OVERFLOW_BEGIN, OVERFLOW_END, MISSED_EVENTS = 0, 1, 2, 3, 4
N_INPUTS = 8


class FakeTagger:
    """One tagger: events injected per front-panel input, numbered by the scheme fixed at creation."""

    def __init__(self, module: types.ModuleType, serial: str) -> None:
        self.module = module
        self.serial = serial or "1910000FAKE"
        scheme = module._scheme
        self.scheme = TT_CHANNEL_NUMBER_SCHEME_ZERO if scheme == TT_CHANNEL_NUMBER_SCHEME_AUTO else scheme
        self.levels: dict[int, float] = {}
        self.streams: list[FakeStream] = []
        self.freed = False

    def channel_number(self, front_panel_input: int, falling: bool = False) -> int:
        """The number this tagger's scheme gives an input's edge."""
        if self.scheme == TT_CHANNEL_NUMBER_SCHEME_ONE:
            return -front_panel_input if falling else front_panel_input
        return front_panel_input - 1 + (N_INPUTS if falling else 0)

    def _valid(self, channel: int) -> bool:
        if self.scheme == TT_CHANNEL_NUMBER_SCHEME_ONE:
            return 1 <= abs(channel) <= N_INPUTS
        return 0 <= channel < 2 * N_INPUTS

    def setTriggerLevel(self, channel: int, voltage: float) -> None:  # noqa: N802 - vendor API name
        if not self._valid(channel):
            raise ValueError(f"invalid channel {channel}")
        self.levels[channel] = float(voltage)

    def getTriggerLevel(self, channel: int) -> float:  # noqa: N802
        return self.levels.get(channel, 0.5)

    def getSerial(self) -> str:  # noqa: N802
        return self.serial

    def getModel(self) -> str:  # noqa: N802
        return "Time Tagger 20"

    def inject(self, front_panel_input: int, times_ps: Any, falling: bool = False) -> None:
        """Edges arriving at an input: every stream subscribed to their channel number buffers them."""
        ch = self.channel_number(front_panel_input, falling)
        for stream in self.streams:
            stream.offer(np.asarray(times_ps, dtype=np.int64), ch)


class FakeBuffer:
    """What `TimeTagStream.getData()` returns."""

    def __init__(self, times: np.ndarray, chans: np.ndarray, kinds: np.ndarray, missed: np.ndarray) -> None:
        self._t, self._c, self._k, self._m = times, chans, kinds, missed
        self.size = int(times.size)

    def getTimestamps(self) -> np.ndarray:  # noqa: N802
        return self._t.copy()

    def getChannels(self) -> np.ndarray:  # noqa: N802
        return self._c.astype(np.int32)

    def getEventTypes(self) -> np.ndarray:  # noqa: N802
        return self._k.astype(np.uint8)

    def getMissedEvents(self) -> np.ndarray:  # noqa: N802
        return self._m.astype(np.uint16)

    def hasOverflows(self) -> bool:  # noqa: N802
        return bool(np.any(self._k == OVERFLOW_BEGIN))


class FakeStream:
    """`TimeTagStream`: a bounded buffer of the subscribed channels' events between getData() calls."""

    def __init__(self, tagger: FakeTagger, n_max_events: int, channels: list[int]) -> None:
        for ch in channels:
            if not tagger._valid(ch):
                raise ValueError(f"invalid channel {ch}")
        self.tagger = tagger
        self.n_max_events = int(n_max_events)
        self.channels = set(channels)
        self.running = False
        self._t: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        tagger.streams.append(self)

    def offer(self, times: np.ndarray, ch: int) -> None:
        if self.running and ch in self.channels:
            self._t.append(times)
            self._c.append(np.full(times.size, ch, np.int32))

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def getData(self) -> FakeBuffer:  # noqa: N802
        t = np.concatenate(self._t) if self._t else np.empty(0, np.int64)
        c = np.concatenate(self._c) if self._c else np.empty(0, np.int32)
        self._t, self._c = [], []
        order = np.argsort(t, kind="stable")
        t, c = t[order][: self.n_max_events], c[order][: self.n_max_events]  # the rest is discarded, unrecorded
        kinds, missed = np.zeros(t.size, np.uint8), np.zeros(t.size, np.uint16)
        n_missed = getattr(self.tagger.module, "fault_overflow_missed", 0)
        if n_missed and self.running:  # the USB link overflowed: OverflowBegin, MissedEvents per channel, OverflowEnd
            t = np.concatenate([t, np.zeros(2 + len(self.channels), np.int64)])
            c = np.concatenate([c, np.array([0, *sorted(self.channels), 0], np.int32)])
            kinds = np.concatenate(
                [kinds, np.array([OVERFLOW_BEGIN] + [MISSED_EVENTS] * len(self.channels) + [OVERFLOW_END], np.uint8)]
            )
            missed = np.concatenate([missed, np.array([0] + [n_missed] * len(self.channels) + [0], np.uint16)])
        return FakeBuffer(t, c, kinds, missed)


def make_module(default_scheme: int = TT_CHANNEL_NUMBER_SCHEME_AUTO) -> types.ModuleType:
    """A fresh fake `TimeTagger` module; `module.taggers` lists the taggers it created."""
    mod = types.ModuleType("TimeTagger")
    mod._scheme = default_scheme  # type: ignore[attr-defined]
    mod.taggers = []  # type: ignore[attr-defined]
    for name in ("TT_CHANNEL_NUMBER_SCHEME_AUTO", "TT_CHANNEL_NUMBER_SCHEME_ZERO", "TT_CHANNEL_NUMBER_SCHEME_ONE"):
        setattr(mod, name, globals()[name])

    def set_scheme(scheme: int) -> None:
        mod._scheme = scheme  # type: ignore[attr-defined]

    def get_scheme() -> int:
        s = mod._scheme
        return TT_CHANNEL_NUMBER_SCHEME_ZERO if s == TT_CHANNEL_NUMBER_SCHEME_AUTO else s

    def create(serial: str = "") -> FakeTagger:
        tagger = FakeTagger(mod, serial)
        mod.taggers.append(tagger)
        return tagger

    def free(tagger: FakeTagger) -> None:
        tagger.freed = True

    mod.setTimeTaggerChannelNumberScheme = set_scheme  # type: ignore[attr-defined]
    mod.getTimeTaggerChannelNumberScheme = get_scheme  # type: ignore[attr-defined]
    mod.createTimeTagger = create  # type: ignore[attr-defined]
    mod.freeTimeTagger = free  # type: ignore[attr-defined]
    mod.TimeTagStream = FakeStream  # type: ignore[attr-defined]
    return mod


def install_module(mod: types.ModuleType | None = None) -> types.ModuleType:
    """Put a fake module in `sys.modules["TimeTagger"]` (for a process that has no real one)."""
    mod = mod or make_module()
    sys.modules["TimeTagger"] = mod
    return mod
