"""Transports: resource dispatch, timeouts and lost sessions mapped onto ReadTimeout / ConnectionLost."""

from __future__ import annotations

import socket
import threading

import pytest

from drivers.transport import ConnectionLost, ReadTimeout, ScriptedTransport, open_transport
from drivers.transport.serial import SerialTransport
from drivers.transport.visa import VisaTransport
from drivers.transport.zmq import ZmqReqTransport


@pytest.mark.parametrize(
    "resource,kind",
    [
        ("USB0::0x1313::0x804A::M1::INSTR", VisaTransport),
        ("TCPIP::10.0.0.1::5025::SOCKET", VisaTransport),
        ("GPIB0::20::INSTR", VisaTransport),
        ("/dev/ttyUSB0", SerialTransport),
        ("COM3", SerialTransport),
        ("socket://127.0.0.1:4000", SerialTransport),
        ("tcp://10.0.0.30:5555", ZmqReqTransport),
    ],
)
def test_resource_strings_pick_their_transport(resource, kind):
    assert isinstance(open_transport(resource), kind)


@pytest.mark.parametrize("bad", ["", None, 5])
def test_bad_resource_is_rejected(bad):
    with pytest.raises(ValueError, match="resource must be"):
        open_transport(bad)


@pytest.mark.parametrize("kind", [VisaTransport, SerialTransport, ZmqReqTransport])
def test_timeout_must_be_positive(kind):
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        kind("x", timeout_s=0)


class OneShotPeer:
    """A TCP peer that sends `payload` after the first line it receives, then does `then` ("hold"/"close")."""

    def __init__(self, payload: bytes, then: str) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.payload, self.then = payload, then
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        conn, _ = self.sock.accept()
        conn.recv(1024)
        conn.sendall(self.payload)
        if self.then == "close":
            conn.close()
        self.done.wait(5)
        conn.close()
        self.sock.close()


def test_serial_reply_without_termination_is_a_timeout():
    peer = OneShotPeer(b"partial reply", "hold")
    t = SerialTransport(f"socket://127.0.0.1:{peer.port}", timeout_s=0.2)
    t.open()
    t.write("Q?")
    with pytest.raises(ReadTimeout, match="no complete reply"):
        t.read()
    t.close()
    peer.done.set()


def test_serial_peer_closing_is_a_lost_connection():
    peer = OneShotPeer(b"", "close")
    t = SerialTransport(f"socket://127.0.0.1:{peer.port}", timeout_s=0.5)
    t.open()
    t.write("Q?")
    with pytest.raises((ConnectionLost, ReadTimeout)):
        t.read()
    t.close()
    peer.done.set()


def test_visa_socket_reply_is_read_up_to_termination():
    peer = OneShotPeer(b"+1.0E+00\n", "hold")
    t = VisaTransport(f"TCPIP::127.0.0.1::{peer.port}::SOCKET", timeout_s=0.5)
    t.open()
    t.write("MEAS?")
    assert t.read() == "+1.0E+00"
    with pytest.raises(ReadTimeout):
        t.read()
    t.close()
    assert not t.is_open
    peer.done.set()


def test_closed_transports_refuse_traffic():
    for t in (
        VisaTransport("TCPIP::127.0.0.1::1::SOCKET"),
        SerialTransport("socket://127.0.0.1:1"),
        ZmqReqTransport("tcp://127.0.0.1:1"),
        ScriptedTransport([]),
    ):
        with pytest.raises(ConnectionLost):
            t.write("X")


def test_scripted_pairs_are_validated():
    with pytest.raises(ValueError, match=r"pairs\[1\] must be"):
        ScriptedTransport([("A", None), ("B", 5)])
