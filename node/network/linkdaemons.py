"""Real QKD links for a loopback network: two node daemons (`qkdnode run`) per topology link.

Each link of the topology gets Alice's daemon at its first node and Bob's at the second, on the
mock hardware with the link's distance and `mock` parameters, a bootstrap authentication key of
their own, and each hands its distilled keys to its node's key manager under its own ingest
identity (`qkd_<link>_<node>`, declared by `write_network`). This replaces the stand-in key source
(identical blocks fed to both ends) with keys that come out of the whole pipeline.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.control.topology import Topology
from node.keymanager.demo import free_port
from node.runtime.demo import LINK_TIMEOUT_S
from node.runtime.launch import node_document, read_status, start_node, stop_processes, to_toml, write_link_secret

DEFAULT_MOCK = {"p_z": 0.8, "bob_p_z": 0.8, "intensities": [0.5, 0.15, 0.0], "class_probabilities": [0.6, 0.3, 0.1]}


@dataclass
class LinkDaemons:
    """The running link daemons of a network: their processes and status files."""

    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def status(self, name: str) -> dict[str, Any]:
        """The last status of daemon `name` (`<link>-alice` or `<link>-bob`); empty before the first."""
        return read_status(self.root / "state" / name / "status.json")

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
        stop_processes(self.procs.values())


def _daemon_document(
    link: Any, role: str, node: str, port: int, ingest: str, block_bits: int, seed: int
) -> dict[str, Any]:
    mock = {**DEFAULT_MOCK, **dict(link.mock), "seed": seed, "fibre_length_km": link.distance_km}
    mock.pop("realtime", None)
    return node_document(
        f"{link.id}-{role}",
        role,
        link.id,
        port,
        f"qkd_link_{link.id}.{role}.key",
        mock,
        block_bits=block_bits,
        link_timeout_s=LINK_TIMEOUT_S,
        keymanager=(ingest, f"qkd_{link.id}_{node}", f"ingest_{link.id}_{node}.key"),
    )


def start_link_daemons(
    topology: Topology, root: str | os.PathLike[str], ingest: dict[str, str], block_bits: int = 1_000_000
) -> LinkDaemons:
    """Write every link daemon's config under `root` and start them; `ingest[node]` is the KM endpoint."""
    base = Path(root)
    daemons = LinkDaemons(base)
    try:
        for lk in topology.links:
            write_link_secret(base, f"qkd_link_{lk.id}", 1 << 17)
            port = free_port()
            seed = int.from_bytes(os.urandom(4), "little")
            for role, node in (("alice", lk.a), ("bob", lk.b)):
                name = f"{lk.id}-{role}"
                cfg = base / f"{name}.toml"
                cfg.write_text(to_toml(_daemon_document(lk, role, node, port, ingest[node], block_bits, seed)))
                daemons.procs[name] = start_node(cfg, base, base / f"{name}.log")
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
