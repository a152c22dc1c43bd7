"""ID Quantique ID1000 Time Controller: SCPI over its ZeroMQ server, timestamps streamed over TCP.

Control: SCPI strings on a ZeroMQ REQ socket (`tcp://<host>:5555`); every command is answered,
settings with an empty reply, refused commands with a reply starting "Error". Timestamps: with
`RAW<ch>:SEND ON` the controller streams channel `ch` as 64-bit little-endian picosecond
timestamps on TCP port `stream_port_base + ch - 1`. Blocks merge the channels in time order.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from typing import Any

import numpy as np

from drivers.errors import DriverError
from drivers.instrument import Instrument, ScpiError, check_choice, check_range
from drivers.timetagger import TagBlock
from drivers.transport.base import Transport

log = logging.getLogger("drivers.taggers.idq")

RECORD = np.dtype("<u8")
THRESHOLD_RANGE_V = (-2.0, 3.0)


class StreamLost(DriverError):
    """A timestamp stream connection closed during acquisition; events in the gap are lost."""


class IDQTimeController(Instrument):
    """ID1000 inputs `channels` (1..4) as a `TimeTagger`; `shutdown()`/`stop()` end every stream."""

    def __init__(self, resource: str | Transport, channels: tuple[int, ...] = (1, 2, 3, 4), *,
                 stream_host: str | None = None, stream_port_base: int = 4241,
                 thresholds_v: dict[int, float] | None = None, **options: Any) -> None:
        if not channels or len(set(channels)) != len(channels) or any(c not in (1, 2, 3, 4) for c in channels):
            raise ValueError(f"channels must be distinct inputs among (1, 2, 3, 4), got {channels!r}")
        if not isinstance(stream_port_base, int) or not 1 <= stream_port_base <= 65532:
            raise ValueError(f"stream_port_base must be a TCP port in [1, 65532], got {stream_port_base!r}")
        self._channels = tuple(channels)
        self.thresholds_v = {}
        for ch, level in (thresholds_v or {}).items():
            check_choice(self, "thresholds_v channel", ch, self._channels)
            self.thresholds_v[ch] = check_range(self, "thresholds_v", level, *THRESHOLD_RANGE_V, "V")
        super().__init__(resource, **options)
        if stream_host is None:
            stream_host = self.transport.resource.removeprefix("tcp://").rsplit(":", 1)[0]
        self.stream_host = stream_host
        self.stream_port_base = stream_port_base
        self._streams: dict[int, socket.socket] = {}
        self._partial: dict[int, bytes] = {}
        self._lost = 0

    def write(self, command: str, *, check: bool | None = None, retry: bool = True) -> None:
        """Send a command and read its (empty) answer; an "Error..." answer raises `ScpiError`."""
        reply: str = self.query(command)
        if reply.strip().lower().startswith("error"):
            raise ScpiError(f"{self.name}: instrument reported after {command!r}: {reply.strip()}", [(-1, reply)],
                            command)

    def configure(self) -> None:
        """Enable the inputs and set their thresholds."""
        for ch in self._channels:
            self.write(f"INPU{ch}:ENAB ON")
            if ch in self.thresholds_v:
                self.write(f"INPU{ch}:THRE {self.thresholds_v[ch]:.3f}V")

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
        """Connect a stream per channel, then switch the streams on."""
        self.stop()
        self._lost = 0
        for ch in self._channels:
            try:
                sock = socket.create_connection((self.stream_host, self.stream_port_base + ch - 1),
                                                timeout=self.transport.timeout_s)
            except OSError as exc:
                self.stop()
                raise StreamLost(f"{self.name}: cannot connect timestamp stream of channel {ch}: {exc}") from exc
            sock.setblocking(False)
            self._streams[ch] = sock
            self._partial[ch] = b""
        for ch in self._channels:
            self.write(f"RAW{ch}:SEND ON")

    def read_block(self, timeout_s: float) -> TagBlock:
        """Timestamps received since the last read, all channels merged in time order."""
        if not self._streams:
            raise DriverError(f"{self.name}: read_block called before start()")
        got: dict[int, list[bytes]] = {ch: [] for ch in self._streams}
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            wait = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(list(self._streams.values()), [], [], wait)
            for ch, sock in self._streams.items():
                if sock not in ready:
                    continue
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise StreamLost(f"{self.name}: timestamp stream of channel {ch} failed: {exc}") from exc
                if not data:
                    raise StreamLost(f"{self.name}: timestamp stream of channel {ch} closed by the instrument")
                log.debug("%s: channel %d stream <- %d bytes", self.name, ch, len(data))
                got[ch].append(data)
            if any(got.values()) or time.monotonic() >= deadline:
                break
        times, chans = [], []
        for ch, pieces in got.items():
            raw = self._partial[ch] + b"".join(pieces)
            whole = len(raw) - len(raw) % RECORD.itemsize
            self._partial[ch] = raw[whole:]
            t = np.frombuffer(raw[:whole], dtype=RECORD)
            if t.size and int(t.max()) > np.iinfo(np.int64).max:
                raise DriverError(f"{self.name}: channel {ch} timestamp beyond int64 picoseconds")
            times.append(t.astype(np.int64))
            chans.append(np.full(t.size, ch, np.uint8))
        if not times:
            return TagBlock.empty()
        t_all = np.concatenate(times)
        order = np.argsort(t_all, kind="stable")
        return TagBlock(t_all[order], np.concatenate(chans)[order])

    def stop(self) -> None:
        """Switch the streams off and close them (what was received is discarded)."""
        streams, self._streams = self._streams, {}
        try:
            for ch in streams:
                self.write(f"RAW{ch}:SEND OFF")
        finally:
            for sock in streams.values():
                sock.close()

    def shutdown(self) -> None:
        self.stop()
