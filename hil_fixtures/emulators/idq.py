"""Emulated ID Quantique ID1000: SCPI on a ZeroMQ socket answering REQ clients, per-channel timestamp streams over TCP."""

from __future__ import annotations

import socket
import threading
from typing import Any

import numpy as np

from hil_fixtures.emulators.scpi import DeviceError, ScpiDevice, boolean, number, scpi


class ID1000(ScpiDevice):
    """Input enables, thresholds and stream switches; replies "" to settings, "Error: ..." when refused."""

    idn = "ID Quantique,ID1000,0000000005,1.9.0"

    def reset(self) -> None:
        self.enabled = {ch: False for ch in (1, 2, 3, 4)}
        self.threshold = {ch: 0.5 for ch in (1, 2, 3, 4)}
        self.sending = {ch: False for ch in (1, 2, 3, 4)}

    def _ch(self) -> int:
        ch = self.suffix[0]
        if ch not in (1, 2, 3, 4):
            raise DeviceError(-114, "Header suffix out of range")
        return ch

    def handle(self, line: str) -> str | None:
        before = len(self.errors)
        reply = super().handle(line)
        if len(self.errors) > before:
            code, message = self.errors.pop()
            return f"Error: {message} ({code})"
        return "" if reply is None else reply

    @scpi("INPUt#:ENABle")
    def _enable(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return "ON" if self.enabled[ch] else "OFF"
        self.enabled[ch] = boolean(arg)
        return None

    @scpi("INPUt#:THREshold")
    def _threshold(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return f"{self.threshold[ch]:.3f}V"
        self.threshold[ch] = number(arg, -2.0, 3.0)
        return None

    @scpi("RAW#:SEND")
    def _send(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return "ON" if self.sending[ch] else "OFF"
        self.sending[ch] = boolean(arg)
        return None


class ID1000Emulator:
    """The ZeroMQ REP control server and four TCP stream servers on 127.0.0.1; `emit()` sends timestamps."""

    def __init__(self) -> None:
        import zmq

        self.device = ID1000()
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._ctx: Any = zmq.Context.instance()
        self._rep = self._ctx.socket(zmq.ROUTER)  # a ROUTER can leave a request unanswered, like a hung device
        self._rep.setsockopt(zmq.LINGER, 0)
        port = self._rep.bind_to_random_port("tcp://127.0.0.1")
        self.resource = f"tcp://127.0.0.1:{port}"
        self.mute_replies = 0
        self._listeners: dict[int, socket.socket] = {}
        self._clients: dict[int, socket.socket] = {}
        base = self._free_consecutive_ports()
        self.stream_port_base = base
        for ch in (1, 2, 3, 4):
            self._listeners[ch] = socket.create_server(("127.0.0.1", base + ch - 1))
            self._listeners[ch].settimeout(0.1)
            threading.Thread(target=self._accept, args=(ch,), daemon=True).start()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def _free_consecutive_ports() -> int:
        for _ in range(50):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                base = probe.getsockname()[1]
            if base > 65000:
                continue
            try:
                socks = [socket.create_server(("127.0.0.1", base + i)) for i in range(4)]
            except OSError:
                continue
            for s in socks:
                s.close()
            return base
        raise RuntimeError("no four consecutive free ports on 127.0.0.1")

    def _serve(self) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self._rep, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            identity, empty, raw = self._rep.recv_multipart()
            line = raw.decode("ascii", errors="replace")
            self.commands.append(line)
            reply = self.device.handle(line) or ""
            if self.mute_replies > 0:
                self.mute_replies -= 1
                continue  # the client's REQ times out and reconnects with a fresh socket
            self._rep.send_multipart([identity, empty, reply.encode("ascii")])

    def _accept(self, ch: int) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listeners[ch].accept()
            except (TimeoutError, OSError):
                continue
            self._clients[ch] = conn

    def emit(self, ch: int, times_ps: np.ndarray, split: int | None = None) -> None:
        """Send timestamps on channel `ch` if its stream is on; `split` cuts the bytes mid-record."""
        conn = self._clients.get(ch)
        if conn is None or not self.device.sending[ch]:
            raise RuntimeError(f"stream {ch} is not connected and switched on")
        data = np.asarray(times_ps, dtype="<u8").tobytes()
        if split is None:
            conn.sendall(data)
        else:
            conn.sendall(data[:split])
            conn.sendall(data[split:])

    def drop_stream(self, ch: int) -> None:
        """Close the stream connection of channel `ch` (the instrument rebooting, a cable pulled)."""
        conn = self._clients.pop(ch)
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._rep.close(linger=0)
        for s in [*self._listeners.values(), *self._clients.values()]:
            s.close()
