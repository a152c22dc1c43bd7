"""Alice's one dispatch table: a message of a type she does not handle is answered with the one ERROR
shape and alarmed (it used to be logged and left unanswered), and Bob turns that ERROR into a
protocol error naming what the peer could not handle."""

from __future__ import annotations

import pytest

from drivers.mock import MockTransmitter
from node.classical import Message
from node.classical.messages import ErrorBody, MessageType
from node.link import AliceLink
from node.link import protocol as P
from node.link.outbox import Outbox
from postprocessing.errors import ProtocolError
from tests.node.link.harness import settings_for
from tests.node.link.test_link import PARAMS, SEED


@pytest.fixture
def alice(tmp_path):
    alarms: list[tuple[str, str]] = []
    outbox = Outbox(tmp_path / "a.db")
    yield (
        AliceLink(
            settings_for(PARAMS), MockTransmitter(PARAMS, SEED), outbox, alarm=lambda s, t: alarms.append((s, t))
        ),
        alarms,
    )
    outbox.close()


@pytest.mark.parametrize("msg_type", [MessageType.KEY_BLOCK, MessageType.BLOCK_READY, "NOT_A_TYPE"])
def test_a_type_alice_does_not_handle_is_answered_with_error_and_alarmed(alice, msg_type) -> None:
    link, alarms = alice
    (reply,) = link.handle(P.in_block(Message(msg_type, {"block": 3}, seq=11), 3))
    body = ErrorBody.decode(reply)
    assert (body.type, body.seq, reply.re) == (msg_type, 11, 11) and msg_type in body.error
    assert reply.transcript == 3  # it answers within the block's transcript, like every reply of that block
    assert alarms and alarms[-1][0] == "major" and msg_type in alarms[-1][1]
    assert link.table.counts["unknown_type"] == 1


def test_an_error_from_alice_is_a_protocol_error_at_bob(alice) -> None:
    link, _ = alice
    (reply,) = link.handle(Message("NOT_A_TYPE", {}, seq=2))
    with pytest.raises(ProtocolError, match="could not handle our NOT_A_TYPE"):
        P.expect(reply, P.BLOCK_READY, 0)


def test_an_error_is_never_answered(alice) -> None:
    link, _ = alice
    assert link.handle(ErrorBody("x", "BLOCK_READY", 1).message()) == []
