"""Timing of benchmark cases: medians over repeated runs, reference timed in the same process."""

from __future__ import annotations

import gc
import importlib
import os
import pkgutil
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import node.bench.suites


@dataclass(frozen=True)
class BenchProfile:
    """What the user asked for: which sizes, how long to spend, which stages."""

    sizes: tuple[int, ...]
    quick: bool = False
    full: bool = False
    stages: tuple[str, ...] = ()  # empty: all
    min_runs: int = 3
    max_runs: int = 15
    time_per_case_s: float = 2.0
    explicit_sizes: bool = False  # --sizes given (suites with sizes of their own then take these)
    duration_s: float = 600.0  # how long a soak row (link-soak) runs

    def wants(self, stage: str) -> bool:
        """Whether the user selected this stage (by exact name or prefix)."""
        return not self.stages or any(stage == s or stage.startswith(s) for s in self.stages)


@dataclass
class BenchCase:
    """One row of the table: a stage at one size.

    `setup()` builds the inputs once (not timed); `run(state)` and `reference(state)` are timed and
    may return a dict of extra figures for the row (the last run's is kept). `items` is how many
    of `unit` one run processes (default `n`).
    """

    stage: str
    n: int
    setup: Callable[[], Any]
    run: Callable[[Any], dict[str, Any] | None]
    reference: Callable[[Any], dict[str, Any] | None] | None = None
    unit: str = "Mbit/s"
    items: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    reference_name: str | None = None
    max_runs: int | None = None
    reference_max_runs: int = 3
    warmup: bool = True  # one untimed run first (JIT compilation, caches)


def _time_runs(
    fn: Callable[[], Any], profile: BenchProfile, max_runs: int | None, warmup: bool = True
) -> tuple[list[float], Any]:
    """Run `fn` once to warm up (JIT, caches), then repeatedly; returns the durations and last result."""
    result = fn() if warmup else None
    limit = max_runs if max_runs is not None else profile.max_runs
    times: list[float] = []
    spent = 0.0
    # As timeit does: collect once, then keep the collector out of the timed runs (a full collection
    # before each run would evict the caches and free pages the next run faults back in).
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times) < limit and (len(times) < profile.min_runs or spent < profile.time_per_case_s):
            t0 = time.perf_counter()
            result = fn()
            dt = time.perf_counter() - t0
            times.append(dt)
            spent += dt
            if dt > profile.time_per_case_s and len(times) >= 1 and profile.quick:
                break
    finally:
        if was_enabled:
            gc.enable()
    return times, result


def is_latency(unit: str) -> bool:
    """Whether a row's figure is a time (lower is better, e.g. "ms to 1st rerouted key"), not a rate."""
    return unit.split(" ", 1)[0] in ("ms", "s", "us", "µs")


def run_case(case: BenchCase, profile: BenchProfile) -> dict[str, Any]:
    """Time one case and its reference; returns the result row."""
    state = case.setup()
    items = case.items if case.items is not None else case.n
    times, extra = _time_runs(lambda: case.run(state), profile, case.max_runs, case.warmup)
    med = statistics.median(times)
    row: dict[str, Any] = {
        "stage": case.stage,
        "n": case.n,
        "unit": case.unit,
        "kind": "latency" if is_latency(case.unit) else "throughput",
        "mbit_per_s": items / med / 1e6,
        "median_s": med,
        "runs": len(times),
        "reference": case.reference_name,
        "reference_mbit_per_s": None,
        "reference_median_s": None,
        "speedup": None,
        "params": dict(case.params),
    }
    reference = case.reference
    if reference is not None:
        rtimes, _ = _time_runs(lambda: reference(state), profile, case.reference_max_runs)
        rmed = statistics.median(rtimes)
        row["reference_mbit_per_s"] = items / rmed / 1e6
        row["reference_median_s"] = rmed
        row["speedup"] = rmed / med
    if extra:
        if "mbit_per_s" in extra:  # a case that measures its own rate (e.g. sustained, start-up excluded)
            row["mbit_per_s"] = extra["mbit_per_s"]
        row.update({k: v for k, v in extra.items() if k not in row})
    return row


def suite_modules() -> Iterator[ModuleType]:
    """Every benchmark suite module, in name order."""
    for info in sorted(pkgutil.iter_modules(node.bench.suites.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"node.bench.suites.{info.name}")


def stage_names(sizes: tuple[int, ...] = (100_000,)) -> list[str]:
    """Every stage any suite offers (for `--stage` checks and its error message)."""
    names: set[str] = set()
    for profile in (BenchProfile(sizes=sizes), BenchProfile(sizes=sizes, full=True)):
        for module in suite_modules():
            names.update(c.stage for c in module.cases(profile))
    for module in suite_modules():  # stages run only when --stage names them in full (long soaks)
        names.update(getattr(module, "ON_REQUEST_STAGES", ()))
    return sorted(names)


def collect_cases(profile: BenchProfile) -> list[BenchCase]:
    """All selected cases of all suites."""
    cases: list[BenchCase] = []
    for module in suite_modules():
        cases.extend(c for c in module.cases(profile) if profile.wants(c.stage))
    return cases


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The machine and software the figures were measured on, and the active kernel paths."""
    import numba
    import numpy

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
    }
    for module in suite_modules():
        extra = getattr(module, "machine_info", None)
        if extra is not None:
            info.update(extra())
    return info


def run_benchmarks(
    profile: BenchProfile, on_case: Callable[[BenchCase, int, int], None] | None = None
) -> dict[str, Any]:
    """Run every selected case; `on_case(case, index, total)` is called before each (progress)."""
    cases = collect_cases(profile)
    results = []
    for i, case in enumerate(cases):
        if on_case is not None:
            on_case(case, i, len(cases))
        results.append(run_case(case, profile))
    return {"machine": machine_info(), "results": results}


def iter_sizes(profile: BenchProfile, allowed: Iterable[int] | None = None) -> list[int]:
    """The profile's sizes, optionally restricted to those a suite supports."""
    if allowed is None:
        return list(profile.sizes)
    allowed = set(allowed)
    return [n for n in profile.sizes if n in allowed]
