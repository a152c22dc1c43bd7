"""Real QKD links for a loopback network: two node daemons (`qkdnode run`) per topology link.

Each link of the topology gets Alice's daemon at its first node and Bob's at the second, on the
mock hardware with the link's distance and `mock` parameters, a bootstrap authentication key of
their own, and each hands its distilled keys to its node's key manager under its own ingest
identity (`qkd_<link>_<node>`, declared by `write_network`). This replaces the stand-in key source
(identical blocks fed to both ends) with keys that come out of the whole pipeline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.control.topology import Topology
from node.keymanager.demo import free_port

DEFAULT_MOCK = {"p_z": 0.8, "bob_p_z": 0.8, "intensities": [0.5, 0.15, 0.0], "class_probabilities": [0.6, 0.3, 0.1]}


@dataclass
class LinkDaemons:
    """The running link daemons of a network: their processes and status files."""

    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def status(self, name: str) -> dict[str, Any]:
        """The last status of daemon `name` (`<link>-alice` or `<link>-bob`); empty before the first."""
        try:
            return json.loads((self.root / "state" / name / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def blocks(self, link_id: str) -> int:
        """Blocks Bob's daemon of `link_id` has distilled so far."""
        return int(self.status(f"{link_id}-bob").get("counters", {}).get("blocks", 0))

    def check_alive(self) -> None:
        """Raise if a daemon exited with an error."""
        for name, proc in self.procs.items():
            if proc.poll() not in (None, 0):
                raise RuntimeError(f"link daemon {name} exited with code {proc.returncode}; see {self.root / name}.log")

    def stop(self) -> None:
        """SIGTERM every daemon (graceful: hardware left safe), SIGKILL after 20 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _daemon_config(link: Any, role: str, node: str, port: int, ingest: str, block_bits: int, seed: int) -> str:
    mock = {**DEFAULT_MOCK, **dict(link.mock), "seed": seed, "fibre_length_km": link.distance_km}
    mock.pop("realtime", None)
    mock_lines = "\n".join(f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in mock.items())
    return f"""[node]
name = "{link.id}-{role}"
role = "{role}"
state_dir = "state/{link.id}-{role}"
status_file = "state/{link.id}-{role}/status.json"

[link]
id = "{link.id}"
peer = "tcp://127.0.0.1:{port}"
bootstrap_secret = "qkd_link_{link.id}.key"
block_bits = {block_bits}
batch_detections = 200000

[keymanager]
endpoint = "{ingest}"
source_id = "qkd_{link.id}_{node}"
secret = "ingest_{link.id}_{node}.key"

[hardware]
kind = "mock"

[hardware.mock]
{mock_lines}
"""


def start_link_daemons(topology: Topology, root: str | os.PathLike[str], ingest: dict[str, str],
                       block_bits: int = 1_000_000) -> LinkDaemons:
    """Write every link daemon's config under `root` and start them; `ingest[node]` is the KM endpoint."""
    base = Path(root)
    daemons = LinkDaemons(base)
    try:
        for lk in topology.links:
            secret = base / f"qkd_link_{lk.id}.key"
            fd = os.open(secret, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(1 << 17))
            port = free_port()
            seed = int.from_bytes(os.urandom(4), "little")
            for role, node in (("alice", lk.a), ("bob", lk.b)):
                name = f"{lk.id}-{role}"
                cfg = base / f"{name}.toml"
                cfg.write_text(_daemon_config(lk, role, node, port, ingest[node], block_bits, seed))
                log = open(base / f"{name}.log", "wb")
                daemons.procs[name] = subprocess.Popen([sys.executable, "-m", "node", "run", str(cfg)],
                                                       stdout=subprocess.DEVNULL, stderr=log, cwd=base)
    except BaseException:
        daemons.stop()
        raise
    return daemons


def wait_for_blocks(daemons: LinkDaemons, topology: Topology, blocks: int = 1, timeout_s: float = 600.0) -> None:
    """Wait until every link has distilled `blocks` blocks."""
    deadline = time.monotonic() + timeout_s
    while any(daemons.blocks(lk.id) < blocks for lk in topology.links):
        daemons.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the links did not distil {blocks} block(s) within {timeout_s:.0f} s")
        time.sleep(0.3)
