"""The node's bootstrap secret is single-use: a node whose link state is lost refuses to start on it,
with a one-line message saying how to provision a new one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.classical.linkstate import USED_MARKER, load_link_state, save_link_state
from node.runtime.config import parse_node_config
from node.runtime.daemon import NodeDaemon
from node.runtime.launch import node_document, to_toml

ROOT = Path(__file__).resolve().parents[3]
MOCK = {"seed": 1, "intensities": [0.5, 0.15, 0.0], "class_probabilities": [0.6, 0.3, 0.1]}


def config(tmp_path):
    doc = node_document("bob", "bob", "L1", 5555, "link.bob.key", MOCK, block_bits=1_000_000, status_file=False)
    (tmp_path / "bob.toml").write_text(to_toml(doc))
    return parse_node_config(doc, tmp_path)


def start(cfg) -> NodeDaemon:
    daemon = NodeDaemon(cfg)
    daemon.outbox.close()
    return daemon


def test_the_bootstrap_secret_is_imported_once_then_overwritten(tmp_path) -> None:
    (tmp_path / "link.bob.key").write_bytes(os.urandom(1 << 14))
    cfg = config(tmp_path)
    daemon = start(cfg)
    assert daemon.link.mode == "transcript"
    assert (tmp_path / "link.bob.key").read_bytes() == USED_MARKER
    assert (cfg.state_dir / "link_state.json").exists()
    start(cfg)  # a restart with its link state is fine


def test_lost_link_state_and_a_used_bootstrap_refuse_to_start_with_a_clear_message(tmp_path) -> None:
    (tmp_path / "link.bob.key").write_bytes(os.urandom(1 << 14))
    cfg = config(tmp_path)
    start(cfg)
    (cfg.state_dir / "link_state.json").unlink()
    with pytest.raises(ValueError, match="already used once"):
        start(cfg)
    run = subprocess.run(
        [sys.executable, "-m", "node", "run", str(tmp_path / "bob.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 2
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Provision a new pre-shared secret" in lines[0] and "Traceback" not in run.stderr


def test_a_link_locked_by_failed_tags_stays_stopped_across_a_restart(tmp_path) -> None:
    (tmp_path / "link.bob.key").write_bytes(os.urandom(1 << 14))
    cfg = config(tmp_path)
    start(cfg)
    path = cfg.state_dir / "link_state.json"
    state = load_link_state(path)
    state["failed_tags"] = cfg.link.auth_max_failures
    save_link_state(path, state)
    with pytest.raises(ValueError, match="authentication tags failed"):
        start(cfg)
