"""The asyncio ZeroMQ end of the classical channel: one ROUTER socket serving many authenticated flows.

The key manager's peer server and its ingest endpoint both bind a ROUTER that many peers connect to,
each under its own identity and with its own flow (a link that seals and opens, e.g.
`node.keymanager.wire.PersistentLink`). `AsyncRouter` owns that socket: `recv` returns the next
authentic message with its sender, and counts, logs and reports (to `on_reject`, an alarm) every
frame it drops: too few frames, an unknown identity, a bad MAC, a replay, a malformed envelope.
Dropped frames are never answered, so a forger learns nothing. `open` is the same check without
the socket (sans-IO), for callers and tests that already hold the frames.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import zmq
import zmq.asyncio

from node.classical.envelope import Message
from node.classical.errors import ClassicalChannelError

__all__ = ["AsyncRouter", "Flow", "Received"]

log = logging.getLogger(__name__)


class Flow(Protocol):
    """One peer's authenticated flow: what `AsyncRouter` needs of it."""

    def seal(self, message: Message) -> list[Any]: ...

    def open(self, frames: Sequence[Any]) -> Message: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Received:
    """An authentic message and who sent it (ZeroMQ identity, its name, the flow that opened it)."""

    ident: bytes
    peer: str
    flow: Flow
    message: Message


class AsyncRouter:
    """A bound ROUTER socket whose peers each have one authenticated `Flow`, keyed by identity."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        bind: str,
        flows: Mapping[str, Flow],
        *,
        name: str,
        max_message_bytes: int,
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        """Bind `bind`; `flows`: peer identity -> flow; `on_reject(peer, why)` hears of each message of a
        known peer that failed authentication or decoding."""
        self.flows = dict(flows)
        self.name = name
        self.on_reject = on_reject
        self.rejected = 0
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)  # a larger message drops the connection
        self.sock.bind(bind)
        self.endpoint: str = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._send_lock = asyncio.Lock()

    def open(self, frames: Sequence[Any]) -> Received | None:
        """The authentic message in `frames` (identity first) with its sender, or None if dropped."""
        if len(frames) < 2:
            self.rejected += 1
            return None
        ident = bytes(frames[0])
        peer = ident.decode("utf-8", "replace")
        flow = self.flows.get(peer)
        if flow is None:
            self.rejected += 1
            log.error("%s: dropped a message from unknown identity %r", self.name, peer[:40])
            return None
        try:
            return Received(ident, peer, flow, flow.open(frames[1:]))
        except ClassicalChannelError as exc:
            self.rejected += 1
            log.error("%s: dropped a message from %s: %s", self.name, peer[:40], exc)
            if self.on_reject is not None:
                self.on_reject(peer, f"{type(exc).__name__}: {exc}")
            return None

    async def recv(self) -> Received | None:
        """Wait for the next message; None if it was dropped (see `open`)."""
        return self.open(await self.sock.recv_multipart(copy=True))

    def recv_nowait(self) -> Received | None:
        """The next message if one is queued; `zmq.Again` if none; None if it was dropped."""
        return self.open(self.sock.recv_multipart(flags=zmq.NOBLOCK).result())  # type: ignore[attr-defined]

    async def send(self, to: Received, message: Message) -> None:
        """Seal `message` on the flow of `to`'s sender and send it to that peer (answers name `re`)."""
        async with self._send_lock:
            await self.sock.send_multipart([to.ident, *to.flow.seal(message)])

    def close(self) -> None:
        """Close every flow (persisting its counters) and the socket."""
        for flow in self.flows.values():
            flow.close()
        self.sock.close(0)
