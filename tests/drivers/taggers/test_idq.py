"""ID1000 time controller: exact SCPI protocol, DataLinkTargetService emulator, faults (streams: test_manual_findings)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import InstrumentTimeout
from drivers.instrument import ScpiError
from drivers.taggers.idq import IDQTimeController, StreamLost, decode_message
from drivers.transport import expected_protocol
from hil_fixtures.emulators.idq import ID1000Emulator


@pytest.fixture
def id1000_emulator():
    emulator = ID1000Emulator()
    try:
        yield emulator
    finally:
        emulator.stop()


def test_id1000_protocol_configure():
    pairs = [
        ("INPU1:ENAB ON", ""),
        ("INPU1:THRE 0.250V", ""),
        ("RAW1:REF:LINK NONE", ""),
        ("INPU3:ENAB ON", ""),
        ("RAW3:REF:LINK NONE", ""),
        ("DEVI:SYNC EXTERNAL", ""),
        ("REC:TRIG:ARM:MODE MANU", ""),
        ("REC:ENAB ON", ""),
        ("REC:STOP", ""),
        ("REC:NUM INF", ""),
        ("REC:PWID 200000000000;PPER 200000400000", ""),
        ("DEVI:RES:BWID?", "20"),
        ("*IDN?", "ID Quantique,ID1000,1,1"),
    ]
    with expected_protocol(IDQTimeController, pairs, channels=(1, 3), thresholds_v={1: 0.25}) as tc:
        tc.configure()
        assert tc.resolution_ps == 20
        assert tc.idn().startswith("ID Quantique")


def test_id1000_refused_command_surfaces_its_error():
    pairs = [("INPU1:ENAB ON", ""), ("INPU1:THRE 2.500V", "Error: Data out of range (-222)")]
    with expected_protocol(IDQTimeController, pairs, channels=(1,), thresholds_v={1: 2.5}) as tc:
        with pytest.raises(ScpiError, match="Data out of range"):
            tc.configure()


@pytest.mark.emulator
def test_id1000_external_clock_missing_is_refused_by_the_instrument(id1000_emulator):
    id1000_emulator.device.external_clock_present = False
    with IDQTimeController(
        id1000_emulator.resource, channels=(1,), dlt=id1000_emulator.dlt_address, timeout_s=0.5
    ) as tc:
        with pytest.raises(ScpiError, match="no external clock"):
            tc.configure()


@pytest.mark.emulator
def test_id1000_without_data_link_target_service_says_so(id1000_emulator):
    with IDQTimeController(id1000_emulator.resource, channels=(1,), dlt="tcp://127.0.0.1:1", timeout_s=0.2) as tc:
        tc.configure()
        with pytest.raises(InstrumentTimeout, match="DataLinkTargetService"):
            tc.start()
    assert not id1000_emulator.device.sending[1]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"channels": (0,)}, "channels must be distinct"),
        ({"channels": (1,), "thresholds_v": {1: 5.0}}, r"\[-2, 3\] V"),
        ({"channels": (1,), "thresholds_v": {2: 0.5}}, "must be one of"),
    ],
)
def test_id1000_bad_configuration_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IDQTimeController("tcp://127.0.0.1:1", **kwargs)


@pytest.mark.emulator
def test_id1000_control_timeout_reconnects_then_gives_up(id1000_emulator):
    tc = IDQTimeController(id1000_emulator.resource, channels=(1,), timeout_s=0.2, retries=1)
    id1000_emulator.mute_replies = 1
    assert tc.idn().startswith("ID Quantique")  # REQ socket recreated after the timeout
    id1000_emulator.mute_replies = 100
    with pytest.raises(InstrumentTimeout, match=r"'\*IDN\?' after 2 attempt"):
        tc.idn()
    tc.close()


@given(data=st.binary(max_size=200), width=st.sampled_from([8, 16]))
def test_any_stream_message_decodes_to_whole_records_or_raises_stream_lost(data, width):
    try:
        rec = decode_message(data, width, "fuzz")
    except StreamLost:
        return
    assert rec.size == len(data) // width and rec.dtype == np.uint64


# -- the same driver on the emulator (plain pytest) or on the bench's ID1000 (pytest --hil=lab.toml) ----


def test_id1000_configures_streams_and_stops_on_emulator_or_bench(id1000, lab):
    id1000.configure()
    assert id1000.clock_source().startswith(id1000.clock.upper()[:3])
    assert id1000.resolution_ps >= 1
    id1000.start()
    block = id1000.read_block(0.5)
    assert np.all(np.diff(block.time) >= 0) and block.lost == 0
    id1000.stop()


@pytest.mark.emulator
def test_id1000_write_without_retry_is_sent_once_and_with_retry_again(id1000_emulator):
    tc = IDQTimeController(id1000_emulator.resource, channels=(1,), timeout_s=0.2, retries=1)
    id1000_emulator.mute_replies = 1
    with pytest.raises(InstrumentTimeout):
        tc.write("REC:PLAY", retry=False)  # arming must never run twice
    assert id1000_emulator.commands.count("REC:PLAY") == 1
    id1000_emulator.mute_replies = 1
    tc.write("REC:STOP")  # a setting may be sent again after a lost reply
    assert id1000_emulator.commands.count("REC:STOP") == 2
    tc.close()
