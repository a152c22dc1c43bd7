"""A ready-made pair of key managers on loopback (PKI, secrets, TOML files) for demos and benchmarks.

KME_A serves SAE_A and KME_B serves SAE_B; QKD link "L1" feeds their shared pool; module "node_a"
(resp. "node_b") sends KEY_BLOCKs to KME_A (resp. KME_B).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.keymanager.certs import make_pki
from node.private_files import create_private_file, private_dir, write_private_file

SECRET_BYTES = 4 << 20


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# a port number, not a secret, but drawn from the OS: tests seed the module-level `random` (hypothesis
# does), and parallel workers seeded alike drew the same ports and collided (seen in CI)
_PORTS = random.SystemRandom()
# ports this process handed out: none is handed out twice before it is bound (a ring of 5 key
# managers draws 15 ports from ~12,000 before binding any; independent draws repeat one in ~110
# rings by the birthday bound, seen in CI as "address already in use")
_HANDED: set[int] = set()
_HANDED_LOCK = threading.Lock()
_HANDED_MAX = 4096


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out
    recently, drawn at random below the kernel's ephemeral range: a port the kernel hands out for
    `bind(0)` or an outgoing connection is reused by the next such request, so between choosing a
    port and binding it another process (a parallel test worker, a client's source port) could take
    it; random ports outside that range make the collision improbable. Falls back to a kernel-chosen
    port."""
    with _HANDED_LOCK:
        if len(_HANDED) >= _HANDED_MAX:
            _HANDED.clear()
        port = _unhanded_free_port()
        _HANDED.add(port)
        return port


def _unhanded_free_port() -> int:
    low = max(1024, min(_ephemeral_low(), 65535) - 12_000)
    high = max(low + 1, min(_ephemeral_low(), 65535))
    for _ in range(100):
        port = _PORTS.randrange(low, high)
        if port in _HANDED:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    while True:  # the kernel's choice, itself never one handed out before
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED:
            return port


def _secret(path: Path) -> None:
    write_private_file(path, os.urandom(SECRET_BYTES))


@dataclass
class DemoPair:
    """Where the demo pair's files are and which ports it uses."""

    root: Path
    ports: dict[str, int]
    configs: dict[str, Path]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def pem(self, name: str) -> tuple[str, str]:
        """(certificate, key) paths of an identity."""
        return str(self.root / "pki" / f"{name}.pem"), str(self.root / "pki" / f"{name}.key")

    @property
    def ca(self) -> str:
        """Path of the CA certificate."""
        return str(self.root / "pki" / "ca.pem")

    def secret(self, name: str) -> bytes:
        """A pre-shared secret file's content (`link`, `ingest_a`, `ingest_b`)."""
        return (self.root / f"{name}.key").read_bytes()

    def log(self, which: str) -> Path:
        """The KM's log file in the work directory (its stderr: warnings, errors; the audit trail is
        `km_X.audit.log` beside it)."""
        return self.root / f"km_{which}.log"

    def start(self, which: str = "ab") -> None:
        """Start the KMs as child processes and wait until they serve; their stderr goes to `log(w)`."""
        for w in which:
            create_private_file(self.log(w))
            with open(self.log(w), "ab") as err:  # the child keeps its own descriptor
                proc = subprocess.Popen(
                    [sys.executable, "-m", "node.keymanager.daemon", str(self.configs[w])],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    cwd=self.root,
                )
            if not proc.stdout.readline().startswith("{"):  # type: ignore[union-attr]
                proc.kill()
                proc.wait()
                raise RuntimeError(f"key manager {w} did not start; see {self.log(w)}")
            self.procs[w] = proc

    def stop(self) -> None:
        """Stop the KM processes (SIGTERM, then SIGKILL after 10 s)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def km_toml_head(
    kme_id: str,
    database: str,
    local_saes: Sequence[str],
    api_port: int,
    pki: str | os.PathLike,
    keys: Mapping[str, object],
    ingest_port: int,
    api_extra: str = "",
) -> str:
    """The start of a loopback key manager's TOML file, up to its `[ingest]` bind: identity, ETSI 014
    API (certificates `pki/KME.pem`, `.key`, `ca.pem`; `api_extra` adds lines) and `[keys]` limits."""
    limits = "\n".join(f"{k} = {v}" for k, v in keys.items())
    pki = Path(pki).as_posix()
    return f"""kme_id = "{kme_id}"
database = "{database}"
local_saes = {json.dumps(list(local_saes))}

[api]
host = "127.0.0.1"
port = {api_port}
cert = "{pki}/{kme_id}.pem"
key = "{pki}/{kme_id}.key"
ca = "{pki}/ca.pem"
{api_extra}
[keys]
{limits}

[ingest]
bind = "tcp://127.0.0.1:{ingest_port}"
"""


def write_demo_pair(
    root: str | os.PathLike,
    *,
    max_key_count: int = 1_000_000,
    max_key_per_request: int = 128,
    peer_timeout_s: float = 2.0,
) -> DemoPair:
    """Create the PKI, the secrets and both TOML files under `root`, all owner-only whatever the umask;
    the CA's private key goes to `root/ca/`, apart from `root/pki/` that the KMs and SAEs read."""
    base = private_dir(root)
    make_pki(base / "pki", ["KME_A", "KME_B"], ["SAE_A", "SAE_B"], ca_key_dir=base / "ca")
    for name in ("link", "ingest_a", "ingest_b"):
        _secret(base / f"{name}.key")
    ports = {f"{w}_{k}": free_port() for w in "ab" for k in ("api", "link", "in")}
    configs = {}
    for me, other in (("a", "b"), ("b", "a")):
        me_id, other_id = f"KME_{me.upper()}", f"KME_{other.upper()}"
        limits = {"max_key_count": max_key_count, "max_key_per_request": max_key_per_request}
        text = (
            km_toml_head(
                me_id, f"km_{me}.db", [f"SAE_{me.upper()}"], ports[me + "_api"], "pki", limits, ports[me + "_in"]
            )
            + f"""[[ingest.sources]]
id = "node_{me}"
auth_key = "ingest_{me}.key"

[link]
bind = "tcp://127.0.0.1:{ports[me + "_link"]}"
auth_key = "link.key"
peer_timeout_s = {peer_timeout_s}

[[peers]]
kme_id = "{other_id}"
connect = "tcp://127.0.0.1:{ports[other + "_link"]}"
links = ["L1"]
saes = ["SAE_{other.upper()}"]
"""
        )
        configs[me] = write_private_file(base / f"km_{me}.toml", text)
    return DemoPair(base, ports, configs)
