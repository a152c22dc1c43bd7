"""Emulated Keysight M8195A: segment 1 per channel, sample rate, amplitude, outputs, run state."""

from __future__ import annotations

import numpy as np

from hil_fixtures.emulators.scpi import DATA_OUT_OF_RANGE, DeviceError, ScpiDevice, boolean, fmt, number, scpi


class M8195A(ScpiDevice):
    """Keeps segment data per channel; a segment must be defined before data lands in it."""

    idn = "Keysight Technologies,M8195A,MY00000002,4.1.0.0"
    channels = (1, 2, 3, 4)

    def reset(self) -> None:
        self.rate = 64e9
        self.mode = "ARB"
        self.segments: dict[int, np.ndarray | None] = {ch: None for ch in self.channels}
        self.selected = {ch: 0 for ch in self.channels}
        self.vpp = {ch: 0.5 for ch in self.channels}
        self.output = {ch: False for ch in self.channels}
        self.running = False

    def _ch(self) -> int:
        ch = self.suffix[0]
        if ch not in self.channels:
            raise DeviceError(-114, "Header suffix out of range")
        return ch

    def _idle(self) -> None:
        if self.running:
            raise DeviceError(-221, "Settings conflict; instrument is running")

    @scpi("FREQuency:RASTer")
    def _rate(self, query: bool, arg: str | None) -> str | None:
        if query:
            return fmt(self.rate)
        self._idle()
        self.rate = number(arg, 53.76e9, 65e9)
        return None

    @scpi("FUNCtion:MODE")
    def _mode(self, query: bool, arg: str | None) -> str | None:
        if query:
            return self.mode
        token = (arg or "").strip().upper()
        if token not in ("ARB", "ARBITRARY", "STS", "STSC"):
            raise DeviceError(-224, "Illegal parameter value")
        self.mode = token[:3] if token.startswith("ARB") else token
        return None

    @scpi("TRACe#:DELete:ALL")
    def _delete(self, query: bool, arg: str | None) -> str | None:
        self._idle()
        self.segments[self._ch()] = None
        return None

    @scpi("TRACe#:DEFine")
    def _define(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        self._idle()
        try:
            seg, length = (int(v) for v in (arg or "").split(","))
        except ValueError:
            raise DeviceError(-104, "Data type error") from None
        if seg != 1 or length < 1280 or length % 256:
            raise DeviceError(*DATA_OUT_OF_RANGE)
        self.segments[ch] = np.zeros(length, dtype=np.int64)
        return None

    @scpi("TRACe#[:DATA]")
    def _data(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        self._idle()
        try:
            values = [int(v) for v in (arg or "").split(",")]
        except ValueError:
            raise DeviceError(-104, "Data type error") from None
        seg, offset, data = values[0], values[1], np.array(values[2:], dtype=np.int64)
        target = self.segments[ch]
        if seg != 1 or target is None or offset < 0 or offset + data.size > target.size:
            raise DeviceError(*DATA_OUT_OF_RANGE)
        if np.any((data < -128) | (data > 127)):
            raise DeviceError(*DATA_OUT_OF_RANGE)
        target[offset:offset + data.size] = data
        return None

    @scpi("TRACe#:SELect")
    def _select(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return str(self.selected[ch])
        if (arg or "").strip() != "1" or self.segments[ch] is None:
            raise DeviceError(*DATA_OUT_OF_RANGE)
        self.selected[ch] = 1
        return None

    @scpi("VOLTage#[:AMPLitude]")
    def _vpp(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return fmt(self.vpp[ch])
        self.vpp[ch] = number(arg, 0.075, 1.0)
        return None

    @scpi("OUTPut#[:STATe]")
    def _output(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return "1" if self.output[ch] else "0"
        self.output[ch] = boolean(arg)
        return None

    @scpi("INITiate:IMMediate")
    def _init(self, query: bool, arg: str | None) -> str | None:
        self.running = True
        return None

    @scpi("ABORt")
    def _abort(self, query: bool, arg: str | None) -> str | None:
        self.running = False
        return None

    def waveform(self, ch: int) -> np.ndarray:
        """Segment 1 of a channel, normalised to [-1, 1]."""
        seg = self.segments[ch]
        assert seg is not None
        return seg / 127.0
