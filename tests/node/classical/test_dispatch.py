"""The dispatch table: unknown types and failing handlers are answered with the one ERROR shape and
counted; the serve loop lives on after any garbage."""

from __future__ import annotations

import logging
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.classical import (
    AuthenticationError,
    ChannelTimeout,
    Message,
    SecureLink,
    UnknownMessageType,
)
from node.classical.channel import PeerChannel, SecureChannel
from node.classical.dispatch import DispatchTable, Handler, error_reply, serve
from node.classical.messages import ErrorBody, MessageType

TIMEOUT = 30.0
Q, S = MessageType.KEY_QUERY, MessageType.KEY_STATES


def echo_table(**kw) -> DispatchTable:
    return DispatchTable({Q: lambda m: Message(S, {"n": m.header.get("n")})}, name="test", **kw)


def test_known_types_reach_their_handler() -> None:
    t = echo_table()
    reply = t.handler_for(Message("KEY_QUERY", {"n": 3}, seq=0))(Message(Q, {"n": 3}))
    assert reply.type == S and reply.header == {"n": 3}
    assert t.counts["handled"] == 1 and t.types == {"KEY_QUERY"}


def test_unknown_type_is_logged_counted_reported_and_answered_with_the_error_shape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Message] = []
    t = echo_table(on_unknown=seen.append)
    msg = Message("WHAT", {}, seq=9)
    with caplog.at_level(logging.WARNING), pytest.raises(UnknownMessageType) as info:
        t.handler_for(msg)
    reply = t.failed(msg, info.value)
    assert reply is not None and reply.type == MessageType.ERROR and reply.re == 9
    body = ErrorBody.decode(reply)
    assert body.type == "WHAT" and body.seq == 9 and "WHAT" in body.error
    assert t.counts["unknown_type"] == 1 and t.counts["handler_error"] == 0 and "WHAT" in caplog.text
    assert seen == [msg]


def test_a_failed_handler_is_answered_with_its_reason_and_counted() -> None:
    t = echo_table()
    reply = t.failed(Message(Q, seq=1), KeyError("missing"))
    assert reply is not None and "missing" in ErrorBody.decode(reply).error
    assert t.counts["handler_error"] == 1


def test_errors_are_never_answered_with_errors() -> None:
    assert error_reply(Message(MessageType.ERROR, {"error": "x", "type": "Y", "seq": 0}, seq=0), "again") is None


def test_the_table_takes_only_message_types_and_callables() -> None:
    with pytest.raises(TypeError, match="MessageType"):
        DispatchTable({"KEY_QUERY": print}, name="t")  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="callable"):
        DispatchTable({Q: 3}, name="t")  # type: ignore[type-var]  # deliberately not callable


class LoopFixture:
    """A dispatcher serving a SecureChannel in a thread, and a raw client socket with its own link."""

    def __init__(self) -> None:
        secret = os.urandom(32 * 2000)
        self.table = echo_table()
        self.stop = threading.Event()
        self.server = PeerChannel.bind()
        self.thread = threading.Thread(
            target=serve,
            args=(self.table, SecureChannel(self.server, SecureLink.from_bootstrap(secret, "responder")), self.stop),
            kwargs={"poll_s": 0.02},
            daemon=True,
        )
        self.thread.start()
        self.link = SecureLink.from_bootstrap(secret, "initiator")
        self.raw = PeerChannel.connect(self.server.endpoint)
        self.client = SecureChannel(self.raw, self.link)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(TIMEOUT)
        self.client.close()
        self.server.close()


@pytest.fixture(scope="module")
def loop():
    fx = LoopFixture()
    yield fx
    fx.close()


@settings(max_examples=40)
@given(garbage=st.lists(st.lists(st.binary(max_size=48), max_size=7), min_size=1, max_size=4), data=st.data())
def test_the_serve_loop_answers_after_any_garbage(loop: LoopFixture, garbage: list[list[bytes]], data) -> None:
    for frames in garbage:
        if frames:
            loop.raw.send(frames, TIMEOUT)
    # and a valid message with one bit flipped somewhere
    sealed = [bytearray(bytes(f)) for f in loop.link.seal(Message(Q, {"n": -1}))]
    i = data.draw(st.integers(0, len(sealed) - 1))
    j = data.draw(st.integers(0, len(sealed[i]) * 8 - 1))
    sealed[i][j // 8] ^= 1 << (j % 8)
    loop.raw.send([bytes(f) for f in sealed], TIMEOUT)
    n = data.draw(st.integers(0, 10**6))
    reply = loop.client.request(Message(Q, {"n": n}), timeout=TIMEOUT)
    assert reply.type == S and reply.header["n"] == n
    assert loop.thread.is_alive()


class ScriptedChannel:
    """A stand-in for SecureChannel whose recv replays a script of results and exceptions."""

    def __init__(self, script: list, stop: threading.Event) -> None:
        self.script, self.stop = list(script), stop
        self.sent: list[Message] = []

    def recv(self, timeout: float | None = None) -> Message:
        if not self.script:
            self.stop.set()
            raise ChannelTimeout("script done")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def send(self, message: Message, timeout: float | None = None) -> int:
        self.sent.append(message)
        return len(self.sent) - 1


def test_serve_survives_unexpected_errors_while_opening_and_answers_the_next_message() -> None:
    stop = threading.Event()
    t: DispatchTable[Handler] = DispatchTable({Q: lambda m: Message(S)}, name="test")
    ch = ScriptedChannel(
        [RuntimeError("decoder bug"), AuthenticationError("bad tag"), Message("NOPE", seq=4), Message(Q, seq=5)], stop
    )
    serve(t, ch, stop)
    assert t.counts["internal_error"] == 1 and t.counts["AuthenticationError"] == 1
    assert [m.type for m in ch.sent] == ["ERROR", "KEY_STATES"] and [m.re for m in ch.sent] == [4, 5]
