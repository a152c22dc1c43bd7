"""Ctrl-C and SIGTERM on `qkdnode demo`: every node and key manager gone within 3 s, with a line
saying so, and the temporary work directory removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STOP_LIMIT_S = 3.0


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    """Running (not exited, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> list[str]:
    """Read stderr lines until one holds `needle` (bounded; the demo prints a line per step)."""
    deadline = time.monotonic() + timeout_s
    seen = []
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"no {needle!r} within {timeout_s} s; stderr so far:\n{''.join(seen)[-3000:]}")


def stop_and_time(proc: subprocess.Popen[str], how: str) -> tuple[float, str]:
    """Send Ctrl-C (SIGINT to the process group, as a terminal does) or SIGTERM (to the demo only);
    returns the seconds until the demo and all its children are gone, and the rest of stderr."""
    kids = children(proc.pid)
    assert len(kids) >= 4, kids  # two key managers, two nodes
    t0 = time.monotonic()
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=30)[1]
    while any(alive(k) for k in kids) and time.monotonic() - t0 < 30:
        time.sleep(0.02)
    return time.monotonic() - t0, rest


def demo(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.Popen(
        [sys.executable, "-m", "node", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_demo_stops_everything_within_3_s_while_bob_waits_on_alice(tmp_path: Path, how: str) -> None:
    proc = demo(["--duration", "200"], tmp_path)
    try:
        wait_for_line(proc, "link up", 120)  # both nodes running: Bob is in the middle of an exchange
        time.sleep(1.0)
        took, rest = stop_and_time(proc, how)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert took < STOP_LIMIT_S, rest
    assert proc.returncode == 130
    assert "stopped nodes and key managers" in rest and "Traceback" not in rest
    assert not list(tmp_path.glob("qkdnode-demo-*")), "the temporary work directory is left behind"
