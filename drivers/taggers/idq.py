"""ID Quantique ID1000 Time Controller: SCPI over ZeroMQ, timestamps through the DataLinkTargetService.

Protocol from IDQ's Python examples for the Time Controller (`utils/common.py`: `connect`,
`zmq_exec`, `dlt_exec`, `dlt_connect`; `utils/acquisitions.py`: `StreamClient`,
`close_timestamps_acquisition`; the streamed and synchronised timestamps examples):
- control: SCPI strings on a ZeroMQ REQ socket (`tcp://<host>:5555`); every command is answered,
  settings with an empty reply, refused ones with a reply starting "Error";
- timestamps: the instrument sends them to the DataLinkTargetService (DLT) running on the PC,
  a ZeroMQ REP server on port 6060 with JSON replies. `start-stream --address <tc> --channel <n>
  --stream-port <p>` makes the DLT publish channel n on a ZeroMQ PAIR socket at `<p>` (4241 + n in
  the examples), `stop --id <k>` ends it and reports its errors; then `RAW<n>:SEND ON`;
- records are little-endian uint64 picoseconds (16 bytes with `with_ref_index`); with
  `RAW<n>:REF:LINK NONE` they count from the start of the acquisition window;
- acquisition windows: the record generator (`REC:TRIG:ARM:MODE MANUal`, `REC:ENABle ON`,
  `REC:NUM INF`, `REC:PWID`, `REC:PPER` with >= 40 ns dead time, `REC:PLAY`, `REC:STOP`); each window
  arrives as one message per channel, so message k of a channel is offset by k · PPER;
- between windows the record generator leaves a dead time (400 ns here, >= 40 ns per the examples)
  in which nothing is recorded: 2 ppm of the time at 0.2 s windows. Slots in it simply have no
  detection, like channel loss; they are not chosen by basis or bit, so Eve gains nothing from them;
- `DEVIce:SYNChronization EXTERNAL` locks the time base to the 10 MHz reference on CLK IN (Alice
  and Bob share one clock, else they drift apart); `DEVI:RES:BWID?` is the bin width in ps
  (`adjust_bin_width` in the examples); `RAW<n>:ERRORS?` counts timestamps a channel lost.

To verify on hardware (`pytest tests/drivers/taggers/test_idq.py --hil=lab.toml`): whether the DLT
sends an empty message for a window without events (assumed: yes, the examples merge message k of
every channel), the exact `RAW<n>:ERRORS?` semantics under overflow, and `DEVI:SYNC?` spelling.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

from drivers.errors import DriverError, InstrumentError, InstrumentTimeout
from drivers.instrument import Instrument, ScpiError, check_choice, check_range, parse_int
from drivers.timetagger import TagBlock, TaggerCounters
from drivers.transport.base import Transport

log = logging.getLogger("drivers.taggers.idq")

THRESHOLD_RANGE_V = (-2.0, 3.0)
DLT_DEFAULT = "tcp://127.0.0.1:6060"
MIN_DEAD_TIME_PS = 40_000


def decode_message(data: bytes, width: int, who: str) -> np.ndarray:
    """The timestamps (uint64 ps) of one DLT message of `width`-byte records; `StreamLost` if malformed."""
    if width not in (8, 16) or len(data) % width:
        raise StreamLost(f"{who} message of {len(data)} bytes is not whole {width}-byte records")
    rec = np.frombuffer(data, dtype="<u8").reshape(-1, width // 8)[:, 0]
    if rec.size and int(rec.max()) > np.iinfo(np.int64).max // 2:
        raise StreamLost(f"{who} timestamp {int(rec.max())} ps is beyond the int64 range")
    return rec


class StreamLost(DriverError):
    """A timestamp stream failed during acquisition (the DLT reported errors or went away)."""


class IDQTimeController(TaggerCounters, Instrument):
    """ID1000 inputs `channels` (1..4) as a `TimeTagger`; `shutdown()`/`stop()` end every stream.

    `dlt` is the DataLinkTargetService's address (started with the Time Controller software),
    `stream_port_base` + n the PAIR port of channel n; `clock` "external" (default: a 10 MHz
    reference on CLK IN, shared with the peer) or "internal"; `window_s` the acquisition window.
    """

    def __init__(
        self,
        resource: str | Transport,
        channels: tuple[int, ...] = (1, 2, 3, 4),
        *,
        dlt: str = DLT_DEFAULT,
        stream_host: str | None = None,
        stream_port_base: int = 4241,
        clock: str = "external",
        window_s: float = 0.2,
        with_ref_index: bool = False,
        thresholds_v: dict[int, float] | None = None,
        **options: Any,
    ) -> None:
        if not channels or len(set(channels)) != len(channels) or any(c not in (1, 2, 3, 4) for c in channels):
            raise ValueError(f"channels must be distinct inputs among (1, 2, 3, 4), got {channels!r}")
        if not isinstance(stream_port_base, int) or not 1 <= stream_port_base <= 65531:
            raise ValueError(f"stream_port_base must be a TCP port in [1, 65531], got {stream_port_base!r}")
        if not isinstance(dlt, str) or not dlt.startswith("tcp://"):
            raise ValueError(f"dlt must be the DataLinkTargetService address tcp://host:port, got {dlt!r}")
        self.clock = check_choice(self, "clock", clock, ("external", "internal"))
        self.window_ps = int(round(check_range(self, "window_s", window_s, 1e-3, 3600.0, "s") * 1e12))
        self._channels = tuple(channels)
        self.thresholds_v = {}
        for ch, level in (thresholds_v or {}).items():
            check_choice(self, "thresholds_v channel", ch, self._channels)
            self.thresholds_v[ch] = check_range(self, "thresholds_v", level, *THRESHOLD_RANGE_V, "V")
        self.dlt = dlt
        self.with_ref_index = bool(with_ref_index)
        super().__init__(resource, **options)
        self.tc_host = self.transport.resource.removeprefix("tcp://").rsplit(":", 1)[0]
        self.stream_host = stream_host or dlt.removeprefix("tcp://").rsplit(":", 1)[0]
        self.stream_port_base = stream_port_base
        self._dlt_socket: Any = None
        self._streams: dict[int, Any] = {}
        self._acquisitions: dict[int, int] = {}
        self._messages: dict[int, int] = {}
        self._raw_errors: dict[int, int] = {}
        self._period_ps = self.window_ps + MIN_DEAD_TIME_PS * 10
        self._resolution_ps = 1
        self._lost = 0
        self._errors_checked = 0.0

    # -- control ------------------------------------------------------------------------------------

    def write(
        self,
        command: str,  # type: ignore[override]
        *,
        check: bool | None = None,
        retry: bool = True,
        shown: str | None = None,
    ) -> None:
        """Send a command and read its (empty) answer (the control socket is request-reply); an
        "Error..." answer raises `ScpiError` unless `check` is False. `retry=False` sends it at most
        once (arming, triggers); `shown` replaces the command in logs and exceptions."""
        reply = str(self._exchange(command, reply=True, retry=retry, shown=shown) or "")
        if check is not False and reply.strip().lower().startswith("error"):
            raise ScpiError(
                f"{self.name}: instrument reported after {command!r}: {reply.strip()}", [(-1, reply)], command
            )

    def configure(self) -> None:
        """Inputs, thresholds, clock source, reference-free timestamps and the record generator's windows."""
        for ch in self._channels:
            self.write(f"INPU{ch}:ENAB ON")
            if ch in self.thresholds_v:
                self.write(f"INPU{ch}:THRE {self.thresholds_v[ch]:.3f}V")
            self.write(f"RAW{ch}:REF:LINK NONE")
        self.write(f"DEVI:SYNC {self.clock.upper()}")
        self.write("REC:TRIG:ARM:MODE MANU")
        self.write("REC:ENAB ON")
        self.write("REC:STOP")
        self.write("REC:NUM INF")
        self.write(f"REC:PWID {self.window_ps};PPER {self._period_ps}")
        self._resolution_ps = max(1, self.query("DEVI:RES:BWID?", parse_int))

    def clock_source(self) -> str:
        """`DEVI:SYNC?`: INTERNAL or EXTERNAL."""
        return self.query("DEVI:SYNC?").strip().upper()

    def _dlt_exec(self, command: str) -> Any:
        """One DLT command; its JSON answer, or `InstrumentError` with the DLT's description."""
        import zmq

        if self._dlt_socket is None:
            sock: Any = zmq.Context.instance().socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVTIMEO, int(self.transport.timeout_s * 1000))
            sock.connect(self.dlt)
            self._dlt_socket = sock
        log.debug("%s: DLT <- %s", self.name, command)
        try:
            self._dlt_socket.send_string(command)
            raw = self._dlt_socket.recv().decode("utf-8", errors="replace")
        except zmq.Again:
            self._dlt_socket.close(linger=0)
            self._dlt_socket = None
            raise InstrumentTimeout(
                f"{self.name}: no reply from the DataLinkTargetService at {self.dlt} to "
                f"{command.split()[0]!r}; is it running (Time Controller software)?"
            ) from None
        answer = json.loads(raw) if raw.strip() else None
        if isinstance(answer, dict) and "error" in answer:
            raise InstrumentError(
                f"{self.name}: DataLinkTargetService refused {command.split()[0]!r}: "
                f"{(answer.get('error') or {}).get('description', 'unknown error')}"
            )
        return answer

    # -- TimeTagger protocol --------------------------------------------------------------------------

    # `channels`, `resolution_ps` (`DEVI:RES:BWID?`, read by `configure()`) and `lost_total` come from
    # `TaggerCounters`.

    def start(self) -> None:
        """Open a DLT stream and a PAIR socket per channel, switch the streams on, then play the windows."""
        import zmq

        self.stop()
        self._lost = 0
        try:
            for ch in self._channels:
                self.write(f"RAW{ch}:ERR:CLE")
                port = self.stream_port_base + ch
                sock: Any = zmq.Context.instance().socket(zmq.PAIR)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(f"tcp://{self.stream_host}:{port}")
                self._streams[ch] = sock
                answer = self._dlt_exec(f"start-stream --address {self.tc_host} --channel {ch} --stream-port {port}")
                self._acquisitions[ch] = int(answer["id"])
                self._messages[ch] = 0
                self._raw_errors[ch] = 0
                self.write(f"RAW{ch}:SEND ON")
            self.write("REC:PLAY")
        except BaseException:
            self.stop()
            raise

    def _check_raw_errors(self) -> int:
        """Timestamps the instrument reports lost since the last check (`RAW<n>:ERRORS?`)."""
        new = 0
        for ch in self._streams:
            count = self.query(f"RAW{ch}:ERR?", parse_int)
            if count > self._raw_errors[ch]:
                new += count - self._raw_errors[ch]
                self._raw_errors[ch] = count
        return new

    def read_block(self, timeout_s: float) -> TagBlock:
        """Windows received since the last read, channels merged in time order; losses counted."""
        import zmq

        if not self._streams:
            raise DriverError(f"{self.name}: read_block called before start()")
        poller = zmq.Poller()
        for sock in self._streams.values():
            poller.register(sock, zmq.POLLIN)
        times, chans = [], []
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            ready = dict(poller.poll(max(0, int((deadline - time.monotonic()) * 1000))))
            for ch, sock in self._streams.items():
                while sock in ready:
                    try:
                        data = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    rec = decode_message(data, 16 if self.with_ref_index else 8, f"{self.name}: channel {ch}")
                    t = rec.astype(np.int64) + self._messages[ch] * self._period_ps
                    self._messages[ch] += 1
                    times.append(t)
                    chans.append(np.full(t.size, ch, np.uint8))
            if times or time.monotonic() >= deadline:
                break
        lost = 0
        now = time.monotonic()
        if now - self._errors_checked >= 0.2 or times:
            lost = self._check_raw_errors()
            self._errors_checked = now
        self._lost += lost
        if not times:
            return (
                TagBlock.empty(lost=lost)
                if not lost
                else TagBlock(
                    np.empty(0, np.int64), np.empty(0, np.uint8), lost=lost, overflow=True, meta={"raw_errors": lost}
                )
            )
        t_all = np.concatenate(times)
        order = np.argsort(t_all, kind="stable")
        meta: dict[str, object] = {"raw_errors": lost} if lost else {}
        return TagBlock(t_all[order], np.concatenate(chans)[order], lost=lost, overflow=lost > 0, meta=meta)

    def stop(self) -> None:
        """Stop the windows, end each DLT stream (reporting its errors), switch the streams off."""
        streams, self._streams = self._streams, {}
        acquisitions, self._acquisitions = self._acquisitions, {}
        errors: list[str] = []
        try:
            if streams:
                self.write("REC:STOP")
            for ch, acq in acquisitions.items():
                status = (self._dlt_exec(f"stop --id {acq}") or {}).get("status", {})
                errors += [f"channel {ch}: {e.get('description')}" for e in status.get("errors", [])]
            for ch in streams:
                self.write(f"RAW{ch}:SEND OFF")
        finally:
            for sock in streams.values():
                sock.close(linger=0)
        if errors:
            raise StreamLost(f"{self.name}: DataLinkTargetService reported {'; '.join(errors)}")

    def shutdown(self) -> None:
        self.stop()

    def close(self) -> None:
        super().close()
        if self._dlt_socket is not None:
            self._dlt_socket.close(linger=0)
            self._dlt_socket = None
