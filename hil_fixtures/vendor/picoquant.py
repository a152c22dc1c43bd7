"""A fake MHLib / HHLib, from PicoQuant's headers (`mhlib.h`, `mhdefin.h`, `hhlib.h`, `hhdefin.h`).

It keeps what the library keeps: the device open or not, mode, sync divider (1..16), sync and
input triggers (MultiHarp edge triggers -1200..1200 mV with an edge; HydraHarp CFD 0..1000 mV with
a zero cross 0..40 mV), channel offsets (-99999..99999 ps), enables, and the flags `GetFlags`
reports (FLAG_FIFOFULL 0x0002, FLAG_SYSERROR 0x0010, FLAG_CNTS_DROPPED 0x0040, cleared when
read). Out-of-range arguments return ERROR_INVALID_ARGUMENT as the library does; calls before
`Initialize` return ERROR_DEVICE_NOT_INITIALIZED. `ReadFiFo` plays back queued T2 records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

ERROR_DEVICE_NOT_INITIALIZED = -4  # placeholder codes: the fake names them in GetErrorString
ERROR_INVALID_ARGUMENT = -5
FLAG_FIFOFULL, FLAG_SYSERROR, FLAG_CNTS_DROPPED = 0x0002, 0x0010, 0x0040
NAMES = {
    ERROR_DEVICE_NOT_INITIALIZED: b"ERROR_DEVICE_NOT_INITIALIZED",
    ERROR_INVALID_ARGUMENT: b"ERROR_INVALID_ARGUMENT",
    -1: b"ERROR_DEVICE_OPEN_FAIL",
}


class FakePicoQuantLib:
    """MHLib (prefix "MH_") or HHLib ("HH_"); `flags` are ORed into the next GetFlags, `records` queue FIFO data."""

    def __init__(self, prefix: str = "MH_", *, n_inputs: int = 4, resolution_ps: float = 5.0) -> None:
        self.prefix = prefix
        self.multiharp = prefix == "MH_"
        self.n_inputs = n_inputs
        self.resolution_ps = resolution_ps
        self.open = False
        self.initialised = False
        self.running = False
        self.sync_div = 1
        self.sync_trigger: tuple[int, int] | None = None
        self.sync_offset = 0
        self.input_trigger: dict[int, tuple[int, int]] = {}
        self.input_offset: dict[int, int] = {}
        self.enabled = dict.fromkeys(range(n_inputs), True)
        self.pending_flags = 0
        self.sticky_flags = 0  # flags a faulty device keeps reporting
        self.chunks: list[np.ndarray] = []
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., int]:
        if not name.startswith(self.prefix):
            raise AttributeError(name)
        impl = getattr(self, "_" + name[len(self.prefix) :], None)
        if impl is None:
            raise AttributeError(name)

        def call(*args: Any) -> int:
            self.calls.append(name[len(self.prefix) :])
            return impl(*args)

        return call

    def _init_needed(self) -> int:
        return 0 if self.initialised else ERROR_DEVICE_NOT_INITIALIZED

    def _GetErrorString(self, text: Any, code: int) -> int:  # noqa: N802 - library names
        msg = NAMES.get(code, b"ERROR_UNKNOWN")
        text[0 : len(msg)] = msg
        return 0

    def _OpenDevice(self, dev: int, serial: Any) -> int:  # noqa: N802
        serial[0:8] = b"1045678\x00"
        self.open = True
        return 0

    def _CloseDevice(self, dev: int) -> int:  # noqa: N802
        self.open = self.initialised = self.running = False
        return 0

    def _Initialize(self, dev: int, mode: int, ref: int) -> int:  # noqa: N802
        if not self.open or mode not in (2, 3):
            return ERROR_INVALID_ARGUMENT
        self.initialised = True
        return 0

    def _Calibrate(self, dev: int) -> int:  # noqa: N802
        return self._init_needed()

    def _GetResolution(self, dev: int, res: Any) -> int:  # noqa: N802
        res[0] = self.resolution_ps
        return self._init_needed()

    def _GetNumOfInputChannels(self, dev: int, n: Any) -> int:  # noqa: N802
        n[0] = self.n_inputs
        return self._init_needed()

    def _SetSyncDiv(self, dev: int, div: int) -> int:  # noqa: N802
        if not 1 <= div <= 16:
            return ERROR_INVALID_ARGUMENT
        self.sync_div = div
        return self._init_needed()

    def _trigger(self, level: int, second: int) -> bool:
        if self.multiharp:
            return -1200 <= level <= 1200 and second in (0, 1)
        return 0 <= level <= 1000 and 0 <= second <= 40

    def _SetSyncEdgeTrg(self, dev: int, level: int, edge: int) -> int:  # noqa: N802
        if not self.multiharp or not self._trigger(level, edge):
            return ERROR_INVALID_ARGUMENT
        self.sync_trigger = (level, edge)
        return self._init_needed()

    _SetSyncCFD = None  # replaced below for HydraHarp instances

    def _SetInputEdgeTrg(self, dev: int, ch: int, level: int, edge: int) -> int:  # noqa: N802
        if not self.multiharp or not 0 <= ch < self.n_inputs or not self._trigger(level, edge):
            return ERROR_INVALID_ARGUMENT
        self.input_trigger[ch] = (level, edge)
        return self._init_needed()

    def _SetSyncChannelOffset(self, dev: int, value: int) -> int:  # noqa: N802
        if not -99999 <= value <= 99999:
            return ERROR_INVALID_ARGUMENT
        self.sync_offset = value
        return self._init_needed()

    def _SetInputChannelOffset(self, dev: int, ch: int, value: int) -> int:  # noqa: N802
        if not 0 <= ch < self.n_inputs or not -99999 <= value <= 99999:
            return ERROR_INVALID_ARGUMENT
        self.input_offset[ch] = value
        return self._init_needed()

    def _SetInputChannelEnable(self, dev: int, ch: int, enable: int) -> int:  # noqa: N802
        if not 0 <= ch < self.n_inputs or enable not in (0, 1):
            return ERROR_INVALID_ARGUMENT
        self.enabled[ch] = bool(enable)
        return self._init_needed()

    def _StartMeas(self, dev: int, tacq: int) -> int:  # noqa: N802
        self.running = True
        return self._init_needed()

    def _StopMeas(self, dev: int) -> int:  # noqa: N802
        self.running = False
        return 0

    def _CTCStatus(self, dev: int, status: Any) -> int:  # noqa: N802
        status[0] = 0
        return 0

    def _ReadFiFo(self, dev: int, buffer: Any, *rest: Any) -> int:  # noqa: N802
        nactual = rest[-1]
        chunk = self.chunks.pop(0) if self.chunks else np.empty(0, np.uint32)
        buffer[0 : chunk.size] = chunk.tolist()
        nactual[0] = chunk.size
        return 0

    def _GetFlags(self, dev: int, flags: Any) -> int:  # noqa: N802
        flags[0], self.pending_flags = self.pending_flags | self.sticky_flags, 0
        return 0


def _set_sync_cfd(self: FakePicoQuantLib, dev: int, level: int, zc: int) -> int:
    if self.multiharp or not self._trigger(level, zc):
        return ERROR_INVALID_ARGUMENT
    self.sync_trigger = (level, zc)
    return self._init_needed()


def _set_input_cfd(self: FakePicoQuantLib, dev: int, ch: int, level: int, zc: int) -> int:
    if self.multiharp or not 0 <= ch < self.n_inputs or not self._trigger(level, zc):
        return ERROR_INVALID_ARGUMENT
    self.input_trigger[ch] = (level, zc)
    return self._init_needed()


FakePicoQuantLib._SetSyncCFD = _set_sync_cfd  # type: ignore[assignment]
FakePicoQuantLib._SetInputCFD = _set_input_cfd  # type: ignore[attr-defined]
