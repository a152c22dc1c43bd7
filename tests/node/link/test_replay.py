"""Replays across a restart: an old HELLO_ACK is refused by a restarted Bob (durable receive counter,
and the session nonce it fails to echo), an old HELLO by a restarted Alice."""

from __future__ import annotations

import os
from collections import deque

import pytest

from drivers.mock import MockTransmitter
from node.classical import Message, ReplayError, SecureLink
from node.link import AliceLink, BobLink
from node.link.outbox import Outbox
from postprocessing.errors import ProtocolError
from tests.node.link.harness import settings_for
from tests.node.link.test_link import PARAMS, SEED


class Wire:
    """Bob's channel to an in-process Alice; keeps every frame list that crossed, per message type."""

    def __init__(self, bob_link: SecureLink, alice_link: SecureLink, alice: AliceLink | None) -> None:
        self.link, self.alice_link, self.alice = bob_link, alice_link, alice
        self.inbox: deque[list[bytes]] = deque()
        self.seen: dict[str, list[list[bytes]]] = {}

    def send(self, msg: Message, timeout: float | None = None) -> int:
        frames = [bytes(f) for f in self.link.seal(msg)]
        self.seen.setdefault(msg.type, []).append(frames)
        if self.alice is not None:
            for reply in self.alice.handle(self.alice_link.open(frames)):
                out = [bytes(f) for f in self.alice_link.seal(reply)]
                self.seen.setdefault(reply.type, []).append(out)
                self.inbox.append(out)
        assert msg.seq is not None
        return msg.seq

    def recv(self, timeout: float | None = None) -> Message:
        return self.link.open(self.inbox.popleft())


def linked(tmp_path):
    secret = os.urandom(1 << 12)
    saved: dict[str, dict] = {"bob": {}, "alice": {}}
    bob_link = SecureLink.from_bootstrap(secret, "initiator", mode="transcript")
    alice_link = SecureLink.from_bootstrap(secret, "responder", mode="transcript")
    bob_link.set_persistence(lambda st: saved["bob"].update(st), reserve=8)
    alice_link.set_persistence(lambda st: saved["alice"].update(st), reserve=8)
    settings = settings_for(PARAMS)
    alice = AliceLink(settings, MockTransmitter(PARAMS, SEED), Outbox(tmp_path / "a.db"))
    wire = Wire(bob_link, alice_link, alice)
    bob = BobLink(settings, wire, Outbox(tmp_path / "b.db"))
    return bob, wire, saved, settings


def test_an_old_hello_ack_replayed_to_a_restarted_bob_is_refused(tmp_path) -> None:
    bob, wire, saved, settings = linked(tmp_path)
    before_first_hello = SecureLink.from_state(dict(saved["bob"]))
    bob.hello()
    old_ack = wire.seen["HELLO_ACK"][-1]
    # restart from the persisted state: the receive counter was durable before HELLO_ACK was acted on
    restarted = SecureLink.from_state(dict(saved["bob"]))
    with pytest.raises(ReplayError):
        restarted.open(old_ack)
    # even a node whose counter were older (state from before the first HELLO) refuses it: the
    # HELLO_ACK does not echo the new session's nonce
    replay = Wire(before_first_hello, wire.alice_link, None)
    replay.inbox.append(old_ack)
    again = BobLink(settings, replay, Outbox(tmp_path / "b2.db"))
    with pytest.raises(ProtocolError, match="nonce"):
        again.hello()
    assert replay.seen["HELLO"], "Bob sent a fresh HELLO"


def test_an_old_hello_replayed_to_a_restarted_alice_is_refused(tmp_path) -> None:
    bob, wire, saved, _ = linked(tmp_path)
    bob.hello()
    old_hello = wire.seen["HELLO"][-1]
    restarted = SecureLink.from_state(dict(saved["alice"]))
    with pytest.raises(ReplayError):
        restarted.open(old_hello)


def test_a_hello_without_its_own_tag_is_refused(tmp_path) -> None:
    _bob, wire, _, _ = linked(tmp_path)
    hello = Message("HELLO", {"settings": {}, "unconfirmed": [], "next_block": 0, "nonce": "x" * 32})
    hello.transcript = 0  # a transcript member carries no tag: it must not start a session
    frames = [bytes(f) for f in wire.link.seal(hello)]
    replies = wire.alice.handle(wire.alice_link.open(frames))
    assert [r.type for r in replies] == ["BLOCK_ABORT"]
