"""Emulated Keysight 33522B: volatile arbitrary waveforms per channel, sample rate, amplitude, outputs."""

from __future__ import annotations

import re

import numpy as np

from hil_fixtures.emulators.scpi import (
    DATA_OUT_OF_RANGE, DeviceError, ScpiDevice, boolean, fmt, number, scpi,
)

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,11}$")


class Keysight33500B(ScpiDevice):
    """Keeps what the driver loads: DAC samples by name, the selected arb, rate, amplitude, output state."""

    idn = "Agilent Technologies,33522B,MY00000001,4.00-1.19-2.00-58-00"
    channels = (1, 2)

    def reset(self) -> None:
        self.arbs: dict[int, dict[str, np.ndarray]] = {ch: {} for ch in self.channels}
        self.selected = {ch: "" for ch in self.channels}
        self.function = {ch: "SIN" for ch in self.channels}
        self.srate = {ch: 40e3 for ch in self.channels}
        self.vpp = {ch: 0.1 for ch in self.channels}
        self.offset = {ch: 0.0 for ch in self.channels}
        self.output = {ch: False for ch in self.channels}
        self.synced = 0

    def _ch(self) -> int:
        ch = self.suffix[0]
        if ch not in self.channels:
            raise DeviceError(-114, "Header suffix out of range")
        return ch

    @scpi("[SOURce#:]DATA:VOLatile:CLEar")
    def _clear(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        self.arbs[ch].clear()
        self.selected[ch] = ""
        return None

    @scpi("[SOURce#:]DATA:ARBitrary:DAC")
    def _dac(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        name, _, values = (arg or "").partition(",")
        if not NAME.match(name.strip()):
            raise DeviceError(-224, "Illegal parameter value")
        try:
            data = np.array([int(v) for v in values.split(",")], dtype=np.int64)
        except ValueError:
            raise DeviceError(-104, "Data type error") from None
        if data.size < 8 or data.size > 1_000_000:
            raise DeviceError(-223, "Too much data" if data.size > 8 else "Not enough data")
        if np.any(np.abs(data) > 32767):
            raise DeviceError(*DATA_OUT_OF_RANGE)
        self.arbs[ch][name.strip().upper()] = data
        return None

    @scpi("[SOURce#:]FUNCtion:ARBitrary")
    def _arb(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return f'"{self.selected[ch]}"'
        name = (arg or "").strip().strip('"').upper()
        if name not in self.arbs[ch]:
            raise DeviceError(-224, "Illegal parameter value")
        self.selected[ch] = name
        return None

    @scpi("[SOURce#:]FUNCtion[:SHAPe]")
    def _function(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return self.function[ch]
        shape = (arg or "").strip().upper()
        if shape not in ("SIN", "SQU", "RAMP", "PULS", "NOIS", "DC", "ARB", "PRBS", "TRI"):
            raise DeviceError(-224, "Illegal parameter value")
        if shape == "ARB" and not self.selected[ch]:
            raise DeviceError(-221, "Settings conflict")
        self.function[ch] = shape
        return None

    @scpi("[SOURce#:]FUNCtion:ARBitrary:SRATe")
    def _srate(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return fmt(self.srate[ch])
        self.srate[ch] = number(arg, 1e-6, 250e6)
        return None

    @scpi("FUNCtion:ARBitrary:SYNChronize")
    def _sync(self, query: bool, arg: str | None) -> str | None:
        self.synced += 1
        return None

    @scpi("[SOURce#:]VOLTage[:AMPLitude]")
    def _vpp(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return fmt(self.vpp[ch])
        vpp = number(arg, 1e-3, 10.0)
        if vpp / 2 + abs(self.offset[ch]) > 5.0:
            raise DeviceError(-221, "Settings conflict")
        self.vpp[ch] = vpp
        return None

    @scpi("[SOURce#:]VOLTage:OFFSet")
    def _offset(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return fmt(self.offset[ch])
        offset = number(arg, -5.0, 5.0)
        if self.vpp[ch] / 2 + abs(offset) > 5.0:
            raise DeviceError(-221, "Settings conflict")
        self.offset[ch] = offset
        return None

    @scpi("OUTPut#[:STATe]")
    def _output(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return "1" if self.output[ch] else "0"
        self.output[ch] = boolean(arg)
        return None

    def waveform(self, ch: int) -> np.ndarray:
        """The selected arbitrary waveform of a channel, normalised to [-1, 1]."""
        return self.arbs[ch][self.selected[ch]] / 32767.0
