"""The emulator framework: SCPI header matching, error queue, fault injection, malformed input."""

from __future__ import annotations

import re
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil_fixtures.emulators.itc4001 import ITC4001
from hil_fixtures.emulators.scpi import scpi_regex
from hil_fixtures.emulators.server import EmulatorServer


@pytest.mark.parametrize(
    "header,ok",
    [
        ("SOUR:CURR", True),
        ("SOURCE:CURRENT", True),
        (":sour1:curr:lev", True),
        ("SOURCE1:CURR:LEVEL:IMM:AMPL", True),
        ("SOURC:CURR", False),
        ("SOUR:CUR", False),
        ("SOUR2:CURR", False),
    ],
)
def test_scpi_headers_match_short_and_long_forms_only(header, ok):
    pattern = re.compile(scpi_regex("SOURce[1][:CURRent][:LEVel][:IMMediate][:AMPLitude]") + "$", re.IGNORECASE)
    assert bool(pattern.match(header)) is ok


def test_device_error_queue_is_fifo_and_reports_no_error_when_empty():
    dev = ITC4001()
    assert dev.handle("BOGUS") is None
    assert dev.handle("SOUR:CURR 7") is None
    assert dev.handle("SYST:ERR?") == '-113,"Undefined header"'
    assert dev.handle("SYST:ERR?") == '-222,"Data out of range"'
    assert dev.handle("SYST:ERR?") == '+0,"No error"'


def test_device_error_queue_overflow_is_marked():
    dev = ITC4001()
    for _ in range(40):
        dev.handle("BOGUS")
    entries = [dev.handle("SYST:ERR?") for _ in range(dev.queue_size + 1)]
    assert entries[dev.queue_size - 1] == '-350,"Queue overflow"' and entries[-1] == '+0,"No error"'


@given(st.text(max_size=80))
def test_device_never_crashes_on_malformed_lines(line):
    dev = ITC4001()
    reply = dev.handle(line)
    assert reply is None or isinstance(reply, str)
    assert dev.current_a <= dev.limit_a + 1e-12  # state stays consistent whatever arrives


@pytest.fixture(scope="module")
def shared_server():
    with EmulatorServer(ITC4001()) as server:
        yield server


@given(data=st.binary(max_size=200))
def test_server_survives_arbitrary_bytes_and_keeps_serving(shared_server, data):
    with socket.create_connection((shared_server.host, shared_server.port), timeout=2) as s:
        s.sendall(data + b"\n*IDN?\n")
        reply = b""
        while not (reply.endswith(b"\n") and b"Thorlabs,ITC4001" in reply):  # earlier lines may be queries too
            chunk = s.recv(4096)
            assert chunk, "server closed the connection"
            reply += chunk


def test_server_faults_count_down():
    with EmulatorServer(ITC4001()) as server:
        server.faults.garbage_replies = 1
        with socket.create_connection((server.host, server.port), timeout=2) as s:
            s.sendall(b"*IDN?\n")
            assert b"garbage" in s.recv(4096)
            s.sendall(b"*IDN?\n")
            assert s.recv(4096).startswith(b"Thorlabs")
        assert server.stats.garbled == 1
