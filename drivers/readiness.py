"""Read-only self-tests of opened instruments: identity, options, limits, trips, clock source, losses.

Nothing here switches anything on: it asks, compares with the configuration, and reports one row
per item. The first thing a lab runs on a new bench (`qkdnode instruments --check CONFIG`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.errors import DriverError


@dataclass(frozen=True)
class Check:
    """One line of the readiness table."""

    instrument: str
    item: str
    ok: bool
    detail: str


def _identity(name: str, inst: Any, driver: str) -> list[Check]:
    from drivers.registry import BY_NAME

    idn = inst.idn().strip()
    ok = bool(re.match(BY_NAME[driver].idn, idn, re.IGNORECASE))
    return [
        Check(name, "identity", ok, idn if ok else f"{idn!r} is not a {driver} (*IDN? pattern {BY_NAME[driver].idn})")
    ]


def _itc4001(name: str, laser: Any) -> list[Check]:
    from drivers.laser import TRIPS

    rows = [
        Check(name, f"trip: {text}", not tripped, "tripped: the LD cannot switch on" if tripped else "clear")
        for (flag, text), tripped in zip(TRIPS.items(), laser.trips().values())
    ]
    ld = laser.output_enabled
    rows.append(Check(name, "laser output", not ld, "on before bring-up" if ld else "off"))
    limit, setpoint, cap = laser.current_limit, laser.current_setpoint, laser.current_range_a[1]
    rows.append(
        Check(
            name,
            "current limit",
            limit <= cap,
            f"{limit:g} A (max_current_a {cap:g} A)" + ("" if limit <= cap else ": above the diode's maximum"),
        )
    )
    rows.append(Check(name, "setpoint <= limit", setpoint <= limit, f"{setpoint:g} A <= {limit:g} A"))
    rows.append(Check(name, "TEC", True, f"{'on' if laser.tec_enabled else 'off'}, {laser.temperature:.2f} °C"))
    return rows


def _awg33500b(name: str, awg: Any) -> list[Check]:
    opts = awg.query("*OPT?").strip()
    has_mem = "MEM" in opts.upper()
    ok = has_mem or awg.memory_points == 1_048_576
    rows = [
        Check(
            name,
            "options",
            ok,
            f"{opts or 'none'}; memory_points {awg.memory_points}" + ("" if ok else ": needs option MEM"),
        )
    ]
    on = [ch for ch in awg.channels if awg.output_enabled(ch)]
    rows.append(Check(name, "outputs", not on, f"on: {on}" if on else "all off"))
    return rows


def _m8195a(name: str, awg: Any) -> list[Check]:
    try:
        awg.check_configuration()
        rows = [
            Check(
                name,
                "DAC mode / memory",
                True,
                f"{awg.dac_mode}, channels {list(awg.channels)}, {awg.memory} memory, "
                f"divider {awg.sample_rate_divider}",
            )
        ]
    except DriverError as exc:
        rows = [Check(name, "DAC mode / memory", False, str(exc).split(": ", 1)[-1])]
    rate = awg.sample_rate
    lo, hi = awg.sample_rate_range_hz
    rows.append(Check(name, "sample rate", lo <= rate <= hi, f"{rate:.6g} Sa/s"))
    return rows


def _mbx(name: str, mbx: Any) -> list[Check]:
    mode = mbx.bias_mode
    return [
        Check(name, "bias mode", True, f"{mode.name}, locked={mbx.locked}"),
        Check(name, "bias voltage", True, f"{mbx.bias_voltage:.3f} V"),
    ]


def _attenuator(name: str, att: Any) -> list[Check]:
    lo, hi = att.attenuation_range_db
    return [
        Check(name, "shutter", True, "open" if att.shutter_open else "closed"),
        Check(name, "attenuation range", True, f"[{lo:g}, {hi:g}] dB (offset {att.offset:g} dB)"),
        Check(name, "wavelength", True, f"{att.wavelength * 1e9:.3f} nm"),
    ]


def _id1000(name: str, tc: Any) -> list[Check]:
    clock = tc.clock_source()
    want = tc.clock.upper()
    rows = [Check(name, "clock source", clock.startswith(want[:3]), f"{clock} (configured {want})")]
    try:
        tc._dlt_exec("list")
        rows.append(Check(name, "DataLinkTargetService", True, f"answers at {tc.dlt}"))
    except DriverError as exc:
        rows.append(Check(name, "DataLinkTargetService", False, str(exc)))
    for ch in tc.channels:
        n = tc.query(f"RAW{ch}:ERR?", int)
        rows.append(Check(name, f"channel {ch} losses", n == 0, f"{n} timestamps lost"))
    return rows


def _swabian(name: str, tagger: Any) -> list[Check]:
    tagger.start()
    try:
        block = tagger.read_block(0.05)
    finally:
        tagger.stop()
    ok = block.lost == 0 and not block.overflow
    cause = "stream buffer full" if block.meta.get("stream_buffer_full") else "stream overflow"
    return [
        Check(name, "channel numbering", True, "scheme ONE (front-panel numbers)"),
        Check(
            name,
            "stream",
            ok,
            f"{len(block)} tags in 50 ms, no loss" if ok else f"{cause}: {block.lost} event(s) lost in 50 ms",
        ),
    ]


def _picoquant(name: str, tagger: Any) -> list[Check]:
    from drivers.taggers.picoquant_live import FLAG_CNTS_DROPPED, FLAG_FIFOFULL, FLAG_SYSERROR

    flags = tagger._flags()
    named = [
        text
        for bit, text in (
            (FLAG_CNTS_DROPPED, "counts dropped (FLAG_CNTS_DROPPED)"),
            (FLAG_SYSERROR, "hardware error (FLAG_SYSERROR)"),
            (FLAG_FIFOFULL, "FIFO full"),
        )
        if flags & bit
    ]
    return [
        Check(
            name,
            "device",
            True,
            f"{tagger.family.name} serial {tagger.serial}, {len(tagger.channels)} inputs, {tagger.resolution_ps} ps",
        ),
        Check(name, "flags", not named, "; ".join(named) if named else f"0x{flags:04x}"),
    ]


SELF_TESTS: dict[str, Callable[[str, Any], list[Check]]] = {
    "itc4001": _itc4001,
    "keysight33500b": _awg33500b,
    "m8195a": _m8195a,
    "mbx": _mbx,
    "keysight8157xa": _attenuator,
    "id1000": _id1000,
    "swabian": _swabian,
    "picoquant": _picoquant,
}


def self_test(name: str, driver: str, inst: Any) -> list[Check]:
    """The read-only checks of one opened instrument; a failing query becomes a red row naming it."""
    rows: list[Check] = []
    try:
        if hasattr(inst, "idn"):
            rows += _identity(name, inst, driver)
        rows += SELF_TESTS[driver](name, inst)
    except DriverError as exc:
        rows.append(Check(name, "self-test", False, str(exc)))
    return rows
