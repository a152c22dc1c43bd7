"""Variable optical attenuator: Keysight 81570A / 81576A / 81577A modules in an 8163B/8164B mainframe (SCPI).

Commands from the 8157xA programming guide (8163A/B, 8164A/B, 8166A/B mainframes): `:INPut<n>:ATTenuation`,
`:INPut<n>:WAVelength`, `:INPut<n>:OFFSet`, `:OUTPut<n>:STATe` (the shutter), `*OPC?` after a move,
errors by `:SYSTem:ERRor?`. The guide, `:INPut:ATTenuation`: the value set and read is the filter's
attenuation plus the offset, so the range is offset .. offset + 60 dB. Wavelengths are sent with
picometre resolution (`%.12g` in metres), not rounded to 0.1 nm.

To verify on hardware (`pytest tests/drivers/test_attenuator.py --hil=lab.toml`): that the
installed module's range is 0-60 dB before offset (81576A/81577A: 0-60 dB; older 81570A: 0-60 dB).
"""

from __future__ import annotations

from typing import Any, Protocol

from drivers.errors import InstrumentError
from drivers.instrument import ScpiInstrument, Setting, parse_bool
from drivers.transport.base import Transport

ON_OFF = {True: "ON", False: "OFF"}


class VariableAttenuator(Protocol):
    """What the node needs from a variable optical attenuator (real or mock)."""

    attenuation: float
    shutter_open: bool

    def set_attenuation(self, db: float) -> None:
        """Set the attenuation in dB and wait until it has settled."""
        ...

    def shutdown(self) -> None:
        """Block the light."""
        ...


class Keysight8157xA(ScpiInstrument):
    """One attenuator module (mainframe slot `slot`): attenuation 0–60 dB, 1200–1700 nm, shutter.

    `shutdown()` closes the shutter, so no light reaches the detectors, and reads it back.
    """

    wavelength_range_m = (1200e-9, 1700e-9)
    offset_range_db = (-200.0, 200.0)

    def __init__(self, resource: str | Transport, *, slot: int = 1, **visa_options: Any) -> None:
        if not isinstance(slot, int) or not 1 <= slot <= 17:
            raise ValueError(f"slot must be an integer in [1, 17], got {slot!r}")
        self.slot = slot
        super().__init__(resource, **visa_options)

    @property
    def command_fields(self) -> dict[str, Any]:
        return {"slot": self.slot}

    filter_range_db = (0.0, 60.0)

    @property
    def attenuation_range_db(self) -> tuple[float, float]:
        """The settable range: the filter's 0-60 dB shifted by the offset the instrument adds."""
        offset = float(self.offset)
        return (self.filter_range_db[0] + offset, self.filter_range_db[1] + offset)

    attenuation = Setting(
        ":INP{slot}:ATT?",
        ":INP{slot}:ATT {}",
        "Attenuation in dB (offset included).",
        limits="attenuation_range_db",
        unit="dB",
        fmt="{:.3f}",
    )
    wavelength = Setting(
        ":INP{slot}:WAV?",
        ":INP{slot}:WAV {}",
        "Calibration wavelength in m.",
        limits="wavelength_range_m",
        unit="m",
        fmt="{:.12g}",
    )
    offset = Setting(
        ":INP{slot}:OFFS?",
        ":INP{slot}:OFFS {}",
        "Attenuation offset in dB.",
        limits="offset_range_db",
        unit="dB",
        fmt="{:.3f}",
    )
    shutter_open = Setting(
        ":OUTP{slot}:STAT?",
        ":OUTP{slot}:STAT {}",
        "Shutter open (True): light passes.",
        parse=parse_bool,
        choices=ON_OFF,
    )

    def set_attenuation(self, db: float) -> None:
        """Set the attenuation and wait until the filter has moved (`*OPC?`)."""
        with self._lock:
            self.attenuation = db
            self.wait_complete()

    def shutdown(self) -> None:
        """Close the shutter and confirm it."""
        with self._lock:
            for _ in range(1 + self.retries):
                self.shutter_open = False
                if not self.shutter_open:
                    return
            raise InstrumentError(f"{self.name}: shutter still open after :OUTP{self.slot}:STAT OFF")
