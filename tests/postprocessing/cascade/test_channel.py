"""Wire form of Cascade messages: round trip, and malformed input always a ProtocolError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postprocessing.cascade.channel import PROTOCOL, LoopbackLink, Message, decode_message, encode_message
from postprocessing.errors import ProtocolError


def test_message_round_trips_through_frames() -> None:
    msg = Message(
        "cascade.ask",
        {"block": 3, "seq": 1},
        (np.arange(5, dtype=np.uint8), np.arange(3, dtype=np.uint32), np.zeros(0, dtype=np.uint64)),
    )
    back = decode_message(encode_message(msg))
    assert back.type == msg.type and back.header == msg.header
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(back.buffers, msg.buffers))


def test_repr_shows_no_buffer_contents() -> None:
    msg = Message("cascade.parity", {"block": 1}, (np.array([1, 0, 1], dtype=np.uint8),))
    assert "uint8[3]" in repr(msg) and "[1, 0, 1]" not in repr(msg)


@given(frames=st.lists(st.binary(max_size=40), max_size=6))
def test_random_frames_never_decode_to_anything_but_protocol_error(frames: list[bytes]) -> None:
    try:
        decode_message(frames)
    except ProtocolError:
        pass


@given(cut=st.integers(0, 200), pos=st.integers(0, 200), byte=st.integers(0, 255), frame_i=st.integers(0, 4))
def test_truncated_or_garbled_encodings_raise_protocol_error_or_decode(
    cut: int, pos: int, byte: int, frame_i: int
) -> None:
    frames = encode_message(
        Message(
            "cascade.ask",
            {"block": 1, "seq": 0, "pass": {"index": 0}},
            (np.arange(7, dtype=np.uint8), np.arange(7, dtype=np.uint32)),
        )
    )
    i = frame_i % len(frames)
    f = bytearray(frames[i])
    if f:
        f[pos % len(f)] = byte
    frames[i] = bytes(f[: max(0, len(f) - cut % (len(f) + 1))])
    try:
        msg = decode_message(frames)
    except ProtocolError:
        return
    assert isinstance(msg, Message)


def test_header_must_describe_each_buffer() -> None:
    with pytest.raises(ProtocolError, match="buffer"):
        decode_message([PROTOCOL, b"cascade.ask", b'{"_bufs": [["u4", 2]]}', b"\x00" * 7])
    with pytest.raises(ProtocolError, match="version"):
        decode_message([b"other/9", b"cascade.ask", b"{}"])


def test_recv_times_out_with_protocol_error() -> None:
    link = LoopbackLink()
    with pytest.raises(ProtocolError, match="within"):
        link.bob.recv(0.05)


def test_latency_delays_delivery() -> None:
    link = LoopbackLink(latency_s=0.2)
    link.alice.send(Message("x"))
    assert link.bob.poll() is None
    assert link.bob.recv(1.0).type == "x"


def test_negative_latency_is_rejected() -> None:
    with pytest.raises(ValueError, match="latency_s"):
        LoopbackLink(latency_s=-1.0)
