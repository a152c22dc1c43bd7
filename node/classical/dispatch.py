"""The message-type -> handler table of a daemon, built once, and the one answer to what it cannot handle.

Every server of the classical channel (Alice's end of the node link, the key manager's peer
server, ingest) owns one `DispatchTable`, keyed by `MessageType`. The table does no I/O: the caller
opens a message with its `SecureLink`, asks the table for the handler (`handler_for`) and calls it in
its own style (a sync handler returning replies, an async one returning a reply tuple, a batch).
A message whose type has no handler is counted, reported to `on_unknown` (an alarm) and answered
with the one ``ERROR`` shape (`ErrorBody`: error, type, seq), unless it is itself an ``ERROR``.
A handler's exception is answered the same way by `failed`. Logs name the message type, seq and
error class, never payloads or key material.

`serve` is the thin loop of a blocking `SecureChannel` server around a table whose handlers return
one reply `Message` or None (the bench's echo peer and the tests use it).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from node.classical.envelope import Message
from node.classical.errors import (
    ChannelTimeout,
    ClassicalChannelError,
    UnknownMessageType,
)
from node.classical.messages import ErrorBody, MessageType

__all__ = ["DispatchTable", "Handler", "serve"]

log = logging.getLogger(__name__)

H = TypeVar("H", bound=Callable[..., Any])
Handler = Callable[[Message], Message | None]
"""A server handler: the reply to a message, or None for none."""


class DispatchTable(Generic[H]):
    """Maps each `MessageType` a server handles to its handler; answers the rest with ``ERROR``."""

    def __init__(
        self,
        handlers: Mapping[MessageType, H],
        *,
        name: str,
        on_unknown: Callable[[Message], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """`handlers`: type -> callable (keys must be `MessageType`s); `name` labels logs; `on_unknown`
        is called with each authentic message of an unhandled type (e.g. to raise an alarm)."""
        for t, h in handlers.items():
            if not isinstance(t, MessageType):
                raise TypeError(f"dispatch table {name}: key {t!r} is not a MessageType")
            if not callable(h):
                raise TypeError(f"dispatch table {name}: handler for {t} must be callable, got {type(h).__name__}")
        self._handlers: dict[str, H] = {str(t): h for t, h in handlers.items()}
        self.name = name
        self.on_unknown = on_unknown
        self.log = logger or log
        self.counts: Counter[str] = Counter()
        """Events by name: handled, unknown_type, handler_error."""

    @property
    def types(self) -> frozenset[str]:
        """The message types this table handles."""
        return frozenset(self._handlers)

    def replace(self, msg_type: MessageType, handler: H) -> H:
        """Route `msg_type`, which the table handles already, to `handler`; returns the old handler
        (fault injection in tests: the set of types never changes after the table is built)."""
        old = self._handlers.get(msg_type)
        if old is None:
            raise ValueError(f"dispatch table {self.name} does not handle {msg_type!r}")
        if not callable(handler):
            raise TypeError(f"dispatch table {self.name}: handler for {msg_type} must be callable")
        self._handlers[msg_type] = handler
        return old

    def handler_for(self, message: Message) -> H:
        """The handler of `message`'s type; `UnknownMessageType` (counted, logged, reported) if none."""
        handler = self._handlers.get(message.type)
        if handler is None:
            self.counts["unknown_type"] += 1
            self.log.warning(
                "%s: no handler for message type %s (seq %s)", self.name, str(message.type)[:64], message.seq
            )
            if self.on_unknown is not None:
                self.on_unknown(message)
            raise UnknownMessageType(f"{self.name} does not handle message type {str(message.type)[:64]}")
        self.counts["handled"] += 1
        return handler

    def failed(self, message: Message, exc: BaseException) -> Message | None:
        """The ``ERROR`` answer to `message` whose handling raised `exc` (None: never answer an ``ERROR``)."""
        if not isinstance(exc, UnknownMessageType):
            self.counts["handler_error"] += 1
        return error_reply(message, str(exc) or type(exc).__name__)


def error_reply(message: Message, error: str) -> Message | None:
    """The one ``ERROR`` message answering `message` with reason `error`; None if `message` is itself
    an ``ERROR`` (errors are never answered with errors)."""
    if message.type == MessageType.ERROR:
        return None
    return ErrorBody.answering(message, error).message()


def serve(
    table: DispatchTable[Handler],
    channel: Any,
    stop: threading.Event,
    *,
    poll_s: float = 0.1,
    send_timeout_s: float = 5.0,
) -> None:
    """Receive, dispatch and answer messages on a `SecureChannel` until `stop` is set; bad input is
    logged and counted in `table.counts` and never stops the loop. The calling thread owns the channel."""
    while not stop.is_set():
        try:
            message = channel.recv(timeout=poll_s)
        except ChannelTimeout:
            continue
        except ClassicalChannelError as exc:  # rejected frames are never answered: Eve learns nothing
            table.counts[type(exc).__name__] += 1
            table.log.warning("%s: rejected message: %s: %s", table.name, type(exc).__name__, exc)
            continue
        except Exception:  # a decoder bug must not end the daemon's loop either
            table.counts["internal_error"] += 1
            table.log.exception("%s: unexpected error while opening a message", table.name)
            continue
        try:
            reply = table.handler_for(message)(message)
            if reply is not None and not isinstance(reply, Message):
                raise TypeError(f"handler for {message.type} returned {type(reply).__name__}, not a Message or None")
        except Exception as exc:  # noqa: BLE001 - this message fails, the loop lives
            if not isinstance(exc, UnknownMessageType):
                table.log.error(
                    "%s: handler for %s (seq %s) raised %s", table.name, message.type, message.seq, type(exc).__name__
                )
            reply = table.failed(message, exc)
        if reply is None:
            continue
        if reply.re is None:
            reply.re = message.seq
        try:
            channel.send(reply, timeout=send_timeout_s)
            table.counts["replied"] += 1
        except (ClassicalChannelError, ValueError) as exc:
            table.counts["reply_failed"] += 1
            table.log.error(
                "%s: could not send %s answering seq %s: %s: %s",
                table.name,
                reply.type,
                message.seq,
                type(exc).__name__,
                exc,
            )
