"""The capacity model: the sifted rate a link can reach on servers of a given core count, from the
CPU seconds per sifted Mbit each thread of each node spent in a `link-capacity` run.

A thread runs on one core at a time, so a serial thread that spends c CPU seconds per sifted Mbit
caps the link at 1 / c Mbit/s however many cores there are. Bob's distillation workers
(`distill-N`, node.link.pool) share the blocks between them: W of them, spending C together per
sifted Mbit, cap it at W / C. And a server's cores bound it at cores / (the CPU per sifted Mbit of
every process it holds). The projection is the least of these caps, and `bound` names it.

Measured: each thread's and each process's CPU per sifted Mbit. Assumed: that these stay the same
per Mbit at higher rates and on more cores (no contention for memory bandwidth or caches, no
waiting), and that the GIL is never the limit (it is not measured: py-spy saw it held 18-25 % of the
time with 2 workers at ~2 Mbit/s, so threads would meet it some 4-5x higher). Threads nobody named
(`unnamed`, a library's) count in the core bound only.
"""

from __future__ import annotations

import math
from typing import Any

from node.runtime.threadnames import UNNAMED

PARALLEL = "distill-"
"""Name prefix of the threads that share a node's blocks (node.link.pool.DistillPool)."""

DEPLOYED = (("alice", "km_a"), ("bob", "km_b"))
"""One server per node, with its key manager beside it (the processes each server holds)."""


def project(
    thread_cpu: dict[str, dict[str, float]],
    process_cpu: dict[str, float],
    cores: int,
    servers: tuple[tuple[str, ...], ...] = DEPLOYED,
    workers: int | None = None,
) -> dict[str, Any]:
    """The sifted Mbit/s the link reaches with servers of `cores` cores holding `servers`' processes:
    {"cores", "sifted_mbit_per_s": the least cap, "bound": its name, "caps": every cap by name,
    "workers_needed": the distillation workers per node that rate keeps busy}. The caps (see the
    module docstring): "<node>:<thread>" for each serial thread, "<node>:distill" for a node's pool
    of `workers` workers (None: one per core), "<its nodes, joined by +>:cores" for each server.
    `thread_cpu` and `process_cpu` are CPU seconds per sifted Mbit (the `link-capacity` row's
    `thread_cpu_s_per_sifted_mbit` and `cpu_s_per_sifted_mbit`)."""
    found: dict[str, float] = {}
    pool_cpu = 0.0  # the busiest node's distillation
    for node, threads in thread_cpu.items():
        pool = 0.0
        for thread, c in threads.items():
            if thread.startswith(PARALLEL):
                pool += c
            elif thread != UNNAMED and c > 0:
                found[f"{node}:{thread}"] = 1.0 / c
        if pool > 0:
            found[f"{node}:distill"] = (workers or cores) / pool
        pool_cpu = max(pool_cpu, pool)
    for server in servers:
        total = sum(process_cpu.get(p, 0.0) for p in server)
        if total > 0:
            name = "+".join(p for p in server if p in thread_cpu) or server[0]
            found[f"{name}:cores"] = cores / total
    if not found:
        return {"cores": cores, "sifted_mbit_per_s": None, "bound": None, "caps": {}, "workers_needed": None}
    bound = min(found, key=lambda k: found[k])
    rate = found[bound]
    return {
        "cores": cores,
        "sifted_mbit_per_s": round(rate, 2),
        "bound": bound,
        "caps": {k: round(v, 2) for k, v in sorted(found.items(), key=lambda kv: kv[1])},
        "workers_needed": max(1, math.ceil(rate * pool_cpu - 1e-9)) if pool_cpu > 0 else None,
    }


PROJECTED_CORES = 16
"""The server size the `link-capacity` rows project to (one node and its key manager per server)."""


def model_figures(row: dict[str, Any], workers: int, cores_here: int) -> dict[str, Any]:
    """A `link-capacity` row's model: `model_here`, the rate the model gives for this machine
    (`cores_here` cores holding both nodes and both key managers, `workers` workers each; compare
    with the row's measured rate), and `projection_16_cores` (one node and its key manager per
    16-core server, one worker per core). {} when the row has no per-thread figures."""
    threads, processes = row.get("thread_cpu_s_per_sifted_mbit"), row.get("cpu_s_per_sifted_mbit")
    if not threads or not processes:
        return {}
    return {
        "model_here": project(threads, processes, cores_here, (tuple(processes),), workers),
        f"projection_{PROJECTED_CORES}_cores": project(threads, processes, PROJECTED_CORES),
    }
