"""Laser diode and TEC controllers: Thorlabs ITC4001 (SCPI over USB-TMC through VISA).

Command set from the ITC4000 series operation manual (chapter "SCPI commands"):
- outputs: `OUTPut[1]:STATe` (laser diode), `OUTPut2:STATe` (TEC);
- protection (manual, "OUTPut subsystem"): `OUTPut[1]:PROTection:INTLock:TRIPped?` (interlock
  open), `...:KEYLock:TRIPped?` (key switch off), `...:OTEMp:TRIPped?` (over-temperature); an
  LD output that will not switch on is explained by these flags, so the driver reads them;
- LD operating mode `SOURce[1]:FUNCtion:MODE CURRent|POWer` and polarity `OUTPut[1]:POLarity CG|AG`
  (cathode/anode grounded), changeable only with the LD off;
- `SOURce[1]:CURRent`, `SOURce[1]:CURRent:LIMit`, `SOURce2:TEMPerature`, `MEASure:CURRent?`,
  `MEASure:TEMPerature?`, `UNIT:TEMPerature CEL`; errors by `SYSTem:ERRor?`.

Safe bring-up (manual, "Operating the laser diode": TEC first): `bring_up()` checks the trips,
switches the TEC on, waits until the temperature has settled, sets the limit, then a setpoint no
higher than the limit, mode and polarity, and only then the LD, reading each step back.

To verify on hardware (`pytest tests/drivers/test_bringup.py --hil=lab.toml`): the trip flags'
behaviour when the interlock opens while the LD runs (latched until the next switch-on is assumed),
and that temperature protection refuses LD-on outside the TEC window on the installed firmware.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from drivers.errors import InstrumentError
from drivers.instrument import Measurement, ScpiInstrument, Setting, check_choice, check_range, parse_bool
from drivers.transport.base import Transport

log = logging.getLogger("drivers.laser")


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
#: protection flags as the manual names them -> what a lab engineer reads in the error
TRIPS = {"INTL": "interlock open", "KEYL": "key switch (keylock) off", "OTEM": "over-temperature"}
LD_MODES = {"current": "CURR", "power": "POW"}
POLARITIES = ("CG", "AG")


class LaserTripped(InstrumentError):
    """The laser diode output is held off by a protection trip (interlock, keylock, over-temperature)."""


class ThorlabsITC4001(ScpiInstrument):
    """Thorlabs ITC4001 laser diode (1 A) and TEC controller.

    `max_current_a` narrows the current range accepted for setpoint and limit (set it to the
    diode's absolute maximum); `temperature_range_c` narrows the TEC setpoint range. Temperatures
    are °C: the session selects `UNIT:TEMP CEL` on every (re)connect. `shutdown()` switches the
    laser output off and reads it back.
    """

    def __init__(
        self,
        resource: str | Transport,
        *,
        max_current_a: float = ITC4001_MAX_CURRENT_A,
        temperature_range_c: tuple[float, float] = ITC4001_TEC_RANGE_C,
        ld_mode: str = "current",
        ld_polarity: str = "CG",
        **visa_options: Any,
    ) -> None:
        if not 0 < max_current_a <= ITC4001_MAX_CURRENT_A:
            raise ValueError(f"max_current_a must be in (0, {ITC4001_MAX_CURRENT_A}] A, got {max_current_a}")
        lo, hi = temperature_range_c
        if not ITC4001_TEC_RANGE_C[0] <= lo < hi <= ITC4001_TEC_RANGE_C[1]:
            raise ValueError(
                f"temperature_range_c must lie within {ITC4001_TEC_RANGE_C} °C with low < high, "
                f"got {temperature_range_c}"
            )
        self.current_range_a = (0.0, float(max_current_a))
        self.temperature_range_c = (float(lo), float(hi))
        self.ld_mode = check_choice(self, "ld_mode", ld_mode, tuple(LD_MODES))
        self.ld_polarity = check_choice(self, "ld_polarity", ld_polarity, POLARITIES)
        super().__init__(resource, **visa_options)

    def _on_connect(self) -> None:
        self.write("UNIT:TEMP CEL")

    output_state = Setting(
        "OUTP:STAT?",
        "OUTP:STAT {}",
        "Laser diode output as sent, no trip check (use output_enabled).",
        parse=parse_bool,
        choices=ON_OFF,
    )
    tec_enabled = Setting(
        "OUTP2:STAT?", "OUTP2:STAT {}", "TEC output on (True) or off.", parse=parse_bool, choices=ON_OFF
    )
    _setpoint = Setting(
        "SOUR:CURR?", "SOUR:CURR {}", "Laser diode current setpoint in A.", limits="current_range_a", unit="A"
    )
    _limit = Setting(
        "SOUR:CURR:LIM?", "SOUR:CURR:LIM {}", "Laser diode current limit in A.", limits="current_range_a", unit="A"
    )
    temperature_setpoint = Setting(
        "SOUR2:TEMP?", "SOUR2:TEMP {}", "TEC temperature setpoint in °C.", limits="temperature_range_c", unit="°C"
    )
    current = Measurement("MEAS:CURR?", "Measured laser diode current in A.", unit="A")
    temperature = Measurement("MEAS:TEMP?", "Measured TEC sensor temperature in °C.", unit="°C")
    voltage = Measurement("MEAS:VOLT?", "Measured laser diode voltage in V.", unit="V")

    # -- setpoint against limit (the instrument refuses one above the other; say why before sending) --

    @property
    def current_setpoint(self) -> float:
        """Laser diode current setpoint in A; never above `current_limit`."""
        return float(self._setpoint)

    @current_setpoint.setter
    def current_setpoint(self, amps: float) -> None:
        value = check_range(self, "current_setpoint", amps, *self.current_range_a, "A")
        with self._lock:
            limit = float(self._limit)
            if value > limit:
                raise ValueError(
                    f"ThorlabsITC4001.current_setpoint must not exceed current_limit = {limit:g} A, "
                    f"got {value:g} (raise the limit first)"
                )
            self._setpoint = value

    @property
    def current_limit(self) -> float:
        """Laser diode current limit in A; never below `current_setpoint`."""
        return float(self._limit)

    @current_limit.setter
    def current_limit(self, amps: float) -> None:
        value = check_range(self, "current_limit", amps, *self.current_range_a, "A")
        with self._lock:
            setpoint = float(self._setpoint)
            if value < setpoint:
                raise ValueError(
                    f"ThorlabsITC4001.current_limit must not be below current_setpoint = {setpoint:g} A, "
                    f"got {value:g} (lower the setpoint first)"
                )
            self._limit = value

    # -- protection -------------------------------------------------------------------------------

    def trips(self) -> dict[str, bool]:
        """Protection flags (`OUTP:PROT:<flag>:TRIP?`): interlock, keylock, over-temperature."""
        return {flag: self.query(f"OUTP:PROT:{flag}:TRIP?", parse_bool) for flag in TRIPS}

    def check_trips(self) -> None:
        """`LaserTripped` naming every protection that holds the LD off."""
        tripped = [TRIPS[f] for f, on in self.trips().items() if on]
        if tripped:
            raise LaserTripped(f"{self.name}: laser output held off: {', '.join(tripped)}")

    @property
    def output_enabled(self) -> bool:
        """Laser diode output on (read back from the instrument)."""
        return bool(self.output_state)

    @output_enabled.setter
    def output_enabled(self, on: bool) -> None:
        """Switch the LD; switching on is read back, and a refusal names the trip that caused it."""
        check_choice(self, "output_enabled", on, (True, False))
        with self._lock:
            self.output_state = on
            if on and not self.output_state:
                self.check_trips()
                raise InstrumentError(
                    f"{self.name}: laser output did not switch on and no protection trip is set "
                    "(TEC outside its window with temperature protection on?)"
                )

    def configure_ld(self) -> None:
        """LD operating mode and polarity from the options; only while the LD is off, as the manual requires."""
        with self._lock:
            if self.output_state:
                raise InstrumentError(f"{self.name}: LD mode and polarity can only change with the laser output off")
            self.write(f"SOUR:FUNC:MODE {LD_MODES[self.ld_mode]}")
            self.write(f"OUTP:POL {self.ld_polarity}")
            mode: str = self.query("SOUR:FUNC:MODE?").strip().upper()
            pol: str = self.query("OUTP:POL?").strip().upper()
            if not mode.startswith(LD_MODES[self.ld_mode]) or pol != self.ld_polarity:
                raise InstrumentError(
                    f"{self.name}: LD mode/polarity read back {mode}/{pol}, "
                    f"wanted {LD_MODES[self.ld_mode]}/{self.ld_polarity}"
                )

    def wait_temperature(self, tolerance_c: float, timeout_s: float, poll_s: float = 0.05) -> float:
        """Wait until the measured temperature is within `tolerance_c` of the setpoint; returns it."""
        target = self.temperature_setpoint
        deadline = time.monotonic() + timeout_s
        while True:
            t = self.temperature
            if abs(t - target) <= tolerance_c:
                return t
            if time.monotonic() >= deadline:
                raise InstrumentError(
                    f"{self.name}: TEC did not settle: {t:.3f} °C after {timeout_s:g} s, "
                    f"setpoint {target:.3f} °C ± {tolerance_c:g}"
                )
            time.sleep(poll_s)

    def bring_up(
        self,
        *,
        temperature_c: float,
        current_a: float,
        limit_a: float,
        settle_tolerance_c: float = 0.1,
        settle_timeout_s: float = 120.0,
    ) -> None:
        """TEC on -> temperature settled -> limit -> setpoint -> mode/polarity -> LD on, each step read back.

        On any failure the LD output is switched off before the error propagates.
        """
        check_range(self, "temperature_c", temperature_c, *self.temperature_range_c, "°C")
        check_range(self, "limit_a", limit_a, *self.current_range_a, "A")
        check_range(self, "current_a", current_a, 0.0, limit_a, "A (at most limit_a)")
        with self._lock:
            try:
                self.check_trips()
                self.output_enabled = False
                self.temperature_setpoint = temperature_c
                self.tec_enabled = True
                if not self.tec_enabled:
                    raise InstrumentError(f"{self.name}: TEC output did not switch on")
                self.wait_temperature(settle_tolerance_c, settle_timeout_s)
                if current_a < float(self._setpoint):
                    self.current_setpoint = current_a  # lower first, so the new limit is not below it
                self.current_limit = limit_a
                self.current_setpoint = current_a
                self.configure_ld()
                self.output_enabled = True
                self.check_trips()
            except BaseException:
                try:
                    self.shutdown()
                except Exception as exc:  # noqa: BLE001 - the original failure matters more
                    log.error("%s: shutdown after a failed bring-up failed: %s", self.name, exc)
                raise

    def shutdown(self) -> None:
        """Switch the laser diode output off and confirm it (the TEC keeps regulating)."""
        with self._lock:
            for _ in range(1 + self.retries):
                self.output_state = False
                if not self.output_state:
                    return
            raise InstrumentError(f"{self.name}: laser output still on after OUTP:STAT OFF")
