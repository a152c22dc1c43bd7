"""`qkdnode bench`: throughput of each post-processing stage, with its reference timed in the same run.

A suite is a module in `node.bench.suites` that defines `cases(profile) -> Iterable[BenchCase]`
and, optionally, `machine_info() -> dict` (for instance which C kernel path is active).
"""

from __future__ import annotations

from node.bench.core import BenchCase, BenchProfile, run_benchmarks

__all__ = ["BenchCase", "BenchProfile", "run_benchmarks"]
