"""Emulated Keysight 33522B, from the 33500B series operating and service guide ("SCPI programming reference").

What the guide says and this model does: `[SOURce:]DATA:ARBitrary:DAC <name>,<values>` takes either
a comma-separated ASCII list or an IEEE 488.2 definite-length binary block of int16 (byte order by
`FORMat:BORDer NORMal|SWAPped`, big-endian by default); parsing an ASCII list is slow on the
instrument (modelled at `ascii_points_per_s`), a binary block is not. Volatile memory holds
1,048,576 points per channel (16,777,216 with option MEM). `OUTPut<n>:LOAD` (1 Ω-10 kΩ or INF,
50 Ω after reset) scales the displayed amplitude into that load: the generator's 50 Ω source
delivers twice the programmed amplitude into a high-impedance input when the load setting says
50 Ω. `[SOURce:]FUNCtion:ARBitrary:FILTer NORMal|STEP|OFF` (NORMAL after reset) selects the
interpolation filter.
"""

from __future__ import annotations

import re
import time

import numpy as np

from hil_fixtures.emulators.scpi import (
    DATA_OUT_OF_RANGE,
    DeviceError,
    ScpiDevice,
    boolean,
    fmt,
    number,
    scpi,
)

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,11}$")


class Keysight33500B(ScpiDevice):
    """Keeps what the driver loads: DAC samples by name, the selected arb, rate, amplitude, output state."""

    idn = "Agilent Technologies,33522B,MY00000001,4.00-1.19-2.00-58-00"
    channels = (1, 2)
    memory_points = 1_048_576
    accepts_binary_blocks = True
    #: how fast the instrument parses an ASCII list of points (the model's assumption; see the driver)
    ascii_points_per_s = 200_000.0
    #: the impedance of what the output drives (the modulator driver's input), ohms; inf = high-Z
    actual_load_ohm = float("inf")

    def handle(self, line: str) -> str | None:
        if ",#" in line:  # a binary block may hold ';' bytes: the message is one unit
            return self._one(line.lstrip())
        return super().handle(line)

    def reset(self) -> None:
        self.arbs: dict[int, dict[str, np.ndarray]] = {ch: {} for ch in self.channels}
        self.selected = dict.fromkeys(self.channels, "")
        self.function = dict.fromkeys(self.channels, "SIN")
        self.srate = dict.fromkeys(self.channels, 40e3)
        self.vpp = dict.fromkeys(self.channels, 0.1)
        self.offset = dict.fromkeys(self.channels, 0.0)
        self.output = dict.fromkeys(self.channels, False)
        self.load = dict.fromkeys(self.channels, 50.0)
        self.filter = dict.fromkeys(self.channels, "NORM")
        self.byte_order = "NORM"
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
        if values.startswith("#"):
            raw = values.encode("latin-1")
            digits = int(raw[1:2])
            length = int(raw[2 : 2 + digits])
            payload = raw[2 + digits : 2 + digits + length]
            if len(payload) != length or length % 2:
                raise DeviceError(-161, "Invalid block data")
            dtype = "<i2" if self.byte_order == "SWAP" else ">i2"
            data = np.frombuffer(payload, dtype=dtype).astype(np.int64)
        else:
            try:
                data = np.array([int(v) for v in values.split(",")], dtype=np.int64)
            except ValueError:
                raise DeviceError(-104, "Data type error") from None
            time.sleep(data.size / self.ascii_points_per_s)
        if data.size < 8 or data.size > self.memory_points:
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

    @scpi("*OPT")
    def _opt(self, query: bool, arg: str | None) -> str | None:
        return ("MEM" if self.memory_points > 1_048_576 else "") if query else None

    @scpi("FORMat:BORDer")
    def _border(self, query: bool, arg: str | None) -> str | None:
        if query:
            return self.byte_order
        token = (arg or "").strip().upper()[:4]
        if token not in ("NORM", "SWAP"):
            raise DeviceError(-224, "Illegal parameter value")
        self.byte_order = token
        return None

    @scpi("OUTPut#:LOAD")
    def _load(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return "9.9E+37" if self.load[ch] == float("inf") else fmt(self.load[ch])
        token = (arg or "").strip().upper()
        self.load[ch] = float("inf") if token in ("INF", "INFINITY") else number(arg, 1.0, 10e3)
        return None

    @scpi("[SOURce#:]FUNCtion:ARBitrary:FILTer")
    def _filter(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return self.filter[ch]
        token = (arg or "").strip().upper()
        token = {"NORMAL": "NORM"}.get(token, token)
        if token not in ("NORM", "STEP", "OFF"):
            raise DeviceError(-224, "Illegal parameter value")
        self.filter[ch] = token
        return None

    def delivered_vpp(self, ch: int) -> float:
        """The peak-to-peak voltage the modulator driver actually sees (50 Ω source into `actual_load_ohm`)."""
        load = self.load[ch]
        open_circuit = self.vpp[ch] if load == float("inf") else self.vpp[ch] * (load + 50.0) / load
        r = self.actual_load_ohm
        return open_circuit if r == float("inf") else open_circuit * r / (r + 50.0)

    def waveform(self, ch: int) -> np.ndarray:
        """The selected arbitrary waveform of a channel, normalised to [-1, 1]."""
        return self.arbs[ch][self.selected[ch]] / 32767.0
