"""Ingest of `KEY_BLOCK` messages from the local QKD modules, acknowledged only after a durable commit.

Wire (over the authenticated envelope of `node.classical`, one flow per source, the source the
initiator): `KEY_BLOCK` with header `{link_id, block_id, length_bits, qber, params}` and one payload
frame, the key bytes (bit i of the key at byte i >> 3, bit i & 7, as `numpy.packbits(...,
bitorder="little")` writes it). The KM answers `KEY_BLOCK_ACK {link_id, block_id, status}` (status
"stored" or "duplicate") once the block is durable, or `KEY_BLOCK_NACK {link_id, block_id, error}`;
a source re-sends a block until it is acknowledged, and a re-sent block is stored once. Frames that
fail authentication or parsing are logged and counted; the loop lives on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from node.classical import ClassicalChannelError, Message
from node.keymanager.store import KeyBlock
from node.keymanager.wire import LinkState, PersistentLink

log = logging.getLogger(__name__)

HEADER_FIELDS = {"link_id", "block_id", "length_bits", "qber", "params"}
MAX_BLOCK_BYTES = 32 << 20
BATCH_MESSAGES = 64


def parse_key_block(msg: Message, pool_of_link: Callable[[str], str | None]) -> KeyBlock:
    """Validate a `KEY_BLOCK` message; `ValueError` naming the field and what is allowed."""
    if msg.type != "KEY_BLOCK":
        raise ValueError(f"message type must be KEY_BLOCK, got {msg.type}")
    h = msg.header
    unknown = sorted(set(h) - HEADER_FIELDS)
    if unknown:
        raise ValueError(f"KEY_BLOCK header field {unknown[0]!r} is unknown; allowed: {sorted(HEADER_FIELDS)}")
    link_id = h.get("link_id")
    if not isinstance(link_id, str) or not 0 < len(link_id) <= 128:
        raise ValueError("KEY_BLOCK link_id must be a string of 1 to 128 characters")
    block_id = h.get("block_id")
    if type(block_id) is not int or not 0 <= block_id < 1 << 62:
        raise ValueError("KEY_BLOCK block_id must be an integer in [0, 2^62)")
    if len(msg.frames) != 1 or not isinstance(msg.frames[0], bytes):
        raise ValueError("KEY_BLOCK must carry exactly one payload frame of raw bytes (the key)")
    key = msg.frames[0]
    if not 0 < len(key) <= MAX_BLOCK_BYTES:
        raise ValueError(f"KEY_BLOCK key must hold 1 to {MAX_BLOCK_BYTES} bytes, got {len(key)}")
    length_bits = h.get("length_bits")
    if type(length_bits) is not int or math.ceil(length_bits / 8) != len(key) or length_bits <= 0:
        raise ValueError("KEY_BLOCK length_bits must be a positive integer with ceil(length_bits / 8) == len(key)")
    qber = h.get("qber")
    if qber is not None and (type(qber) not in (int, float) or not 0.0 <= qber <= 0.5):
        raise ValueError("KEY_BLOCK qber must be null or a number in [0, 0.5]")
    params = h.get("params", {})
    if not isinstance(params, dict):
        raise ValueError("KEY_BLOCK params must be a JSON object")
    pool = pool_of_link(link_id)
    if pool is None:
        raise ValueError(f"KEY_BLOCK link_id {link_id!r} is not configured under any peer's links")
    return KeyBlock(link_id, block_id, pool, length_bits, key, None if qber is None else float(qber), params)


class IngestServer:
    """The ROUTER endpoint the QKD modules send their key blocks to."""

    def __init__(self, ctx: zmq.asyncio.Context, bind: str, sources: dict[str, bytes], state: LinkState,
                 pool_of_link: Callable[[str], str | None],
                 commit: Callable[[list[KeyBlock]], Awaitable[list[str]]],
                 on_stored: Callable[[], None] | None = None) -> None:
        self.links = {s: PersistentLink(secret, False, state, f"ingest:{s}") for s, secret in sources.items()}
        self.pool_of_link = pool_of_link
        self.commit = commit
        self.on_stored = on_stored
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_BLOCK_BYTES + (1 << 20))
        self.sock.bind(bind)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.rejected = 0
        self.stored_blocks = 0
        self.stored_bits = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving."""
        self._task = asyncio.create_task(self._serve())

    async def close(self) -> None:
        """Stop serving and persist counters."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for link in self.links.values():
            link.close()
        self.sock.close(0)

    def _decode(self, frames: list[bytes]) -> tuple[bytes, PersistentLink, Message] | None:
        if len(frames) < 2:
            self.rejected += 1
            return None
        ident = bytes(frames[0])
        link = self.links.get(ident.decode("utf-8", "replace"))
        if link is None:
            self.rejected += 1
            log.error("ingest: dropped a message from unknown source %r", ident[:40])
            return None
        try:
            return ident, link, link.open(frames[1:])
        except ClassicalChannelError as exc:
            self.rejected += 1
            log.error("ingest: dropped a message from %s: %s", ident[:40], exc)
            return None

    async def _serve(self) -> None:
        while True:
            batch = [await self.sock.recv_multipart()]
            while len(batch) < BATCH_MESSAGES:
                try:
                    batch.append(self.sock.recv_multipart(flags=zmq.NOBLOCK).result())  # type: ignore[attr-defined]
                except zmq.Again:
                    break
            await self._handle(batch)

    async def _handle(self, batch: list[list[bytes]]) -> None:
        good: list[tuple[bytes, PersistentLink, KeyBlock]] = []
        replies: list[tuple[bytes, PersistentLink, Message]] = []
        for frames in batch:
            decoded = self._decode(frames)
            if decoded is None:
                continue
            ident, link, msg = decoded
            try:
                good.append((ident, link, parse_key_block(msg, self.pool_of_link)))
            except ValueError as exc:
                self.rejected += 1
                log.error("ingest: refused a message: %s", exc)
                replies.append((ident, link, Message("KEY_BLOCK_NACK", {
                    "link_id": str(msg.header.get("link_id"))[:128], "block_id": msg.header.get("block_id")
                    if type(msg.header.get("block_id")) is int else None, "error": str(exc)})))
        if good:
            try:
                outcomes = await self.commit([b for _, _, b in good])
            except Exception as exc:  # noqa: BLE001 - the store failed: nothing of this batch is acknowledged
                log.error("ingest: commit failed: %s", exc)
                outcomes = [f"store error: {type(exc).__name__}"] * len(good)
            for (ident, link, b), outcome in zip(good, outcomes):
                if outcome in ("stored", "duplicate"):
                    if outcome == "stored":
                        self.stored_blocks += 1
                        self.stored_bits += b.length_bits
                    replies.append((ident, link, Message("KEY_BLOCK_ACK", {
                        "link_id": b.link_id, "block_id": b.block_id, "status": outcome})))
                else:
                    replies.append((ident, link, Message("KEY_BLOCK_NACK", {
                        "link_id": b.link_id, "block_id": b.block_id, "error": outcome})))
            if self.on_stored is not None:
                self.on_stored()
        for ident, link, reply in replies:
            await self.sock.send_multipart([ident, *link.seal(reply)])


class KeyBlockSender:
    """A QKD module's side of ingest (blocking): sends a block and waits for the KM's acknowledgement."""

    def __init__(self, endpoint: str, source_id: str, secret: bytes, state_path: str | Path,
                 ctx: zmq.Context | None = None) -> None:
        self.ctx = ctx or zmq.Context.instance()
        self.endpoint, self.source_id = endpoint, source_id
        self.state = LinkState(str(state_path))
        self.link = PersistentLink(secret, True, self.state, f"ingest:{source_id}")
        self.sock: zmq.Socket | None = None
        self._connect()

    def _connect(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, self.source_id.encode())
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)

    def close(self) -> None:
        """Persist counters and close the socket."""
        self.link.close()
        if self.sock is not None:
            self.sock.close(0)

    def send_blocks(self, link_id: str, blocks: Sequence[tuple[int, bytes]], window: int = 16,
                    timeout_s: float = 10.0) -> dict[int, dict[str, Any]]:
        """Send (block ID, key) pairs with up to `window` unacknowledged at once; replies by block ID.

        Blocks without a reply within `timeout_s` of the last progress are missing from the result:
        the caller re-sends them.
        """
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        assert self.sock is not None
        replies: dict[int, dict[str, Any]] = {}
        waiting: set[int] = set()
        todo = list(blocks)
        deadline = time.monotonic() + timeout_s
        while todo or waiting:
            while todo and len(waiting) < window:
                block_id, key = todo.pop(0)
                header = {"link_id": link_id, "block_id": block_id, "length_bits": 8 * len(key),
                          "qber": None, "params": {}}
                self.sock.send_multipart(self.link.seal(Message("KEY_BLOCK", header, [key])))
                waiting.add(block_id)
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                self._connect()
                return replies
            try:
                msg = self.link.open(self.sock.recv_multipart())
            except ClassicalChannelError as exc:
                log.error("ingest sender: dropped a reply: %s", exc)
                continue
            got = msg.header.get("block_id")
            if msg.header.get("link_id") == link_id and got in waiting:
                waiting.discard(got)
                replies[got] = {"type": msg.type, **msg.header}
                deadline = time.monotonic() + timeout_s
        return replies

    def send_block(self, link_id: str, block_id: int, key: bytes, length_bits: int | None = None,
                   qber: float | None = None, params: dict[str, Any] | None = None,
                   timeout_s: float = 2.0) -> dict[str, Any]:
        """Send one block; returns the ACK/NACK header, or raises `TimeoutError` (re-send it later)."""
        header = {"link_id": link_id, "block_id": block_id,
                  "length_bits": 8 * len(key) if length_bits is None else length_bits,
                  "qber": qber, "params": params or {}}
        assert self.sock is not None
        self.sock.send_multipart(self.link.seal(Message("KEY_BLOCK", header, [key])))
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                self._connect()  # drop whatever is queued for a dead peer
                raise TimeoutError(f"no acknowledgement for block {link_id}/{block_id}")
            try:
                msg = self.link.open(self.sock.recv_multipart())
            except ClassicalChannelError as exc:
                log.error("ingest sender: dropped a reply: %s", exc)
                continue
            if msg.header.get("link_id") == link_id and msg.header.get("block_id") == block_id:
                return {"type": msg.type, **msg.header}
