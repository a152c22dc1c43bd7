"""`qkdnode instruments`: list VISA resources and serial ports, ask `*IDN?`, say which driver fits;
`--check CONFIG`: open every instrument of a lab config and print its read-only readiness table."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from drivers.errors import DriverError
from drivers.registry import identify, match_idn


def register(subparsers: Any) -> None:
    """Add the `instruments` subcommand."""
    p = subparsers.add_parser(
        "instruments",
        help="list instruments and the driver that fits each",
        description="List VISA resources and serial ports, query *IDN? on each, and name the qkdnode driver "
        "that fits. Instruments that cannot be discovered (raw sockets) can be given with --resource.",
    )
    p.add_argument(
        "--visa-library",
        default="",
        metavar="LIB",
        help="PyVISA backend: the installed VISA (IVI), else pyvisa-py (default); @py, @ivi, "
        "or FILE.yaml@sim for a pyvisa-sim model",
    )
    p.add_argument(
        "--check",
        metavar="CONFIG",
        help="open every [instruments.*] table of this node config and run its read-only self-test "
        "(identity, options, limits, trips, clock source, losses); turns nothing on; exit 1 if any "
        "line is red",
    )
    p.add_argument(
        "--emulate",
        action="store_true",
        help="with --check: run against emulators started in the configured state (no hardware)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME",
        help="with --check --emulate: inject a fault (interlock-open, wrong-dac-mode, mbx-error, "
        "stream-overflow, counts-dropped); repeatable",
    )
    p.add_argument("--query", default="?*::INSTR", help="VISA resource pattern to list (default ?*::INSTR)")
    p.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="RES",
        help="also probe this resource through pyvisa-py (e.g. TCPIP::10.0.0.5::5025::SOCKET, "
        "socket://host:port for serial devices); repeatable",
    )
    p.add_argument("--no-idn", action="store_true", help="only list; do not query *IDN?")
    p.add_argument(
        "--probe-serial",
        action="store_true",
        help="also send *IDN? to serial ports (CR-terminated, 115200 baud, as the MBX expects)",
    )
    p.add_argument("--timeout", type=float, default=1.0, metavar="S", help="timeout per *IDN? in seconds (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


def discover(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per resource: kind, resource, idn, error, fitting drivers."""
    rows: list[dict[str, Any]] = []
    try:
        import pyvisa

        # not closed here: PyVISA shares one manager per backend, and closing it closes every session
        visa = list(pyvisa.ResourceManager(args.visa_library).list_resources(args.query))
        rows += [{"kind": "visa", "resource": r} for r in visa]
    except Exception as exc:  # noqa: BLE001 - a missing backend is reported, the rest still listed
        rows.append({"kind": "visa", "resource": "", "error": f"cannot list VISA resources: {exc}"})
    try:
        from serial.tools import list_ports

        rows += [{"kind": "serial", "resource": p.device, "description": p.description} for p in list_ports.comports()]
    except Exception as exc:  # noqa: BLE001
        rows.append({"kind": "serial", "resource": "", "error": f"cannot list serial ports: {exc}"})
    listed = {r["resource"] for r in rows}
    rows += [
        {"kind": "serial" if r.startswith(("socket://", "COM", "/dev/")) else "given", "resource": r}
        for r in args.resource
        if r not in listed
    ]
    for row in rows:
        if not row["resource"] or args.no_idn:
            continue
        if row["kind"] == "serial" and not (args.probe_serial or row["resource"] in args.resource):
            continue
        # resources given by hand are reached through pyvisa-py, whatever backend did the listing
        library = "@py" if row["kind"] == "given" else args.visa_library
        idn, error = identify(row["resource"], library, args.timeout, serial=row["kind"] == "serial")
        row["idn"] = idn
        if error:
            row["error"] = error
        row["drivers"] = [d.name for d in match_idn(idn)]
    return rows


def check_rows(section: dict[str, Any]) -> list[Any]:
    """Open each instrument of `section` (one at a time), self-test it, close it; a failure to open is a red row."""
    from drivers.readiness import Check, self_test
    from drivers.registry import open_instrument

    rows: list[Any] = []
    for name, table in section.items():
        driver = table.get("driver") if isinstance(table, dict) else None
        try:
            inst = open_instrument(name, table)
        except (DriverError, ValueError, OSError) as exc:
            rows.append(Check(name, "open", False, str(exc)))
            continue
        try:
            rows += self_test(name, str(driver), inst)
        finally:
            try:
                inst.close()
            except Exception:  # noqa: BLE001, S110 - the table is what matters
                pass
    return rows


def run_check(args: argparse.Namespace) -> int:
    """`--check CONFIG`: the readiness table; exit status 1 if any line is red."""
    import contextlib
    import tomllib

    try:
        with open(args.check, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"--check {args.check}: cannot read the config: {exc}") from None
    section = doc.get("instruments")
    if not isinstance(section, dict) or not section:
        raise ValueError(f"--check {args.check}: the config has no [instruments.*] tables")
    if args.fault and not args.emulate:
        raise ValueError("--fault needs --emulate (faults are injected into emulators)")
    bench: Any
    if args.emulate:
        from hil_fixtures.bench import emulated_bench

        bench = emulated_bench(section, tuple(args.fault))
    else:
        bench = contextlib.nullcontext(section)
    with bench as tables:
        rows = check_rows(tables)
    if args.json:
        json.dump(
            [{"instrument": r.instrument, "item": r.item, "ok": r.ok, "detail": r.detail} for r in rows],
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        colour = sys.stdout.isatty()
        width = max(len(r.instrument) for r in rows) + 2
        item_w = max(len(r.item) for r in rows) + 2
        for r in rows:
            mark = "ok  " if r.ok else "FAIL"
            if colour:
                mark = f"\033[32m{mark}\033[0m" if r.ok else f"\033[31m{mark}\033[0m"
            print(f"{mark}  {r.instrument:<{width}}{r.item:<{item_w}}{r.detail}")
        bad = sum(not r.ok for r in rows)
        print(f"{len(rows) - bad} green, {bad} red" + ("" if bad else ": the bench is ready"))
    return 0 if all(r.ok for r in rows) else 1


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON)."""
    if args.check:
        return run_check(args)
    if not args.timeout > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
    rows = discover(args)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print("no VISA resources or serial ports found")
        return 0
    width = max(len(r["resource"]) for r in rows) + 2
    for r in rows:
        drivers = ", ".join(r.get("drivers", [])) or ("-" if "idn" in r else "")
        detail = r.get("idn") or r.get("description", "")
        line = f"{r['kind']:<7}{r['resource']:<{width}}{detail}"
        if drivers:
            line += f"  -> driver: {drivers}"
        if r.get("error"):
            line += f"  [{r['error']}]"
        print(line)
    return 0
