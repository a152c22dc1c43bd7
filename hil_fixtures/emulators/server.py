"""A TCP server that speaks an instrument's line protocol, with fault injection.

Drivers reach it exactly as they reach a networked instrument: pyvisa-py through
`TCPIP::127.0.0.1::PORT::SOCKET`, or pyserial through `socket://127.0.0.1:PORT`. The device model
(an object with `handle(line) -> reply | None`) keeps the state; the server only moves lines and
applies the faults a test asks for.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

log = logging.getLogger("hil_fixtures.emulators")


class Device(Protocol):
    """An emulated instrument: one command line in, one reply line (or None) out."""

    def handle(self, line: str) -> str | None: ...


@dataclass
class Faults:
    """Faults to inject, each counted down as it fires (thread-safe through the server's lock).

    - `delay_s`: wait this long before every reply;
    - `mute_replies`: swallow the next N replies (the driver sees a timeout);
    - `garbage_replies`: answer the next N queries with bytes that are no valid reply;
    - `drop_connections`: close the connection on the next N commands, before executing them;
    - `error_on`: command prefix -> (code, message) queued in the device's error queue each time a
      command starting with that prefix arrives (the device still executes it).
    """

    delay_s: float = 0.0
    mute_replies: int = 0
    garbage_replies: int = 0
    drop_connections: int = 0
    garbage: bytes = b"\x15#\xff?!garbage"
    error_on: dict[str, tuple[int, str]] = field(default_factory=dict)


@dataclass
class Stats:
    """What the server saw: every command line, connections accepted, faults fired."""

    commands: list[str] = field(default_factory=list)
    connections: int = 0
    dropped: int = 0
    muted: int = 0
    garbled: int = 0


BLOCK_HEADER = re.compile(rb"#([1-9])")


def next_message(buf: bytes, blocks: bool = True) -> tuple[bytes | None, bytes]:
    """(one message, the rest) from the received bytes, or (None, buf) while it is incomplete.

    Messages end in NL, CR or CR NL, except inside an IEEE 488.2 definite-length block
    (`#<n><length><bytes>`), whose bytes may hold any value: the block is taken whole, then the
    terminator after it.
    """
    end = min((i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0), default=-1)
    head = buf if end < 0 else buf[:end]
    m = BLOCK_HEADER.search(head) if blocks else None
    if m is not None and end < 0 and len(buf) < m.end() + int(m.group(1)):
        return None, buf  # the header's length digits have not all arrived yet
    if m is not None and not buf[m.end() : m.end() + int(m.group(1))].isdigit():
        m = None  # not a length: a malformed header is text, resynchronised at the terminator
    if m is None and end < 0:
        return None, buf
    if m is not None:
        digits = int(m.group(1))
        start = m.end() + digits
        if len(buf) < start:
            return None, buf
        try:
            length = int(buf[m.end() : start])
        except ValueError:
            length = 0
        stop = start + length
        end = min((i for i in (buf.find(b"\n", stop), buf.find(b"\r", stop)) if i >= 0), default=-1)
        if end < 0:
            return None, buf
    message, rest = buf[:end], buf[end + 1 :]
    if buf[end : end + 2] == b"\r\n":
        rest = buf[end + 2 :]
    return message, rest


class EmulatorServer:
    """Serve `device` on 127.0.0.1 (port 0 picks a free port); a context manager that stops the server."""

    def __init__(self, device: Device, *, reply_termination: bytes = b"\n", host: str = "127.0.0.1") -> None:
        self.device = device
        #: devices that take IEEE 488.2 binary blocks say so (`accepts_binary_blocks`); others get plain lines
        self.binary_blocks = bool(getattr(device, "accepts_binary_blocks", False))
        self.reply_termination = reply_termination
        self.faults = Faults()
        self.stats = Stats()
        self._lock = threading.Lock()
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(0.1)
        self.host, self.port = self._sock.getsockname()[:2]
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name=f"emulator:{self.port}", daemon=True)
        self._thread.start()

    @property
    def visa_resource(self) -> str:
        """The VISA resource string reaching this server through pyvisa-py."""
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    @property
    def serial_url(self) -> str:
        """The pyserial URL reaching this server."""
        return f"socket://{self.host}:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.stats.connections += 1
                self._clients.append(conn)
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(0.1)
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buf += chunk
                while True:
                    raw, buf = next_message(buf, self.binary_blocks)
                    if raw is None:
                        break
                    line = raw.decode("latin-1")
                    line = line.lstrip() if self.binary_blocks and BLOCK_HEADER.search(raw) else line.strip()
                    if line and not self._command(conn, line):
                        return
        except OSError:
            return
        finally:
            conn.close()

    def _command(self, conn: socket.socket, line: str) -> bool:
        """Execute one line; False when the connection was dropped."""
        with self._lock:
            self.stats.commands.append(line)
            if self.faults.drop_connections > 0:
                self.faults.drop_connections -= 1
                self.stats.dropped += 1
                log.debug("emulator %d: dropping connection at %r", self.port, line)
                conn.close()
                return False
            reply = self.device.handle(line)
            for prefix, (code, message) in self.faults.error_on.items():
                if line.upper().startswith(prefix.upper()) and hasattr(self.device, "push_error"):
                    self.device.push_error(code, message)
            if reply is None:
                return True
            data = reply.encode("ascii", errors="replace") + self.reply_termination
            if self.faults.mute_replies > 0:
                self.faults.mute_replies -= 1
                self.stats.muted += 1
                return True
            if self.faults.garbage_replies > 0:
                self.faults.garbage_replies -= 1
                self.stats.garbled += 1
                data = self.faults.garbage + self.reply_termination
            delay = self.faults.delay_s
        if delay:
            time.sleep(delay)
        conn.sendall(data)
        return True

    def stop(self) -> None:
        """Stop accepting and close every connection; idempotent."""
        self._stop.set()
        self._sock.close()
        with self._lock:
            for conn in self._clients:
                try:
                    conn.close()
                except OSError:
                    pass
        self._thread.join(timeout=2)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
