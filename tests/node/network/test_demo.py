"""`qkdnode demo --topology`: a relay on the shipped ring and line topologies, rerouting on the ring."""

from __future__ import annotations

import itertools
import json
import tempfile

import pytest

from node.cli import main


def test_demo_topology_ring_relays_and_reroutes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo", "--topology", "ring5", "--links", "feed", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    # the story on stderr: each step, the deliberate failure told as such, no raw alarm log lines
    assert "starting 5 key managers" in captured.err and "taking link" in captured.err
    assert "on purpose" in captured.err and "ERROR" not in captured.err
    assert not list(tmp_path.glob("qkdnode-net-*")), "the temporary work directory is left behind"
    assert out["relays"] and all(r["ok"] and len(r["path"]) == 3 for r in out["relays"])
    down = out["link_down"]
    assert down["link"] and down["relay"]["ok"] and down["after_convergence"]["ok"]
    failed_ends = {f"KME_{n}" for n in down["link"]}
    path = down["after_convergence"]["path"]
    assert all({u, v} != failed_ends for u, v in itertools.pairwise(path))


def test_demo_topology_line_has_no_reroute_to_show(tmp_path, capsys):
    assert main(["demo", "--topology", "line3", "--links", "feed", "--workdir", str(tmp_path / "net")]) == 0
    text = capsys.readouterr().out
    assert "relay SAE_A -> SAE_C: same 256-bit key" in text and "rerouting not shown" in text
    assert (tmp_path / "net").is_dir()  # a --workdir is the user's: kept


def test_demo_ring_text_lists_the_deliberate_failure_alarms_as_expected(tmp_path, capsys):
    assert main(["demo", "--topology", "ring5", "--links", "feed", "--workdir", str(tmp_path / "net")]) == 0
    text = capsys.readouterr().out
    assert "expected alarm (link" in text and "\nalarm:" not in text


@pytest.mark.slow
def test_demo_topology_over_mock_link_daemons_relays_distilled_key(tmp_path, capsys):
    """The line network with its links run by real node daemons on the mock hardware: the key
    managers are fed only by distilled keys, and a key is relayed A -> B -> C with them."""
    assert main(["demo", "--topology", "line3", "--links", "mock", "--workdir", str(tmp_path / "net"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["link_key_source"] == "mock"
    assert all(d["blocks"] >= 1 and d["key_bits"] > 0 for d in out["distilled"].values())
    assert out["relays"] and all(r["ok"] for r in out["relays"])
