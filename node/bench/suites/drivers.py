"""Bench rows for the instrument layer: SCPI round trips through the driver stack, transmitter state lookup.

`instrument-query` times `*IDN?` round trips to the ITC4001 emulator over TCP through the whole
driver (lock, logging, retries bookkeeping, pyvisa-py) against the same exchange on a bare socket,
so the row shows what the driver layer costs per command. `awg-states` times
`AWGTransmitter.states` for n fresh slots spread over the streamed patterns (epochs) against a
per-slot Python lookup.
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np

from node.bench.core import BenchCase, BenchProfile, iter_sizes


def _query_setup(n: int) -> Any:
    def setup() -> dict[str, Any]:
        from drivers.laser import ThorlabsITC4001
        from hil_fixtures.emulators.itc4001 import ITC4001
        from hil_fixtures.emulators.server import EmulatorServer

        server = EmulatorServer(ITC4001())
        laser = ThorlabsITC4001(server.visa_resource, timeout_s=2.0)
        raw = socket.create_connection((server.host, server.port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return {"server": server, "laser": laser, "raw": raw, "n": n}

    return setup


def _driver_queries(state: dict[str, Any]) -> dict[str, Any]:
    laser = state["laser"]
    for _ in range(state["n"]):
        laser.query("*IDN?")
    return {"reconnects": laser.reconnects}


def _socket_queries(state: dict[str, Any]) -> None:
    raw = state["raw"]
    for _ in range(state["n"]):
        raw.sendall(b"*IDN?\n")
        reply = b""
        while not reply.endswith(b"\n"):
            reply += raw.recv(4096)


class _NullAWG:
    """An AWG that takes every upload instantly (the row times the state lookup, not the instrument)."""

    channels = (1, 2)
    sample_rate_hz = float(2**33)  # 2^30 slot/s: slot times are exact in binary floating point

    def check_length(self, n_samples: int) -> None:
        pass

    def upload(self, channel: int, samples: Any, amplitude_vpp: float) -> None:
        pass

    def run(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _states_setup(n: int) -> Any:
    def setup() -> dict[str, Any]:
        from drivers.awg import AWGTransmitter, ModulatorLevels

        period = 4096
        epochs = max(2, -(-2 * n // period))  # fresh patterns streamed back to back, twice the slots asked
        now = [0.0]
        tx = AWGTransmitter(
            _NullAWG(),
            intensities=(0.5, 0.1, 0.02),
            levels=ModulatorLevels((1.0, 0.5, 0.25), (-0.75, -0.25, 0.25, 0.75)),
            pattern_slots=period,
            stream=False,
            keep_epochs=epochs,
            guard_slots=0,
            clock=lambda: now[0],
        )
        tx.start()
        for _ in range(epochs - 1):
            now[0] = (int(tx._firsts[-1]) + period) / tx.repetition_rate_hz
            tx.refresh()
        rng = np.random.default_rng(3)
        slots = np.sort(rng.choice(epochs * period, n, replace=False)).astype(np.int64)
        return {"tx": tx, "slots": slots}

    return setup


def _python_states(state: dict[str, Any]) -> None:
    import bisect

    tx = state["tx"]
    firsts, rows, fresh_len, period = tx._firsts.tolist(), tx._rows.tolist(), tx._fresh_len.tolist(), tx.pattern_slots
    out = []
    for s in state["slots"].tolist():
        e = bisect.bisect_right(firsts, s) - 1
        offset = s - firsts[e]
        assert offset < fresh_len[e]
        i = rows[e] * period + offset
        out.append((tx._basis[i], tx._bit[i], tx._intensity[i]))
    assert len(out) == state["slots"].size


def cases(profile: BenchProfile) -> list[BenchCase]:
    """`instrument-query` at a fixed number of round trips; `awg-states` at the profile's sizes."""
    rows: list[BenchCase] = []
    n_queries = 500 if profile.quick else 2000
    rows.append(
        BenchCase(
            stage="instrument-query",
            n=n_queries,
            setup=_query_setup(n_queries),
            run=_driver_queries,
            reference=_socket_queries,
            unit="kquery/s",
            items=n_queries * 1000,  # the table divides by 1e6
            params={"transport": "pyvisa-py TCPIP SOCKET to emulator", "query": "*IDN?"},
            reference_name="bare socket",
            max_runs=3 if profile.quick else 5,
            reference_max_runs=3,
        )
    )
    for n in iter_sizes(profile, (100_000, 1_000_000, 10_000_000)):
        rows.append(
            BenchCase(
                stage="awg-states",
                n=n,
                setup=_states_setup(n),
                run=lambda s: (s["tx"].states(s["slots"]), None)[1],
                reference=_python_states if n <= 1_000_000 else None,
                unit="Mslot/s",
                params={"pattern_slots": 4096, "epochs": max(2, -(-2 * n // 4096))},
                reference_name="python per-slot lookup",
                reference_max_runs=1,
            )
        )
    return rows
