"""Fuzzing of every decoder of the link protocol (node/link/protocol.py): whatever a peer sends -
malformed, truncated, oversized, of the wrong type - a decoder answers with its value or a
ProtocolError, never another exception; and what the encoders build decodes to itself, also after
a trip through the wire encoding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from node.classical import Message
from node.classical.envelope import decode_body, encode_body
from node.link import protocol as P
from postprocessing.cascade import Message as CascadeMessage
from postprocessing.errors import ProtocolError
from postprocessing.sifting import MAX_INTENSITIES, SiftReply, SiftReport, SiftRequest

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TYPES = [
    P.SIFT_REQUEST,
    P.SIFT_REPLY,
    P.SIFT_REPORT,
    P.BLOCK_START,
    P.BLOCK_READY,
    P.CASCADE,
    P.VERIFY,
    P.VERIFY_RESULT,
    P.BLOCK_DONE,
    P.BLOCK_DONE_ACK,
    P.BLOCK_ABORT,
    P.HELLO,
    P.HELLO_ACK,
]

# what a received JSON header can hold: numbers of any size, strings, nesting
json_scalar = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70).map(lambda i: i * 10**300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# a header that often holds the fields the decoders read, with values of any type
FIELDS = ["batch", "k", "block", "reason", "t", "h", "nonce", "ok", "confirmed", "next_block"]
headers = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_value, max_size=6)

dtypes = st.sampled_from([np.uint8, np.int8, np.int64, np.uint64, np.int32, np.float64, np.float32, np.bool_])
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
frame = st.binary(max_size=64) | arrays
frames = st.lists(frame, max_size=7)
# also the in-process oddities a received message cannot carry but a buggy caller could
odd_frame = frame | st.just(memoryview(b"\x00\x01")) | st.just(bytearray(b"xyz"))


@st.composite
def messages(draw, msg_type=None) -> Message:
    """A message as it could arrive: any type name, any header, any frames, any authentication flags."""
    t = (
        draw(st.sampled_from(TYPES) | st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True))
        if msg_type is None
        else msg_type
    )
    msg = Message(t, draw(headers), draw(st.lists(odd_frame, max_size=7)))
    msg.transcript = draw(st.none() | st.integers(-1, 5) | json_scalar)
    msg.closing = draw(st.booleans())
    msg.verified = draw(st.booleans())
    return msg


def typed_messages() -> st.SearchStrategy[Message]:
    """Messages of the decoders' own types (so the checks past the type test are reached)."""
    return st.sampled_from(TYPES[:3] + [P.CASCADE, P.BLOCK_ABORT]).flatmap(lambda t: messages(msg_type=t))


_REFUSED = object()


def decoded(fn, *args: Any) -> Any:
    """fn(*args), or _REFUSED when it raised a ProtocolError that says what was wrong; any other
    exception fails the test."""
    try:
        return fn(*args)
    except ProtocolError as exc:
        message = str(exc)
    assert message
    return _REFUSED


def only_protocol_errors(fn, *args: Any) -> Any:
    """The decoded value, or None when the decoder refused the input with a ProtocolError."""
    got = decoded(fn, *args)
    return None if got is _REFUSED else got


@FUZZ
@given(st.one_of(messages(), typed_messages()))
def test_parse_sift_request_raises_only_protocol_errors(msg: Message) -> None:
    got = only_protocol_errors(P.parse_sift_request, msg)
    if got is not None:
        batch, req = got
        assert 0 <= batch <= P.MAX_ID and req.slot.dtype == np.int64 and req.slot.size == req.basis.size


@FUZZ
@given(st.one_of(messages(), typed_messages()), st.integers(-2, 2**63))
def test_parse_sift_reply_raises_only_protocol_errors(msg: Message, batch: int) -> None:
    reply = only_protocol_errors(P.parse_sift_reply, msg, batch)
    if reply is not None:
        assert msg.header["batch"] == batch and 1 <= reply.n_intensities <= MAX_INTENSITIES


@FUZZ
@given(st.one_of(messages(), typed_messages()))
def test_parse_sift_report_raises_only_protocol_errors(msg: Message) -> None:
    got = only_protocol_errors(P.parse_sift_report, msg)
    if got is not None:
        assert got[1].errors.ndim == 2 and got[1].errors.dtype == np.int64


@FUZZ
@given(st.one_of(messages(), typed_messages()))
def test_unwrap_cascade_raises_only_protocol_errors(msg: Message) -> None:
    got = only_protocol_errors(P.unwrap_cascade, msg)
    if got is not None:
        assert isinstance(got.type, str) and isinstance(got.header, dict)
        assert all(isinstance(b, np.ndarray) and b.ndim == 1 for b in got.buffers)


@FUZZ
@given(messages(), st.sampled_from(TYPES), st.integers(0, 6))
def test_expect_raises_only_protocol_errors(msg: Message, msg_type: str, n_frames: int) -> None:
    if decoded(P.expect, msg, msg_type, n_frames) is not _REFUSED:
        assert msg.type == msg_type and len(msg.frames) == n_frames


@FUZZ
@given(messages())
def test_require_verified_raises_only_protocol_errors(msg: Message) -> None:
    only_protocol_errors(P.require_verified, msg)


@FUZZ
@given(messages(), st.sampled_from(FIELDS), st.integers(-5, 5), st.integers(-5, 2**63))
def test_header_int_gives_an_int_in_range_or_a_protocol_error(msg: Message, key: str, low: int, high: int) -> None:
    value = only_protocol_errors(P.header_int, msg, key, low, high)
    if value is not None:
        assert type(value) is int and low <= value <= high


@FUZZ
@given(messages(), st.sampled_from(FIELDS), st.floats(-1e3, 0), st.floats(0, 1e300))
def test_header_float_gives_a_float_in_range_or_a_protocol_error(
    msg: Message, key: str, low: float, high: float
) -> None:
    value = only_protocol_errors(P.header_float, msg, key, low, high)
    if value is not None:
        assert type(value) is float and low <= value <= high


@FUZZ
@given(messages(), st.integers(0, 8), dtypes, st.integers(0, 3))
def test_frame_array_gives_the_asked_array_or_a_protocol_error(msg: Message, index: int, dtype, ndim: int) -> None:
    arr = only_protocol_errors(P.frame_array, msg, index, dtype, "fuzzed", ndim)
    if arr is not None:
        assert arr.dtype == np.dtype(dtype) and arr.ndim == ndim and arr.flags.c_contiguous


@pytest.mark.parametrize("value", [10**400, -(10**400), 2**1024])
def test_header_float_refuses_an_integer_too_large_for_a_float(value: int) -> None:
    """JSON carries integers of any size; float() of one past 1.8e308 overflows."""
    with pytest.raises(ProtocolError, match="must be a number"):
        P.header_float(Message(P.VERIFY, {"x": value}), "x", 0.0, float("inf"))


# --- the same, through the wire: truncated, oversized and bit-flipped encodings ---


def wire(msg: Message) -> list[bytes]:
    return [bytes(f) for f in encode_body(msg)]


def decode_all(frames_: list[bytes]) -> None:
    """Decode frames as a receiver would, then run every protocol decoder on the message."""
    from node.classical.errors import MessageFormatError

    try:
        msg = decode_body(frames_)
    except MessageFormatError:
        return  # the envelope refused it: the protocol decoders never see it
    for fn, args in (
        (P.parse_sift_request, ()),
        (P.parse_sift_reply, (0,)),
        (P.parse_sift_report, ()),
        (P.unwrap_cascade, ()),
        (P.require_verified, ()),
    ):
        only_protocol_errors(fn, msg, *args)


@st.composite
def valid_sift_messages(draw) -> Message:
    n = draw(st.integers(0, 40))
    batch = draw(st.integers(0, P.MAX_ID))
    kind = draw(st.sampled_from(["request", "reply", "report", "cascade"]))
    u8 = hnp.arrays(np.uint8, n, elements=st.integers(0, 1))
    if kind == "request":
        return P.sift_request(batch, SiftRequest(draw(hnp.arrays(np.int64, n)), draw(u8)))
    if kind == "reply":
        k = draw(st.integers(1, MAX_INTENSITIES))
        return P.sift_reply(batch, SiftReply(draw(u8), draw(u8), draw(u8), draw(hnp.arrays(np.int64, n)), draw(u8), k))
    if kind == "report":
        return P.sift_report(batch, SiftReport(draw(hnp.arrays(np.int64, (2, draw(st.integers(1, 4)))))))
    buffers = tuple(draw(st.lists(hnp.arrays(dtypes.filter(lambda d: d is not np.bool_), n), max_size=3)))
    return P.wrap_cascade(
        CascadeMessage(draw(st.text(max_size=10)), draw(st.dictionaries(st.text(max_size=5), json_scalar)), buffers)
    )


@FUZZ
@given(valid_sift_messages(), st.data())
def test_truncated_or_bit_flipped_wire_messages_raise_only_typed_errors(msg: Message, data) -> None:
    frames_ = wire(msg)
    i = data.draw(st.integers(0, len(frames_) - 1))
    raw = bytearray(frames_[i])
    action = data.draw(st.sampled_from(["truncate", "flip", "extend", "drop-frame", "add-frame"]))
    if action == "truncate":
        raw = raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))]
    elif action == "flip" and raw:
        j = data.draw(st.integers(0, len(raw) - 1))
        raw[j] ^= 1 << data.draw(st.integers(0, 7))
    elif action == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=64))
    frames_[i] = bytes(raw)
    if action == "drop-frame":
        del frames_[i]
    elif action == "add-frame":
        frames_.insert(i, data.draw(st.binary(max_size=32)))
    decode_all(frames_)


def test_oversized_headers_and_payloads_are_refused_before_the_protocol_decoders() -> None:
    msg = P.sift_request(1, SiftRequest(np.arange(3, dtype=np.int64), np.zeros(3, np.uint8)))
    frames_ = wire(msg)
    decode_all([*frames_[:2], b"{" * 10**6, *frames_[3:]])  # a huge, deeply nested header
    decode_all([*frames_, *([b"x"] * 10_000)])  # far more payload frames than any message has


# --- round trips: what the encoders build decodes to itself ---


def same(a: Any, b: Any) -> bool:
    """Bit for bit: a round trip must keep every value, NaN payloads included (NaN != NaN)."""
    return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@FUZZ
@given(valid_sift_messages(), st.booleans())
def test_encoded_messages_decode_to_themselves(msg: Message, through_wire: bool) -> None:
    got = decode_body(wire(msg)) if through_wire else msg
    if msg.type == P.SIFT_REQUEST:
        batch, req = P.parse_sift_request(got)
        assert batch == msg.header["batch"]
        assert same(req.slot, msg.frames[0]) and same(req.basis, msg.frames[1])
    elif msg.type == P.SIFT_REPLY:
        reply = P.parse_sift_reply(got, msg.header["batch"])
        fields = (reply.match, reply.intensity, reply.test_bits, reply.sample_index, reply.sample_bits)
        assert all(same(a, b) for a, b in zip(fields, msg.frames, strict=True))
        assert reply.n_intensities == msg.header["k"]
    elif msg.type == P.SIFT_REPORT:
        batch, report = P.parse_sift_report(got)
        assert batch == msg.header["batch"] and same(report.errors, msg.frames[0])
    else:
        cmsg = P.unwrap_cascade(got)
        assert cmsg.type == msg.header["t"] and cmsg.header == msg.header["h"]
        assert all(same(a, b) for a, b in zip(cmsg.buffers, msg.frames, strict=True))
