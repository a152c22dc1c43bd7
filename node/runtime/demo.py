"""`qkdnode demo`: two nodes, their two key managers and the mock link, as separate processes on loopback.

Alice's node (transmitter) and Bob's node (receiver) run `qkdnode run` on generated configs; each
hands its keys to its own key manager (KME_A, KME_B). At the end an SAE at Alice's side (SAE_A)
fetches a key through ETSI GS QKD 014 from KME_A and an SAE at Bob's side (SAE_B) fetches the same
key ID from KME_B, over mutual TLS, and the two are compared (by digest: keys are never printed).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.keymanager.demo import DemoPair, free_port, write_demo_pair
from node.runtime.launch import node_document, read_status, start_node, stop_processes, to_toml, write_secret

DEMO_LINK = "L1"


@dataclass(frozen=True)
class DemoOptions:
    """What the user can choose for the demo."""

    distance_km: float = 25.0
    eve_fraction: float = 0.0
    rate_hz: float = 1e9
    duration_s: float = 20.0
    blocks: int | None = None
    block_bits: int = 4_000_000
    seed: int | None = None
    realtime: bool = False
    attack: str | None = None  # drivers.mock.conditions name, switched on after KM03's commissioning blocks
    attack_strength: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.distance_km <= 500:
            raise ValueError(f"--distance must be in [0, 500] km, got {self.distance_km}")
        if not 0 <= self.eve_fraction <= 1:
            raise ValueError(f"--eve must be a fraction in [0, 1], got {self.eve_fraction}")
        if not 1e6 <= self.rate_hz <= 1e11:
            raise ValueError(f"--rate must be in [1e6, 1e11] Hz, got {self.rate_hz}")
        if not self.duration_s > 0:
            raise ValueError(f"--duration must be > 0 s, got {self.duration_s}")
        if self.blocks is not None and self.blocks < 1:
            raise ValueError(f"--blocks must be >= 1, got {self.blocks}")


@dataclass
class DemoRun:
    """The running demo: directories, processes and where to read their status."""

    root: Path
    pair: DemoPair
    options: DemoOptions
    node_procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def status(self, name: str) -> dict[str, Any]:
        """The node's last status file (empty before its first write)."""
        return read_status(self.root / "state" / name / "status.json")

    def stop(self) -> None:
        """Stop nodes first (SIGTERM, graceful), then the key managers."""
        stop_processes(self.node_procs.values())
        self.pair.stop()


def _node_document(name: str, role: str, km_port: int, link_port: int, opts: DemoOptions, seed: int) -> dict[str, Any]:
    mock = {
        "seed": seed, "realtime": opts.realtime, "fibre_length_km": opts.distance_km,
        "repetition_rate_hz": opts.rate_hz, "eve_fraction": opts.eve_fraction, "p_z": 0.8, "bob_p_z": 0.8,
        "intensities": [0.5, 0.15, 0.0], "class_probabilities": [0.6, 0.3, 0.1],
    }
    if opts.attack and role == "bob":
        from node.ml.demo_attack import attack_table

        mock.update(attack_table(mock, opts.attack, opts.attack_strength, opts.block_bits))
    side = "a" if role == "alice" else "b"
    return node_document(name, role, DEMO_LINK, link_port, f"link_{DEMO_LINK}.key", mock,
                         block_bits=opts.block_bits, metrics_port=0, max_blocks=opts.blocks or None,
                         keymanager=(f"tcp://127.0.0.1:{km_port}", f"node_{side}", f"ingest_{side}.key"))


def start_demo(opts: DemoOptions, root: str | Path | None = None) -> DemoRun:
    """Write every file, start both key managers and both nodes; returns the running demo."""
    base = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="qkdnode-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    pair = write_demo_pair(base)
    seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(4), "little")
    write_secret(base / f"link_{DEMO_LINK}.key", 1 << 17)  # the nodes' pre-shared bootstrap authentication key
    link_port = free_port()
    run = DemoRun(base, pair, opts)
    pair.start()
    try:
        for name, role, km in (("alice", "alice", pair.ports["a_in"]), ("bob", "bob", pair.ports["b_in"])):
            cfg = base / f"{name}.toml"
            cfg.write_text(to_toml(_node_document(name, role, km, link_port, opts, seed)))
            run.node_procs[name] = start_node(cfg, base, base / f"{name}.log", log_level="INFO")
    except BaseException:
        run.stop()
        raise
    return run


def wait_for_keys(run: DemoRun, on_tick: Callable[[dict[str, Any], dict[str, Any]], None] | None = None) -> None:
    """Wait until the duration or block count is reached and both key managers hold the keys."""
    opts = run.options
    t0 = time.time()
    while True:
        alice, bob = run.status("alice"), run.status("bob")
        if on_tick is not None:
            on_tick(alice, bob)
        for name, proc in run.node_procs.items():
            if proc.poll() is not None and proc.returncode != 0:
                raise RuntimeError(f"node {name} exited with code {proc.returncode}; see {run.root / (name + '.log')}")
        bc = bob.get("counters", {})
        done_blocks = bc.get("blocks", 0) + bc.get("aborted", 0)
        finished = (done_blocks >= opts.blocks) if opts.blocks else (time.time() - t0 >= opts.duration_s)
        delivered = (alice.get("delivery", {}).get("delivered_blocks", 0) >= bc.get("blocks", 0)
                     and bob.get("delivery", {}).get("delivered_blocks", 0) >= bc.get("blocks", 0))
        if finished and delivered:
            return
        if time.time() - t0 > (opts.duration_s if not opts.blocks else 0) + 600:
            raise TimeoutError("the demo did not finish within 10 minutes")
        time.sleep(0.3)


def fetch_and_compare(run: DemoRun, size_bits: int = 256) -> dict[str, Any]:
    """SAE_A gets a key from KME_A, SAE_B the same key ID from KME_B; compares them (digests only)."""
    from etsi_qkd_014_client import QKD014Client

    pair = run.pair

    def client(kme: str, sae: str) -> QKD014Client:
        cert, key = pair.pem(sae)
        return QKD014Client(f"127.0.0.1:{pair.ports[kme + '_api']}", cert, key, pair.ca)

    code, container = client("a", "SAE_A").get_key("SAE_B", size=size_bits)
    if code != 200:
        return {"ok": False, "reason": f"enc_keys at KME_A answered {code}: {getattr(container, 'message', '')}"}
    key = container.keys[0]
    code, got = client("b", "SAE_B").get_key_with_key_IDs("SAE_A", [key.key_id])
    if code != 200:
        return {"ok": False, "key_ID": key.key_id,
                "reason": f"dec_keys at KME_B answered {code}: {getattr(got, 'message', '')}"}
    same = got.keys[0].key == key.key
    return {"ok": bool(same), "key_ID": key.key_id, "size_bits": size_bits,
            "sha256_prefix_alice": hashlib.sha256(key.key.encode()).hexdigest()[:16],
            "sha256_prefix_bob": hashlib.sha256(got.keys[0].key.encode()).hexdigest()[:16]}


def serve_info(run: DemoRun) -> dict[str, Any]:
    """Each key manager's ETSI 014 base URL, the CA and each SAE's certificate and key paths."""
    pair = run.pair
    out: dict[str, Any] = {"ca_cert": pair.ca, "key_managers": {},
                           "nodes": {n: {"metrics_url": run.status(n).get("metrics_url")} for n in ("alice", "bob")}}
    for kme, sae in (("a", "SAE_A"), ("b", "SAE_B")):
        cert, key = pair.pem(sae)
        out["key_managers"][f"KME_{kme.upper()}"] = {
            "etsi014_base_url": f"https://127.0.0.1:{pair.ports[kme + '_api']}/api/v1/keys",
            "sae": {"id": sae, "cert": cert, "key": key},
        }
    return out


def summary(run: DemoRun, fetched: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    """The demo's figures: QBER, sifted and secret rates, blocks, aborts, alarms, the key check."""
    alice, bob = run.status("alice"), run.status("bob")
    bc = bob.get("counters", {})
    last = bob.get("last_block", {})
    return {
        "distance_km": run.options.distance_km, "eve_fraction": run.options.eve_fraction,
        "rate_hz": run.options.rate_hz, "elapsed_s": elapsed_s,
        "blocks": bc.get("blocks", 0), "aborted_blocks": bc.get("aborted", 0),
        "detections": bc.get("detections", 0), "sifted_bits": bc.get("sifted_bits", 0),
        "secret_bits": bc.get("key_bits", 0),
        "sifted_mbit_per_s": bc.get("sifted_bits", 0) / elapsed_s / 1e6,
        "secret_kbit_per_s": bc.get("key_bits", 0) / elapsed_s / 1e3,
        "qber": last.get("qber"), "qber_x": last.get("qber_x"),
        "keys_stored": {"KME_A": alice.get("delivery", {}).get("delivered_bits", 0),
                        "KME_B": bob.get("delivery", {}).get("delivered_bits", 0)},
        "alarms": [a["text"] for a in (alice.get("alarms", []) + bob.get("alarms", []))][-10:],
        "etsi014_check": fetched, "workdir": str(run.root),
    }
