"""Emulated ID Quantique ID1000 and the DataLinkTargetService (DLT) beside it, from IDQ's own examples.

Written from the vendor's Python examples for the Time Controller (`utils/common.py`,
`utils/acquisitions.py`, the streamed-timestamps examples), not from the driver:
- the instrument answers SCPI on a ZeroMQ REQ/REP socket (port 5555), every command with a reply
  (empty for settings, "Error: ..." when refused);
- timestamps never come from the instrument to the client directly: the DataLinkTargetService
  runs on the PC (ZeroMQ REP, port 6060, JSON replies). `start-stream --address <tc> --channel <n>
  --stream-port <p>` answers `{"id": k}` and then publishes that channel's timestamps on a ZeroMQ
  PAIR socket at `tcp://127.0.0.1:<p>` (4241 + n in the examples); `stop --id k` answers
  `{"status": {"acquisitions_count": .., "errors": [..]}}`; failures answer `{"error": {"description": ..}}`;
- acquisition windows are the record generator's pulses (`REC:PWID`, `REC:PPER`, `REC:NUM INF`,
  `REC:PLAY`, `REC:STOP`); each channel gets one message per window, its timestamps (little-endian
  uint64 ps, 16 bytes with a reference index) counted from the window's start when
  `RAW<n>:REF:LINK NONE`, else from the last reference event;
- `RAW<n>:ERRORS?` counts timestamps the channel lost (buffer overflow), `RAW<n>:ERRORS:CLEAR`
  resets it; `DEVI:SYNC INTERNAL|EXTERNAL` picks the clock; `DEVI:RES:BWID?` the bin width in ps.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np

from hil_fixtures.emulators.scpi import DeviceError, ScpiDevice, boolean, number, scpi

CHANNELS = (1, 2, 3, 4)


class ID1000(ScpiDevice):
    """Inputs, references, streams, record generator, clock source; replies "" to settings, "Error: ..." when refused."""

    idn = "ID Quantique,ID1000,0000000005,1.9.0"
    bin_width_ps = 20
    #: whether a 10 MHz reference is present on the CLK input (DEVI:SYNC EXTERNAL needs it)
    external_clock_present = True

    def reset(self) -> None:
        self.enabled = dict.fromkeys(CHANNELS, False)
        self.threshold = dict.fromkeys(CHANNELS, 0.5)
        self.sending = dict.fromkeys(CHANNELS, False)
        self.ref_link = dict.fromkeys(CHANNELS, "REC")
        self.raw_errors = dict.fromkeys(CHANNELS, 0)
        self.sync = "INTERNAL"
        self.rec: dict[str, Any] = {
            "ENAB": False,
            "NUM": "1",
            "PWID": 1_000_000_000_000,
            "PPER": 1_000_000_400_000,
            "MODE": "AUTO",
        }
        self.playing = False

    def _ch(self) -> int:
        ch = self.suffix[0]
        if ch not in CHANNELS:
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

    @scpi("RAW#:REFerence:LINK")
    def _ref(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return self.ref_link[ch]
        token = (arg or "").strip().upper()
        if not token:
            raise DeviceError(-109, "Missing parameter")
        self.ref_link[ch] = token
        return None

    @scpi("RAW#:ERRors")
    def _errors(self, query: bool, arg: str | None) -> str | None:
        return str(self.raw_errors[self._ch()]) if query else None

    @scpi("RAW#:ERRors:CLEar")
    def _errors_clear(self, query: bool, arg: str | None) -> str | None:
        self.raw_errors[self._ch()] = 0
        return None

    @scpi("DEVIce:SYNChronization")
    def _sync(self, query: bool, arg: str | None) -> str | None:
        if query:
            return self.sync
        token = (arg or "").strip().upper()
        token = {"INT": "INTERNAL", "EXT": "EXTERNAL"}.get(token, token)
        if token not in ("INTERNAL", "EXTERNAL"):
            raise DeviceError(-224, "Illegal parameter value")
        if token == "EXTERNAL" and not self.external_clock_present:  # noqa: S105 - an SCPI token
            raise DeviceError(-200, "Execution error; no external clock detected")
        self.sync = token
        return None

    @scpi("DEVIce:RESolution:BWIDth")
    def _bwid(self, query: bool, arg: str | None) -> str | None:
        return str(self.bin_width_ps) if query else None

    @scpi("RECord:TRIGger:ARM:MODE")
    def _rec_mode(self, query: bool, arg: str | None) -> str | None:
        if query:
            return self.rec["MODE"]
        self.rec["MODE"] = (arg or "").strip().upper()[:4]
        return None

    @scpi("RECord:ENABle")
    def _rec_enable(self, query: bool, arg: str | None) -> str | None:
        if query:
            return "ON" if self.rec["ENAB"] else "OFF"
        self.rec["ENAB"] = boolean(arg)
        return None

    @scpi("RECord:NUMber")
    def _rec_num(self, query: bool, arg: str | None) -> str | None:
        if query:
            return self.rec["NUM"]
        self.rec["NUM"] = (arg or "").strip().upper()
        return None

    @scpi("RECord:PWIDth")
    def _rec_pwid(self, query: bool, arg: str | None) -> str | None:
        if query:
            return str(self.rec["PWID"])
        self.rec["PWID"] = int(number(arg, 1e3, 1e15))
        return None

    @scpi("RECord:PPERiod")
    def _rec_pper(self, query: bool, arg: str | None) -> str | None:
        if query:
            return str(self.rec["PPER"])
        pper = int(number(arg, 1e3, 1e15))
        if pper - self.rec["PWID"] < 40_000:  # the examples: windows need >= 40 ns dead time
            raise DeviceError(-222, "Data out of range")
        self.rec["PPER"] = pper
        return None

    @scpi("RECord:PLAY")
    def _rec_play(self, query: bool, arg: str | None) -> str | None:
        if not self.rec["ENAB"]:
            raise DeviceError(-221, "Settings conflict; record generator disabled")
        self.playing = True
        return None

    @scpi("RECord:STOP")
    def _rec_stop(self, query: bool, arg: str | None) -> str | None:
        self.playing = False
        return None


class ID1000Emulator:
    """The instrument's ZeroMQ SCPI server and a DataLinkTargetService, both on 127.0.0.1 ports chosen by the OS.

    `emit_window({ch: times_ps})` ends one acquisition window: every streaming channel gets a
    message with its timestamps (counted from the window's start, as with `REF:LINK NONE`).
    """

    def __init__(self) -> None:
        import zmq

        self.device = ID1000()
        self.commands: list[str] = []
        self.dlt_commands: list[str] = []
        self._stop = threading.Event()
        self._ctx: Any = zmq.Context.instance()
        self._rep = self._ctx.socket(zmq.ROUTER)  # a ROUTER can leave a request unanswered, like a hung device
        self._rep.setsockopt(zmq.LINGER, 0)
        port = self._rep.bind_to_random_port("tcp://127.0.0.1")
        self.resource = f"tcp://127.0.0.1:{port}"
        self._dlt = self._ctx.socket(zmq.REP)
        self._dlt.setsockopt(zmq.LINGER, 0)
        self.dlt_address = f"tcp://127.0.0.1:{self._dlt.bind_to_random_port('tcp://127.0.0.1')}"
        self.mute_replies = 0
        self.with_ref_index = False
        self._streams: dict[int, tuple[int, Any]] = {}  # channel -> (acquisition id, PAIR socket)
        self._next_id = 1
        self._windows = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self._rep, zmq.POLLIN)
        poller.register(self._dlt, zmq.POLLIN)
        while not self._stop.is_set():
            ready = dict(poller.poll(100))
            with self._lock:
                if self._rep in ready:
                    identity, empty, raw = self._rep.recv_multipart()
                    line = raw.decode("ascii", errors="replace")
                    self.commands.append(line)
                    reply = self.device.handle(line) or ""
                    if self.mute_replies > 0:
                        self.mute_replies -= 1
                    else:
                        self._rep.send_multipart([identity, empty, reply.encode("ascii")])
                if self._dlt in ready:
                    request = self._dlt.recv().decode("utf-8", errors="replace")
                    self.dlt_commands.append(request)
                    self._dlt.send_string(json.dumps(self._dlt_command(request)))

    def _dlt_command(self, request: str) -> Any:
        import zmq

        words = request.split()
        opts = {words[i][2:]: words[i + 1] for i in range(1, len(words) - 1) if words[i].startswith("--")}
        if not words:
            return {"error": {"description": "empty command"}}
        if words[0] == "start-stream":
            try:
                ch, port = int(opts["channel"]), int(opts["stream-port"])
            except (KeyError, ValueError):
                return {"error": {"description": "start-stream needs --address, --channel and --stream-port"}}
            if ch not in CHANNELS or ch in self._streams:
                return {"error": {"description": f"channel {ch} unavailable"}}
            sock = self._ctx.socket(zmq.PAIR)
            sock.setsockopt(zmq.LINGER, 0)
            try:
                sock.bind(f"tcp://127.0.0.1:{port}")
            except zmq.ZMQError as exc:
                sock.close()
                return {"error": {"description": f"cannot bind stream port {port}: {exc}"}}
            self._streams[ch] = (self._next_id, sock)
            self._next_id += 1
            return {"id": self._streams[ch][0]}
        if words[0] == "stop":
            for ch, (acq, sock) in list(self._streams.items()):
                if str(acq) == opts.get("id"):
                    sock.close()
                    del self._streams[ch]
                    return {"status": {"acquisitions_count": self._windows, "errors": []}}
            return {"error": {"description": f"no acquisition with id {opts.get('id')}"}}
        if words[0] == "list":
            return [{"id": acq, "channel": ch} for ch, (acq, _) in self._streams.items()]
        return {"error": {"description": f"unknown command {words[0]}"}}

    def emit_window(self, times_ps: dict[int, np.ndarray]) -> None:
        """End one acquisition window: one message per streaming channel (empty where no tags)."""
        with self._lock:
            if not self.device.playing:
                raise RuntimeError("the record generator is not playing (REC:PLAY)")
            for ch, (_, sock) in self._streams.items():
                if not self.device.sending[ch]:
                    continue
                t = np.asarray(times_ps.get(ch, []), dtype="<u8")
                if self.with_ref_index:
                    rec = np.zeros((t.size, 2), dtype="<u8")
                    rec[:, 0] = t
                    rec[:, 1] = self._windows
                    data = rec.tobytes()
                else:
                    data = t.tobytes()
                sock.send(data)
            self._windows += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._rep.close(linger=0)
        self._dlt.close(linger=0)
        for _, sock in self._streams.values():
            sock.close(linger=0)
