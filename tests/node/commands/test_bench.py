"""`qkdnode bench`: the JSON document's fixed shape and the table, on small sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from node.cli import main


def test_bench_json_has_machine_and_rows_with_the_fixed_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--json", "--quick", "--no-progress", "--sizes", "2000", "--stage", "sifting"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"cpu", "logical_cores", "numpy", "numba"} <= set(report["machine"])
    stages = {r["stage"] for r in report["results"]}
    assert stages == {"sifting", "sifting-alice", "sifting-bob"}
    for row in report["results"]:
        assert isinstance(row["stage"], str) and row["n"] == 2000
        assert row["mbit_per_s"] > 0
        assert row["reference_mbit_per_s"] is None or row["reference_mbit_per_s"] > 0


def test_bench_table_lists_each_stage_with_its_speedup(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--no-progress", "--sizes", "1000", "--stage", "sifting-bob"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ")
    assert "sifting-bob" in out and "numpy-boolean-mask" in out and "x" in out


def test_bench_rejects_malformed_sizes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node", "bench", "--sizes", "ten"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "sizes must be comma-separated numbers" in proc.stderr
