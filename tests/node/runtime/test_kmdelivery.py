"""Issue 17, finding 9: a key manager whose pool is full refuses blocks; the node raises one alarm with
the KM's reason while that lasts, backs off instead of re-sending every block, and clears the alarm
(and delivers everything it kept) once the KM accepts blocks again."""

from __future__ import annotations

import os
import threading
import time

import pytest

from node.classical.messages import KeyBlockAck, KeyBlockNack
from node.link.distill import DistilledKey
from node.runtime.config import parse_node_config
from node.runtime.daemon import NodeDaemon
from node.runtime.launch import node_document
from tests.node.keymanager.conftest import Pair

BLOCK_BYTES = 4096


@pytest.fixture
def full_km(pki_dir, tmp_path):
    # capacity = max_key_count * key_size / 8 = 256 * 32 bytes: two blocks of 4096 bytes fill the pool
    (tmp_path / "kms").mkdir()
    pair = Pair(tmp_path / "kms", pki_dir, max_key_count=256)
    yield pair
    pair.close()


@pytest.fixture
def pki_dir(tmp_path):
    from node.keymanager.certs import make_pki

    make_pki(tmp_path / "pki", ["KME_A", "KME_B"], ["SAE_A", "SAE_B"])
    return tmp_path / "pki"


def wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def alice_daemon(km: Pair) -> NodeDaemon:
    """Alice's node daemon (not started) delivering to KME_A of `km`."""
    root = km.root
    (root / "boot.key").write_bytes(os.urandom(1 << 14))
    doc = node_document(
        "alice",
        "alice",
        "L1",
        1,
        "boot.key",
        {"seed": 1},
        block_bits=100_000,
        keymanager=(f"tcp://127.0.0.1:{km.paths['ports']['a_in']}", "node_a", "ingest_a.key"),
        status_file=False,
    )
    return NodeDaemon(parse_node_config(doc, root))


def test_pool_full_raises_one_alarm_with_the_reason_backs_off_and_clears(full_km, tmp_path, monkeypatch):
    daemon = alice_daemon(full_km)
    monkeypatch.setattr(NodeDaemon, "km_backoff_s", (0.05, 0.4), raising=False)
    for block in range(8):
        daemon.outbox.put(
            DistilledKey("L1", block, os.urandom(BLOCK_BYTES), 8 * BLOCK_BYTES, 0.02, 0, 0, {}), "confirmed"
        )
    thread = threading.Thread(target=daemon._delivery_loop, daemon=True)
    thread.start()
    try:
        wait_for(lambda: daemon.delivery["delivered_blocks"] >= 2)
        time.sleep(2.0)  # the pool stays full: at 1 s per retry the old loop raised an alarm per block
        history = daemon.alarm_registry.history()
        raised = [e for e in history if e.action == "raised"]
        assert len(raised) == 1, [e.alarm.text for e in raised]
        assert not [e for e in history if e.action == "updated"]
        assert "full" in raised[0].alarm.text  # the KM's reason, not just KEY_BLOCK_NACK
        assert daemon.delivery["delivered_blocks"] == 2
        # the KM makes room: the node notices at its next try, delivers the rest and clears the alarm
        full_km.a.km.store.capacity_bytes = 1 << 30
        wait_for(lambda: daemon.delivery["delivered_blocks"] == 8)
        wait_for(lambda: not daemon.alarm_registry.active())
        cleared = [e for e in daemon.alarm_registry.history() if e.action == "cleared"]
        assert len(cleared) == 1 and cleared[0].alarm.alarm_id == raised[0].alarm.alarm_id
        # with back-off capped at 0.4 s, two seconds of refusals cost at most a handful of tries
        assert daemon.delivery.get("km_refusals", 0) <= 12
    finally:
        daemon.stop.set()
        thread.join(10)
        daemon.outbox.close()


@pytest.fixture
def km(pki_dir, tmp_path):
    (tmp_path / "kms").mkdir()
    pair = Pair(tmp_path / "kms", pki_dir)
    yield pair
    pair.close()


def test_a_block_whose_key_all_refilled_authentication_does_not_hold_back_later_blocks(km, tmp_path):
    # issue 18: after a fibre tap a short block's secret (a few bits, or exactly its refill) left an
    # empty key; the KM refused it and, as the oldest block, it stalled delivery of every later one
    daemon = alice_daemon(km)
    for block in range(4):
        key = b"" if block == 1 else os.urandom(64)
        daemon.outbox.put(DistilledKey("L1", block, key, 8 * len(key), 0.02, 0, 0, {}), "confirmed")
    thread = threading.Thread(target=daemon._delivery_loop, daemon=True)
    thread.start()
    try:
        wait_for(lambda: daemon.delivery["delivered_blocks"] == 4)
        assert daemon.delivery.get("km_refusals", 0) == 0 and not daemon.alarm_registry.active()
        assert daemon.delivery["delivered_bits"] == 3 * 512
        assert not daemon.outbox.pending_delivery(16)
    finally:
        daemon.stop.set()
        thread.join(10)
        daemon.outbox.close()


class ScriptedSender:
    """The `BlockSender` seam with the KM's answers scripted: typed replies exactly as the KM sends them."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.sent: list[tuple[str, int]] = []

    def send_block(self, link_id, block_id, key, length_bits=None, qber=None, params=None, timeout_s=2.0):
        self.sent.append((link_id, block_id))
        return self.answer(link_id, block_id)


def delivery_with(tmp_path, answer):
    from node.link.outbox import Outbox
    from node.management.alarms import AlarmRegistry
    from node.runtime.kmdelivery import KmDelivery

    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put(DistilledKey("L1", 5, os.urandom(64), 512, 0.02, 0, 0, {}), "confirmed")
    counters: dict[str, int] = {}
    loop = KmDelivery(outbox, ScriptedSender(answer), AlarmRegistry(), "node", counters, threading.Event())
    return loop, outbox, counters


def test_only_the_typed_ack_of_that_very_block_marks_it_delivered(tmp_path):
    loop, outbox, counters = delivery_with(tmp_path, lambda link, block: KeyBlockAck(link, block, "duplicate"))
    assert loop._send(outbox.pending_delivery(1)[0]) == "delivered"
    assert counters["delivered_blocks"] == 1 and not outbox.pending_delivery(1)
    outbox.close()


@pytest.mark.parametrize(
    "answer, reason",
    [
        (lambda link, block: {"type": "ACK", "stored": True, "duplicate": True}, "not KEY_BLOCK_ACK"),
        (lambda link, block: "KEY_BLOCK_ACK", "not KEY_BLOCK_ACK"),
        (lambda link, block: KeyBlockAck(link, block + 1, "stored"), "names block"),
        (lambda link, block: KeyBlockAck("L2", block, "stored"), "names block"),
        (lambda link, block: KeyBlockNack(link, block, "pool is full"), "pool is full"),
    ],
)
def test_anything_but_that_ack_keeps_the_block_and_alarms_with_the_reason(tmp_path, answer, reason):
    loop, outbox, counters = delivery_with(tmp_path, answer)
    entry = outbox.pending_delivery(1)[0]
    assert loop._send(entry) == "refused"
    assert outbox.pending_delivery(1) == [entry] and counters["delivered_blocks"] == 0
    (alarm,) = loop.alarms.active()
    assert reason in alarm.text
    outbox.close()
