"""`qkdnode bench`: print the throughput of each post-processing stage on this machine."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from node.bench.core import BenchCase, BenchProfile, is_latency, run_benchmarks


def register(subparsers: Any) -> None:
    """Add the `bench` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="measure post-processing throughput",
        description="Measure each post-processing stage at n in {1e5, 1e6, 1e7} (1e8 with --full), "
        "timing the reference implementation in the same run. Medians over repeated runs.",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="fewer sizes and runs; ends within about a minute")
    g.add_argument("--full", action="store_true", help="add n = 1e8")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    p.add_argument(
        "--stage",
        action="append",
        default=[],
        metavar="NAME",
        help="only stages whose name starts with NAME (repeatable)",
    )
    p.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=None,
        metavar="N[,N...]",
        help="problem sizes to run instead of the defaults (e.g. 1e5,1e6)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long a soak row runs (stage link-soak, run only when --stage names it; default 600)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress indicator on stderr")
    p.set_defaults(func=run)


def _parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(float(part)) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be comma-separated numbers like 1e5,1e6, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return sizes


def profile_from_args(args: argparse.Namespace) -> BenchProfile:
    """The benchmark profile the options describe."""
    if args.quick:
        return BenchProfile(
            sizes=args.sizes or (100_000, 1_000_000, 10_000_000),
            quick=True,
            explicit_sizes=args.sizes is not None,
            stages=tuple(args.stage),
            min_runs=1,
            max_runs=5,
            time_per_case_s=0.5,
        )
    sizes = args.sizes or (100_000, 1_000_000, 10_000_000) + ((100_000_000,) if args.full else ())
    if not args.duration > 0:
        raise ValueError(f"--duration must be a positive number of seconds, got {args.duration}")
    return BenchProfile(
        sizes=sizes,
        full=args.full,
        stages=tuple(args.stage),
        explicit_sizes=args.sizes is not None,
        duration_s=args.duration,
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmarks and print the table or the JSON document."""
    profile = profile_from_args(args)
    if args.stage:
        from node.bench.core import stage_names

        names = stage_names()
        unknown = [s for s in args.stage if not any(n == s or n.startswith(s) for n in names)]
        if unknown:
            raise ValueError(
                f"--stage {unknown[0]!r} matches no stage; stages (a prefix selects all that start "
                f"with it): {', '.join(names)}"
            )
    if args.no_progress:
        report = run_benchmarks(profile)
    else:
        report = _run_with_progress(profile)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(report)
    return 0


def _run_with_progress(profile: BenchProfile) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:  # piped or logged: one plain line per case instead of a live bar
        start = time.monotonic()

        def on_line(case: BenchCase, i: int, total: int) -> None:
            print(
                f"bench: [{i + 1}/{total}] {case.stage} n={case.n:.0e} ({time.monotonic() - start:.0f} s so far)",
                file=sys.stderr,
                flush=True,
            )

        return run_benchmarks(profile, on_line)
    with Progress(
        TextColumn("[bold]bench[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("collecting", total=None)

        def on_case(case: BenchCase, i: int, total: int) -> None:
            progress.update(task, total=total, completed=i, description=f"{case.stage} n={case.n:.0e}")

        report = run_benchmarks(profile, on_case)
        progress.update(task, completed=len(report["results"]))
    return report


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def _table_line(cells: list[str], widths: list[int], headers: list[str]) -> str:
    """One row of the report table: names left-aligned, numbers right-aligned."""
    left = {"stage", "reference", "details"}
    return "  ".join(c.ljust(w) if h in left else c.rjust(w) for c, w, h in zip(cells, widths, headers)).rstrip()


def print_table(report: dict[str, Any]) -> None:
    """Print the machine and one aligned table per unit (the unit in its header); latency rows
    (lower is better) in tables of their own. Log-friendly plain text."""
    m = report["machine"]
    print("machine: " + ", ".join(f"{k}={v}" for k, v in m.items()))
    fixed = {
        "stage",
        "n",
        "unit",
        "kind",
        "mbit_per_s",
        "median_s",
        "runs",
        "reference",
        "reference_mbit_per_s",
        "reference_median_s",
        "speedup",
        "params",
    }
    by_unit: dict[tuple[bool, str], list[dict[str, Any]]] = {}
    for r in report["results"]:
        by_unit.setdefault((is_latency(r["unit"]), r["unit"]), []).append(r)
    notes = False
    for (latency, unit), rows_in in sorted(by_unit.items()):
        print()
        if latency:
            print(f"latency, {unit} (lower is better)")
            headers = ["stage", "n", unit.split(" ", 1)[0], "runs", "reference", "details"]
        else:
            print(f"throughput in {unit} (higher is better)")
            headers = ["stage", "n", unit, "median s", "runs", "reference", f"ref {unit}", "x ref", "details"]
        rows = []
        for r in sorted(rows_in, key=lambda r: (r["stage"], r["n"])):
            details = {**r.get("params", {}), **{k: v for k, v in r.items() if k not in fixed}}
            n = f"{r['n']:.0e}" if r["n"] >= 1e4 else str(r["n"])
            if latency:
                cells = [r["stage"], n, _fmt(r["mbit_per_s"]), str(r["runs"]), r["reference"] or "-"]
            else:
                ratio = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
                notes = notes or (r["speedup"] is not None and r["speedup"] < 1)
                cells = [
                    r["stage"],
                    n,
                    _fmt(r["mbit_per_s"]),
                    _fmt(r["median_s"]),
                    str(r["runs"]),
                    r["reference"] or "-",
                    _fmt(r["reference_mbit_per_s"]),
                    ratio,
                ]
            rows.append(cells + [" ".join(f"{k}={_fmt(v)}" for k, v in details.items())])
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
        print(_table_line(headers, widths, headers))
        for row in rows:
            print(_table_line(row, widths, headers))
    print()
    print(
        'x ref: rate / reference rate, both timed in this run ("-": no reference for that row).'
        + (
            " Below 1x the stage is slower than its reference: for references that skip work (raw ZeroMQ, no "
            "latency, one thread) it is the overhead of that work."
            if notes
            else ""
        )
    )
