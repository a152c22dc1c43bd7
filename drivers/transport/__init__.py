"""Byte transports for instruments (VISA, serial, scripted), kept apart from the command sets.

A transport moves one terminated text message at a time and maps its backend's failures onto two
exceptions, `ReadTimeout` and `ConnectionLost`; `drivers.instrument` decides what to retry.
"""

from __future__ import annotations

from drivers.transport.base import ConnectionLost, ReadTimeout, Transport
from drivers.transport.factory import open_transport
from drivers.transport.scripted import ScriptedTransport, expected_protocol

__all__ = [
    "ConnectionLost",
    "ReadTimeout",
    "ScriptedTransport",
    "Transport",
    "expected_protocol",
    "open_transport",
]
