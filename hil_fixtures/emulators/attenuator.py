"""Emulated Keysight 8163B mainframe with 8157xA attenuator modules, from the 8157xA programming guide.

As the guide describes `:INPut:ATTenuation`: the attenuation set and read is the filter's
attenuation plus the user offset (`:INPut:OFFSet`), so the range accepted is offset .. offset+60 dB;
beyond it -222. Wavelengths are kept at full precision (the guide's examples set them in nm with
picometre digits, e.g. `:INP1:WAV 1550.123nm`); a unit suffix NM/UM/M is understood.
"""

from __future__ import annotations

from hil_fixtures.emulators.scpi import DeviceError, ScpiDevice, boolean, fmt, number, scpi


class Keysight8157xA(ScpiDevice):
    """Attenuation, wavelength, offset and shutter per slot (slots 1 and 2 fitted)."""

    idn = "Agilent Technologies,8163B,DE00000004,V5.25(72637)"
    slots = (1, 2)

    def reset(self) -> None:
        self.att = dict.fromkeys(self.slots, 0.0)
        self.wav = dict.fromkeys(self.slots, 1550e-9)
        self.offs = dict.fromkeys(self.slots, 0.0)
        self.shutter = dict.fromkeys(self.slots, False)

    def _slot(self) -> int:
        slot = self.suffix[0]
        if slot not in self.slots:
            raise DeviceError(-114, "Header suffix out of range")
        return slot

    @scpi("INPut#[:CHANnel]:ATTenuation")
    def _att(self, query: bool, arg: str | None) -> str | None:
        s = self._slot()
        if query:
            return fmt(self.att[s])
        value = number(arg, self.offs[s] + 0.0, self.offs[s] + 60.0)
        self.att[s] = value
        return None

    @scpi("INPut#[:CHANnel]:WAVelength")
    def _wav(self, query: bool, arg: str | None) -> str | None:
        s = self._slot()
        if query:
            return f"{self.wav[s]:+.9E}"
        token = (arg or "").strip().upper()
        scale = 1.0
        for suffix, factor in (("NM", 1e-9), ("UM", 1e-6), ("M", 1.0)):
            if token.endswith(suffix):
                token, scale = token[: -len(suffix)], factor
                break
        self.wav[s] = number(token, 1200e-9 / scale, 1700e-9 / scale) * scale
        return None

    @scpi("INPut#[:CHANnel]:OFFSet")
    def _offs(self, query: bool, arg: str | None) -> str | None:
        s = self._slot()
        if query:
            return fmt(self.offs[s])
        offset = number(arg, -200.0, 200.0)
        self.att[s] += offset - self.offs[s]  # the filter stays where it is; the displayed value moves
        self.offs[s] = offset
        return None

    @scpi("OUTPut#[:CHANnel][:STATe]")
    def _shutter(self, query: bool, arg: str | None) -> str | None:
        s = self._slot()
        if query:
            return "1" if self.shutter[s] else "0"
        self.shutter[s] = boolean(arg)
        return None
