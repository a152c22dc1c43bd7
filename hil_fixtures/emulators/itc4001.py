"""Emulated Thorlabs ITC4001 laser diode / TEC controller, written from the ITC4000 series manual.

Modelled from the manual's description of the instrument, not from the driver: the laser output
switches on only with the interlock closed and the key switch on; otherwise the command is taken
but the output stays off and the matching `OUTPut:PROTection:*:TRIPped?` flag reads 1 (the front
panel shows the trip). With temperature protection enabled (a front-panel setting; off after reset
here) the TEC must be regulating within its window for the LD to switch on. The setpoint may not exceed the current limit and the limit may not go below
the setpoint. The measured temperature approaches the setpoint with a first-order lag once the
TEC is on. LD mode (`SOURce:FUNCtion:MODE CURRent|POWer`) and polarity (`OUTPut:POLarity CG|AG`)
can only change while the LD output is off.
"""

from __future__ import annotations

import math
import time

from hil_fixtures.emulators.scpi import DATA_OUT_OF_RANGE, DeviceError, ScpiDevice, boolean, fmt, number, scpi

SETTINGS_CONFLICT = (-221, "Settings conflict")
#: TEC window within which temperature protection lets the LD switch on, °C
TEC_WINDOW_C = 1.0

MAX_CURRENT_A = 1.0
AMBIENT_C = 25.0


class ITC4001(ScpiDevice):
    """State like the instrument: LD and TEC outputs, setpoints, limit; measured values follow them.

    A current setpoint above the current limit is refused with -222 and leaves the setpoint
    unchanged, so tests can watch a SCPI error surface through the driver.
    """

    idn = "Thorlabs,ITC4001,M00000001,1.8.0/1.5.0/2.3.0"

    #: the physical state a test sets: interlock loop closed, key switch turned on, sensor overheated
    interlock_closed = True
    key_on = True
    overheated = False
    temperature_protection = False
    #: time constant of the TEC loop in seconds (the emulator's thermal model)
    tec_tau_s = 0.02

    def reset(self) -> None:
        self.ld_on = False
        self.tec_on = False
        self.current_a = 0.0
        self.limit_a = 0.1
        self.temp_c = 25.0
        self.temp_unit = "CEL"
        self.mode = "CURR"
        self.polarity = "CG"
        self.trips = {"INTL": False, "KEYL": False, "OTEM": False}
        self._measured_c = AMBIENT_C
        self._tec_since = time.monotonic()

    def sensor_c(self) -> float:
        """The TEC sensor temperature now (first-order approach to the setpoint while the TEC runs)."""
        now = time.monotonic()
        target = self.temp_c if self.tec_on else AMBIENT_C
        k = 1.0 - math.exp(-(now - self._tec_since) / self.tec_tau_s)
        self._measured_c += (target - self._measured_c) * k
        self._tec_since = now
        return self._measured_c + (30.0 if self.overheated else 0.0)

    def _trip_check(self) -> bool:
        """Latch the protection trips; True when the LD may be on."""
        self.trips["INTL"] |= not self.interlock_closed
        self.trips["KEYL"] |= not self.key_on
        self.trips["OTEM"] |= self.overheated
        in_window = not self.temperature_protection or (
            self.tec_on and abs(self.sensor_c() - self.temp_c) <= TEC_WINDOW_C
        )
        return self.interlock_closed and self.key_on and not self.overheated and in_window

    @scpi("OUTPut[1][:STATe]")
    def _ld_output(self, query: bool, arg: str | None) -> str | None:
        if query:
            if self.ld_on and not self._trip_check():
                self.ld_on = False  # a trip while running switches the LD off
            return "1" if self.ld_on else "0"
        on = boolean(arg)
        if on:
            for flag in self.trips:
                self.trips[flag] = False  # switching on clears the latched trips first
            self.ld_on = self._trip_check()
        else:
            self.ld_on = False
        return None

    @scpi("OUTPut[1]:PROTection:INTLock:TRIPped")
    def _intl(self, query: bool, arg: str | None) -> str | None:
        self.trips["INTL"] |= not self.interlock_closed
        return ("1" if self.trips["INTL"] else "0") if query else None

    @scpi("OUTPut[1]:PROTection:KEYLock:TRIPped")
    def _keyl(self, query: bool, arg: str | None) -> str | None:
        self.trips["KEYL"] |= not self.key_on
        return ("1" if self.trips["KEYL"] else "0") if query else None

    @scpi("OUTPut[1]:PROTection:OTEMp:TRIPped")
    def _otem(self, query: bool, arg: str | None) -> str | None:
        self.trips["OTEM"] |= self.overheated
        return ("1" if self.trips["OTEM"] else "0") if query else None

    @scpi("OUTPut[1]:POLarity")
    def _polarity(self, query: bool, arg: str | None) -> str | None:
        if query:
            return self.polarity
        token = (arg or "").strip().upper()
        if token not in ("CG", "AG"):
            raise DeviceError(-224, "Illegal parameter value")
        if self.ld_on:
            raise DeviceError(*SETTINGS_CONFLICT)
        self.polarity = token
        return None

    @scpi("SOURce[1]:FUNCtion[:SHAPe]:MODE")
    def _mode(self, query: bool, arg: str | None) -> str | None:
        if query:
            return self.mode
        token = (arg or "").strip().upper()
        token = {"CURRENT": "CURR", "POWER": "POW"}.get(token, token)
        if token not in ("CURR", "POW"):
            raise DeviceError(-224, "Illegal parameter value")
        if self.ld_on:
            raise DeviceError(*SETTINGS_CONFLICT)
        self.mode = token
        return None

    @scpi("OUTPut2[:STATe]")
    def _tec_output(self, query: bool, arg: str | None) -> str | None:
        if query:
            return "1" if self.tec_on else "0"
        self.sensor_c()
        self.tec_on = boolean(arg)
        return None

    @scpi("SOURce[1][:CURRent][:LEVel][:IMMediate][:AMPLitude]")
    def _current(self, query: bool, arg: str | None) -> str | None:
        if query:
            return fmt(self.current_a)
        value = number(arg, 0.0, MAX_CURRENT_A)
        if value > self.limit_a:
            raise DeviceError(*DATA_OUT_OF_RANGE)
        self.current_a = value
        return None

    @scpi("SOURce[1]:CURRent:LIMit[:AMPLitude]")
    def _limit(self, query: bool, arg: str | None) -> str | None:
        if query:
            return fmt(self.limit_a)
        limit = number(arg, 0.0, MAX_CURRENT_A)
        if limit < self.current_a:
            raise DeviceError(*SETTINGS_CONFLICT)
        self.limit_a = limit
        return None

    @scpi("SOURce2[:TEMPerature][:SPOint]")
    def _temperature(self, query: bool, arg: str | None) -> str | None:
        if query:
            return fmt(self.temp_c)
        self.sensor_c()
        self.temp_c = number(arg, -45.0, 145.0)
        return None

    @scpi("UNIT:TEMPerature")
    def _unit(self, query: bool, arg: str | None) -> str | None:
        if query:
            return self.temp_unit
        token = (arg or "").strip().upper()
        if token not in ("CEL", "C", "K", "FAR", "F"):
            raise DeviceError(-224, "Illegal parameter value")
        self.temp_unit = token[0] if token in ("C", "K", "F") else token
        return None

    @scpi("MEASure[:SCALar]:CURRent[1][:DC]")
    def _meas_current(self, query: bool, arg: str | None) -> str | None:
        return fmt(self.current_a if self.ld_on else 0.0) if query else None

    @scpi("MEASure[:SCALar]:TEMPerature")
    def _meas_temperature(self, query: bool, arg: str | None) -> str | None:
        return fmt(self.sensor_c()) if query else None

    @scpi("MEASure[:SCALar]:VOLTage[1][:DC]")
    def _meas_voltage(self, query: bool, arg: str | None) -> str | None:
        return fmt(1.2 + 2.0 * self.current_a if self.ld_on else 0.0) if query else None
