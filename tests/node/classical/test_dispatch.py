"""The dispatch table: unknown types and failing handlers are answered and counted; the loop lives on."""

from __future__ import annotations

import logging
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.classical import AuthenticationError, ChannelTimeout, Message, SecureLink
from node.classical.channel import PeerChannel, SecureChannel
from node.classical.dispatch import Dispatcher

TIMEOUT = 30.0


def test_known_types_reach_their_handler_and_the_reply_is_returned() -> None:
    d = Dispatcher({"PING": lambda m: Message("PONG", {"n": m.header["n"]})})
    reply = d.dispatch(Message("PING", {"n": 3}, seq=0))
    assert reply is not None and reply.type == "PONG" and reply.header == {"n": 3}
    assert d.counts["handled"] == 1 and d.types == {"PING"}


def test_unknown_type_is_logged_counted_and_answered_with_error(caplog: pytest.LogCaptureFixture) -> None:
    d = Dispatcher()
    with caplog.at_level(logging.WARNING):
        reply = d.dispatch(Message("WHAT", {}, seq=9))
    assert reply is not None and reply.type == "ERROR"
    assert reply.header == {"error": "unknown_type", "type": "WHAT", "seq": 9}
    assert d.counts["unknown_type"] == 1 and "WHAT" in caplog.text


def test_handler_exception_is_caught_logged_and_answered(caplog: pytest.LogCaptureFixture) -> None:
    def broken(m: Message) -> Message:
        raise KeyError("missing")

    d = Dispatcher({"X": broken})
    with caplog.at_level(logging.ERROR):
        reply = d.dispatch(Message("X", seq=1))
    assert reply is not None and reply.header["error"] == "handler_error"
    assert d.counts["handler_error"] == 1 and "KeyError" in caplog.text


def test_errors_are_never_answered_with_errors() -> None:
    d = Dispatcher()
    assert d.dispatch(Message("ERROR", {"error": "unknown_type"}, seq=0)) is None


def test_a_handler_returning_a_non_message_counts_as_a_handler_error() -> None:
    d = Dispatcher({"X": lambda m: {"not": "a message"}})  # type: ignore[dict-item,return-value]
    reply = d.dispatch(Message("X", seq=0))
    assert reply is not None and reply.header["error"] == "handler_error"


def test_register_as_decorator_and_refuses_duplicates_and_bad_names() -> None:
    d = Dispatcher()

    @d.register("KEY_BLOCK")
    def on_block(m: Message) -> None:
        return None

    assert d.handler_for("KEY_BLOCK") is on_block
    with pytest.raises(ValueError, match="already"):
        d.register("KEY_BLOCK", on_block)
    with pytest.raises(ValueError, match="message type"):
        d.register("key_block", on_block)


class LoopFixture:
    """A dispatcher serving a SecureChannel in a thread, and a raw client socket with its own link."""

    def __init__(self) -> None:
        secret = os.urandom(32 * 2000)
        self.dispatcher = Dispatcher({"PING": lambda m: Message("PONG", {"n": m.header.get("n")})})
        self.stop = threading.Event()
        self.server = PeerChannel.bind()
        self.thread = threading.Thread(
            target=self.dispatcher.serve,
            args=(SecureChannel(self.server, SecureLink.from_bootstrap(secret, "responder")), self.stop),
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
    sealed = [bytearray(bytes(f)) for f in loop.link.seal(Message("PING", {"n": -1}))]
    i = data.draw(st.integers(0, len(sealed) - 1))
    j = data.draw(st.integers(0, len(sealed[i]) * 8 - 1))
    sealed[i][j // 8] ^= 1 << (j % 8)
    loop.raw.send([bytes(f) for f in sealed], TIMEOUT)
    n = data.draw(st.integers(0, 10**6))
    reply = loop.client.request(Message("PING", {"n": n}), timeout=TIMEOUT)
    assert reply.type == "PONG" and reply.header["n"] == n
    assert loop.thread.is_alive()


class ScriptedChannel:
    """A stand-in for SecureChannel whose recv replays a script of results and exceptions."""

    def __init__(self, script: list, stop: threading.Event) -> None:
        self.script, self.stop, self.sent = list(script), stop, []

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
    d = Dispatcher({"PING": lambda m: Message("PONG")})
    ch = ScriptedChannel(
        [RuntimeError("decoder bug"), AuthenticationError("bad tag"), Message("PING", seq=5)], stop
    )
    d.serve(ch, stop)  # type: ignore[arg-type]
    assert d.counts["internal_error"] == 1 and d.counts["AuthenticationError"] == 1
    assert [m.type for m in ch.sent] == ["PONG"] and ch.sent[0].re == 5
