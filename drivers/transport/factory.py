"""The factory choosing a transport (ZeroMQ, serial or VISA) from a resource string; apart from
`base` so that the protocol module does not import its own implementations."""

from __future__ import annotations

from typing import Any

from drivers.transport.base import Transport
from drivers.transport.serial import SerialTransport
from drivers.transport.visa import VisaTransport
from drivers.transport.zmq import ZmqReqTransport

__all__ = ["SERIAL_PREFIXES", "open_transport"]

SERIAL_PREFIXES = ("socket://", "loop://", "rfc2217://", "COM", "/dev/")


def open_transport(resource: str, **options: Any) -> Transport:
    """A transport for `resource`: `tcp://` to ZeroMQ REQ, pyserial URLs and ports to serial, the rest to VISA.

    Options are those of `VisaTransport` / `SerialTransport` (timeout_s, read_termination,
    write_termination, baud_rate, visa_library). The session is not opened yet.
    """
    if not isinstance(resource, str) or not resource:
        raise ValueError(f"resource must be a non-empty VISA resource string or serial port/URL, got {resource!r}")
    if resource.startswith("tcp://"):
        return ZmqReqTransport(resource, **options)
    if resource.startswith(SERIAL_PREFIXES):
        return SerialTransport(resource, **options)
    return VisaTransport(resource, **options)
