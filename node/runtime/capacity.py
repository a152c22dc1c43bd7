"""The node's own capacity: both node daemons and both key managers as processes on this machine,
fed by the replay source (drivers.replay) instead of the simulator.

The mock link is recorded once per settings (cached under $QKDNODE_REPLAY_CACHE, default
~/.cache/qkdnode/replay), then Alice and Bob run `qkdnode run` on it over the real authenticated
ZeroMQ channel, each delivering to its own key manager, until Bob has distilled the blocks asked.
Rates are sustained ones between Bob's first and last block, and so is the CPU per sifted Mbit:
each process's CPU seconds (/proc/<pid>/stat) interpolated at the moments Bob's first and last
block land, so imports, kernel loading and start-up stay out (the whole-life figure is kept beside
it). Every process's peak RSS is its own high-water mark (VmHWM). `run_soak` runs the link for a
set time and samples each process's RSS, so a row can show that memory does not grow.
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
from node.runtime.config import parse_node_config
from node.runtime.launch import (
    node_document,
    read_status,
    start_node,
    to_toml,
    write_link_secret,
)
from node.runtime.loopback import history_figures
from node.runtime.threadnames import thread_cpu_s

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
    return doc


def with_workers(doc: dict[str, Any], workers: int, base: Path) -> dict[str, Any]:
    """`doc` distilling with `workers` workers (`[link] workers`, always written: the node's default is
    its core count). A tree whose config parser does not know the key yet runs one worker, so there
    the key is left out when it asks for 1; any other count is refused with the parser's message."""
    doc = {**doc, "link": {**doc["link"], "workers": workers}}
    try:
        parse_node_config(doc, base)
    except ValueError as exc:
        if "link.workers" not in str(exc) or workers != 1:
            raise
        doc = {**doc, "link": {k: v for k, v in doc["link"].items() if k != "workers"}}
    return doc


def node_knows_workers() -> bool:
    """Whether this tree's node config parser takes `[link] workers` (blocks distilled in parallel)."""
    doc = node_document("bob", "bob", CAPACITY_LINK, 5000, "link.key", {"seed": 0}, block_bits=1_000_000)
    try:
        parse_node_config({**doc, "link": {**doc["link"], "workers": 2}})
    except ValueError as exc:
        if "link.workers" in str(exc):
            return False
        raise
    return True


def _proc_field(pid: int, key: str) -> int:
    """A /proc/<pid>/status size field (VmHWM, VmRSS) in bytes, 0 once the process has exited."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
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


Trace = list[tuple[float, dict[str, float]]]
"""Samples of (monotonic time, a figure per process), in time order."""


def wait_watching_rss(
    procs: dict[str, subprocess.Popen[Any]],
    wait_for: tuple[str, ...],
    timeout_s: float,
    progress: Callable[[], Any] = lambda: None,
    stall_s: float = 90.0,
    trace: Trace | None = None,
    rss_trace: Trace | None = None,
    thread_trace: Trace | None = None,
    threads_of: tuple[str, ...] = ("alice", "bob"),
) -> tuple[dict[str, int | None], dict[str, int], dict[str, float]]:
    """Wait up to `timeout_s` for the processes named in `wait_for` to end, then stop the others
    (SIGTERM, SIGKILL 20 s later); returns exit codes, peak RSS in bytes and CPU seconds, sampled every 0.1 s
    from /proc (VmHWM: the high-water mark of the process's own memory since its exec; wait4's
    ru_maxrss would count the parent's memory at fork). It also gives up when `progress()` has not
    changed for `stall_s` (a replay that ran out before the blocks asked). `trace` receives each
    sample's (monotonic time, CPU seconds per process), `rss_trace` its (time, VmRSS bytes per
    running process), `thread_trace` its (time, CPU seconds per "process/thread label") for the
    processes in `threads_of` (`thread_cpu_s`; a thread that ended keeps its last figure)."""
    peak = dict.fromkeys(procs, 0)
    cpu = dict.fromkeys(procs, 0.0)
    threads: dict[str, dict[int, tuple[str, float]]] = {n: {} for n in threads_of if n in procs}
    codes: dict[str, int | None] = {}
    deadline = time.monotonic() + timeout_s

    def sample() -> None:
        rss: dict[str, float] = {}
        for name, proc in procs.items():
            if name not in codes:
                peak[name] = max(peak[name], _proc_field(proc.pid, "VmHWM"))
                cpu[name] = max(cpu[name], _cpu_s(proc.pid))
                rss[name] = _proc_field(proc.pid, "VmRSS")
                if proc.poll() is not None:
                    codes[name] = proc.returncode
        if thread_trace is not None:
            for name, seen in threads.items():
                if name not in codes:
                    for tid, (label, s) in thread_cpu_s(procs[name].pid).items():
                        seen[tid] = (label, max(s, seen[tid][1] if tid in seen else 0.0))
        now = time.monotonic()
        if trace is not None:
            trace.append((now, dict(cpu)))
        if thread_trace is not None:
            flat: dict[str, float] = {}
            for name, seen in threads.items():
                for label, s in seen.values():
                    flat[f"{name}/{label}"] = flat.get(f"{name}/{label}", 0.0) + s
            thread_trace.append((now, flat))
        if rss_trace is not None:
            rss_trace.append((now, {n: v for n, v in rss.items() if v and n not in codes}))

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


NodeDocument = Callable[[str, int, str, tuple[str, str, str]], dict[str, Any]]
"""(role, peer port, bootstrap secret file, key manager target) -> that node's configuration."""


def run_link(
    document: NodeDocument,
    timeout_s: float,
    workers: int = 1,
    wait_for: tuple[str, ...] = ("bob", "alice"),
    stall_s: float = 90.0,
) -> dict[str, Any]:
    """Both key managers and both nodes (configured by `document`, with `workers` workers each) as
    processes until the nodes in `wait_for` end or `timeout_s` passes; returns both nodes' final
    status, every process's exit code, peak RSS and CPU seconds, and the CPU (per process and per
    thread of each node) and RSS traces."""
    with tempfile.TemporaryDirectory(prefix="qkdnode-capacity-") as tmp:
        root = Path(tmp)
        pair = write_demo_pair(root)
        secrets = write_link_secret(root, "link", 1 << 18)
        port = free_port()
        procs: dict[str, subprocess.Popen[Any]] = {}
        out: dict[str, Any] = {
            "rss": {},
            "exit": {},
            "cpu_s": {},
            "cpu_trace": [],
            "rss_trace": [],
            "thread_trace": [],
        }
        try:
            pair.start()
            procs.update({f"km_{w}": p for w, p in pair.procs.items()})
            pair.procs.clear()  # watched (peak RSS) and stopped here
            for role, side in (("alice", "a"), ("bob", "b")):
                km = (f"tcp://127.0.0.1:{pair.ports[side + '_in']}", f"node_{side}", f"ingest_{side}.key")
                cfg = root / f"{role}.toml"
                cfg.write_text(to_toml(with_workers(document(role, port, secrets[role], km), workers, root)))
                procs[role] = start_node(cfg, root, root / f"{role}.log")
            # each node stops by itself after its blocks or time, once its keys are delivered; then the key managers
            bob_status = root / "state/bob/status.json"
            out["exit"], out["rss"], out["cpu_s"] = wait_watching_rss(
                procs,
                wait_for,
                timeout_s,
                lambda: (
                    read_status(bob_status).get("counters", {}).get("sifted_bits"),
                    read_status(bob_status).get("delivery"),
                ),
                stall_s=stall_s,
                trace=out["cpu_trace"],
                rss_trace=out["rss_trace"],
                thread_trace=out["thread_trace"],
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
    return out


def run_capacity(
    mock: dict[str, Any],
    block_bits: int,
    blocks: int,
    batch: int = 500_000,
    timeout_s: float = 900.0,
    workers: int = 1,
) -> dict[str, Any]:
    """Both nodes (`workers` workers each) and both key managers on a replay of `mock`; returns
    `run_link`'s result, with Bob's history cut to his first `blocks` blocks (the window every rate
    and CPU figure is taken over), and the recording replayed.

    The nodes distil `workers` blocks more than the window: with blocks in flight, Bob's sifting and
    acquisition run up to `workers` blocks ahead of the block that lands, so a run ending with the
    window would leave them idle through its last blocks and charge them too little per Mbit (and
    the rate would include the pool draining)."""
    total = blocks + workers
    # a block more than distilled, and two batches: the last batch short of `batch` detections is never sifted
    recording = recording_for(mock, int((total + 1) * block_bits + 2 * batch))

    def document(role: str, port: int, secret: str, km: tuple[str, str, str]) -> dict[str, Any]:
        return replay_document(role, port, recording, secret, block_bits, batch, total, km, mock)

    out = run_link(document, timeout_s, workers)
    out["recording"] = str(recording)
    if "history" in out["bob"]:
        out["bob"]["history"] = out["bob"]["history"][:blocks]
    return out


def cpu_at(trace: Trace, t: float) -> dict[str, float]:
    """CPU seconds per process at monotonic time `t`, interpolated linearly between the samples either
    side of it (the first or last sample outside the trace's span)."""
    times = [ts for ts, _ in trace]
    i = bisect.bisect_left(times, t)
    if i == 0 or i == len(trace):
        return dict(trace[min(i, len(trace) - 1)][1])
    (t0, a), (t1, b) = trace[i - 1], trace[i]
    w = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
    return {n: a.get(n, 0.0) + w * (b[n] - a.get(n, 0.0)) for n in b}


def cpu_figures(
    trace: Trace,
    cpu_total: dict[str, float],
    hist: list[dict[str, Any]],
    sifted_total: float,
    thread_trace: Trace | None = None,
) -> dict[str, Any]:
    """CPU seconds each process spent per sifted Mbit between Bob's first and last block (`hist`
    entries' monotonic `t` and `sifted_total`: start-up, imports and kernel loading left out), and
    over its whole life (`cpu_total` over all `sifted_total` bits) for comparison; with a
    `thread_trace` ("process/thread" keys), the same window's figure per thread of each process."""
    fig: dict[str, Any] = {"cpu_s": {n: round(v, 1) for n, v in cpu_total.items()}}
    if sifted_total > 0:
        fig["cpu_s_per_sifted_mbit_whole_life"] = {n: round(v / (sifted_total / 1e6), 3) for n, v in cpu_total.items()}
    if len(hist) >= 2 and trace:
        sifted = (hist[-1]["sifted_total"] - hist[0]["sifted_total"]) / 1e6
        window = _window(trace, hist[0]["t"], hist[-1]["t"])
        fig["cpu_window_s"] = {n: round(v, 2) for n, v in window.items()}
        fig["cpu_s_per_sifted_mbit"] = {n: round(v / sifted, 3) for n, v in window.items()} if sifted > 0 else {}
        if thread_trace and sifted > 0:
            per_thread: dict[str, dict[str, float]] = {}
            for key, v in sorted(_window(thread_trace, hist[0]["t"], hist[-1]["t"]).items()):
                process, _, thread = key.partition("/")
                per_thread.setdefault(process, {})[thread] = round(v / sifted, 4)
            fig["thread_cpu_s_per_sifted_mbit"] = per_thread
    return fig


def _window(trace: Trace, t0: float, t1: float) -> dict[str, float]:
    """What each figure of `trace` grew by between monotonic times `t0` and `t1` (interpolated)."""
    first, last = cpu_at(trace, t0), cpu_at(trace, t1)
    return {n: last[n] - first.get(n, 0.0) for n in last}


def handler_figures(commits: list[dict[str, Any]], hist: list[dict[str, Any]]) -> dict[str, float]:
    """Alice's protocol thread's CPU seconds per sifted Mbit by the message type handled, between her
    commits of Bob's first and last block (`commits`: her status's `cpu_at_commit`; `hist`: Bob's
    history); "outside handlers" is the rest of the thread: receiving, authenticating, decoding and
    sending. {} when either commit is missing."""
    at = {c["block"]: c for c in commits}
    if len(hist) < 2 or hist[0].get("block") not in at or hist[-1].get("block") not in at:
        return {}
    first, last = at[hist[0]["block"]], at[hist[-1]["block"]]
    sifted = (hist[-1]["sifted_total"] - hist[0]["sifted_total"]) / 1e6
    if sifted <= 0:
        return {}
    spent = {k: v - first["handler_cpu_s"].get(k, 0.0) for k, v in last["handler_cpu_s"].items()}
    spent["outside handlers"] = last["thread_cpu_s"] - first["thread_cpu_s"] - sum(spent.values())
    return {k: round(v / sifted, 4) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}


def link_figures(out: dict[str, Any]) -> dict[str, Any]:
    """A row's figures from `run_link`'s result: sustained sifted and secret Mbit/s, f, blocks
    delivered to each key manager, every process's peak RSS in MB and CPU per sifted Mbit."""
    bob, alice = out["bob"], out["alice"]
    counters = bob.get("counters", {})
    fig: dict[str, Any] = {"blocks": counters.get("blocks", 0), "aborted": counters.get("aborted", 0)}
    fig["window_blocks"] = len(bob.get("history", []))
    fig.update(history_figures(bob.get("history", []), bob.get("last_block", {})))
    fig["secret_mbit_per_s"] = fig.pop("secret_kbit_per_s", 0.0) / 1e3
    fig["delivered_blocks"] = {
        "alice": alice.get("delivery", {}).get("delivered_blocks", 0),
        "bob": bob.get("delivery", {}).get("delivered_blocks", 0),
    }
    fig["peak_rss_mb"] = {n: round(v / 2**20, 1) for n, v in out["rss"].items()}
    # messages of concurrent blocks sharing ZeroMQ messages (bundles): messages per ZeroMQ send, each node
    fig["messages_per_zmq_sent"] = {
        n: out[n].get("channel", {}).get("messages_per_zmq_sent", 1.0) for n in ("alice", "bob")
    }
    fig["exit_codes"] = out["exit"]
    fig.update(
        cpu_figures(
            out["cpu_trace"],
            out["cpu_s"],
            bob.get("history", []),
            counters.get("sifted_bits", 0),
            out.get("thread_trace"),
        )
    )
    split = handler_figures(alice.get("cpu_at_commit", []), bob.get("history", []))
    if split:
        fig["alice_protocol_cpu_s_per_sifted_mbit"] = split
    if fig["aborted"]:  # say why (alarm texts hold no key material)
        fig["alarms"] = [a.get("text", a) for a in (alice.get("alarms", []) + bob.get("alarms", []))[-6:]]
    if "sifted_mbit_per_s" not in fig:  # fewer than two blocks: say why in the row
        fig["failure"] = {n: out["logs"][n][-400:] for n in ("alice", "bob")}
    return fig


def capacity_figures(mock: dict[str, Any], block_bits: int, blocks: int, workers: int = 1) -> dict[str, Any]:
    """The link-capacity row's figures (`link_figures`) for `blocks` blocks with `workers` workers."""
    return link_figures(run_capacity(mock, block_bits, blocks, workers=workers))


def rss_summary(trace: Trace, warmup_s: float) -> dict[str, dict[str, float]]:
    """Per process, from RSS samples (bytes) after the first `warmup_s` of the trace: the first,
    median, last and largest RSS in MB, and the least-squares slope in MB per minute (a process whose
    memory does not grow has a slope near 0)."""
    if not trace:
        return {}
    start = trace[0][0] + warmup_s
    series: dict[str, list[tuple[float, float]]] = {}
    for t, values in trace:
        if t >= start:
            for name, v in values.items():
                series.setdefault(name, []).append(((t - start) / 60.0, v / 2**20))
    out: dict[str, dict[str, float]] = {}
    for name, pts in series.items():
        mbs = sorted(v for _, v in pts)
        mid = len(mbs) // 2
        median = mbs[mid] if len(mbs) % 2 else (mbs[mid - 1] + mbs[mid]) / 2
        out[name] = {
            "first_mb": round(pts[0][1], 1),
            "median_mb": round(median, 1),
            "last_mb": round(pts[-1][1], 1),
            "max_mb": round(mbs[-1], 1),
            "slope_mb_per_min": round(_slope(pts), 3),
            "minutes": round(pts[-1][0] - pts[0][0], 2),
        }
    return out


def _slope(pts: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x; 0 for fewer than two distinct x."""
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx > 0 else 0.0


def soak_figures(
    mock: dict[str, Any], block_bits: int, duration_s: float, workers: int = 1, batch: int = 500_000
) -> dict[str, Any]:
    """Both nodes and both key managers on the mock link, fed live, for `duration_s`: the link's
    figures (`link_figures`) and each process's RSS over the run after a warm-up of a fifth of it
    (`rss_summary`). The mock, not the replay: a replay covering ten minutes would need tens of GB
    (~52 bytes of recording per sifted bit), and replaying one recording twice in a run would hand
    the same states out again, which the replay transmitter refuses by design."""

    def document(role: str, port: int, secret: str, km: tuple[str, str, str]) -> dict[str, Any]:
        return node_document(
            role,
            role,
            CAPACITY_LINK,
            port,
            secret,
            mock,
            block_bits=block_bits,
            batch_detections=batch,
            keymanager=km,
            link_timeout_s=LINK_TIMEOUT_S,
        )

    out = run_link(document, duration_s, workers)
    fig = link_figures(out)
    warmup_s = duration_s / 5
    fig["duration_s"] = round(out["rss_trace"][-1][0] - out["rss_trace"][0][0], 1) if out["rss_trace"] else 0.0
    fig["warmup_s"] = warmup_s
    fig["rss"] = rss_summary(out["rss_trace"], warmup_s)
    fig.pop("failure", None)
    if fig["blocks"] < 2:
        fig["failure"] = {n: out["logs"][n][-400:] for n in ("alice", "bob")}
    return fig
