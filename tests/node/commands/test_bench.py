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


def test_table_puts_the_unit_in_each_header_and_latency_rows_apart(capsys: pytest.CaptureFixture[str]) -> None:
    from node.commands.bench import print_table

    def row(stage: str, unit: str, rate: float, ref: float | None, kind: str = "throughput") -> dict:
        return {
            "stage": stage,
            "n": 100_000,
            "unit": unit,
            "kind": kind,
            "mbit_per_s": rate,
            "median_s": 0.01,
            "runs": 3,
            "reference": "numpy" if ref else None,
            "reference_mbit_per_s": ref,
            "reference_median_s": None,
            "speedup": rate / ref if ref else None,
            "params": {},
        }

    report = {
        "machine": {"cpu": "x"},
        "results": [
            row("toeplitz", "Mbit/s", 200.0, 5.0),
            row("cascade-auto", "Mbit/s", 50.0, None),
            row("classical-zmq-rtt", "k msg/s", 1.0, 1.6),
            row("relay.failover", "ms to 1st rerouted key", 120.0, None),
        ],
    }
    print_table(report)
    out = capsys.readouterr().out
    blocks = out.split("\n\n")
    mbit = next(b for b in blocks if b.startswith("throughput in Mbit/s"))
    assert "ref Mbit/s" in mbit and "x ref" in mbit and "40.00x" in mbit
    assert next(ln for ln in mbit.splitlines() if ln.startswith("cascade-auto")).split()[5:8] == ["-", "-", "-"]
    latency = next(b for b in blocks if b.startswith("latency, ms to 1st rerouted key"))
    assert "relay.failover" in latency and "relay.failover" not in mbit
    assert "0.62x" in out and "Below 1x" in out  # a ratio under 1 is explained, not called a speed-up
