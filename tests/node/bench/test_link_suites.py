"""The link-capacity and link-soak suites' rows: which sizes and worker counts, and the soak offered
only when `--stage link-soak` names it (it runs for minutes)."""

from __future__ import annotations

import argparse

from node.bench.core import BenchProfile, collect_cases, stage_names
from node.bench.suites import capacity, soak
from node.commands.bench import profile_from_args
from node.runtime.config import default_workers


def _args(**kw: object) -> argparse.Namespace:
    base = {"quick": False, "full": False, "stage": [], "sizes": None, "duration": 600.0}
    return argparse.Namespace(**{**base, **kw})


def test_soak_runs_only_when_its_stage_is_named_in_full() -> None:
    assert soak.cases(BenchProfile(sizes=(1_000_000,))) == []
    assert soak.cases(BenchProfile(sizes=(1_000_000,), stages=("link",))) == []
    assert not [c for c in collect_cases(BenchProfile(sizes=(1_000_000,), full=True)) if c.stage == "link-soak"]
    assert "link-soak" in stage_names()  # so that --stage link-soak is accepted


def test_soak_takes_duration_and_block_sizes_from_the_options_and_the_deployed_worker_count() -> None:
    (row,) = soak.cases(profile_from_args(_args(stage=["link-soak"], duration=30.0)))
    workers = default_workers()
    assert row.n == 4_000_000 and row.setup() == {"block_bits": 4_000_000, "duration_s": 30.0, "workers": workers}
    assert row.params["workers"] == workers
    rows = soak.cases(profile_from_args(_args(stage=["link-soak"], sizes=(1_000_000, 10_000_000))))
    assert [r.n for r in rows] == [1_000_000, 10_000_000]


def test_capacity_rows_per_size_and_worker_count() -> None:
    workers = capacity.worker_counts()
    assert workers[0] == 1 and (workers == (1,) or workers[:2] == (1, 2))
    rows = capacity.cases(profile_from_args(_args(stage=["link-capacity"])))
    assert [(r.n, r.params["workers"]) for r in rows] == [(n, w) for n in (1_000_000, 4_000_000) for w in workers]
    rows = capacity.cases(profile_from_args(_args(stage=["link-capacity"], sizes=(10_000_000,))))
    assert {r.n for r in rows} == {10_000_000} and rows[0].setup()["blocks"] == 3
    assert capacity.cases(profile_from_args(_args(quick=True))) == []
