"""The node's own capacity: both node daemons and both key managers as processes on this machine,
fed by the replay source (drivers.replay) instead of the simulator.

The mock link is recorded once per settings (cached under $QKDNODE_REPLAY_CACHE, default
~/.cache/qkdnode/replay), then Alice and Bob run `qkdnode run` on it over the real authenticated
ZeroMQ channel, each delivering to its own key manager, until Bob has distilled the blocks asked.
Rates are sustained ones between Bob's first and last block; every process's peak RSS is read
from the kernel when it is reaped (wait4), so the figure is the process's own high-water mark.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.keymanager.demo import free_port, write_demo_pair
from node.runtime.launch import (
    node_document,
    read_status,
    start_node,
    to_toml,
    write_link_secret,
)
from node.runtime.loopback import history_figures

CAPACITY_LINK = "L1"  # the link the demo key managers (node.keymanager.demo) serve
RECORDING_VERSION = 2  # raise when what a cached recording holds changes (v2: key bits counted after dead time)
LINK_TIMEOUT_S = 180.0  # Alice's first replies may wait for numba kernels to load (demo.LINK_TIMEOUT_S)


def replay_cache() -> Path:
    """Where recordings are kept between benchmark runs."""
    return Path(os.environ.get("QKDNODE_REPLAY_CACHE", Path.home() / ".cache" / "qkdnode" / "replay"))


def _link_params(mock: dict[str, Any]) -> Any:
    from drivers.mock import LinkParams

    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in mock.items() if k not in ("seed", "block_s")
    }
    return LinkParams(**fields)


def recording_for(mock: dict[str, Any], key_bits: int) -> Path:
    """A recording of the mock link `mock` ([hardware.mock] fields) with at least `key_bits`
    key-basis detections: from the cache, or recorded now (not timed by any bench)."""
    from drivers.replay import read_info
    from drivers.replay.recording import RecordingError
    from node.runtime.replay_source import record_mock

    name = hashlib.sha256(json.dumps({"format": RECORDING_VERSION, **mock}, sort_keys=True).encode()).hexdigest()[:16]
    cache = replay_cache()
    for found in sorted(cache.glob(f"{name}-*")):
        with contextlib.suppress(RecordingError, ValueError):
            info = read_info(found)
            if (info.sifted_bits or 0) >= key_bits:
                return found
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{name}-rec-", dir=cache))
    try:
        info = record_mock(
            _link_params(mock), int(mock.get("seed", 0)), work, key_bits, float(mock.get("block_s", 5e-3))
        )
        final = cache / f"{name}-{info.sifted_bits}"
        os.replace(work, final)  # complete recordings only, under their final name
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final


def replay_document(
    role: str,
    port: int,
    recording: Path,
    secret: str,
    block_bits: int,
    batch: int,
    blocks: int,
    km: tuple[str, str, str],
    mock: dict[str, Any],
) -> dict[str, Any]:
    """A node's configuration on the replay source (benchmark only) delivering to its key manager."""
    doc = node_document(
        role,
        role,
        CAPACITY_LINK,
        port,
        secret,
        {},
        block_bits=block_bits,
        batch_detections=batch,
        keymanager=km,
        max_blocks=blocks,
        link_timeout_s=LINK_TIMEOUT_S,
    )
    params = _link_params(mock)
    doc["hardware"] = {"kind": "replay", "replay": {"path": str(recording), "benchmark_only": True}}
    doc["link"].update(intensities=list(params.intensities), class_probabilities=list(params.class_probabilities))
    if os.environ.get("QKDNODE_LINK_WORKERS"):  # pool's stop-gap until capbench's workers sweep: [link] workers
        doc["link"]["workers"] = int(os.environ["QKDNODE_LINK_WORKERS"])
    return doc


def _vm_hwm(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes, 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used, 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (stat fields 14, 15)
    except (OSError, ValueError, IndexError):
        return 0.0


def wait_watching_rss(
    procs: dict[str, subprocess.Popen[Any]],
    wait_for: tuple[str, ...],
    timeout_s: float,
    progress: Callable[[], Any] = lambda: None,
    stall_s: float = 90.0,
    trace: list[tuple[float, dict[str, float]]] | None = None,
) -> tuple[dict[str, int | None], dict[str, int], dict[str, float]]:
    """Wait up to `timeout_s` for the processes named in `wait_for` to end, then stop the others
    (SIGTERM, SIGKILL 20 s later); returns exit codes, peak RSS in bytes and CPU seconds, sampled every 0.1 s
    from /proc (VmHWM: the high-water mark of the process's own memory since its exec; wait4's
    ru_maxrss would count the parent's memory at fork). It also gives up when `progress()` has not
    changed for `stall_s` (a replay that ran out before the blocks asked). `trace` receives each
    sample's (monotonic time, CPU seconds per process)."""
    peak = dict.fromkeys(procs, 0)
    cpu = dict.fromkeys(procs, 0.0)
    codes: dict[str, int | None] = {}
    deadline = time.monotonic() + timeout_s

    def sample() -> None:
        for name, proc in procs.items():
            if name not in codes:
                peak[name] = max(peak[name], _vm_hwm(proc.pid))
                cpu[name] = max(cpu[name], _cpu_s(proc.pid))
                if proc.poll() is not None:
                    codes[name] = proc.returncode
        if trace is not None:
            trace.append((time.monotonic(), dict(cpu)))

    seen, since = progress(), time.monotonic()
    while True:
        sample()
        now = progress()
        if now != seen:
            seen, since = now, time.monotonic()
        failed = any(codes.get(n) not in (None, 0) for n in wait_for)  # one end gone: the other would wait on
        stalled = time.monotonic() - since > stall_s
        if all(n in codes for n in wait_for) or failed or stalled or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for name, proc in procs.items():
        if name not in codes:
            proc.terminate()
    for name, proc in procs.items():
        if name not in codes:
            try:
                codes[name] = proc.wait(20.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
    return codes, peak, cpu


def run_capacity(
    mock: dict[str, Any], block_bits: int, blocks: int, batch: int = 500_000, timeout_s: float = 900.0
) -> dict[str, Any]:
    """Both nodes and both key managers on a replay of `mock`, until Bob has `blocks` blocks;
    returns both nodes' final status and every process's exit code and peak RSS."""
    # a block more than asked, and two batches: the last batch short of `batch` detections is never sifted
    recording = recording_for(mock, int((blocks + 1) * block_bits + 2 * batch))
    with tempfile.TemporaryDirectory(prefix="qkdnode-capacity-") as tmp:
        root = Path(tmp)
        pair = write_demo_pair(root)
        secrets = write_link_secret(root, "link", 1 << 18)
        port = free_port()
        procs: dict[str, subprocess.Popen[Any]] = {}
        out: dict[str, Any] = {"rss": {}, "exit": {}, "cpu_s": {}, "cpu_trace": []}
        try:
            pair.start()
            procs.update({f"km_{w}": p for w, p in pair.procs.items()})
            pair.procs.clear()  # watched (peak RSS) and stopped here
            for role, side in (("alice", "a"), ("bob", "b")):
                km = (f"tcp://127.0.0.1:{pair.ports[side + '_in']}", f"node_{side}", f"ingest_{side}.key")
                cfg = root / f"{role}.toml"
                cfg.write_text(
                    to_toml(replay_document(role, port, recording, secrets[role], block_bits, batch, blocks, km, mock))
                )
                procs[role] = start_node(cfg, root, root / f"{role}.log")
            # each node stops by itself after `blocks`, once its keys are delivered; then the key managers
            bob_status = root / "state/bob/status.json"
            out["exit"], out["rss"], out["cpu_s"] = wait_watching_rss(
                procs,
                ("bob", "alice"),
                timeout_s,
                lambda: (
                    read_status(bob_status).get("counters", {}).get("sifted_bits"),
                    read_status(bob_status).get("delivery"),
                ),
                trace=out["cpu_trace"],
            )
            procs.clear()
        finally:
            if procs:  # a start failed: leave nothing running
                wait_watching_rss(procs, (), 0.0)
            out["alice"], out["bob"] = (
                read_status(root / "state/alice/status.json"),
                read_status(root / "state/bob/status.json"),
            )
            out["logs"] = {n: (root / f"{n}.log").read_text(errors="replace")[-2000:] for n in ("alice", "bob")}
    out["recording"] = str(recording)
    return out


def cpu_at(trace: list[tuple[float, dict[str, float]]], t: float) -> dict[str, float]:
    """CPU seconds per process at the first sample taken at or after monotonic time `t` (the last if none)."""
    times = [ts for ts, _ in trace]
    return trace[min(bisect.bisect_left(times, t), len(trace) - 1)][1]


def capacity_figures(mock: dict[str, Any], block_bits: int, blocks: int) -> dict[str, Any]:
    """The link-capacity row's figures: sustained sifted and secret Mbit/s, f, blocks delivered to
    each key manager, every process's peak RSS in MB."""
    out = run_capacity(mock, block_bits, blocks)
    bob, alice = out["bob"], out["alice"]
    counters = bob.get("counters", {})
    fig: dict[str, Any] = {"blocks": counters.get("blocks", 0), "aborted": counters.get("aborted", 0)}
    fig.update(history_figures(bob.get("history", []), bob.get("last_block", {})))
    fig["secret_mbit_per_s"] = fig.pop("secret_kbit_per_s", 0.0) / 1e3
    fig["delivered_blocks"] = {
        "alice": alice.get("delivery", {}).get("delivered_blocks", 0),
        "bob": bob.get("delivery", {}).get("delivered_blocks", 0),
    }
    fig["peak_rss_mb"] = {n: round(v / 2**20, 1) for n, v in out["rss"].items()}
    fig["exit_codes"] = out["exit"]
    fig["cpu_s"] = {n: round(v, 1) for n, v in out["cpu_s"].items()}
    hist = bob.get("history", [])
    if len(hist) >= 2:  # load-independent: CPU seconds each process spent per sifted Mbit, first to last block
        sifted = (hist[-1]["sifted_total"] - hist[0]["sifted_total"]) / 1e6
        first, last = cpu_at(out["cpu_trace"], hist[0]["t"]), cpu_at(out["cpu_trace"], hist[-1]["t"])
        fig["cpu_s_per_sifted_mbit"] = {n: round((last[n] - first[n]) / sifted, 3) for n in last}
    if "sifted_mbit_per_s" not in fig:  # fewer than two blocks: say why in the row
        fig["failure"] = {n: out["logs"][n][-400:] for n in ("alice", "bob")}
    return fig
