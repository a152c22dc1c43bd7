"""Modulator bias controller: Thorlabs MBX series (serial, its ASCII command set).

Commands from the MX/MBX remote control user guide (section "Mach-Zehnder Modulator Bias Control
Commands"): `MZM:MODE: <n>` / `MZM:MODE?`, `MZM:HOLD:VOLTAGE: <mV>`, `MZM:HOLD:RATIO: <%·100>`,
`MZM:VOLTAGE?`, `MZM:TAP:MW?`, `MZM:SETPOINT?`, `VOA:POWER: <0|1>`, `VOA:ATTEN: <dB>` (VOA
range 1.0-20 dB from hardware Rev E). Same guide, "Command syntax": 115200 baud; every command is
answered with one line ending in NL (LF): a setting with `1`, or `Err: <reason>` when refused; a
query with its value. The MBX has no error queue: each acknowledgement is read (so no stale `1`
is ever taken for a later answer) and the setting is then read back.

To verify on hardware (`pytest tests/drivers/test_bias.py --hil=lab.toml -k hil`): the write
termination the firmware accepts (CR is sent; the guide's examples show CR), and the exact text
after `Err:` for an out-of-range VOA setpoint.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Protocol

from drivers.errors import InstrumentError
from drivers.instrument import BadReply, Instrument, Measurement, check_range, parse_bool, parse_float, parse_int
from drivers.transport.base import Transport


class BiasMode(IntEnum):
    """MZM bias modes as the MBX numbers them."""

    OFF = 0
    AUTO_PEAK = 1
    AUTO_NULL = 2
    AUTO_QUAD_POS = 3
    AUTO_QUAD_NEG = 4
    HOLD_QUAD_POS = 5
    HOLD_QUAD_NEG = 6
    MANUAL = 7
    AUTO_POWER_POS = 8
    AUTO_POWER_NEG = 9


class BiasController(Protocol):
    """What the node needs from a modulator bias controller (real or mock)."""

    bias_mode: BiasMode
    hold_voltage: float

    @property
    def bias_voltage(self) -> float:
        """Bias voltage applied now, in V."""
        ...

    def shutdown(self) -> None:
        """Stop driving the modulator."""
        ...


class ThorlabsMBX(Instrument):
    """Thorlabs MBX modulator bias controller over its serial port (or a `socket://` URL).

    `shutdown()` sets the bias mode to OFF (no bias voltage on the modulator) and reads it back.
    """

    default_options = {"read_termination": "\n", "write_termination": "\r", "baud_rate": 115200}
    hold_voltage_range_v = (-10.0, 10.0)
    power_ratio_range_pct = (2.5, 100.0)
    voa_attenuation_range_db = (1.0, 20.0)  # MBX Rev E user guide, VOA section

    def __init__(self, resource: str | Transport, **serial_options: Any) -> None:
        super().__init__(resource, **serial_options)

    def write(
        self, command: str | bytes, *, check: bool | None = None, retry: bool = True, shown: str | None = None
    ) -> None:
        """Send a setting and read its acknowledgement: `1`, or `Err: ...` raised as `InstrumentError`."""
        reply = str(self._exchange(command, reply=True, parse=str, retry=retry, shown=shown)).strip()
        label = shown or repr(command)
        if reply.startswith("Err"):
            raise InstrumentError(f"{self.name}: {label} refused: {reply}")
        if reply != "1":
            raise BadReply(f"{self.name}: {label} answered {reply!r}, expected '1' or 'Err: ...'")

    def query(self, command: str, parse: Any = str) -> Any:
        """A query's parsed answer; an `Err: ...` answer (a faulty unit) raises `InstrumentError` with it."""

        def checked(text: str) -> Any:
            if text.strip().startswith("Err"):
                raise InstrumentError(f"{self.name}: {command!r} answered {text.strip()}")
            return parse(text)

        return super().query(command, checked)

    def _set_verified(self, command: str, query: str, want: object, parse: Any) -> None:
        """Send a setting, read it back, resend once if the device lost it; `InstrumentError` if it never holds."""
        with self._lock:
            for _ in range(1 + self.retries):
                self.write(command)
                got = self.query(query, parse)
                if got == want:
                    return
            raise InstrumentError(f"{self.name}: {command!r} did not take effect (reads back {got!r})")

    @property
    def bias_mode(self) -> BiasMode:
        """MZM bias mode (`BiasMode`)."""
        return BiasMode(self.query("MZM:MODE?", parse_int))

    @bias_mode.setter
    def bias_mode(self, mode: BiasMode) -> None:
        if not isinstance(mode, BiasMode):
            raise ValueError(f"ThorlabsMBX.bias_mode must be a BiasMode {[m.name for m in BiasMode]}, got {mode!r}")
        self._set_verified(f"MZM:MODE: {int(mode)}", "MZM:MODE?", int(mode), parse_int)

    @property
    def hold_voltage(self) -> float:
        """Bias voltage in V held in MANUAL mode."""
        return self.query("MZM:HOLD:VOLTAGE?", parse_int) / 1000.0

    @hold_voltage.setter
    def hold_voltage(self, volts: float) -> None:
        v = check_range(self, "hold_voltage", volts, *self.hold_voltage_range_v, "V")
        mv = round(v * 1000)
        self._set_verified(f"MZM:HOLD:VOLTAGE: {mv}", "MZM:HOLD:VOLTAGE?", mv, parse_int)

    @property
    def power_ratio(self) -> float:
        """Output/input power ratio in % held in the AUTO_POWER modes."""
        return self.query("MZM:HOLD:RATIO?", parse_int) / 100.0

    @power_ratio.setter
    def power_ratio(self, percent: float) -> None:
        p = check_range(self, "power_ratio", percent, *self.power_ratio_range_pct, "%")
        code = round(p * 100)
        self._set_verified(f"MZM:HOLD:RATIO: {code}", "MZM:HOLD:RATIO?", code, parse_int)

    @property
    def voa_enabled(self) -> bool:
        """Built-in variable optical attenuator powered."""
        return self.query("VOA:POWER?", parse_bool)

    @voa_enabled.setter
    def voa_enabled(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise ValueError(f"ThorlabsMBX.voa_enabled must be True or False, got {on!r}")
        self._set_verified(f"VOA:POWER: {int(on)}", "VOA:POWER?", on, parse_bool)

    @property
    def voa_attenuation_setpoint(self) -> float:
        """VOA attenuation setpoint in dB."""
        return self.query("VOA:ATTEN?", parse_float)

    @voa_attenuation_setpoint.setter
    def voa_attenuation_setpoint(self, db: float) -> None:
        value = check_range(self, "voa_attenuation_setpoint", db, *self.voa_attenuation_range_db, "dB")
        self._set_verified(f"VOA:ATTEN: {value:g}", "VOA:ATTEN?", float(f"{value:g}"), parse_float)

    bias_voltage = Measurement("MZM:VOLTAGE?", "Bias voltage applied to the modulator now, in V.", unit="V")
    tap_power_mw = Measurement("MZM:TAP:MW?", "Optical power at the MZM output tap, in mW.", unit="mW")
    locked = Measurement("MZM:SETPOINT?", "Whether the bias is stable at its setpoint.", parse=parse_bool)
    voa_attenuation = Measurement("VOA:MEASURED?", "Measured VOA attenuation in dB.", unit="dB")

    def shutdown(self) -> None:
        """Bias mode OFF: the controller stops driving the modulator."""
        self.bias_mode = BiasMode.OFF
