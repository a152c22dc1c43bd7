"""Emulated Thorlabs MBX bias controller, written from the MX/MBX remote control user guide.

What the guide says and this model does (independently of the driver): every command is answered
with one line ending in NL. A setting is acknowledged with `1`, or refused with `Err: <reason>`
(the setting is not applied); a query answers its value. The VOA setpoint range is 1.0-20 dB
(Rev E). Unknown commands answer `Err: Unknown command`.
"""

from __future__ import annotations

from hil_fixtures.emulators.scpi import DeviceError, ScpiDevice, boolean, number, scpi

VOA_RANGE_DB = (1.0, 20.0)


class MBX(ScpiDevice):
    """A modulator whose bias follows the mode: null -> -Vπ/2 offset, quadrature -> 0, manual -> held voltage."""

    idn = "THORLABS,MBX,M00000003,1.9.4"
    v_pi = 3.5
    #: fault injection: the next N settings are refused with this reason (as a faulty unit would)
    refuse_next: int = 0
    refuse_reason = "Hardware fault"
    #: fault injection: every command, queries included, answers this (a unit in a fault state)
    error_reply: str | None = None

    def handle(self, line: str) -> str | None:
        """One command in, one NL-terminated line out: the query's value, `1`, or `Err: ...`."""
        query = line.split(" ")[0].endswith("?")
        if self.error_reply is not None:
            return self.error_reply
        if not query and self.refuse_next > 0:
            self.refuse_next -= 1
            return f"Err: {self.refuse_reason}"
        before = len(self.errors)
        try:
            reply = super().handle(line)
        except DeviceError as exc:  # pragma: no cover - handlers queue their errors
            return f"Err: {exc.message}"
        if len(self.errors) > before:
            _, message = self.errors.pop()
            return f"Err: {message}"
        return reply if query else "1"

    def reset(self) -> None:
        self.mode = 0
        self.hold_mv = 0
        self.ratio = 5000
        self.voa_on = False
        self.voa_db = 10.0

    @scpi("MZM:MODE")
    def _mode(self, query: bool, arg: str | None) -> str | None:
        if query:
            return str(self.mode)
        self.mode = int(number(arg, 0, 9))
        return None

    @scpi("MZM:HOLD:VOLTAGE")
    def _hold(self, query: bool, arg: str | None) -> str | None:
        if query:
            return str(self.hold_mv)
        self.hold_mv = int(number(arg, -10000, 10000))
        return None

    @scpi("MZM:HOLD:RATIO")
    def _ratio(self, query: bool, arg: str | None) -> str | None:
        if query:
            return str(self.ratio)
        self.ratio = int(number(arg, 250, 10000))
        return None

    @scpi("MZM:VOLTAGE")
    def _voltage(self, query: bool, arg: str | None) -> str | None:
        if not query:
            return None
        volts = {0: 0.0, 1: 0.0, 2: self.v_pi, 3: self.v_pi / 2, 4: -self.v_pi / 2, 7: self.hold_mv / 1000}
        return f"{volts.get(self.mode, self.v_pi / 2):.3f}"

    @scpi("MZM:TAP:MW")
    def _tap(self, query: bool, arg: str | None) -> str | None:
        return "0.250" if query else None

    @scpi("MZM:SETPOINT")
    def _setpoint(self, query: bool, arg: str | None) -> str | None:
        return ("1" if self.mode in (1, 2, 3, 4, 5, 6, 8, 9) else "0") if query else None

    @scpi("VOA:POWER")
    def _voa_power(self, query: bool, arg: str | None) -> str | None:
        if query:
            return "1" if self.voa_on else "0"
        self.voa_on = boolean(arg)
        return None

    @scpi("VOA:ATTEN")
    def _voa_atten(self, query: bool, arg: str | None) -> str | None:
        if query:
            return f"{self.voa_db:g}"
        self.voa_db = number(arg, *VOA_RANGE_DB)
        return None

    @scpi("VOA:MEASURED")
    def _voa_measured(self, query: bool, arg: str | None) -> str | None:
        return f"{self.voa_db:.2f}" if query else None
