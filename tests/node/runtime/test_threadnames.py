"""OS thread names from Python's (node.runtime.threadnames) and each thread's CPU read back by name."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from node.runtime.threadnames import MAIN, ThreadNamer, os_name, thread_cpu_s

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names in /proc are Linux's")


def test_os_name_drops_the_node_prefix_and_keeps_15_bytes() -> None:
    assert os_name("bob-acquisition", "bob-") == "acquisition"
    assert os_name("distill-0", "bob-") == "distill-0"  # a name without the prefix stays whole
    assert os_name("alice-a-very-long-thread-name", "alice-") == "a-very-long-thr"
    assert len(os_name("ééééééééé").encode()) <= 15  # cut on a character boundary, never mid-character


def _burn(stop: threading.Event, cpu_s: float, done: threading.Event) -> None:
    """Spin until this thread has used `cpu_s` of its own CPU time, then wait for `stop`."""
    while time.thread_time() < cpu_s:
        sum(range(10_000))
    done.set()
    stop.wait()


@linux_only
def test_threads_get_their_names_and_their_own_cpu_seconds() -> None:
    stop, done = threading.Event(), threading.Event()
    worker = threading.Thread(target=_burn, args=(stop, 0.3, done), name="node-burner", daemon=True)
    idle = threading.Thread(target=stop.wait, name="node-idle", daemon=True)
    worker.start()
    idle.start()
    try:
        done.wait()
        namer = ThreadNamer(prefix="node-")
        assert namer.update() >= 2
        assert namer.update() == 0  # named once
        with open(f"/proc/self/task/{worker.native_id}/comm") as fh:
            assert fh.read().strip() == "burner"
        threads = thread_cpu_s(os.getpid())
        assert worker.native_id is not None and idle.native_id is not None
        assert threads[worker.native_id][0] == "burner"
        assert threads[idle.native_id][0] == "idle"
        assert threads[os.getpid()][0] == MAIN
        assert threads[worker.native_id][1] >= 0.25  # its 0.3 s, to the clock tick
        assert threads[idle.native_id][1] < 0.25
    finally:
        stop.set()
        worker.join()
        idle.join()


def test_a_process_gone_has_no_threads() -> None:
    assert thread_cpu_s(2**22 + 12345) == {}  # above Linux's largest pid
