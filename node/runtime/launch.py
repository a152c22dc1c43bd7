"""Starting node daemons as processes on this machine (demos, network demo, benchmarks).

One place builds a node's configuration document, writes it as TOML, writes the pre-shared
secrets owner-only, starts `qkdnode run` and stops the processes again (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from node.private_files import write_private_file


def node_document(
    name: str,
    role: str,
    link_id: str,
    peer_port: int,
    bootstrap_secret: str,
    mock: dict[str, Any],
    *,
    block_bits: int,
    batch_detections: int = 200_000,
    keymanager: tuple[str, str, str] | None = None,
    metrics_port: int | None = None,
    max_blocks: int | None = None,
    status_file: bool = True,
    link_timeout_s: float | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """A node's configuration (the shape `node.runtime.config` reads) on the mock hardware.

    `keymanager` is (ingest endpoint, source id, secret file); paths are relative to the config.
    `link_timeout_s` is how long Bob waits for each of Alice's replies (the link's default if None).
    `workers` is `[link] workers`, the key blocks the node distils at once (the core count's default if None).
    """
    node: dict[str, Any] = {"name": name, "role": role, "state_dir": f"state/{name}"}
    if status_file:
        node["status_file"] = f"state/{name}/status.json"
    if metrics_port is not None:
        node["metrics_port"] = metrics_port
    doc: dict[str, Any] = {
        "node": node,
        "link": {
            "id": link_id,
            "peer": f"tcp://127.0.0.1:{peer_port}",
            "bootstrap_secret": bootstrap_secret,
            "block_bits": block_bits,
            "batch_detections": batch_detections,
            **({"timeout_s": link_timeout_s} if link_timeout_s is not None else {}),
            **({"workers": workers} if workers is not None else {}),
        },
        "hardware": {"kind": "mock", "mock": {k: list(v) if isinstance(v, tuple) else v for k, v in mock.items()}},
    }
    if keymanager is not None:
        endpoint, source_id, secret = keymanager
        doc["keymanager"] = {"endpoint": endpoint, "source_id": source_id, "secret": secret}
    if max_blocks is not None:
        doc["run"] = {"max_blocks": max_blocks}
    return doc


def to_toml(doc: dict[str, Any]) -> str:
    """TOML text of a document of tables, strings, numbers, booleans and lists (JSON-compatible values)."""
    lines: list[str] = []

    def table(prefix: str, t: dict[str, Any]) -> None:
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in t.items() if not isinstance(v, dict))
        for k, v in t.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", doc)
    return "\n".join(lines) + "\n"


def write_secret(path: Path, nbytes: int) -> None:
    """A fresh pre-shared secret of `nbytes` from os.urandom, in an owner-only file."""
    write_private_file(path, os.urandom(nbytes))


def write_link_secret(base: Path, stem: str, nbytes: int) -> dict[str, str]:
    """One fresh pre-shared link secret, one owner-only copy per node ('alice', 'bob'): each node's
    bootstrap secret is single-use and overwritten once imported, as its own copy would be in a
    deployment. Returns role -> file name (relative to `base`)."""
    secret = os.urandom(nbytes)
    names = {role: f"{stem}.{role}.key" for role in ("alice", "bob")}
    for name in names.values():
        write_private_file(base / name, secret)
    return names


def start_node(config: Path, cwd: Path, log: Path | None = None, log_level: str = "WARNING") -> subprocess.Popen[bytes]:
    """`qkdnode run CONFIG` as a child process; its stderr goes to `log` (or nowhere)."""
    stderr: Any = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "node", "--log-level", log_level, "run", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        cwd=cwd,
    )


def stop_processes(procs: Iterable[subprocess.Popen[Any]], timeout_s: float = 20.0) -> list[subprocess.Popen[Any]]:
    """SIGTERM every process (a node then shuts down gracefully, hardware left safe), SIGKILL
    those still running `timeout_s` after the SIGTERM; returns the processes that had to be killed."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout_s
    killed = []
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed.append(proc)
    return killed


def read_status(path: Path) -> dict[str, Any]:
    """A node's status file, or an empty dict before its first write."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
