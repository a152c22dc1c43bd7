"""`qkdnode demo`: two nodes, their two key managers and the mock link, as separate processes on loopback.

Alice's node (transmitter) and Bob's node (receiver) run `qkdnode run` on generated configs; each
hands its keys to its own key manager (KME_A, KME_B). Once a block is distilled and delivered, an SAE
at Alice's side (SAE_A) fetches a key through ETSI GS QKD 014 from KME_A and an SAE at Bob's side
(SAE_B) fetches the same key ID from KME_B, over mutual TLS, with the project's own client
(`node.keymanager.saeclient`); the two are compared by digest (keys are never printed).

The demo ends when it has delivered that (`watch` returns), not at a wall-clock guess; its duration
is an upper bound, and when it is hit `DemoTimeout` says why no key came.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.keymanager.demo import DemoPair, free_port, write_demo_pair
from node.runtime.launch import node_document, read_status, start_node, stop_processes, to_toml, write_link_secret

DEMO_LINK = "L1"
# With an empty numba cache, Alice's first Cascade answers wait for their kernels to compile, which
# took over 20 s (the link's default reply timeout) on a loaded 2-core machine and cost the first two
# blocks. The demo's processes are watched anyway, and waits give up at once on stop, so a long
# timeout costs nothing.
LINK_TIMEOUT_S = 180.0
STOP_GRACE_S = 1.8  # SIGTERM to SIGKILL for the demo's processes: the mock has no laser to leave safe, and
# a kill is a crash the outbox and key stores are built for (two-phase, durable)


class DemoTimeout(Exception):
    """The demo's upper bound on its duration passed before it delivered; the text says why."""


class DemoFailed(Exception):
    """A process of the demo stopped on its own (the text names it and quotes its last log line)."""


@dataclass(frozen=True)
class DemoOptions:
    """What the user can choose for the demo."""

    distance_km: float = 25.0
    eve_fraction: float = 0.0
    rate_hz: float = 1e9
    duration_s: float = 300.0
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
        if not 1_000 <= self.block_bits <= 100_000_000:
            raise ValueError(f"--block-bits must be in [1e3, 1e8] sifted key bits, got {self.block_bits}")
        if self.seed is not None and not 0 <= self.seed < 2**64:
            raise ValueError(f"--seed must be an integer in [0, 2^64), got {self.seed}")

    @property
    def target_blocks(self) -> int:
        """Blocks to distil before the key check (at least one)."""
        return self.blocks or 1


@dataclass
class DemoRun:
    """The running demo: directories, processes and where to read their status."""

    root: Path
    pair: DemoPair
    options: DemoOptions
    temporary: bool = False
    node_procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def status(self, name: str) -> dict[str, Any]:
        """The node's last status file (empty before its first write)."""
        return read_status(self.root / "state" / name / "status.json")

    def stop(self, grace_s: float = STOP_GRACE_S) -> list[str]:
        """SIGTERM nodes and key managers together, SIGKILL those left after `grace_s`; names those killed.

        Undelivered keys stay in the nodes' outboxes (re-sent on the next start), so the key managers
        need not outlive the nodes."""
        procs = {**self.node_procs, **{f"KME_{w.upper()}": p for w, p in self.pair.procs.items()}}
        killed = stop_processes(procs.values(), grace_s)
        self.pair.procs.clear()
        return [n for n, p in procs.items() if p in killed]

    def remove(self) -> None:
        """Delete the work directory (configs, certificates, secrets, key stores)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def pids(self) -> list[int]:
        """Process IDs of every node and key manager."""
        return [p.pid for p in self.node_procs.values()] + [p.pid for p in self.pair.procs.values()]


def _mock_document(opts: DemoOptions, seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "realtime": opts.realtime,
        "fibre_length_km": opts.distance_km,
        "repetition_rate_hz": opts.rate_hz,
        "eve_fraction": opts.eve_fraction,
        "p_z": 0.8,
        "bob_p_z": 0.8,
        "intensities": [0.5, 0.15, 0.0],
        "class_probabilities": [0.6, 0.3, 0.1],
    }


def _node_document(
    name: str,
    role: str,
    km_port: int,
    link_port: int,
    opts: DemoOptions,
    seed: int,
    bootstrap: str = f"link_{DEMO_LINK}.key",
) -> dict[str, Any]:
    mock = _mock_document(opts, seed)
    if opts.attack and role == "bob":
        from node.ml.demo_attack import attack_table

        mock.update(attack_table(mock, opts.attack, opts.attack_strength, opts.block_bits))
    side = "a" if role == "alice" else "b"
    return node_document(
        name,
        role,
        DEMO_LINK,
        link_port,
        bootstrap,
        mock,
        block_bits=opts.block_bits,
        metrics_port=0,
        max_blocks=opts.blocks or None,
        link_timeout_s=LINK_TIMEOUT_S,
        keymanager=(f"tcp://127.0.0.1:{km_port}", f"node_{side}", f"ingest_{side}.key"),
    )


def check_options(opts: DemoOptions) -> None:
    """Validate the nodes' configuration as `qkdnode run` will, before any process starts."""
    from node.runtime.config import parse_node_config
    from node.runtime.hardware import mock_params

    cfg = parse_node_config(_node_document("alice", "alice", 1, 1, opts, 0))
    mock_params(cfg)


def start_demo(
    opts: DemoOptions, root: str | Path | None = None, say: Callable[[str], None] = lambda text: None
) -> DemoRun:
    """Write every file, start both key managers and both nodes; returns the running demo."""
    check_options(opts)
    temporary = root is None
    base = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="qkdnode-demo-"))
    try:
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o700)
    except OSError as exc:
        raise ValueError(f"--workdir: cannot use {base}: {exc.strerror}") from None
    say(f"work directory {base}" + (" (removed at exit; --keep keeps it)" if temporary else ""))
    pair = write_demo_pair(base)
    seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(4), "little")
    bootstrap = write_link_secret(base, f"link_{DEMO_LINK}", 1 << 17)  # pre-shared, single-use, a copy per node
    link_port = free_port()
    run = DemoRun(base, pair, opts, temporary)
    try:
        say("starting key managers KME_A and KME_B")
        pair.start()
        say(
            f"key managers serving ETSI 014 on https://127.0.0.1:{pair.ports['a_api']} (KME_A) and "
            f"https://127.0.0.1:{pair.ports['b_api']} (KME_B)"
        )
        say(f"starting Alice's and Bob's nodes on the mock link ({opts.distance_km:g} km, {opts.rate_hz:.3g} Hz)")
        for name, role, km in (("alice", "alice", pair.ports["a_in"]), ("bob", "bob", pair.ports["b_in"])):
            cfg = base / f"{name}.toml"
            cfg.write_text(to_toml(_node_document(name, role, km, link_port, opts, seed, bootstrap[role])))
            run.node_procs[name] = start_node(cfg, base, base / f"{name}.log", log_level="INFO")
    except BaseException:
        run.stop()
        if temporary:
            run.remove()
        raise
    return run


def phase(run: DemoRun, alice: dict[str, Any], bob: dict[str, Any]) -> str:
    """What the demo is waiting for now, in a few words (changes are shown as their own line)."""
    bits = run.options.block_bits
    if not alice or not bob or alice.get("state") != "running" or bob.get("state") != "running":
        return "nodes starting (loading modules, opening the mock link, connecting Alice and Bob)"
    c = bob.get("counters", {})
    if c.get("blocks", 0) + c.get("aborted", 0) == 0:
        if c.get("sifted_bits", 0) < bits:
            return (
                f"link up; collecting the first block ({bits / 1e6:g} Mbit of sifted key). The first batches "
                "compile the numba kernels: a minute or more when the cache is cold, once per machine"
            )
        return "block 1 sifted: error correction, verification and privacy amplification (first use compiles them)"
    if c.get("key_bits", 0) == 0:
        return "no secret key yet from the blocks so far; collecting the next block"
    return "key distilled; delivering it to KME_A and KME_B and checking it through ETSI 014"


def progress_line(alice: dict[str, Any], bob: dict[str, Any], t: float, block_bits: int) -> str:
    """One line of live figures: blocks, QBER, sifted bits towards the next block, secret bits stored."""
    c = bob.get("counters", {})
    last = bob.get("last_block", {})
    qber = last.get("qber")
    done = c.get("blocks", 0) + c.get("aborted", 0)
    sifted = c.get("sifted_bits", 0)
    towards = sifted - done * block_bits
    return (
        f"[{t:5.1f} s] blocks {c.get('blocks', 0)} (aborted {c.get('aborted', 0)})  "
        f"next block {max(0, min(towards, block_bits)) / 1e6:.2f}/{block_bits / 1e6:g} Mbit sifted  "
        f"QBER {'-' if qber is None else f'{100 * qber:.2f} %'}  "
        f"secret {c.get('key_bits', 0)} bits  stored KME_A {alice.get('delivery', {}).get('delivered_bits', 0)} "
        f"KME_B {bob.get('delivery', {}).get('delivered_bits', 0)} bits"
    )


def _last_log_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if "error:" in ln or "ERROR" in ln or "CRITICAL" in ln]
    return (errors or lines or [""])[-1].strip()


def _delivered(alice: dict[str, Any], bob: dict[str, Any]) -> bool:
    blocks = bob.get("counters", {}).get("blocks", 0)
    return (
        blocks > 0
        and bob.get("counters", {}).get("key_bits", 0) > 0
        and alice.get("delivery", {}).get("delivered_blocks", 0) >= blocks
        and bob.get("delivery", {}).get("delivered_blocks", 0) >= blocks
    )


def watch(
    run: DemoRun, on_tick: Callable[[dict[str, Any], dict[str, Any], str], None] | None = None, size_bits: int = 256
) -> dict[str, Any]:
    """Wait until the target blocks are distilled, delivered to both key managers and the ETSI 014
    check passed; returns the check. `DemoTimeout` (with the reason) when the duration passes first,
    `DemoFailed` when a process stops on its own."""
    opts = run.options
    deadline = run.started + opts.duration_s
    last_check: dict[str, Any] = {}
    while True:
        alice, bob = run.status("alice"), run.status("bob")
        if on_tick is not None:
            on_tick(alice, bob, phase(run, alice, bob))
        for name, proc in run.node_procs.items():
            if proc.poll() is not None and (proc.returncode != 0 or not opts.blocks):
                raise DemoFailed(
                    f"node {name} stopped (exit code {proc.returncode}): "
                    f"{_last_log_line(run.root / (name + '.log')) or 'no log'}"
                )
        for who, proc in run.pair.procs.items():
            if proc.poll() is not None:
                raise DemoFailed(f"key manager KME_{who.upper()} stopped (exit code {proc.returncode})")
        bc = bob.get("counters", {})
        if bc.get("blocks", 0) + bc.get("aborted", 0) >= opts.target_blocks and _delivered(alice, bob):
            last_check = fetch_and_compare(run, size_bits)
            if last_check.get("ok"):
                return last_check
        if time.monotonic() >= deadline:
            raise DemoTimeout(why_no_key(run, alice, bob, last_check))
        time.sleep(0.3)


def why_no_key(run: DemoRun, alice: dict[str, Any], bob: dict[str, Any], check: dict[str, Any]) -> str:
    """Plain words for why no matching key came within the duration."""
    opts = run.options
    limit = f"when --duration {opts.duration_s:g} s ran out"
    forecast = link_forecast(opts)
    if forecast["no_key_expected"]:
        return f"{forecast['text']}; stopped {limit}"
    if not bob or bob.get("state") != "running" or not alice or alice.get("state") != "running":
        return f"the nodes were still starting {limit} (loading modules, connecting); raise --duration"
    c = bob.get("counters", {})
    blocks, aborted, sifted = c.get("blocks", 0), c.get("aborted", 0), c.get("sifted_bits", 0)
    if blocks + aborted == 0:
        uptime = max(1e-9, float(bob.get("uptime_s", 0.0)))
        rate = sifted / uptime
        if sifted < opts.block_bits:
            more = (
                (f"; at the {rate / 1e6:.2f} Mbit/s seen, a block needs about {opts.block_bits / rate:.0f} s in all")
                if rate > 0
                else ""
            )
            return (
                f"only {sifted / 1e6:.2f} of the {opts.block_bits / 1e6:g} Mbit of sifted key a block needs were "
                f"collected {limit} (compiling the numba kernels takes a minute or more when the cache is cold)"
                f"{more}; raise --duration or lower --block-bits"
            )
        return (
            f"block 1 was still in error correction and privacy amplification {limit} (first use compiles "
            "the kernels); raise --duration"
        )
    if blocks == 0:
        qber = bob.get("last_block", {}).get("qber")
        return (
            f"all {aborted} blocks were aborted {limit}"
            + (f" (last QBER {100 * qber:.1f} %)" if qber else "")
            + "; an eavesdropper or noise above the abort threshold leaves no key"
        )
    if c.get("key_bits", 0) == 0:
        return (
            f"{blocks} block(s) distilled {limit}, but their finite-key length was 0: too short or too noisy "
            "for a secret key; raise --block-bits or shorten --distance"
        )
    if blocks + aborted < opts.target_blocks:
        return (
            f"{blocks + aborted} of the {opts.target_blocks} blocks asked for were done {limit} (the key check "
            "waits for all of them); raise --duration or lower --blocks"
        )
    if not _delivered(alice, bob):
        return f"the key was distilled but not yet acknowledged by both key managers {limit}"
    return f"the ETSI 014 check did not pass {limit}: {check.get('reason', 'keys differ')}"


def link_forecast(opts: DemoOptions) -> dict[str, Any]:
    """A rough forecast from the mock link's physics: QBER from misalignment and dark counts, and the
    simulated link time one block needs. Says plainly when no key is to be expected."""
    from drivers.mock import LinkParams

    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in _mock_document(opts, 0).items()
        if k not in ("seed", "realtime")
    }
    p = LinkParams(**fields)
    eff = sum(p.efficiency) / len(p.efficiency)
    eta = eff * 10 ** (-(p.fibre_loss_db_per_km * p.fibre_length_km + p.insertion_loss_db) / 10)
    gate_s = 0.5 / p.repetition_rate_hz  # the slotter keeps detections within half a period of the slot centre
    dark = 2 * (sum(p.dark_count_hz) / len(p.dark_count_hz)) * gate_s  # two key-basis detectors
    import math

    sig = sum(pk * (1 - math.exp(-mu * eta)) for mu, pk in zip(p.intensities, p.class_probabilities))
    click = sig + dark
    err = p.misalignment * sig + 0.5 * dark
    qber = err / click if click > 0 else 0.5
    qber = qber * (1 - p.eve_fraction) + (qber * (1 - 0.25 * 2) + 0.25) * p.eve_fraction if p.eve_fraction else qber
    sifted_per_s = p.repetition_rate_hz * p.p_z * p.bob_p_z * click
    block_link_s = opts.block_bits / sifted_per_s if sifted_per_s > 0 else math.inf
    no_key = qber >= 0.11
    text = (
        f"at {opts.distance_km:g} km the expected QBER is about {100 * qber:.0f} %"
        + (" (dark counts swamp the signal)" if dark > sig else "")
        + (", above the 11 % abort threshold: every block is aborted and no key is expected" if no_key else "")
        + f"; a block needs about {block_link_s:.3g} s of link time"
    )
    return {
        "qber": qber,
        "sifted_bits_per_link_s": sifted_per_s,
        "block_link_s": block_link_s,
        "no_key_expected": no_key,
        "text": text,
    }


def fetch_and_compare(run: DemoRun, size_bits: int = 256) -> dict[str, Any]:
    """SAE_A gets a key from KME_A, SAE_B the same key ID from KME_B; compares them (digests only)."""
    from node.keymanager.saeclient import SaeClient

    pair = run.pair

    def client(kme: str, sae: str) -> SaeClient:
        cert, key = pair.pem(sae)
        return SaeClient(f"127.0.0.1:{pair.ports[kme + '_api']}", cert, key, pair.ca)

    try:
        code, container = client("a", "SAE_A").enc_keys("SAE_B", 1, size_bits)
        if code != 200:
            return {"ok": False, "reason": f"enc_keys at KME_A answered {code}: {container.get('message', '')}"}
        key = container["keys"][0]
        code, got = client("b", "SAE_B").dec_keys("SAE_A", [key["key_ID"]])
    except (OSError, ValueError, KeyError, IndexError) as exc:
        return {"ok": False, "reason": f"ETSI 014 request failed: {exc}"}
    if code != 200:
        return {
            "ok": False,
            "key_ID": key["key_ID"],
            "reason": f"dec_keys at KME_B answered {code}: {got.get('message', '')}",
        }
    mine, theirs = base64.b64decode(key["key"]), base64.b64decode(got["keys"][0]["key"])
    # Shown on screen: the key ID and a 64-bit SHA-256 prefix, never the key. The prefix tells a reader
    # up to 64 bits about this one 256-bit key; it is paid for by never using the key: it was fetched only
    # for this check and each key is served once, so no application ever receives it.
    return {
        "ok": mine == theirs,
        "key_ID": key["key_ID"],
        "size_bits": size_bits,
        "sha256_prefix_alice": hashlib.sha256(mine).hexdigest()[:16],
        "sha256_prefix_bob": hashlib.sha256(theirs).hexdigest()[:16],
    }


def serve_info(run: DemoRun) -> dict[str, Any]:
    """Each key manager's ETSI 014 base URL, the CA and each SAE's certificate and key paths."""
    pair = run.pair
    out: dict[str, Any] = {
        "ca_cert": pair.ca,
        "key_managers": {},
        "nodes": {n: {"metrics_url": run.status(n).get("metrics_url")} for n in ("alice", "bob")},
    }
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
    uptime = max(1e-9, float(bob.get("uptime_s", elapsed_s) or elapsed_s))
    return {
        "distance_km": run.options.distance_km,
        "eve_fraction": run.options.eve_fraction,
        "rate_hz": run.options.rate_hz,
        "elapsed_s": elapsed_s,
        "time_to_first_key_s": elapsed_s if fetched.get("ok") else None,
        "blocks": bc.get("blocks", 0),
        "aborted_blocks": bc.get("aborted", 0),
        "detections": bc.get("detections", 0),
        "sifted_bits": bc.get("sifted_bits", 0),
        "secret_bits": bc.get("key_bits", 0),
        "sifted_mbit_per_s": bc.get("sifted_bits", 0) / uptime / 1e6,
        "secret_kbit_per_s": bc.get("key_bits", 0) / uptime / 1e3,
        "qber": last.get("qber"),
        "qber_x": last.get("qber_x"),
        **authentication_summary(bc, last),
        "keys_stored": {
            "KME_A": alice.get("delivery", {}).get("delivered_bits", 0),
            "KME_B": bob.get("delivery", {}).get("delivered_bits", 0),
        },
        "alarms": [a["text"] for a in (alice.get("alarms", []) + bob.get("alarms", []))][-10:],
        "etsi014_check": fetched,
        "workdir": str(run.root),
    }


def authentication_summary(counters: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """Per key block: authentication key spent (`auth_bits`), ε_auth beside ε_sec and ε_cor, and the
    net key handed to the key managers against the block's finite-key length."""
    blocks = counters.get("blocks", 0)
    finite = counters.get("finite_key_bits", 0)
    return {
        "auth_bits_per_block": counters.get("auth_bits", 0) / blocks if blocks else None,
        "auth_failures": counters.get("auth_failures", 0),
        "eps_auth_per_block": last.get("eps_auth"),
        "eps_sec": last.get("eps_sec"),
        "eps_cor": last.get("eps_cor"),
        "finite_key_bits_per_block": finite / blocks if blocks else None,
        "net_key_bits_per_block": counters.get("key_bits", 0) / blocks if blocks else None,
        "net_vs_finite_key": counters.get("key_bits", 0) / finite if finite else None,
    }
