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
    RetuneAck,
    RetuneProposal,
    RetuneSettings,
    decode_key_block_reply,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)
FIELDS = (
    "link_id",
    "block_id",
    "length_bits",
    "qber",
    "params",
    "status",
    "error",
    "type",
    "seq",
    *RetuneProposal.FIELDS,
    *RetuneAck.FIELDS,
)
headers = st.fixed_dictionaries({}, optional={**dict.fromkeys(FIELDS, json_values), "extra": json_values})
types = st.sampled_from(list(MessageType)) | st.text(max_size=10)
frames = st.lists(st.binary(max_size=20), max_size=3)
DECODERS = [
    ErrorBody.decode,
    KeyBlockAck.decode,
    KeyBlockNack.decode,
    decode_key_block_reply,
    lambda m: KeyBlockHeader.decode(m)[0],
    RetuneProposal.decode,
    RetuneAck.decode,
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
    assert msg.type in {
        MessageType.ERROR,
        MessageType.KEY_BLOCK,
        MessageType.KEY_BLOCK_ACK,
        MessageType.KEY_BLOCK_NACK,
        MessageType.RETUNE,
        MessageType.RETUNE_ACK,
    }
    assert body is not None


@given(st.one_of(st.none(), st.integers(), st.text(), st.binary()), st.sampled_from(DECODERS))
def test_decoders_refuse_what_is_not_a_message(obj, decode) -> None:
    with pytest.raises(BodyError):
        decode(obj)


PROPOSAL = RetuneProposal("L1", "ab" * 16, RetuneSettings(2, (0.45, 0.12, 0.0), (0.7, 0.2, 0.1)), 16.2)
ACKS = (RetuneAck("L1", "cd" * 16, 2, True, 123_456), RetuneAck("L1", "cd" * 16, 2, False, None, "out of range"))


def test_retune_bodies_round_trip_through_a_real_link() -> None:
    assert RetuneProposal.decode(through_link(PROPOSAL.message())) == PROPOSAL
    for ack in ACKS:
        assert RetuneAck.decode(through_link(ack.message())) == ack


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("intensities", [0.1, 0.45, 0.0]),  # not decreasing
        ("intensities", [0.0, 0.0, 0.0]),  # no signal
        ("intensities", [0.45, 0.12, float("inf")]),
        ("intensities", [0.45, 0.12]),  # one class fewer than its probabilities: they are refused
        ("class_probabilities", [0.7, 0.2, 0.2]),  # sums to 1.1
        ("class_probabilities", [0.9, 0.1, 0.0]),  # a class never sent
        ("retune", 0),  # names the configured settings
        ("retune", True),
        ("loss_db", -1.0),
        ("loss_db", 10**400),
        ("nonce", "short"),
    ],
)
def test_a_malformed_proposal_names_the_field(field, value) -> None:
    msg = PROPOSAL.message()
    msg.header[field] = value
    with pytest.raises(BodyError, match="class_probabilities.*one per intensity" if value == [0.45, 0.12] else field):
        RetuneProposal.decode(msg)


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"ok": 1}, "ok"), ({"from_slot": None}, "from_slot"), ({"from_slot": -1}, "from_slot"), ({"reason": ""}, "")],
)
def test_a_malformed_retune_ack_names_the_field(changes, field) -> None:
    ok, refused = (a.message() for a in ACKS)
    msg = refused if changes.get("reason") == "" else ok
    msg.header.update(changes)
    with pytest.raises(BodyError, match=field or "reason"):
        RetuneAck.decode(msg)


@given(st.sampled_from([PROPOSAL.message, ACKS[0].message, ACKS[1].message]), st.sampled_from(FIELDS), json_values)
def test_retune_decoders_refuse_any_altered_field_with_body_error_or_accept_a_valid_one(make, field, value) -> None:
    msg = make()
    msg.header[field] = value
    decode = RetuneProposal.decode if msg.type == MessageType.RETUNE else RetuneAck.decode
    try:
        body = decode(msg)
    except BodyError as exc:
        assert str(exc)  # noqa: PT017 - refused with a reason, never another exception
        return
    assert decode(body.message()) == body  # what was accepted re-encodes to itself
