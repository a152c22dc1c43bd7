"""KEY_BLOCK ingest: acknowledged after commit, duplicates stored once, garbage refused without harm."""

from __future__ import annotations

import os
import sqlite3

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.classical import Message, SecureLink
from node.classical.messages import (
    ErrorBody,
    KeyBlockAck,
    KeyBlockHeader,
    KeyBlockNack,
    KeyBlockReply,
    MessageType,
)
from node.keymanager.ingest import KeyBlockSender


def blocks_in(pair, who: str) -> set[int]:
    km = pair.a if who == "a" else pair.b
    with sqlite3.connect(km.config.database) as db:
        return {r[0] for r in db.execute("SELECT block_id FROM blocks")}


def raw_dealer(pair, identity: bytes = b"node_a") -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{pair.paths['ports']['a_in']}")
    return sock


def send(pair, block: int, key: bytes) -> KeyBlockReply:
    """Send a block, re-sending as a QKD module does when a raw test socket took over its identity."""
    for _ in range(5):
        try:
            return pair.senders["a"].send_block("L1", block, key, timeout_s=1.0)
        except TimeoutError:
            continue
    raise AssertionError("block never acknowledged")


def test_block_is_acknowledged_once_durable_and_a_resent_block_is_stored_once(pair):
    sender = pair.senders["a"]
    key = os.urandom(4000)
    first = sender.send_block("L1", 10_000, key, qber=0.03)
    assert first == KeyBlockAck("L1", 10_000, "stored")
    assert 10_000 in blocks_in(pair, "a")  # visible to another connection: committed
    again = sender.send_block("L1", 10_000, key, qber=0.03)
    assert again == KeyBlockAck("L1", 10_000, "duplicate")
    with sqlite3.connect(pair.a.config.database) as db:
        assert db.execute("SELECT COUNT(*) FROM blocks WHERE block_id=10000").fetchone()[0] == 1


def test_length_bits_that_is_not_a_byte_multiple_keeps_whole_bytes(pair):
    reply = pair.senders["a"].send_block("L1", 10_001, os.urandom(100), length_bits=795)
    assert isinstance(reply, KeyBlockAck)
    with sqlite3.connect(pair.a.config.database) as db:
        assert db.execute("SELECT SUM(size) FROM chunks WHERE block_id=10001").fetchone()[0] == 99


@pytest.mark.parametrize(
    "header, frames, field",
    [
        ({"link_id": "L9", "block_id": 1, "length_bits": 8, "qber": None, "params": {}}, [b"k"], "not configured"),
        ({"link_id": "L1", "block_id": -1, "length_bits": 8, "qber": None, "params": {}}, [b"k"], "block_id"),
        ({"link_id": "L1", "block_id": "1", "length_bits": 8, "qber": None, "params": {}}, [b"k"], "block_id"),
        ({"link_id": "L1", "block_id": 1, "length_bits": 16, "qber": None, "params": {}}, [b"k"], "length_bits"),
        ({"link_id": "L1", "block_id": 1, "length_bits": 8, "qber": 0.9, "params": {}}, [b"k"], "qber"),
        ({"link_id": "L1", "block_id": 1, "length_bits": 8, "qber": None, "params": []}, [b"k"], "params"),
        ({"link_id": "L1", "block_id": 1, "length_bits": 8, "colour": 1}, [b"k"], "colour"),
        ({"link_id": "L1", "block_id": 1, "length_bits": 8}, [b"k", b"k"], "one payload frame"),
        ({"link_id": "", "block_id": 1, "length_bits": 8}, [b"k"], "link_id"),
    ],
)
def test_malformed_key_block_is_refused_with_a_message_naming_the_field(pair, header, frames, field):
    sender: KeyBlockSender = pair.senders["a"]
    before = blocks_in(pair, "a")
    sender.sock.send_multipart(sender.link.seal(Message("KEY_BLOCK", header, frames)))
    assert sender.sock.poll(5000)
    reply = sender.link.open(sender.sock.recv_multipart())
    assert reply.type == "KEY_BLOCK_NACK" and field in reply.header["error"]
    assert blocks_in(pair, "a") == before


def test_forged_replayed_and_foreign_frames_are_dropped_and_ingest_lives_on(pair):
    sender: KeyBlockSender = pair.senders["a"]
    frames = sender.link.seal(
        Message(
            "KEY_BLOCK",
            {"link_id": "L1", "block_id": 10_002, "length_bits": 64, "qber": None, "params": {}},
            [os.urandom(8)],
        )
    )
    tampered = [bytes(f) for f in frames]
    tampered[3] = bytes(8)  # the key frame changed in flight
    sock = raw_dealer(pair)
    sock.send_multipart(tampered)
    foreign = SecureLink.from_bootstrap(os.urandom(64), "initiator")
    sock.send_multipart(
        foreign.seal(Message("KEY_BLOCK", {"link_id": "L1", "block_id": 10_003, "length_bits": 8}, [b"k"]))
    )
    assert not sock.poll(300), "a forged message was answered"
    assert 10_002 not in blocks_in(pair, "a") and 10_003 not in blocks_in(pair, "a")
    sock.send_multipart(frames)  # the genuine message, once
    assert sock.poll(5000)
    assert sender.link.open(sock.recv_multipart()).type == "KEY_BLOCK_ACK"
    sock.send_multipart(frames)  # and a replay of it
    assert not sock.poll(300), "a replayed message was answered"
    sock.close(0)
    assert send(pair, 10_004, os.urandom(64)).status in KeyBlockAck.STATUSES


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from([b"fuzz_a", b"node_b", b"stranger", b"\xff"]),
    st.lists(st.binary(max_size=64), min_size=0, max_size=6),
)
def test_garbage_on_the_ingest_socket_is_dropped_and_nothing_is_lost(pair, identity, frames):
    before = blocks_in(pair, "a")
    sock = raw_dealer(pair, identity)
    if frames:
        sock.send_multipart(frames)
    else:
        sock.send(b"")
    sock.close(0)
    block = 20_000 + len(before)
    assert send(pair, block, os.urandom(32)).status in KeyBlockAck.STATUSES
    assert blocks_in(pair, "a") == before | {block}


def test_windowed_sender_gets_every_block_acknowledged_once(pair):
    blocks = [(30_000 + i, os.urandom(512)) for i in range(40)]
    replies = pair.senders["a"].send_blocks("L1", blocks + blocks[:5], window=8)
    assert set(replies) == {b for b, _ in blocks}
    assert all(isinstance(r, KeyBlockAck) for r in replies.values())
    assert {b for b, _ in blocks} <= blocks_in(pair, "a")


def test_block_beyond_the_pool_capacity_is_not_acknowledged(pki, tmp_path):
    from tests.node.keymanager.conftest import Pair

    small = Pair(tmp_path, pki, max_key_count=100)  # 100 keys of 256 bits: 3200 bytes
    try:
        ok = small.senders["a"].send_block("L1", 1, os.urandom(3000))
        full = small.senders["a"].send_block("L1", 2, os.urandom(3000))
        assert isinstance(ok, KeyBlockAck)
        assert isinstance(full, KeyBlockNack) and "full" in full.error
        assert blocks_in(small, "a") == {1}
    finally:
        small.close()


def test_a_type_ingest_does_not_handle_is_answered_with_error_and_alarmed(pair):
    sender: KeyBlockSender = pair.senders["a"]
    sender.sock.send_multipart(sender.link.seal(Message(MessageType.KEY_QUERY, {"n": 1})))
    assert sender.sock.poll(5000)
    reply = sender.link.open(sender.sock.recv_multipart())
    body = ErrorBody.decode(reply)
    assert body.type == "KEY_QUERY" and body.seq == reply.re
    assert any("KEY_QUERY" in a.text for a in pair.a.km.alarms.active())
    assert isinstance(send(pair, 40_000, os.urandom(32)), KeyBlockAck)  # and ingest goes on


def test_an_answer_without_re_from_an_older_key_manager_is_matched_by_its_block(tmp_path):
    """A KM of the version before `re` matching names the block only; the sender still pairs them."""
    secret = os.urandom(64 * 16)
    ctx = zmq.Context.instance()
    km = ctx.socket(zmq.ROUTER)
    km.setsockopt(zmq.LINGER, 0)
    port = km.bind_to_random_port("tcp://127.0.0.1")
    km_link = SecureLink.from_bootstrap(secret, "responder")
    sender = KeyBlockSender(f"tcp://127.0.0.1:{port}", "node_a", secret, tmp_path / "s.json")
    try:
        sender._send(KeyBlockHeader("L1", 7, 64), os.urandom(8))
        sender._send(KeyBlockHeader("L1", 8, 64), os.urandom(8))
        waiting = {0: ("L1", 7), 1: ("L1", 8)}
        ident, *frames = km.recv_multipart()
        km.recv_multipart()
        assert km_link.open(frames).header["block_id"] == 7
        old_style = Message(MessageType.KEY_BLOCK_ACK, {"link_id": "L1", "block_id": 8, "status": "stored"})
        km.send_multipart([ident, *km_link.seal(old_style)])
        assert sender.sock.poll(5000)
        assert sender._recv_reply(waiting) == KeyBlockAck("L1", 8, "stored") and waiting == {0: ("L1", 7)}
    finally:
        sender.close()
        km.close(0)
