"""The typed message bodies: what one end encodes the other decodes unchanged (through a real link), and
every malformed body is refused with a `BodyError` naming the rule, never another exception."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.classical import Message, SecureLink
from node.classical.messages import (
    BodyError,
    ErrorBody,
    KeyBlockAck,
    KeyBlockHeader,
    KeyBlockNack,
    MessageType,
    decode_key_block_reply,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)
FIELDS = ("link_id", "block_id", "length_bits", "qber", "params", "status", "error", "type", "seq")
headers = st.fixed_dictionaries({}, optional={**dict.fromkeys(FIELDS, json_values), "extra": json_values})
types = st.sampled_from(list(MessageType)) | st.text(max_size=10)
frames = st.lists(st.binary(max_size=20), max_size=3)
DECODERS = [
    ErrorBody.decode,
    KeyBlockAck.decode,
    KeyBlockNack.decode,
    decode_key_block_reply,
    lambda m: KeyBlockHeader.decode(m)[0],
]


def through_link(msg: Message) -> Message:
    secret = os.urandom(32 * 8)
    return SecureLink.from_bootstrap(secret, "responder").open(SecureLink.from_bootstrap(secret, "initiator").seal(msg))


def test_every_type_name_is_a_valid_wire_name_and_appears_once() -> None:
    names = [t.value for t in MessageType]
    assert len(names) == len(set(names))
    for t in MessageType:
        assert through_link(Message(t)).type == t


def test_bodies_round_trip_through_a_real_link() -> None:
    ack = KeyBlockAck("L1", 7, "duplicate")
    assert KeyBlockAck.decode(through_link(ack.message())) == ack
    nack = KeyBlockNack("L1", None, "pool full")
    assert decode_key_block_reply(through_link(nack.message())) == nack
    header = KeyBlockHeader("L1", 9, 13, 0.02, {"a": 1})
    assert KeyBlockHeader.decode(through_link(header.message(b"\x01\x02"))) == (header, b"\x01\x02")
    error = ErrorBody("no handler", "WHAT", 4)
    got = through_link(error.message())
    assert ErrorBody.decode(got) == error and got.re == 4


def test_an_error_answer_to_a_key_block_is_a_body_error_with_its_reason() -> None:
    with pytest.raises(BodyError, match="pool on fire"):
        decode_key_block_reply(ErrorBody("pool on fire", "KEY_BLOCK", 1).message())


@pytest.mark.parametrize(
    "header, field",
    [
        ({"link_id": "L1", "block_id": 1}, "status"),
        ({"link_id": "L1", "block_id": 1, "status": "kept"}, "status"),
        ({"link_id": "L1", "block_id": -1, "status": "stored"}, "block_id"),
        ({"link_id": "", "block_id": 1, "status": "stored"}, "link_id"),
        ({"link_id": "L1", "block_id": 1, "status": "stored", "stored": True}, "stored"),
    ],
)
def test_a_malformed_ack_names_the_field(header, field) -> None:
    with pytest.raises(BodyError, match=field):
        KeyBlockAck.decode(Message(MessageType.KEY_BLOCK_ACK, header))


def test_a_loose_ack_of_old_is_not_an_ack() -> None:
    # what the node used to accept: an "ACK" type, or any reply with stored/duplicate set
    with pytest.raises(BodyError):
        decode_key_block_reply(Message("ACK", {"block_id": 1}))
    with pytest.raises(BodyError):
        decode_key_block_reply(Message(MessageType.KEY_BLOCK_NACK, {"link_id": "L1", "block_id": 1, "stored": 1}))


@given(types, headers, frames, st.sampled_from(DECODERS))
def test_decoders_accept_or_refuse_with_body_error(msg_type, header, payloads, decode) -> None:
    msg = Message(msg_type, header, payloads, 0)
    try:
        body = decode(msg)
    except BodyError as exc:
        assert str(exc)  # noqa: PT017 - a fuzzed body is either accepted or refused; a refusal must say why
        return
    assert msg.type in {MessageType.ERROR, MessageType.KEY_BLOCK, MessageType.KEY_BLOCK_ACK, MessageType.KEY_BLOCK_NACK}
    assert body is not None


@given(st.one_of(st.none(), st.integers(), st.text(), st.binary()), st.sampled_from(DECODERS))
def test_decoders_refuse_what_is_not_a_message(obj, decode) -> None:
    with pytest.raises(BodyError):
        decode(obj)
