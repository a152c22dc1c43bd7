"""The instrument base: validation before traffic, bounded retries, reconnect, garbage, error queue, locking.

Exercised through the ITC4001 driver against its emulator over a real TCP socket (pyvisa-py
`TCPIP::...::SOCKET`), with faults injected by the emulator.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Literal

import pytest

from drivers.errors import DriverError, InstrumentTimeout
from drivers.instrument import BadReply, InstrumentDisconnected, ScpiError, parse_bool, parse_scpi_error
from drivers.laser import ThorlabsITC4001
from drivers.transport import ConnectionLost, ScriptedTransport
from hil_fixtures.emulators.itc4001 import ITC4001

pytestmark = pytest.mark.emulator

NO_ERROR = ("SYST:ERR?", '+0,"No error"')
INIT = [NO_ERROR, ("UNIT:TEMP CEL", None), NO_ERROR]
TIMEOUT_S = 0.2


@pytest.fixture
def bench(emulate):
    """An ITC4001 emulator and a driver connected to it over TCP."""
    server = emulate(ITC4001())
    laser = ThorlabsITC4001(server.visa_resource, timeout_s=TIMEOUT_S, retries=2)
    try:
        yield server, laser
    finally:
        laser.close()


def test_out_of_range_setting_raises_naming_range_before_any_byte():
    transport = ScriptedTransport(INIT)
    laser = ThorlabsITC4001(transport)
    with pytest.raises(ValueError, match=r"current_setpoint must be within \[0, 1\] A"):
        laser.current_setpoint = 1.5
    with pytest.raises(ValueError, match=r"temperature_setpoint must be within \[-45, 145\]"):
        laser.temperature_setpoint = 200.0
    with pytest.raises(ValueError, match=r"output_enabled must be one of \[True, False\]"):
        laser.output_enabled = 1
    transport.assert_all_used()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, "0.1", None])
def test_non_numbers_are_rejected_before_any_byte(value):
    transport = ScriptedTransport(INIT)
    laser = ThorlabsITC4001(transport)
    with pytest.raises(ValueError, match="current_limit must be a finite number"):
        laser.current_limit = value
    transport.assert_all_used()


def test_lab_narrowed_current_range_is_enforced():
    transport = ScriptedTransport(INIT)
    laser = ThorlabsITC4001(transport, max_current_a=0.08)
    with pytest.raises(ValueError, match=r"\[0, 0.08\] A"):
        laser.current_setpoint = 0.09
    transport.assert_all_used()


def test_timeout_is_retried_a_bounded_number_of_times_then_names_instrument_and_command(bench):
    server, laser = bench
    server.faults.mute_replies = 1000
    with pytest.raises(
        InstrumentTimeout, match=r"ThorlabsITC4001\(TCPIP::127\.0\.0\.1::\d+::SOCKET\).*'MEAS:CURR\?' after 3 attempt"
    ):
        _ = laser.current
    # the first session, two reopened for the retries, one more for a single try at the error queue
    assert server.stats.connections == 4


def test_single_timeout_recovers_on_retry(bench):
    server, laser = bench
    laser.current_limit = 0.3
    server.faults.mute_replies = 1
    assert laser.current_limit == pytest.approx(0.3)
    assert laser.reconnects == 1


def test_dropped_connection_reconnects_and_resumes(bench):
    server, laser = bench
    laser.current_limit = 0.2
    laser.current_setpoint = 0.05
    server.faults.drop_connections = 1
    assert laser.current_setpoint == pytest.approx(0.05)
    assert server.stats.dropped == 1 and laser.reconnects == 1
    laser.output_enabled = True
    assert laser.current == pytest.approx(0.05)
    assert server.device.temp_unit == "CEL"  # session setup replayed on the new connection


def test_garbage_reply_is_retried_and_the_driver_keeps_working(bench):
    server, laser = bench
    server.faults.garbage_replies = 1
    assert laser.temperature == pytest.approx(25.0)
    server.faults.garbage_replies = 1000
    with pytest.raises(BadReply, match=r"ThorlabsITC4001.*'MEAS:TEMP\?'"):
        _ = laser.temperature
    server.faults.garbage_replies = 0
    assert laser.output_enabled is False


def test_scpi_error_surfaces_with_code_and_command(bench):
    _server, laser = bench
    laser.current_limit = 0.1
    with pytest.raises(ScpiError, match=r"'SOUR:CURR 0.2'.*-222 'Data out of range'") as info:
        laser.write("SOUR:CURR 0.2")  # the driver would refuse it (above the limit); the device does too
    assert info.value.errors == [(-222, "Data out of range")]
    assert laser.current_setpoint == 0.0  # refused by the device, queue drained, session fine


def test_injected_error_queue_entries_all_surface_on_the_next_write(bench):
    server, laser = bench
    server.device.push_error(-310, "System error")
    server.device.push_error(-350, "Queue overflow")
    with pytest.raises(ScpiError) as info:
        laser.tec_enabled = True
    assert info.value.errors == [(-310, "System error"), (-350, "Queue overflow")]
    assert not server.device.errors


def test_timeout_after_an_unknown_command_reports_the_error_queue(bench):
    _server, laser = bench
    with pytest.raises(InstrumentTimeout, match=r"'BOGUS:CMD\?'.*error queue: -113 'Undefined header'"):
        laser.query("BOGUS:CMD?")


def test_threads_sharing_an_instrument_never_interleave_command_reply_pairs(bench):
    server, laser = bench
    laser.current_limit = 0.5
    laser.current_setpoint = 0.125
    laser.temperature_setpoint = 21.5
    server.faults.delay_s = 0.0005  # widen the window between a command and its reply
    expected = {
        "limit": (lambda: laser.current_limit, 0.5),
        "setpoint": (lambda: laser.current_setpoint, 0.125),
        "temperature": (lambda: laser.temperature_setpoint, 21.5),
        "idn": (laser.idn, ITC4001.idn),
        "output": (lambda: laser.output_enabled, False),
    }
    wrong: list[tuple[str, object]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(expected))

    def worker(key: str) -> None:
        read, want = expected[key]
        try:
            start.wait()
            for _ in range(40):
                got = read()
                if got != want:
                    wrong.append((key, got))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not wrong, (errors, wrong[:5])
    assert len(server.stats.commands) >= 40 * len(expected)


def test_unreachable_instrument_raises_connection_lost():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises((ConnectionLost, InstrumentDisconnected), match=str(port)):
        ThorlabsITC4001(f"TCPIP::127.0.0.1::{port}::SOCKET", timeout_s=TIMEOUT_S)


def test_instrument_gone_for_good_raises_after_bounded_retries(bench):
    server, laser = bench
    server.stop()
    with pytest.raises(DriverError, match=r"ThorlabsITC4001.*'MEAS:CURR\?'") as info:
        _ = laser.current
    assert isinstance(info.value, (InstrumentDisconnected, InstrumentTimeout))


def test_all_traffic_is_logged_at_debug_level(bench, caplog):
    _server, laser = bench
    with caplog.at_level(logging.DEBUG, logger="drivers.instrument"):
        _ = laser.current
    text = caplog.text
    assert "<- MEAS:CURR?" in text and "-> +0.000000E+00" in text


def test_with_block_that_raises_still_switches_the_laser_off(emulate):
    server = emulate(ITC4001())
    with pytest.raises(RuntimeError, match="experiment failed"):
        with ThorlabsITC4001(server.visa_resource, timeout_s=TIMEOUT_S) as laser:
            laser.current_limit = 0.1
            laser.current_setpoint = 0.05
            laser.output_enabled = True
            assert server.device.ld_on
            raise RuntimeError("experiment failed")
    assert server.device.ld_on is False


def test_with_block_switches_laser_off_even_after_a_dropped_connection(emulate):
    server = emulate(ITC4001())
    with pytest.raises(KeyError):
        with ThorlabsITC4001(server.visa_resource, timeout_s=TIMEOUT_S) as laser:
            laser.output_enabled = True
            server.faults.drop_connections = 1
            raise KeyError("boom")
    assert server.device.ld_on is False and server.stats.dropped == 1


def test_scripted_transport_fails_on_unused_pairs_and_wrong_commands():
    transport = ScriptedTransport([*INIT, ("MEAS:CURR?", "0.1")])
    laser = ThorlabsITC4001(transport)
    with pytest.raises(AssertionError, match="1 pair"):
        transport.assert_all_used()
    with pytest.raises(AssertionError, match="expected command 'MEAS:CURR\\?'"):
        _ = laser.temperature


@pytest.mark.parametrize(
    "reply,expected",
    [
        ('+0,"No error"', (0, "No error")),
        ('-222,"Data out of range"', (-222, "Data out of range")),
        ("-113, Undefined header", (-113, "Undefined header")),
    ],
)
def test_error_queue_entries_parse(reply, expected):
    assert parse_scpi_error(reply) == expected


@pytest.mark.parametrize("reply", ["", "garbage", '"No error",0', "1.5,x"])
def test_malformed_error_queue_entries_are_rejected(reply):
    with pytest.raises(ValueError):
        parse_scpi_error(reply)


@pytest.mark.parametrize("reply,expected", [("1", True), ("0", False), ("ON", True), ("off", False)])
def test_scpi_booleans_parse(reply, expected):
    assert parse_bool(reply) is expected


# -- malformed replies: any text is either a valid value or a driver error, never a crash ----------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from drivers.instrument import parse_float, parse_int  # noqa: E402

SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
REPLY_TEXT = st.text(alphabet=st.characters(exclude_categories=SURROGATES), max_size=40)


@given(REPLY_TEXT)
def test_reply_parsers_return_their_type_or_raise_value_error(reply):
    for parse, kind in ((parse_float, float), (parse_int, int), (parse_bool, bool), (parse_scpi_error, tuple)):
        try:
            value = parse(reply)
        except ValueError:
            continue
        assert isinstance(value, kind)


@given(REPLY_TEXT)
def test_any_reply_to_a_measurement_is_a_value_or_bad_reply(reply):
    transport = ScriptedTransport([*INIT, ("MEAS:CURR?", reply)])
    laser = ThorlabsITC4001(transport, retries=0)
    try:
        value = laser.current
    except BadReply as exc:  # either outcome is allowed; pytest.raises cannot say that
        assert "MEAS:CURR?" in str(exc)  # noqa: PT017
    else:
        assert isinstance(value, float)
