"""Alice's and Bob's link roles wired over a real authenticated ZeroMQ channel, in one test process."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.mock import LinkParams, MockTransmitter
from node.classical import ClassicalChannelError, SecureLink
from node.classical.channel import PeerChannel, SecureChannel
from node.link import AliceLink, BobLink, LinkSettings
from node.link.outbox import Outbox, OutboxEntry
from node.runtime.simulation import SimulatedDetections
from postprocessing.errors import ProtocolError
from postprocessing.slotting import Detections


@dataclass
class Pair:
    alice: AliceLink
    bob: BobLink
    alice_outbox: Outbox
    bob_outbox: Outbox
    alarms: list[tuple[str, str]]
    alice_link: SecureLink
    bob_link: SecureLink
    alice_thread: threading.Thread

    @property
    def alice_keys(self) -> list[OutboxEntry]:
        return self.alice_outbox.pending_delivery(1000)

    @property
    def bob_keys(self) -> list[OutboxEntry]:
        return self.bob_outbox.pending_delivery(1000)


HANG_TIMEOUT_S = 600.0
"""Per-receive timeout for tests whose peer always answers: longer than pytest's own timeout, so it
only ends a real hang and never a slow answer on a loaded machine (numba compiling Alice's kernels
on the first block, other test processes on the same cores). Tests of a silent peer set their own."""


def settings_for(params: LinkParams, **kw: Any) -> LinkSettings:
    base: dict[str, Any] = dict(block_bits=1_000_000, batch_detections=250_000, timeout_s=60.0)
    base.update(kw)
    return LinkSettings("L-test", params.intensities, params.class_probabilities, **base)


@contextmanager
def link_pair(
    tmp_path: Path,
    params: LinkParams,
    seed: int,
    settings: LinkSettings,
    bob_endpoint: str | None = None,
    alice_endpoint: str = "tcp://127.0.0.1:0",
    max_failed_tags: int = 3,
    workers: int = 1,
    transmitter: MockTransmitter | None = None,
    outboxes: tuple[Path, Path] | None = None,
) -> Iterator[Pair]:
    """Alice serving in a thread, Bob in the caller; `bob_endpoint` lets a test put a proxy between them;
    `transmitter` (default a fresh MockTransmitter) and `outboxes` (Alice's, Bob's) let a test keep
    them across a restart."""
    secret = os.urandom(1 << 16)
    a_sock = PeerChannel.bind(alice_endpoint)
    b_sock = PeerChannel.connect(bob_endpoint or a_sock.endpoint)
    a_link = SecureLink.from_bootstrap(secret, "responder", mode="transcript", max_failed_tags=max_failed_tags)
    b_link = SecureLink.from_bootstrap(secret, "initiator", mode="transcript", max_failed_tags=max_failed_tags)
    alarms: list[tuple[str, str]] = []
    a_path, b_path = outboxes or (tmp_path / "alice.db", tmp_path / "bob.db")
    a_out, b_out = Outbox(a_path), Outbox(b_path)
    alice = AliceLink(
        settings,
        transmitter if transmitter is not None else MockTransmitter(params, seed),
        a_out,
        a_link.refill,
        alarm=lambda s, t: alarms.append((s, t)),
        rekey_auth=a_link.rekey,
    )
    bob = BobLink(
        settings,
        SecureChannel(b_sock, b_link),
        b_out,
        b_link.refill,
        alarm=lambda s, t: alarms.append((s, t)),
        auth_available=lambda: (b_link.send_pool.available_bits, b_link.recv_pool.available_bits),
        rekey_auth=b_link.rekey,
        workers=workers,
    )
    stop = threading.Event()

    def serve() -> None:
        alice.serve(SecureChannel(a_sock, a_link), stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Pair(alice, bob, a_out, b_out, alarms, a_link, b_link, thread)
    finally:
        bob.close()
        stop.set()
        thread.join(5)
        a_sock.close()
        b_sock.close()
        a_out.close()
        b_out.close()


def as_detections(sim: SimulatedDetections) -> Detections:
    return Detections(sim.slot, sim.basis, sim.bit, sim.clicks, sim.time, sim.n_double, sim.n_cross)


def batches(det: Detections, size: int) -> Iterator[Detections]:
    for i in range(0, len(det), size):
        s = slice(i, i + size)
        yield Detections(det.slot[s], det.basis[s], det.bit[s], det.clicks[s], det.time[s], 0, 0)


def run_all(pair: Pair, det: Detections, size: int = 250_000) -> None:
    """Bob's protocol loop as the daemon runs it: a failed batch is followed by a resynchronising HELLO."""
    pair.bob.hello()
    for batch in batches(det, size):
        try:
            pair.bob.process(batch)
        except (ProtocolError, ClassicalChannelError) as exc:
            pair.alarms.append(("major", f"sift batch failed: {exc}"))
            pair.bob._drain()
            pair.bob.hello()
    if pair.bob.pool is not None:
        pair.bob.pool.wait_idle()
