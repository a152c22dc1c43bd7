"""The ML bench rows: `qkdnode bench --stage ml...` lists the KM03 and QL01 rows (the QL02 rows
time the numeric optimiser as their reference, so they are left to the bench itself)."""

from __future__ import annotations

import json

import pytest

from node.cli import main


def test_ml_rows_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--json", "--quick", "--no-progress", "--stage", "ml.km03", "--stage", "ml.ql01"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert {r["stage"] for r in rows} == {"ml.km03", "ml.ql01"}
    assert all(r["mbit_per_s"] > 0 for r in rows)
