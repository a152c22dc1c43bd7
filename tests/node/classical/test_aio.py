"""The asyncio ROUTER end: any frames from any identity are either an authentic message of a known flow
or dropped and counted (a known peer's failure reported to `on_reject`); nothing else escapes."""

from __future__ import annotations

import os

import pytest
import zmq.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from node.classical import Message, SecureLink
from node.classical.aio import AsyncRouter
from node.classical.messages import MessageType

SECRET = os.urandom(32 * 64)


class Flow:
    def __init__(self) -> None:
        self.link = SecureLink.from_bootstrap(SECRET, "responder")
        self.closed = False

    def seal(self, message: Message) -> list:
        return self.link.seal(message)

    def open(self, frames) -> Message:
        return self.link.open(list(frames))

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def router():
    reports: list[tuple[str, str]] = []
    r = AsyncRouter(
        zmq.asyncio.Context.instance(),
        "tcp://127.0.0.1:*",
        {"node_a": Flow()},
        name="test",
        max_message_bytes=1 << 20,
        on_reject=lambda peer, why: reports.append((peer, why)),
    )
    yield r, reports
    r.close()
    assert r.flows["node_a"].closed


def test_an_authentic_message_comes_out_with_its_sender(router) -> None:
    r, _ = router
    sender = SecureLink.from_bootstrap(SECRET, "initiator")
    got = r.open([b"node_a", *sender.seal(Message(MessageType.KEY_QUERY, {"n": 1}))])
    assert got is not None and got.peer == "node_a" and got.message.type == MessageType.KEY_QUERY


@settings(max_examples=200)
@given(st.sampled_from([b"node_a", b"node_b", b"", b"\xff\xfe"]), st.lists(st.binary(max_size=64), max_size=7))
def test_garbage_is_dropped_counted_and_reported_for_a_known_peer(router, ident, frames) -> None:
    r, reports = router
    before, reported = r.rejected, len(reports)
    assert r.open([ident, *frames]) is None
    assert r.rejected == before + 1
    assert len(reports) == reported + (1 if ident == b"node_a" and frames else 0)
