"""One authenticated channel shared by concurrent blocks (`BlockMux`), over real ZeroMQ sockets."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from node.classical import ClassicalChannelError, Message, SecureLink
from node.classical.channel import PeerChannel, SecureChannel
from node.classical.messages import MessageType
from node.link.mux import SESSION, BlockMux

ROUNDS = 60


def _echo(secure: SecureChannel, stop: threading.Event, failures: list[str]) -> None:
    """The peer: answers each block message in the block's transcript; a closing with a closing."""
    while not stop.is_set():
        try:
            msg = secure.recv(timeout=0.1)
        except ClassicalChannelError as exc:
            if "timed out" not in str(exc):
                failures.append(str(exc))
            continue
        if msg.transcript is None:
            secure.send(Message(MessageType.HELLO_ACK, {"echo": msg.header.get("n")}))
            continue
        kind = MessageType.BLOCK_DONE_ACK if msg.closing else MessageType.CASCADE
        reply = Message(kind, dict(msg.header), list(msg.frames))
        reply.transcript, reply.closing = msg.transcript, msg.closing
        secure.send(reply)


@pytest.fixture
def pair():
    secret = os.urandom(1 << 14)
    a_sock = PeerChannel.bind("tcp://127.0.0.1:0")
    b_sock = PeerChannel.connect(a_sock.endpoint)
    a_link = SecureLink.from_bootstrap(secret, "responder", mode="transcript")
    b_link = SecureLink.from_bootstrap(secret, "initiator", mode="transcript")
    stop, failures = threading.Event(), []
    peer = threading.Thread(target=_echo, args=(SecureChannel(a_sock, a_link), stop, failures), daemon=True)
    peer.start()
    mux = BlockMux(SecureChannel(b_sock, b_link))
    try:
        yield mux, a_link, b_link, failures
    finally:
        mux.close()
        stop.set()
        peer.join(5)
        a_sock.close()
        b_sock.close()


def _block_conversation(mux: BlockMux, block: int, errors: list[str]) -> None:
    channel = mux.view(block)
    rng = np.random.default_rng(block)
    try:
        for i in range(ROUNDS):
            payload = rng.integers(0, 256, 1 + 97 * i, dtype=np.uint8)
            msg = Message(MessageType.CASCADE, {"block": block, "i": i}, [payload])
            msg.transcript = block
            channel.send(msg)
            reply = channel.recv(timeout=60)
            if reply.transcript != block or reply.header != {"block": block, "i": i}:
                errors.append(f"block {block}: got {reply.header} of transcript {reply.transcript}")
            if not np.array_equal(reply.frames[0], payload):
                errors.append(f"block {block}: payload {i} altered")
        done = Message(MessageType.BLOCK_DONE, {"block": block})
        done.transcript, done.closing = block, True
        channel.send(done)
        ack = channel.recv(timeout=60)
        if not (ack.verified and ack.closing and ack.transcript == block):
            errors.append(f"block {block}: closing tag not verified")
    except Exception as exc:  # noqa: BLE001 - reported by the test, with the block
        errors.append(f"block {block}: {type(exc).__name__}: {exc}")
    finally:
        mux.release(block)


def test_concurrent_blocks_share_one_channel_and_every_transcript_verifies(pair) -> None:
    mux, a_link, b_link, failures = pair
    errors: list[str] = []
    threads = [threading.Thread(target=_block_conversation, args=(mux, b, errors)) for b in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not failures
    assert b_link.stats.tags_verified == a_link.stats.tags_verified == 6  # one closing tag each way per block
    assert b_link.stats.tags_failed == a_link.stats.tags_failed == 0
    assert mux.dropped == 0 and mux.in_flight() == []
    sent = 6 * (ROUNDS + 1)  # every message went, alone or in a bundle, and every reply came back
    assert mux.stats.messages_sent == mux.stats.messages_received == sent
    assert mux.stats.zmq_sent <= sent and mux.stats.zmq_received == sent  # the echo peer answers one by one


def test_messages_outside_blocks_go_to_the_session_and_late_ones_are_dropped(pair) -> None:
    mux, _, _, _ = pair
    session = mux.view(SESSION)
    session.send(Message(MessageType.HELLO, {"n": 7}))
    assert session.recv(timeout=60).header == {"echo": 7}
    late = mux.view(3)
    msg = Message(MessageType.CASCADE, {"block": 3}, [])
    msg.transcript = 3
    late.send(msg)
    mux.release(3)  # block 3 gave up before its answer came
    session.send(Message(MessageType.HELLO, {"n": 8}))
    assert session.recv(timeout=60).header == {"echo": 8}  # the channel goes on
    assert mux.dropped == 1


def test_a_cancelled_block_receive_raises_what_cancelled_it(pair) -> None:
    mux, _, _, _ = pair
    channel = mux.view(5)
    mux.cancel(5, ClassicalChannelError("session restarts"))
    with pytest.raises(ClassicalChannelError, match="session restarts"):
        channel.recv(timeout=60)


def test_messages_queued_while_the_io_thread_is_busy_leave_as_one_bundle(pair) -> None:
    mux, _, _, failures = pair
    session, views = mux.view(SESSION), [mux.view(b) for b in (1, 2, 3)]
    with mux._routes_lock:  # the I/O thread stops routing the HELLO_ACK below until the blocks have queued
        session.send(Message(MessageType.HELLO, {"n": 1}))
        while mux.stats.messages_received < 1 and not failures:
            time.sleep(0.005)
        for block, view in zip((1, 2, 3), views):
            msg = Message(MessageType.CASCADE, {"block": block})
            msg.transcript = block
            view.send(msg)
    assert session.recv(timeout=60).header == {"echo": 1}
    assert [v.recv(timeout=60).header for v in views] == [{"block": b} for b in (1, 2, 3)]
    assert (mux.stats.messages_sent, mux.stats.zmq_sent, mux.stats.bundles_sent) == (4, 2, 1)
    assert not failures


def test_with_a_linger_the_answers_of_blocks_handed_messages_together_share_a_bundle(pair) -> None:
    mux, _, _, failures = pair
    mux.linger_s = 60.0  # an upper bound only: the flush goes as soon as both blocks have answered
    views = {b: mux.view(b) for b in (1, 2)}

    def ask(block: int, i: int) -> None:
        msg = Message(MessageType.CASCADE, {"block": block, "i": i})
        msg.transcript = block
        views[block].send(msg)

    for block in views:  # nothing handed out yet: each leaves at once
        ask(block, 0)
    assert [views[b].recv(timeout=60).header["i"] for b in views] == [0, 0]
    before = (mux.stats.zmq_sent, mux.stats.bundles_sent)
    ask(1, 1)  # block 2 was handed a message too: the flush waits for its answer
    ask(2, 1)
    assert [views[b].recv(timeout=60).header["i"] for b in views] == [1, 1]
    assert (mux.stats.zmq_sent, mux.stats.bundles_sent) == (before[0] + 1, before[1] + 1)
    assert not failures
