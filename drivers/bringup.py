"""Bring-up and shutdown of a link role's instruments: ordered, each step read back, stop safe on the first failure.

Alice: laser (TEC on -> temperature settled -> limit -> setpoint -> mode/polarity -> LD on, trips
read), then the modulator bias controller (mode set and read back, lock checked), then the variable
attenuator (wavelength, attenuation, shutter open, read back). The AWG transmitter is started
after this by the node. Bob: the time-tagger's inputs and clock (`configure()` where the driver has
one). The settings come from the config's `[hardware.lab.bringup.<instrument>]` tables; an
instrument without a table is left as it is. On the first failure every instrument is shut down,
light sources first, and `BringUpFailed` names the instrument and the step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.errors import DriverError

log = logging.getLogger("drivers.bringup")

#: shutdown order: what emits light first, then what drives modulators, then the rest
SHUTDOWN_ORDER = ("laser", "attenuator", "awg", "bias", "tagger")
LASER_KEYS = {"temperature_c", "current_a", "limit_a", "settle_tolerance_c", "settle_timeout_s"}
BIAS_KEYS = {"mode", "hold_voltage_v", "require_lock"}
ATTENUATOR_KEYS = {"wavelength_nm", "attenuation_db", "open_shutter"}


class BringUpFailed(DriverError):
    """A bring-up step failed; every instrument was left safe."""


@dataclass
class BringUpLog:
    """The steps taken, in order, each with what was read back."""

    steps: list[tuple[str, str, str]] = field(default_factory=list)  # (instrument, step, read back)

    def add(self, name: str, step: str, readback: str) -> None:
        self.steps.append((name, step, readback))
        log.info("bring-up %s: %s -> %s", name, step, readback)


def role_of(inst: Any) -> str:
    """The instrument's kind as the shutdown order names it."""
    from drivers.registry import DRIVERS

    for info in DRIVERS:
        module, _, cls = info.target.partition(":")
        if type(inst).__name__ == cls and type(inst).__module__ == module:
            return info.role
    return "other"


def _check_keys(name: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(
            f"config table [hardware.lab.bringup.{name}] has unknown keys {unknown}; allowed {sorted(allowed)}"
        )


def _laser(name: str, laser: Any, s: Mapping[str, Any], out: BringUpLog) -> None:
    _check_keys(name, s, LASER_KEYS)
    missing = sorted({"temperature_c", "current_a", "limit_a"} - set(s))
    if missing:
        raise ValueError(f"config table [hardware.lab.bringup.{name}] needs {missing}")
    laser.bring_up(
        temperature_c=float(s["temperature_c"]),
        current_a=float(s["current_a"]),
        limit_a=float(s["limit_a"]),
        settle_tolerance_c=float(s.get("settle_tolerance_c", 0.1)),
        settle_timeout_s=float(s.get("settle_timeout_s", 120.0)),
    )
    out.add(
        name,
        "TEC on, settled, limit, setpoint, mode/polarity, LD on",
        f"LD on={laser.output_enabled}, I={laser.current:.4g} A, T={laser.temperature:.3f} °C",
    )


def _bias(name: str, bias: Any, s: Mapping[str, Any], out: BringUpLog) -> None:
    from drivers.bias import BiasMode

    _check_keys(name, s, BIAS_KEYS)
    mode_name = str(s.get("mode", "AUTO_NULL")).upper()
    if mode_name not in BiasMode.__members__:
        raise ValueError(
            f"config key 'hardware.lab.bringup.{name}.mode' must be one of "
            f"{list(BiasMode.__members__)}, got {mode_name!r}"
        )
    if "hold_voltage_v" in s:
        bias.hold_voltage = float(s["hold_voltage_v"])
    bias.bias_mode = BiasMode[mode_name]
    locked = bias.locked
    if s.get("require_lock", False) and not locked:
        raise DriverError(f"{name}: bias not locked at its setpoint in mode {mode_name}")
    out.add(name, f"bias mode {mode_name}", f"mode={bias.bias_mode.name}, locked={locked}")


def _attenuator(name: str, att: Any, s: Mapping[str, Any], out: BringUpLog) -> None:
    _check_keys(name, s, ATTENUATOR_KEYS)
    if "wavelength_nm" in s:
        att.wavelength = float(s["wavelength_nm"]) * 1e-9
    if "attenuation_db" in s:
        att.set_attenuation(float(s["attenuation_db"]))
    if s.get("open_shutter", True):
        att.shutter_open = True
        if not att.shutter_open:
            raise DriverError(f"{name}: shutter did not open")
    out.add(name, "wavelength, attenuation, shutter", f"att={att.attenuation:.3f} dB, shutter open={att.shutter_open}")


def _tagger(name: str, tagger: Any, s: Mapping[str, Any], out: BringUpLog) -> None:
    _check_keys(name, s, set())
    configure = getattr(tagger, "configure", None)
    if configure is not None:
        configure()
    clock = getattr(tagger, "clock_source", None)
    out.add(name, "inputs and clock", f"clock={clock() if clock else 'n/a'}")


STEPS: dict[str, Callable[[str, Any, Mapping[str, Any], BringUpLog], None]] = {
    "laser": _laser,
    "bias": _bias,
    "attenuator": _attenuator,
    "tagger": _tagger,
}
ORDER = {"alice": ("laser", "bias", "attenuator"), "bob": ("tagger",)}


def shut_down(instruments: Mapping[str, Any]) -> list[str]:
    """Every instrument safe, light sources first; returns the failures (never raises)."""
    failures = []
    ranked = sorted(
        instruments.items(),
        key=lambda kv: (
            SHUTDOWN_ORDER.index(role_of(kv[1])) if role_of(kv[1]) in SHUTDOWN_ORDER else len(SHUTDOWN_ORDER)
        ),
    )
    for name, inst in ranked:
        for method in ("shutdown", "stop"):
            fn = getattr(inst, method, None)
            if fn is None:
                continue
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - every instrument must be reached
                failures.append(f"{name}: {method} failed: {exc}")
                log.error("instrument %s: %s failed: %s", name, method, exc)
            break
    return failures


def bring_up(
    role: str,
    instruments: Mapping[str, Any],
    settings: Mapping[str, Mapping[str, Any]],
    alarm: Callable[[str, str], None] | None = None,
) -> BringUpLog:
    """Run the role's bring-up over `instruments` with `settings` per instrument name.

    On the first failure: every instrument is shut down, the failure is logged and alarmed
    (critical), and `BringUpFailed` is raised naming the instrument and the cause.
    """
    if role not in ORDER:
        raise ValueError(f"role must be one of {sorted(ORDER)}, got {role!r}")
    unknown = sorted(set(settings) - set(instruments))
    if unknown:
        raise ValueError(
            f"config tables [hardware.lab.bringup.{unknown[0]}] name no instrument; "
            f"instruments are {sorted(instruments)}"
        )
    out = BringUpLog()
    for kind in ORDER[role]:
        for name, inst in instruments.items():
            if role_of(inst) != kind or (kind != "tagger" and name not in settings):
                continue
            try:
                STEPS[kind](name, inst, settings.get(name, {}), out)
            except ValueError:
                shut_down(instruments)
                raise
            except Exception as exc:  # any failure stops the bring-up safely
                failures = shut_down(instruments)
                text = f"bring-up stopped at {name} ({kind}): {exc}"
                if failures:
                    text += f"; shutdown problems: {'; '.join(failures)}"
                log.error("%s", text)
                if alarm is not None:
                    alarm("critical", text)
                raise BringUpFailed(text) from exc
    return out
