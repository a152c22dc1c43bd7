"""Swabian Time Tagger backend against a fake `TimeTagger` module: tags, missed events, overflows, lazy import."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from drivers.errors import VendorLibraryMissing
from drivers.taggers.swabian import MISSED_EVENTS, OVERFLOW_BEGIN, OVERFLOW_END, TIME_TAG, SwabianTagger
from drivers.timetagger import TimeTagger


class Buffer:
    def __init__(self, stamps, chans, kinds, missed):
        self._s, self._c, self._k, self._m = (np.asarray(a) for a in (stamps, chans, kinds, missed))
        self.size = self._s.size

    def getTimestamps(self):
        return self._s.astype(np.int64)

    def getChannels(self):
        return self._c.astype(np.int32)

    def getEventTypes(self):
        return self._k.astype(np.uint8)

    def getMissedEvents(self):
        return self._m.astype(np.uint16)


def fake_module(buffers: list[Buffer]) -> types.ModuleType:
    mod = types.ModuleType("TimeTagger")
    log: list[tuple] = []

    class Tagger:
        def setTriggerLevel(self, ch, level):
            log.append(("level", ch, level))

    class TimeTagStream:
        def __init__(self, tagger, n, channels):
            log.append(("stream", n, tuple(channels)))

        def start(self):
            log.append(("start",))

        def stop(self):
            log.append(("stop",))

        def getData(self):
            return buffers.pop(0) if buffers else Buffer([], [], [], [])

    def create(serial: str = "") -> Tagger:
        log.append(("create", serial))
        return Tagger()

    # the fake vendor module's names, set in its namespace (ModuleType declares none of them)
    vars(mod).update(
        TT_CHANNEL_NUMBER_SCHEME_ONE=2,
        setTimeTaggerChannelNumberScheme=lambda scheme: log.append(("scheme", scheme)),
        getTimeTaggerChannelNumberScheme=lambda: 2,
        createTimeTagger=create,
        freeTimeTagger=lambda t: log.append(("free",)),
        TimeTagStream=TimeTagStream,
        log=log,
    )
    return mod


def test_stream_yields_tags_and_counts_missed_events_and_overflows(monkeypatch):
    buffers = [
        Buffer([10, 20, 30], [1, 2, 1], [TIME_TAG] * 3, [0, 0, 0]),
        Buffer([40, 41, 50, 60], [1, 1, 2, 2], [OVERFLOW_BEGIN, MISSED_EVENTS, MISSED_EVENTS, TIME_TAG], [0, 7, 5, 0]),
        Buffer([70], [1], [TIME_TAG], [0]),
        Buffer([80, 90], [2, 1], [OVERFLOW_END, TIME_TAG], [0, 0]),
        Buffer([100], [1], [TIME_TAG], [0]),
    ]
    mod = fake_module(buffers)
    monkeypatch.setitem(sys.modules, "TimeTagger", mod)
    with SwabianTagger((1, 2), serial="1910000ABC", trigger_levels_v={1: 0.5}, poll_interval_s=0) as tagger:
        assert isinstance(tagger, TimeTagger)
        tagger.start()
        blocks = [tagger.read_block(0.0) for _ in range(6)]
    assert blocks[0].time.tolist() == [10, 20, 30] and blocks[0].channel.tolist() == [1, 2, 1]
    assert blocks[1].lost == 12 and blocks[1].overflow and blocks[1].time.tolist() == [60]
    assert blocks[2].overflow  # still inside the overflow interval
    assert blocks[3].overflow and not blocks[4].overflow
    assert len(blocks[5]) == 0
    assert tagger.lost_total == 12
    assert mod.log[:2] == [("scheme", 2), ("create", "1910000ABC")]  # front-panel numbering, set first
    assert ("level", 1, 0.5) in mod.log
    assert ("stream", 10_000_000, (1, 2)) in mod.log and mod.log[-2:] == [("stop",), ("free",)]


def test_missing_vendor_module_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "TimeTagger", None)
    with pytest.raises(VendorLibraryMissing, match="install the Swabian Time Tagger software"):
        SwabianTagger((1,))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"channels": ()}, "channels must be distinct"),
        ({"channels": (-1,)}, "channels must be distinct"),
        ({"channels": (1, 1)}, "channels must be distinct"),
        ({"channels": (1,), "trigger_levels_v": {2: 0.5}}, "trigger_levels_v"),
        ({"channels": (1,), "trigger_levels_v": {1: 5.0}}, "trigger_levels_v"),
    ],
)
def test_bad_configuration_is_rejected_before_touching_the_vendor_module(monkeypatch, kwargs, match):
    monkeypatch.setitem(sys.modules, "TimeTagger", None)
    with pytest.raises(ValueError, match=match):
        SwabianTagger(**kwargs)


# -- the same driver on the fake vendor module (plain pytest) or the bench's Time Tagger (--hil) --------


def test_swabian_streams_without_loss_on_fake_or_bench(swabian):
    swabian.start()
    block = swabian.read_block(0.2)
    swabian.stop()
    assert block.lost == 0 and not block.overflow and np.all(np.diff(block.time) >= 0)
    assert set(block.channel.tolist()) <= set(swabian.channels)
