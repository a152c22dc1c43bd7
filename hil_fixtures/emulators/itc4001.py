"""Emulated Thorlabs ITC4001 laser diode / TEC controller (the SCPI subset the driver uses)."""

from __future__ import annotations

from hil_fixtures.emulators.scpi import DATA_OUT_OF_RANGE, DeviceError, ScpiDevice, boolean, fmt, number, scpi

MAX_CURRENT_A = 1.0
AMBIENT_C = 25.0


class ITC4001(ScpiDevice):
    """State like the instrument: LD and TEC outputs, setpoints, limit; measured values follow them.

    A current setpoint above the current limit is refused with -222 and leaves the setpoint
    unchanged, so tests can watch a SCPI error surface through the driver.
    """

    idn = "Thorlabs,ITC4001,M00000001,1.8.0/1.5.0/2.3.0"

    def reset(self) -> None:
        self.ld_on = False
        self.tec_on = False
        self.current_a = 0.0
        self.limit_a = 0.1
        self.temp_c = 25.0
        self.temp_unit = "CEL"

    @scpi("OUTPut[1][:STATe]")
    def _ld_output(self, query: bool, arg: str | None) -> str | None:
        if query:
            return "1" if self.ld_on else "0"
        self.ld_on = boolean(arg)
        return None

    @scpi("OUTPut2[:STATe]")
    def _tec_output(self, query: bool, arg: str | None) -> str | None:
        if query:
            return "1" if self.tec_on else "0"
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
        self.limit_a = number(arg, 0.0, MAX_CURRENT_A)
        self.current_a = min(self.current_a, self.limit_a)
        return None

    @scpi("SOURce2[:TEMPerature][:SPOint]")
    def _temperature(self, query: bool, arg: str | None) -> str | None:
        if query:
            return fmt(self.temp_c)
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
        return fmt(self.temp_c if self.tec_on else AMBIENT_C) if query else None

    @scpi("MEASure[:SCALar]:VOLTage[1][:DC]")
    def _meas_voltage(self, query: bool, arg: str | None) -> str | None:
        return fmt(1.2 + 2.0 * self.current_a if self.ld_on else 0.0) if query else None
