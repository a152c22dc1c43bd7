"""Bundles of sealed messages in one ZeroMQ message: a strict, fuzzed container decoder, and messages
inside a bundle opened (and refused) exactly as if they had come one by one, over real ZeroMQ."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.classical import MessageFormatError, SecureLink, TranscriptAuthenticationError
from node.classical.bundle import (
    BUNDLE_PROTOCOL,
    MAX_BUNDLE_MESSAGES,
    MAX_MESSAGE_FRAMES,
    MIN_MESSAGE_FRAMES,
    decode_bundle,
    encode_bundle,
    is_bundle,
    pack,
)
from node.classical.channel import PeerChannel, SecureChannel
from node.classical.envelope import PROTOCOL, Message
from node.classical.errors import ClassicalChannelError
from node.classical.messages import MessageType

TIMEOUT = 30.0  # generous: a receive on a loaded machine; no test asserts on time

frame = st.binary(max_size=40)
message_frames = st.lists(frame, min_size=MIN_MESSAGE_FRAMES, max_size=MIN_MESSAGE_FRAMES + 4)
messages_st = st.lists(message_frames, min_size=2, max_size=8)


def _index(*counts: int, n: int | None = None) -> bytes:
    return struct.pack(f"<{len(counts) + 1}H", len(counts) if n is None else n, *counts)


# -- the container alone ---------------------------------------------------------------------------


@given(messages_st)
def test_a_bundle_decodes_to_its_messages_frame_for_frame(messages: list[list[bytes]]) -> None:
    wire = encode_bundle(messages)
    assert is_bundle(wire)
    assert decode_bundle(wire) == messages


@given(messages_st)
def test_a_sealed_message_is_never_taken_for_a_bundle(messages: list[list[bytes]]) -> None:
    # a sealed message's frame 0 is the envelope's protocol name (arbitrary frames may start with the
    # bundle's own name, as hypothesis found: those are no message the channel sends alone)
    sealed = [[PROTOCOL, *m[1:]] for m in messages]
    assert not any(is_bundle(m) for m in sealed)
    assert is_bundle(encode_bundle(sealed)) and decode_bundle(encode_bundle(sealed)) == sealed


@given(st.lists(frame, max_size=12))
def test_arbitrary_frames_decode_or_fail_with_a_format_error(frames: list[bytes]) -> None:
    _decodes_consistently_or_refuses(frames)


@given(st.lists(frame, max_size=12))
def test_arbitrary_frames_after_the_bundle_protocol_decode_or_fail_with_a_format_error(frames: list[bytes]) -> None:
    _decodes_consistently_or_refuses([BUNDLE_PROTOCOL, *frames])


def _decodes_consistently_or_refuses(frames: list[Any]) -> None:
    """Only `MessageFormatError`, or messages that cut the frames after the index exactly as it says."""
    try:
        messages = decode_bundle(frames)
    except MessageFormatError:
        return
    assert [f for m in messages for f in m] == frames[2:]
    assert 2 <= len(messages) <= MAX_BUNDLE_MESSAGES
    assert all(MIN_MESSAGE_FRAMES <= len(m) <= MAX_MESSAGE_FRAMES for m in messages)


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 200)),
    st.tuples(st.just("drop"), st.integers(0, 200)),
    st.tuples(st.just("insert"), st.integers(0, 200), frame),
    st.tuples(st.just("flip"), st.integers(0, 200), st.integers(0, 200), st.integers(0, 7)),
    st.tuples(st.just("index"), st.binary(max_size=24)),
    st.tuples(st.just("swap"), st.integers(0, 200), st.integers(0, 200)),
)


def _mutate(wire: list[bytes], ops: list[tuple]) -> list[bytes]:
    wire = list(wire)
    for op in ops:
        if not wire:
            break
        kind, *args = op
        if kind == "truncate":
            wire = wire[: args[0] % (len(wire) + 1)]
        elif kind == "drop":
            del wire[args[0] % len(wire)]
        elif kind == "insert":
            wire.insert(args[0] % (len(wire) + 1), args[1])
        elif kind == "flip":
            i = args[0] % len(wire)
            if wire[i]:
                data = bytearray(wire[i])
                data[args[1] % len(data)] ^= 1 << args[2]
                wire[i] = bytes(data)
        elif kind == "index" and len(wire) > 1:
            wire[1] = args[0]
        elif kind == "swap":
            i, j = args[0] % len(wire), args[1] % len(wire)
            wire[i], wire[j] = wire[j], wire[i]
    return wire


@given(messages_st, st.lists(mutation, min_size=1, max_size=4))
def test_malformed_truncated_or_reordered_bundles_fail_with_a_format_error(
    messages: list[list[bytes]], ops: list[tuple]
) -> None:
    _decodes_consistently_or_refuses(_mutate(encode_bundle(messages), ops))


@pytest.mark.parametrize(
    "frames, rule",
    [
        ([], "protocol and index"),
        ([BUNDLE_PROTOCOL], "protocol and index"),
        ([PROTOCOL, _index(4, 4), *[b""] * 8], "frame 0"),
        ([BUNDLE_PROTOCOL + b"x", _index(4, 4), *[b""] * 8], "frame 0"),
        ([BUNDLE_PROTOCOL, b"", *[b""] * 8], "even number of bytes"),
        ([BUNDLE_PROTOCOL, _index(4, 4) + b"\0", *[b""] * 8], "even number of bytes"),
        ([BUNDLE_PROTOCOL, _index(4), *[b""] * 4], "2..64 messages"),
        ([BUNDLE_PROTOCOL, _index(*[4] * 65), *[b""] * 260], "2..64 messages"),
        ([BUNDLE_PROTOCOL, _index(4, 4, n=3), *[b""] * 8], "must be 8 bytes for 3 messages"),
        ([BUNDLE_PROTOCOL, _index(4, 3), *[b""] * 7], "message 1 has 3 frames"),
        ([BUNDLE_PROTOCOL, _index(4, MAX_MESSAGE_FRAMES + 1), *[b""] * (5 + MAX_MESSAGE_FRAMES)], "has 69 frames"),
        ([BUNDLE_PROTOCOL, _index(4, 4), *[b""] * 7], "counts 8 message frames but 7 follow"),
        ([BUNDLE_PROTOCOL, _index(4, 4), *[b""] * 9], "counts 8 message frames but 9 follow"),
        ((BUNDLE_PROTOCOL for _ in range(3)), "must be a list"),
    ],
)
def test_each_broken_rule_is_named(frames: Any, rule: str) -> None:
    with pytest.raises(MessageFormatError, match=rule):
        decode_bundle(frames)


def test_an_oversized_bundle_is_refused_before_it_is_cut() -> None:
    wire = encode_bundle([[b"x" * 100] * 4, [b"y" * 100] * 4])
    assert len(decode_bundle(wire, max_bytes=800)) == 2
    with pytest.raises(MessageFormatError, match="799 are allowed"):
        decode_bundle(wire, max_bytes=799)


@pytest.mark.parametrize(
    "messages, rule",
    [
        ([[b""] * 4], "2..64 messages"),
        ([[b""] * 4] * (MAX_BUNDLE_MESSAGES + 1), "2..64 messages"),
        ([[b""] * 4, [b""] * 3], "message 1 of a bundle must have"),
    ],
)
def test_encoding_refuses_what_decoding_would(messages: list[list[bytes]], rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        encode_bundle(messages)


@given(st.lists(st.integers(0, 300), min_size=1, max_size=150), st.integers(1, 70), st.integers(50, 3000))
def test_pack_keeps_order_and_limits_and_sends_a_lone_message_as_itself(
    sizes: list[int], max_messages: int, max_bytes: int
) -> None:
    messages = [[PROTOCOL, b"T", b"{}", bytes([i % 256]) * n] for i, n in enumerate(sizes)]
    out = list(pack(messages, max_messages=min(max_messages, MAX_BUNDLE_MESSAGES), max_bytes=max_bytes))
    again = []
    for wire, n in out:
        got = decode_bundle(wire) if is_bundle(wire) else [wire]
        assert len(got) == n and (n == 1 or sum(len(f) for m in got for f in m) <= max_bytes)
        assert n <= max_messages
        again.extend(got)
    assert again == messages


# -- messages in a bundle are opened as if they had come alone ----------------------------------------------


@pytest.fixture(scope="module")
def sockets() -> Iterator[tuple[PeerChannel, PeerChannel]]:
    a = PeerChannel.bind("tcp://127.0.0.1:0")
    b = PeerChannel.connect(a.endpoint)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _block_messages(sender: SecureLink) -> list[list[Any]]:
    """Bob's messages of two blocks in flight, interleaved as a mux would send them: a member of
    each, then the closing of each."""
    sealed = []
    for block, closing in ((1, False), (2, False), (1, True), (2, True)):
        msg = Message(MessageType.CASCADE, {"block": block, "closing": closing}, [np.arange(5, dtype=np.uint64)])
        msg.transcript, msg.closing = block, closing
        sealed.append(sender.seal(msg))
    return sealed


def _outcomes(receiver: SecureChannel, n: int) -> list[tuple[str, Any]]:
    """What each of `n` received messages gave: its (block, verified) or its error class and block."""
    out: list[tuple[str, Any]] = []
    for _ in range(n):
        try:
            msg = receiver.recv(TIMEOUT)
        except TranscriptAuthenticationError as exc:
            out.append(("TranscriptAuthenticationError", exc.transcript))
        except ClassicalChannelError as exc:
            out.append((type(exc).__name__, None))
        else:
            out.append(("ok", (msg.header.get("block"), msg.verified, msg.seq)))
    return out


def _links(secret: bytes) -> tuple[SecureLink, SecureLink]:
    return (
        SecureLink.from_bootstrap(secret, "initiator", mode="transcript"),
        SecureLink.from_bootstrap(secret, "responder", mode="transcript"),
    )


def _tamper(sealed: list[list[Any]], ops: list[tuple[int, int, int, int]]) -> list[list[bytes]]:
    """Flip bits: (message, frame, byte, bit), anywhere in a message, its MAC frame included."""
    out = [[bytes(f) for f in m] for m in sealed]
    for m, f, i, bit in ops:
        msg = out[m % len(out)]
        k = f % len(msg)
        if msg[k]:
            data = bytearray(msg[k])
            data[i % len(data)] ^= 1 << bit
            msg[k] = bytes(data)
    return out


edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10), st.integers(0, 500), st.integers(0, 7)), max_size=3)
orders = st.lists(st.integers(0, 3), min_size=2, max_size=6)  # reordered, duplicated or dropped messages


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits, orders)
def test_tampered_replayed_or_reordered_messages_in_a_bundle_fail_as_they_would_alone(
    sockets: tuple[PeerChannel, PeerChannel], ops: list[tuple[int, int, int, int]], order: list[int]
) -> None:
    a, b = sockets
    secret = os.urandom(4096)
    sender, _ = _links(secret)
    wire = _tamper(_block_messages(sender), ops)
    sent = [wire[i] for i in order]
    alone = SecureChannel(a, _links(secret)[1])
    for message in sent:
        b.send(message, TIMEOUT)
    expected = _outcomes(alone, len(sent))
    bundled = SecureChannel(a, _links(secret)[1])
    b.send(encode_bundle(sent), TIMEOUT)
    assert _outcomes(bundled, len(sent)) == expected
    assert bundled.pending == 0 and bundled.stats.zmq_received == 1 and bundled.stats.bundles_received == 1


def test_an_altered_message_fails_its_own_block_and_the_others_in_its_bundle_verify(
    sockets: tuple[PeerChannel, PeerChannel],
) -> None:
    a, b = sockets
    secret = os.urandom(4096)
    sender, receiver = _links(secret)
    sealed = _tamper(_block_messages(sender), [(0, 3, 7, 0)])  # the payload of block 1's member
    b.send(encode_bundle(sealed), TIMEOUT)
    got = _outcomes(SecureChannel(a, receiver), 4)
    assert got == [
        ("ok", (1, False, 0)),
        ("ok", (2, False, 1)),
        ("TranscriptAuthenticationError", 1),
        ("ok", (2, True, 3)),
    ]


def test_a_duplicated_message_in_a_bundle_is_refused_by_its_seq(sockets: tuple[PeerChannel, PeerChannel]) -> None:
    a, b = sockets
    secret = os.urandom(4096)
    sender, receiver = _links(secret)
    sealed = _block_messages(sender)
    b.send(encode_bundle([sealed[0], sealed[1], sealed[1], sealed[0], sealed[2]]), TIMEOUT)
    got = _outcomes(SecureChannel(a, receiver), 5)
    assert [kind for kind, _ in got] == ["ok", "ok", "ReplayError", "ReplayError", "ok"]
    assert receiver.stats.rejected_replay == 2


def test_a_malformed_bundle_is_refused_whole_and_the_channel_goes_on(sockets: tuple[PeerChannel, PeerChannel]) -> None:
    a, b = sockets
    sender, receiver = _links(os.urandom(4096))
    sealed = _block_messages(sender)
    wire = encode_bundle(sealed[:2])
    b.send([wire[0], _index(4, 5), *wire[2:]], TIMEOUT)
    channel = SecureChannel(a, receiver)
    with pytest.raises(MessageFormatError, match="bundle frame 1"):
        channel.recv(TIMEOUT)
    b.send(sender.seal(Message(MessageType.HELLO, {})), TIMEOUT)  # a single message after it
    assert channel.recv(TIMEOUT).seq == 4
    assert channel.stats.bundles_refused == 1 and channel.stats.zmq_received == 2


def test_send_many_leaves_as_one_zeromq_message_and_send_as_a_single_one(
    sockets: tuple[PeerChannel, PeerChannel],
) -> None:
    a, b = sockets
    sender, receiver = _links(os.urandom(4096))
    bob, alice = SecureChannel(b, sender), SecureChannel(a, receiver)
    bob.send(Message(MessageType.HELLO, {"n": 0}))  # old-style single message: HELLO needs no bundle support
    bob.send_many([Message(MessageType.HELLO, {"n": i}) for i in (1, 2, 3)])
    bob.send_many([Message(MessageType.HELLO, {"n": 4})])
    raw = [a.recv(TIMEOUT) for _ in range(3)]
    assert [is_bundle(r) for r in raw] == [False, True, False]
    assert raw[0][0].bytes == PROTOCOL and len(decode_bundle(raw[1])) == 3
    for r in raw:  # the same frames, opened through the secure channel
        b.send([f.bytes for f in r], TIMEOUT)
    assert [alice.recv(TIMEOUT).header["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    stats = bob.stats.as_dict()
    assert (stats["messages_sent"], stats["zmq_sent"], stats["bundles_sent"]) == (5, 3, 1)
    assert stats["messages_per_zmq_sent"] == round(5 / 3, 3)
    assert alice.stats.messages_received == 5 and alice.stats.zmq_received == 3
