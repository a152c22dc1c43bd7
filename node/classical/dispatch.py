"""The message-type -> handler table of a daemon, and a receive loop that bad messages cannot stop.

A handler takes the authentic `Message` and returns a reply `Message` or None; the reply's `re` is
set to the seq of the message it answers, so the peer can match it to its request. A message whose
type has no handler is logged and counted, and (unless it is itself an ``ERROR``) answered with an
``ERROR`` message so the peer does not wait for its timeout; a handler's exception is logged and
counted and answered the same way. Rejected frames (bad MAC, replay, bad version, malformed) are
logged and counted and never answered: an attacker learns nothing and the loop goes on.
Logs name the message type, seq and error class, never payloads or key material.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from node.classical.channel import SecureChannel
from node.classical.envelope import Message, check_type
from node.classical.errors import ChannelTimeout, ClassicalChannelError, UnknownMessageType

__all__ = ["Handler", "Dispatcher", "ERROR_TYPE"]

Handler = Callable[[Message], "Message | None"]

ERROR_TYPE = "ERROR"
"""Type of the reply to a message that could not be handled: header {"error", "type", "seq"}."""

log = logging.getLogger(__name__)


class Dispatcher:
    """Maps message types to handlers; `dispatch` one message, or `serve` a `SecureChannel` until stopped."""

    def __init__(self, handlers: Mapping[str, Handler] | None = None, *, logger: logging.Logger | None = None) -> None:
        """Start with `handlers` (type -> callable); more with `register`."""
        self._handlers: dict[str, Handler] = {}
        self.log = logger or log
        self.counts: Counter[str] = Counter()
        """Events by name: handled, replied, unknown_type, handler_error, and each rejected error class."""
        for t, h in (handlers or {}).items():
            self.register(t, h)

    def register(self, msg_type: str, handler: Handler | None = None) -> Any:
        """Route `msg_type` to `handler`; without `handler`, a decorator that registers the function."""
        check_type(msg_type)
        if handler is None:
            def decorate(fn: Handler) -> Handler:
                self.register(msg_type, fn)
                return fn
            return decorate
        if not callable(handler):
            raise ValueError(f"handler for {msg_type} must be callable, got {type(handler).__name__}")
        if msg_type in self._handlers:
            raise ValueError(f"message type {msg_type} already has a handler")
        self._handlers[msg_type] = handler
        return handler

    @property
    def types(self) -> frozenset[str]:
        """The message types this table handles."""
        return frozenset(self._handlers)

    def handler_for(self, msg_type: str) -> Handler:
        """The handler of `msg_type`; `UnknownMessageType` if none."""
        try:
            return self._handlers[msg_type]
        except KeyError:
            raise UnknownMessageType(f"no handler for message type {msg_type}") from None

    def dispatch(self, message: Message) -> Message | None:
        """Run the handler of `message`; returns its reply, an ``ERROR`` reply, or None. Never raises."""
        try:
            handler = self.handler_for(message.type)
        except UnknownMessageType as exc:
            self.counts["unknown_type"] += 1
            self.log.warning("rejected message seq %s: %s", message.seq, exc)
            return self._error_reply(message, "unknown_type")
        try:
            reply = handler(message)
        except Exception as exc:  # a handler's bug or a protocol violation: this message fails, the loop lives
            self.counts["handler_error"] += 1
            self.log.error(
                "handler for %s (seq %s) raised %s", message.type, message.seq, type(exc).__name__, exc_info=True
            )
            return self._error_reply(message, "handler_error")
        self.counts["handled"] += 1
        if reply is not None and not isinstance(reply, Message):
            self.counts["handler_error"] += 1
            self.log.error("handler for %s returned %s, not a Message or None", message.type, type(reply).__name__)
            return self._error_reply(message, "handler_error")
        if reply is not None and reply.re is None:
            reply.re = message.seq
        return reply

    @staticmethod
    def _error_reply(message: Message, error: str) -> Message | None:
        if message.type == ERROR_TYPE:
            return None  # never answer an error with an error
        return Message(ERROR_TYPE, {"error": error, "type": message.type, "seq": message.seq}, re=message.seq)

    def serve(
        self,
        channel: SecureChannel,
        stop: threading.Event,
        *,
        poll_s: float = 0.1,
        send_timeout_s: float = 5.0,
    ) -> None:
        """Receive, dispatch and answer messages on `channel` until `stop` is set; survives bad input.

        The calling thread becomes the channel's owner.
        """
        while not stop.is_set():
            try:
                message = channel.recv(timeout=poll_s)
            except ChannelTimeout:
                continue
            except ClassicalChannelError as exc:
                self.counts[type(exc).__name__] += 1
                self.log.warning("rejected message: %s: %s", type(exc).__name__, exc)
                continue
            except Exception:  # a decoder bug must not end the daemon's loop either
                self.counts["internal_error"] += 1
                self.log.exception("rejected message: unexpected error while opening it")
                continue
            reply = self.dispatch(message)
            if reply is None:
                continue
            try:
                channel.send(reply, timeout=send_timeout_s)
                self.counts["replied"] += 1
            except (ClassicalChannelError, ValueError) as exc:
                self.counts["reply_failed"] += 1
                self.log.error("could not send %s reply to seq %s: %s: %s",
                               reply.type, message.seq, type(exc).__name__, exc)
