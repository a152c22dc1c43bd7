"""The multipart envelope: round trips, little-endian arrays, strict rejection of malformed frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from node.classical import PROTOCOL, Message, MessageFormatError, VersionError
from node.classical.envelope import ARRAY_DTYPES, decode_body, encode_body

DTYPES = sorted(ARRAY_DTYPES)

arrays = st.sampled_from(DTYPES).flatmap(
    lambda d: hnp.arrays(np.dtype(d), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
)
payloads = st.one_of(st.binary(max_size=64), arrays)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
headers = st.dictionaries(st.text(max_size=10), json_values, max_size=5)
types = st.from_regex(r"[A-Z][A-Z0-9_]{0,20}", fullmatch=True)


def same_payload(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.shape == b.shape
            and b.dtype == a.dtype.newbyteorder("<")
            and np.ascontiguousarray(a, dtype=b.dtype).tobytes() == b.tobytes()
        )
    return a == b


@given(
    msg_type=types,
    header=headers,
    frames=st.lists(payloads, max_size=5),
    re=st.none() | st.integers(0, 2**64 - 1),
)
def test_encode_then_decode_returns_the_message(msg_type: str, header: dict, frames: list, re: int | None) -> None:
    wire = [bytes(f) for f in encode_body(Message(msg_type, header, frames, re=re))]
    m = decode_body(wire)
    assert m.type == msg_type and m.header == header and len(m.frames) == len(frames) and m.re == re
    assert all(same_payload(a, b) for a, b in zip(frames, m.frames))


def test_arrays_travel_little_endian_whatever_their_byte_order() -> None:
    big = np.arange(4, dtype=">u4")
    wire = encode_body(Message("A", {}, [big]))
    assert bytes(wire[3]) == np.arange(4, dtype="<u4").tobytes()
    assert json.loads(bytes(wire[2]))["frames"] == [{"dtype": "<u4", "shape": [4]}]
    received = decode_body([bytes(f) for f in wire])
    assert len(received.frames) == 1
    back = received.array(0)
    assert back.dtype == np.dtype("<u4") and np.array_equal(back, big)
    assert not back.flags.writeable


def test_typed_frame_accessors_return_the_payload_or_say_what_was_wrong() -> None:
    msg = Message("A", {}, [b"seed", np.arange(3, dtype="<u2")])
    assert msg.raw(0) == b"seed" and np.array_equal(msg.array(1), np.arange(3))
    with pytest.raises(MessageFormatError, match="frame 1 must be raw bytes"):
        msg.raw(1)
    with pytest.raises(MessageFormatError, match="frame 0 must be an array"):
        msg.array(0)
    with pytest.raises(MessageFormatError, match="needs payload frame 2, got 2 frames"):
        msg.raw(2)


def test_non_contiguous_arrays_are_sent_in_c_order() -> None:
    a = np.arange(12, dtype=np.int64).reshape(3, 4).T
    [back] = decode_body([bytes(f) for f in encode_body(Message("A", {}, [a]))]).frames
    assert np.array_equal(back, a)


@pytest.mark.parametrize(
    "message, match",
    [
        (Message("lower"), "message type"),
        (Message("A" * 65), "message type"),
        (Message("A", {"x": float("nan")}), "JSON"),
        (Message("A", {"x": object()}), "JSON"),
        (Message("A", {}, [np.array(["s"])]), "dtype"),
        (Message("A", {}, [np.zeros(2, dtype=object)]), "dtype"),
        (Message("A", {}, [np.zeros(2, dtype="f2")]), "dtype"),
        (Message("A", {}, ["text"]), "bytes or a numpy array"),  # type: ignore[list-item]
        (Message("A", {}, [b""] * 65), "at most 64"),
        (Message("A", {"x": "y" * 70000}), "at most"),
        (Message("A", re=-1), "re"),
        (Message("A", re=True), "re"),
        (Message("A", re=2**64), "re"),
    ],
)
def test_bad_outgoing_messages_raise_value_error_naming_the_problem(message: Message, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode_body(message)


def wire(header: object, *payloads: bytes, version: bytes = PROTOCOL, msg_type: bytes = b"T") -> list[bytes]:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return [version, msg_type, h, *payloads]


@pytest.mark.parametrize(
    "frames, match",
    [
        ([PROTOCOL, b"T"], "at least"),
        (wire({"header": {}, "frames": []}, msg_type=b"t"), "frame 1"),
        (wire({"header": {}, "frames": []}, msg_type=b"\xff"), "frame 1"),
        (wire({"header": {}, "frames": []}, msg_type=b"A" * 65), "frame 1"),
        (wire(b"\xff\xfe"), "frame 2"),
        (wire(b"{"), "frame 2"),
        (wire(b'{"header": {}, "frames": [], "header": {}}'), "duplicate"),
        (wire(b'{"header": {"x": NaN}, "frames": []}'), "finite"),
        (wire(b"[" * 100000 + b"]" * 100000), "frame 2"),
        (wire([]), "frame 2"),
        (wire({"header": [], "frames": []}), "header"),
        (wire({"header": {}, "frames": {}}), "frames"),
        (wire({"header": {}, "frames": [], "extra": 1}), "keys"),
        (wire({"header": {}}), "keys"),
        (wire({"header": {}, "frames": [], "re": -1}), "re"),
        (wire({"header": {}, "frames": [], "re": 1.0}), "re"),
        (wire({"header": {}, "frames": [], "re": "1"}), "re"),
        (wire({"header": {}, "frames": [], "re": 2**64}), "re"),
        (wire({"header": {}, "frames": [None]}), "describes 1"),
        (wire({"header": {}, "frames": []}, b"x"), "describes 0"),
        (wire({"header": {}, "frames": [{"dtype": "<u8", "shape": [2]}]}, b"x" * 15), "needs 16 bytes"),
        (wire({"header": {}, "frames": [{"dtype": "O", "shape": [1]}]}, b"x" * 8), "dtype"),
        (wire({"header": {}, "frames": [{"dtype": ">u8", "shape": [1]}]}, b"x" * 8), "dtype"),
        (wire({"header": {}, "frames": [{"dtype": "<u8", "shape": [-1]}]}, b"x" * 8), "shape"),
        (wire({"header": {}, "frames": [{"dtype": "<u8", "shape": [1.0]}]}, b"x" * 8), "shape"),
        (wire({"header": {}, "frames": [{"dtype": "<u8", "shape": [True]}]}, b"x" * 8), "shape"),
        (wire({"header": {}, "frames": [{"dtype": "<u8", "shape": [1] * 9}]}, b"x" * 8), "shape"),
        (wire({"header": {}, "frames": [{"dtype": "<u8", "shape": [2**62, 2**62]}]}, b"x" * 8), "needs"),
        (wire({"header": {}, "frames": [{"dtype": "<u8"}]}, b"x" * 8), "descriptor"),
        (wire({"header": {}, "frames": [5]}, b"x"), "descriptor"),
        (wire({"header": {}, "frames": [None] * 65}, *[b""] * 65), "at most 64"),
    ],
)
def test_malformed_frames_raise_message_format_error_naming_the_frame(frames: list[bytes], match: str) -> None:
    with pytest.raises(MessageFormatError, match=match):
        decode_body(frames)


@pytest.mark.parametrize("version", [b"qkdnode/2", b"", b"qkdnode/1\x00", b"x" * 1000])
def test_other_versions_raise_version_error(version: bytes) -> None:
    with pytest.raises(VersionError, match="protocol/version"):
        decode_body(wire({"header": {}, "frames": []}, version=version))


@given(st.lists(st.binary(max_size=80), max_size=8))
def test_random_frames_never_raise_anything_but_message_format_error(frames: list[bytes]) -> None:
    try:
        decode_body(frames)
    except MessageFormatError:
        pass


@given(data=st.data(), msg_type=types, header=headers, frames=st.lists(payloads, max_size=3))
def test_mutated_valid_frames_decode_or_raise_message_format_error(
    data: st.DataObject, msg_type: str, header: dict, frames: list
) -> None:
    good = [bytearray(bytes(f)) for f in encode_body(Message(msg_type, header, frames))]
    i = data.draw(st.integers(0, len(good) - 1))
    op = data.draw(st.sampled_from(["flip", "truncate", "extend", "drop", "duplicate"]))
    if op == "flip" and good[i]:
        j = data.draw(st.integers(0, len(good[i]) * 8 - 1))
        good[i][j // 8] ^= 1 << (j % 8)
    elif op == "truncate":
        del good[i][data.draw(st.integers(0, len(good[i]))) :]
    elif op == "extend":
        good[i] += data.draw(st.binary(min_size=1, max_size=9))
    elif op == "drop":
        del good[i]
    else:
        good.insert(i, good[i])
    try:
        decode_body([bytes(f) for f in good])
    except MessageFormatError:
        pass


def test_message_repr_shows_shapes_not_contents() -> None:
    secret = bytes(range(200, 232))
    m = Message("KEY_BLOCK", {"block_id": 1}, [secret, np.frombuffer(secret, dtype=np.uint64)])
    text = repr(m)
    assert "KEY_BLOCK" in text and "bytes[32]" in text and "uint64" in text
    assert "\\xc8" not in text and str(np.frombuffer(secret, dtype=np.uint64)[0]) not in text
