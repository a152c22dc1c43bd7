"""Emulated Keysight 8163B mainframe with 8157xA attenuator modules."""

from __future__ import annotations

from hil_fixtures.emulators.scpi import DeviceError, ScpiDevice, boolean, fmt, number, scpi


class Keysight8157xA(ScpiDevice):
    """Attenuation, wavelength, offset and shutter per slot (slots 1 and 2 fitted)."""

    idn = "Agilent Technologies,8163B,DE00000004,V5.25(72637)"
    slots = (1, 2)

    def reset(self) -> None:
        self.att = {s: 0.0 for s in self.slots}
        self.wav = {s: 1550e-9 for s in self.slots}
        self.offs = {s: 0.0 for s in self.slots}
        self.shutter = {s: False for s in self.slots}

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
        value = number(arg, 0.0, 60.0)
        self.att[s] = value
        return None

    @scpi("INPut#[:CHANnel]:WAVelength")
    def _wav(self, query: bool, arg: str | None) -> str | None:
        s = self._slot()
        if query:
            return fmt(self.wav[s])
        self.wav[s] = number(arg, 1200e-9, 1700e-9)
        return None

    @scpi("INPut#[:CHANnel]:OFFSet")
    def _offs(self, query: bool, arg: str | None) -> str | None:
        s = self._slot()
        if query:
            return fmt(self.offs[s])
        self.offs[s] = number(arg, -200.0, 200.0)
        return None

    @scpi("OUTPut#[:CHANnel][:STATe]")
    def _shutter(self, query: bool, arg: str | None) -> str | None:
        s = self._slot()
        if query:
            return "1" if self.shutter[s] else "0"
        self.shutter[s] = boolean(arg)
        return None
