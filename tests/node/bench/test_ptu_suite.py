"""The PTU decoding bench on a base install: ptufile (a test-extra package) is its reference only
where it is installed."""

from __future__ import annotations

import importlib.util

from node.bench.core import BenchProfile, run_case
from node.bench.suites import ptu


def test_without_ptufile_the_decoder_is_still_measured_and_the_reference_shown_missing(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ptufile" else real(name, *a))
    cases = ptu.cases(BenchProfile(sizes=(1_000_000,), quick=True, min_runs=1, max_runs=1, time_per_case_s=0.0))
    assert cases and all(c.reference is None and c.reference_name is None for c in cases)
    row = run_case(cases[-1], BenchProfile(sizes=(1_000_000,), quick=True, min_runs=1, max_runs=1, time_per_case_s=0.0))
    assert row["mbit_per_s"] > 0 and row["reference_mbit_per_s"] is None


def test_with_ptufile_installed_it_is_the_reference() -> None:
    cases = ptu.cases(BenchProfile(sizes=(1_000_000,), quick=True))
    assert all(c.reference_name == "ptufile" for c in cases)
