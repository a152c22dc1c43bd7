"""ID1000 time controller: exact SCPI protocol, emulator over ZeroMQ + TCP streams, merging, faults."""

from __future__ import annotations

import time

import numpy as np
import pytest

from drivers.errors import InstrumentTimeout
from drivers.instrument import ScpiError
from drivers.taggers.idq import IDQTimeController, StreamLost
from drivers.timetagger import TimeTagger
from drivers.transport import expected_protocol
from hil_fixtures.emulators.idq import ID1000Emulator

pytestmark = pytest.mark.emulator


@pytest.fixture
def id1000():
    emulator = ID1000Emulator()
    try:
        yield emulator
    finally:
        emulator.stop()


def test_id1000_protocol_configure():
    pairs = [("INPU1:ENAB ON", ""), ("INPU1:THRE 0.250V", ""), ("INPU3:ENAB ON", ""), ("*IDN?", "ID Quantique,ID1000,1,1")]
    with expected_protocol(IDQTimeController, pairs, channels=(1, 3), thresholds_v={1: 0.25}) as tc:
        tc.configure()
        assert tc.idn().startswith("ID Quantique")


def test_id1000_refused_command_surfaces_its_error():
    pairs = [("INPU1:ENAB ON", ""), ("INPU1:THRE 2.500V", "Error: Data out of range (-222)")]
    with expected_protocol(IDQTimeController, pairs, channels=(1,), thresholds_v={1: 2.5}) as tc:
        with pytest.raises(ScpiError, match="Data out of range"):
            tc.configure()


@pytest.mark.parametrize("kwargs,match", [({"channels": (0,)}, "channels must be distinct"),
                                          ({"channels": (1,), "thresholds_v": {1: 5.0}}, r"\[-2, 3\] V"),
                                          ({"channels": (1,), "thresholds_v": {2: 0.5}}, "must be one of")])
def test_id1000_bad_configuration_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IDQTimeController("tcp://127.0.0.1:1", **kwargs)


def read_until(tc, n: int):
    blocks, total = [], 0
    deadline = time.monotonic() + 10
    while total < n and time.monotonic() < deadline:
        b = tc.read_block(0.2)
        blocks.append(b)
        total += len(b)
    return blocks


def test_id1000_streams_merge_channels_in_time_order(id1000):
    with IDQTimeController(id1000.resource, channels=(1, 2), stream_port_base=id1000.stream_port_base,
                           timeout_s=0.5) as tc:
        assert isinstance(tc, TimeTagger)
        tc.configure()
        tc.start()
        assert id1000.device.sending[1] and id1000.device.sending[2]
        id1000.emit(1, np.array([100, 300, 500]), split=11)  # a record cut across TCP segments
        id1000.emit(2, np.array([200, 400]))
        blocks = read_until(tc, 5)
    t = np.concatenate([b.time for b in blocks])
    c = np.concatenate([b.channel for b in blocks])
    assert sorted(t.tolist()) == [100, 200, 300, 400, 500]
    assert sorted(zip(t.tolist(), c.tolist())) == [(100, 1), (200, 2), (300, 1), (400, 2), (500, 1)]
    for b in blocks:
        assert np.all(np.diff(b.time) >= 0)
    assert not id1000.device.sending[1]  # the with block stopped the streams


def test_id1000_dropped_stream_is_an_error_not_silence(id1000):
    tc = IDQTimeController(id1000.resource, channels=(1,), stream_port_base=id1000.stream_port_base, timeout_s=0.5)
    tc.start()
    deadline = time.monotonic() + 5
    while 1 not in id1000._clients and time.monotonic() < deadline:
        time.sleep(0.01)
    id1000.drop_stream(1)
    with pytest.raises(StreamLost, match="channel 1"):
        tc.read_block(1.0)
    tc.close()


def test_id1000_control_timeout_reconnects_then_gives_up(id1000):
    tc = IDQTimeController(id1000.resource, channels=(1,), timeout_s=0.2, retries=1)
    id1000.mute_replies = 1
    assert tc.idn().startswith("ID Quantique")  # REQ socket recreated after the timeout
    id1000.mute_replies = 100
    with pytest.raises(InstrumentTimeout, match=r"'\*IDN\?' after 2 attempt"):
        tc.idn()
    tc.close()
