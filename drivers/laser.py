"""Laser diode and TEC controllers: Thorlabs ITC4001 (SCPI over USB-TMC through VISA).

Command set from the ITC4000 series operation manual: `OUTPut[1]:STATe` (laser diode output),
`OUTPut2:STATe` (TEC), `SOURce[1]:CURRent[:LIMit]`, `SOURce2:TEMPerature`, `MEASure:CURRent?`,
`MEASure:TEMPerature?`, `UNIT:TEMPerature CEL`, errors by `SYSTem:ERRor?`.
"""

from __future__ import annotations

from typing import Any, Protocol

from drivers.errors import InstrumentError
from drivers.instrument import Measurement, ScpiInstrument, Setting, parse_bool
from drivers.transport.base import Transport

class LaserController(Protocol):
    """What the node needs from a laser diode driver (real or mock); not runtime-checkable, as
    reading an attribute talks to the instrument."""

    output_enabled: bool
    current_setpoint: float
    current_limit: float
    temperature_setpoint: float

    @property
    def current(self) -> float:
        """Measured laser diode current in A."""
        ...

    @property
    def temperature(self) -> float:
        """Measured temperature in °C."""
        ...

    def shutdown(self) -> None:
        """Laser output off."""
        ...


ITC4001_MAX_CURRENT_A = 1.0
ITC4001_TEC_RANGE_C = (-45.0, 145.0)
ON_OFF = {True: "ON", False: "OFF"}


class ThorlabsITC4001(ScpiInstrument):
    """Thorlabs ITC4001 laser diode (1 A) and TEC controller.

    `max_current_a` narrows the current range accepted for setpoint and limit (set it to the
    diode's absolute maximum); `temperature_range_c` narrows the TEC setpoint range. Temperatures
    are °C: the session selects `UNIT:TEMP CEL` on every (re)connect. `shutdown()` switches the
    laser output off and reads it back.
    """

    def __init__(self, resource: str | Transport, *, max_current_a: float = ITC4001_MAX_CURRENT_A,
                 temperature_range_c: tuple[float, float] = ITC4001_TEC_RANGE_C, **visa_options: Any) -> None:
        if not 0 < max_current_a <= ITC4001_MAX_CURRENT_A:
            raise ValueError(f"max_current_a must be in (0, {ITC4001_MAX_CURRENT_A}] A, got {max_current_a}")
        lo, hi = temperature_range_c
        if not ITC4001_TEC_RANGE_C[0] <= lo < hi <= ITC4001_TEC_RANGE_C[1]:
            raise ValueError(f"temperature_range_c must lie within {ITC4001_TEC_RANGE_C} °C with low < high, "
                             f"got {temperature_range_c}")
        self.current_range_a = (0.0, float(max_current_a))
        self.temperature_range_c = (float(lo), float(hi))
        super().__init__(resource, **visa_options)

    def _on_connect(self) -> None:
        self.write("UNIT:TEMP CEL")

    output_enabled = Setting("OUTP:STAT?", "OUTP:STAT {}", "Laser diode output on (True) or off.",
                             parse=parse_bool, choices=ON_OFF)
    tec_enabled = Setting("OUTP2:STAT?", "OUTP2:STAT {}", "TEC output on (True) or off.",
                          parse=parse_bool, choices=ON_OFF)
    current_setpoint = Setting("SOUR:CURR?", "SOUR:CURR {}", "Laser diode current setpoint in A.",
                               limits="current_range_a", unit="A")
    current_limit = Setting("SOUR:CURR:LIM?", "SOUR:CURR:LIM {}", "Laser diode current limit in A.",
                            limits="current_range_a", unit="A")
    temperature_setpoint = Setting("SOUR2:TEMP?", "SOUR2:TEMP {}", "TEC temperature setpoint in °C.",
                                   limits="temperature_range_c", unit="°C")
    current = Measurement("MEAS:CURR?", "Measured laser diode current in A.", unit="A")
    temperature = Measurement("MEAS:TEMP?", "Measured TEC sensor temperature in °C.", unit="°C")
    voltage = Measurement("MEAS:VOLT?", "Measured laser diode voltage in V.", unit="V")

    def shutdown(self) -> None:
        """Switch the laser diode output off and confirm it (the TEC keeps regulating)."""
        with self._lock:
            for _ in range(1 + self.retries):
                self.output_enabled = False
                if not self.output_enabled:
                    return
            raise InstrumentError(f"{self.name}: laser output still on after OUTP:STAT OFF")
