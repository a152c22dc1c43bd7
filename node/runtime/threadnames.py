"""OS names for a process's Python threads, and each thread's CPU seconds read back from /proc.

Python names its threads (`threading.Thread(name=...)`) but, before 3.14, not the OS threads under
them, so `top -H`, py-spy and /proc/<pid>/task/<tid>/comm show every thread under the process's
name. `ThreadNamer.update()` writes each Python thread's name (less the node's prefix, cut to the
15 bytes Linux keeps) into its thread's `comm`; a process may rename any of its own threads there,
so no thread has to do it itself. `thread_cpu_s(pid)` reads every thread's CPU seconds by that
name: the capacity bench (`node.runtime.capacity`) charges each job of a node its CPU per sifted
Mbit from it. Elsewhere than Linux both do nothing.
"""

from __future__ import annotations

import os
import threading

COMM_BYTES = 15
"""Linux keeps a thread's name in 16 bytes, the last a NUL (TASK_COMM_LEN)."""

MAIN = "protocol"
"""The label of a process's main thread (tid == pid): the node's protocol thread (node.runtime.daemon)."""

UNNAMED = "unnamed"
"""The label of threads nobody named (they carry the process's name), e.g. a library's workers."""


def os_name(name: str, prefix: str = "") -> str:
    """The OS name for the Python thread `name`: without `prefix`, at most COMM_BYTES bytes of UTF-8."""
    if prefix and name.startswith(prefix):
        name = name[len(prefix) :]
    return name.encode()[:COMM_BYTES].decode(errors="ignore")


class ThreadNamer:
    """Names the OS threads under this process's Python threads (see the module docstring)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._named: dict[int, str] = {}  # native thread id -> the name written

    def update(self) -> int:
        """Name the threads started since the last call (not the main thread: its name is the
        process's, as ps and pkill show it); returns how many were named. Never raises."""
        named = 0
        main = threading.main_thread()
        alive: set[int] = set()
        for thread in threading.enumerate():
            tid = thread.native_id
            if thread is main or tid is None:
                continue
            alive.add(tid)
            name = os_name(thread.name, self.prefix)
            if self._named.get(tid) == name or not name:
                continue
            try:
                with open(f"/proc/self/task/{tid}/comm", "w") as fh:
                    fh.write(name)
            except OSError:  # not Linux, or the thread has just ended
                continue
            self._named[tid] = name
            named += 1
        for tid in set(self._named) - alive:  # ids of ended threads may be reused
            del self._named[tid]
        return named


def thread_cpu_s(pid: int) -> dict[int, tuple[str, float]]:
    """Each thread of process `pid`: native id -> (its label, CPU seconds user + system). The label
    is the thread's OS name, MAIN for the main thread, UNNAMED for others under the process's own
    name; {} once the process has exited."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
        with open(f"/proc/{pid}/comm") as fh:
            process_name = fh.read().rstrip("\n")
    except OSError:
        return out
    for entry in tids:
        try:
            with open(f"/proc/{pid}/task/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:  # the thread ended between the listing and the read
            continue
        head, _, tail = stat.rpartition(")")
        fields = tail.split()
        try:
            tid = int(entry)
            cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (stat fields 14, 15)
        except (ValueError, IndexError):
            continue
        comm = head.partition("(")[2]
        out[tid] = (MAIN if tid == pid else UNNAMED if comm == process_name else comm, cpu)
    return out
