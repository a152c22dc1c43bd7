"""Emulated Keysight M8195A, from the M8195A user's guide (rev. 2), independently of the driver.

What the guide says and this model does:
- `:INSTrument:DACMode SINGle|DUAL|FOUR|MARKer|DCDuplicate|DCMarker` decides which channels
  generate a waveform: SINGle and MARKer only channel 1, DUAL channels 1 and 4, FOUR all four,
  DCDuplicate and DCMarker channels 1 and 2 (3 and 4 carry a copy or markers). A channel outside
  the mode plays nothing, whatever was loaded into it.
- `:TRACe<n>:MMODe INTernal|EXTended` per channel; `:INSTrument:MEMory:EXTended:RDIVider
  DIV1|DIV2|DIV4` divides the sample rate of every channel sourced from extended memory.
- In extended memory the segment table is shared: a segment defined on one channel is defined on
  all extended-memory channels, `:TRACe:DELete[:ALL]` on one deletes on all, and defining a
  segment id that exists is refused. Internal memory holds 16 384 samples per channel.
- Mode, memory and divider changes are refused while running.
- Assumed here, not from the guide: the state after reset (SINGle, internal memory, DIV1); the
  driver sets all three explicitly, so nothing depends on it.
"""

from __future__ import annotations

import numpy as np

from hil_fixtures.emulators.scpi import DATA_OUT_OF_RANGE, DeviceError, ScpiDevice, boolean, fmt, number, scpi


class M8195A(ScpiDevice):
    """Keeps segment data per channel; a segment must be defined before data lands in it."""

    idn = "Keysight Technologies,M8195A,MY00000002,4.1.0.0"
    channels = (1, 2, 3, 4)
    internal_samples = 16_384
    GENERATING = {"SING": (1,), "MARK": (1,), "DUAL": (1, 4), "FOUR": (1, 2, 3, 4), "DCD": (1, 2), "DCM": (1, 2)}

    def reset(self) -> None:
        self.rate = 64e9
        self.mode = "ARB"
        self.dac_mode = "SING"
        self.mmode = dict.fromkeys(self.channels, "INT")
        self.rdiv = 1
        self.ext_lengths: dict[int, int] = {}  # the shared extended-memory segment table: id -> length
        self.segments: dict[int, np.ndarray | None] = dict.fromkeys(self.channels)
        self.selected = dict.fromkeys(self.channels, 0)
        self.vpp = dict.fromkeys(self.channels, 0.5)
        self.output = dict.fromkeys(self.channels, False)
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

    def _sharing(self, ch: int) -> tuple[int, ...]:
        """The channels a segment operation on `ch` reaches: all extended-memory channels, or `ch`."""
        if self.mmode[ch] == "EXT":
            return tuple(c for c in self.channels if self.mmode[c] == "EXT")
        return (ch,)

    @scpi("TRACe#:DELete:ALL")
    def _delete(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        self._idle()
        for c in self._sharing(ch):
            self.segments[c] = None
        if self.mmode[ch] == "EXT":
            self.ext_lengths.clear()
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
        if self.mmode[ch] == "INT":
            if length > self.internal_samples:
                raise DeviceError(-223, "Too much data")
            self.segments[ch] = np.zeros(length, dtype=np.int64)
            return None
        if seg in self.ext_lengths:
            raise DeviceError(-221, "Settings conflict; segment already defined")
        self.ext_lengths[seg] = length
        for c in self._sharing(ch):
            self.segments[c] = np.zeros(length, dtype=np.int64)
        return None

    @scpi("INSTrument:DACMode")
    def _dacm(self, query: bool, arg: str | None) -> str | None:
        if query:
            return self.dac_mode
        token = (arg or "").strip().upper()
        for short in self.GENERATING:
            if token.startswith(short):
                self._idle()
                self.dac_mode = short
                return None
        raise DeviceError(-224, "Illegal parameter value")

    @scpi("TRACe#:MMODe")
    def _mmode(self, query: bool, arg: str | None) -> str | None:
        ch = self._ch()
        if query:
            return self.mmode[ch]
        token = (arg or "").strip().upper()[:3]
        if token not in ("INT", "EXT"):
            raise DeviceError(-224, "Illegal parameter value")
        self._idle()
        if token != self.mmode[ch]:
            self.segments[ch] = None
        self.mmode[ch] = token
        return None

    @scpi("INSTrument:MEMory:EXTended:RDIVider")
    def _rdiv(self, query: bool, arg: str | None) -> str | None:
        if query:
            return f"DIV{self.rdiv}"
        token = (arg or "").strip().upper()
        if token not in ("DIV1", "DIV2", "DIV4"):
            raise DeviceError(-224, "Illegal parameter value")
        self._idle()
        self.rdiv = int(token[3])
        return None

    def sample_rate(self, ch: int) -> float:
        """Samples per second the channel plays: the DAC rate, divided for extended memory."""
        return self.rate / self.rdiv if self.mmode[ch] == "EXT" else self.rate

    def generating(self, ch: int) -> bool:
        """Whether channel `ch` puts out its waveform now (running, output on, enabled by the DAC mode)."""
        return (
            self.running
            and self.output[ch]
            and ch in self.GENERATING[self.dac_mode]
            and self.selected[ch] == 1
            and self.segments[ch] is not None
        )

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
        target[offset : offset + data.size] = data
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
