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
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from node.classical import ClassicalChannelError, Message, UnknownMessageType
from node.classical.aio import AsyncRouter, Received
from node.classical.dispatch import DispatchTable
from node.classical.messages import (
    MAX_BLOCK_ID,
    MAX_KEY_BLOCK_BYTES,
    BodyError,
    KeyBlockAck,
    KeyBlockHeader,
    KeyBlockNack,
    KeyBlockReply,
    MessageType,
    decode_key_block_reply,
)
from node.keymanager.store import KeyBlock
from node.keymanager.wire import LinkState, PersistentLink

log = logging.getLogger(__name__)

BATCH_MESSAGES = 64


def parse_key_block(msg: Message, pool_of_link: Callable[[str], str | None]) -> KeyBlock:
    """Validate a `KEY_BLOCK` message (`KeyBlockHeader.decode`) and find its pool; `ValueError`
    (a `BodyError` for the header) naming the field and what is allowed."""
    header, key = KeyBlockHeader.decode(msg)
    pool = pool_of_link(header.link_id)
    if pool is None:
        raise ValueError(f"KEY_BLOCK link_id {header.link_id!r} is not configured under any peer's links")
    return KeyBlock(header.link_id, header.block_id, pool, header.length_bits, key, header.qber, header.params or {})


class IngestServer:
    """The ROUTER endpoint the QKD modules send their key blocks to."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        bind: str,
        sources: dict[str, bytes],
        state: LinkState,
        pool_of_link: Callable[[str], str | None],
        commit: Callable[[list[KeyBlock]], Awaitable[list[str]]],
        on_stored: Callable[[], None] | None = None,
        on_unknown: Callable[[Message], None] | None = None,
    ) -> None:
        self.pool_of_link = pool_of_link
        self.commit = commit
        self.on_stored = on_stored
        self.table = DispatchTable({MessageType.KEY_BLOCK: self._key_block}, name="ingest", on_unknown=on_unknown)
        self.links = {s: PersistentLink(secret, False, state, f"ingest:{s}") for s, secret in sources.items()}
        self.router = AsyncRouter(
            ctx, bind, self.links, name="ingest", max_message_bytes=MAX_KEY_BLOCK_BYTES + (1 << 20)
        )
        self.endpoint = self.router.endpoint
        self.stored_blocks = 0
        self.stored_bits = 0
        self._task: asyncio.Task[None] | None = None
        self._refused = 0

    @property
    def rejected(self) -> int:
        """Messages dropped (forged, replayed, malformed, unknown source) or refused (bad block, wrong type)."""
        return self.router.rejected + self._refused

    async def start(self) -> None:
        """Start serving."""
        self._task = asyncio.create_task(self._serve())

    async def close(self) -> None:
        """Stop serving and persist counters."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.router.close()

    async def _serve(self) -> None:
        while True:
            batch = [await self.router.recv()]
            while len(batch) < BATCH_MESSAGES:
                try:
                    batch.append(self.router.recv_nowait())
                except zmq.Again:
                    break
            await self._handle([got for got in batch if got is not None])

    def _key_block(self, msg: Message) -> KeyBlock:
        """The handler of `KEY_BLOCK`: the validated block (`ValueError` refuses it)."""
        return parse_key_block(msg, self.pool_of_link)

    async def _handle(self, batch: list[Received]) -> None:
        good: list[tuple[Received, KeyBlock]] = []
        replies: list[tuple[Received, Message]] = []
        for got in batch:
            msg = got.message
            try:
                good.append((got, self.table.handler_for(msg)(msg)))
            except UnknownMessageType as exc:
                self._refused += 1
                error = self.table.failed(msg, exc)
                if error is not None:
                    replies.append((got, error))
            except ValueError as exc:
                self._refused += 1
                log.error("ingest: refused a message: %s", exc)
                block_id = msg.header.get("block_id")
                nack = KeyBlockNack(
                    str(msg.header.get("link_id")),
                    block_id if type(block_id) is int and 0 <= block_id < MAX_BLOCK_ID else None,
                    str(exc),
                ).message()
                nack.re = msg.seq
                replies.append((got, nack))
        if good:
            try:
                outcomes = await self.commit([b for _, b in good])
            except Exception as exc:  # noqa: BLE001 - the store failed: nothing of this batch is acknowledged
                log.error("ingest: commit failed: %s", exc)
                outcomes = [f"store error: {type(exc).__name__}"] * len(good)
            for (got, b), outcome in zip(good, outcomes):
                if outcome in KeyBlockAck.STATUSES:
                    if outcome == "stored":
                        self.stored_blocks += 1
                        self.stored_bits += b.length_bits
                    reply = KeyBlockAck(b.link_id, b.block_id, outcome).message()
                else:
                    reply = KeyBlockNack(b.link_id, b.block_id, outcome).message()
                reply.re = got.message.seq
                replies.append((got, reply))
            if self.on_stored is not None:
                self.on_stored()
        for got, reply in replies:
            await self.router.send(got, reply)


class KeyBlockSender:
    """A QKD module's side of ingest (blocking): sends a block and waits for the KM's acknowledgement."""

    def __init__(
        self, endpoint: str, source_id: str, secret: bytes, state_path: str | Path, ctx: zmq.Context | None = None
    ) -> None:
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

    def send_blocks(
        self, link_id: str, blocks: Sequence[tuple[int, bytes]], window: int = 16, timeout_s: float = 10.0
    ) -> dict[int, KeyBlockReply]:
        """Send (block ID, key) pairs with up to `window` unacknowledged at once; typed replies by block ID.

        Blocks without a reply within `timeout_s` of the last progress are missing from the result:
        the caller re-sends them.
        """
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        assert self.sock is not None
        replies: dict[int, KeyBlockReply] = {}
        waiting: dict[int, tuple[str, int]] = {}  # seq of the KEY_BLOCK -> its link and block ID
        todo = list(blocks)
        deadline = time.monotonic() + timeout_s
        while todo or waiting:
            while todo and len(waiting) < window:
                block_id, key = todo.pop(0)
                waiting[self._send(KeyBlockHeader(link_id, block_id, 8 * len(key)), key)] = (link_id, block_id)
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                self._connect()
                return replies
            reply = self._recv_reply(waiting)
            if reply is not None:
                replies[reply.block_id] = reply  # type: ignore[index]
                deadline = time.monotonic() + timeout_s
        return replies

    def send_block(
        self,
        link_id: str,
        block_id: int,
        key: bytes,
        length_bits: int | None = None,
        qber: float | None = None,
        params: dict[str, Any] | None = None,
        timeout_s: float = 2.0,
    ) -> KeyBlockReply:
        """Send one block; returns the KM's typed `KeyBlockAck` or `KeyBlockNack` for exactly this
        block, or raises `TimeoutError` (re-send it later)."""
        header = KeyBlockHeader(link_id, block_id, 8 * len(key) if length_bits is None else length_bits, qber, params)
        waiting = {self._send(header, key): (link_id, block_id)}
        deadline = time.monotonic() + timeout_s
        assert self.sock is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                self._connect()  # drop whatever is queued for a dead peer
                raise TimeoutError(f"no acknowledgement for block {link_id}/{block_id}")
            reply = self._recv_reply(waiting)
            if reply is not None:
                return reply

    def _send(self, header: KeyBlockHeader, key: bytes) -> int:
        """Seal and send one `KEY_BLOCK`; returns its seq (which the KM's answer names in `re`)."""
        assert self.sock is not None
        msg = header.message(key)
        self.sock.send_multipart(self.link.seal(msg))
        assert msg.seq is not None
        return msg.seq

    def _recv_reply(self, waiting: dict[int, tuple[str, int]]) -> KeyBlockReply | None:
        """Receive one answer and return it if it answers a block in `waiting` (seq -> link and block ID),
        removing that block; anything else (forged, stale, malformed) is logged and dropped."""
        assert self.sock is not None
        try:
            msg = self.link.open(self.sock.recv_multipart())
        except ClassicalChannelError as exc:
            log.error("ingest sender: dropped a reply: %s", exc)
            return None
        seq = msg.re if msg.re is not None else self._seq_of_block(msg, waiting)
        sent = waiting.get(seq) if seq is not None else None
        if sent is None:
            log.warning("ingest sender: dropped a %s answering no block in flight", str(msg.type)[:64])
            return None
        try:
            reply = decode_key_block_reply(msg)
        except BodyError as exc:  # an ERROR, or an answer that breaks the schema: a refusal with its reason
            reply = KeyBlockNack(sent[0], sent[1], str(exc))
        else:
            if not reply.answers(*sent):
                log.error(
                    "ingest sender: the answer to block %s/%s names block %s/%s; dropped",
                    *sent,
                    reply.link_id[:40],
                    reply.block_id,
                )
                return None
        del waiting[seq]  # type: ignore[arg-type]
        return reply

    @staticmethod
    def _seq_of_block(msg: Message, waiting: dict[int, tuple[str, int]]) -> int | None:
        """The seq of the block in flight that an answer without `re` names by link and block ID: a key
        manager older than the `re` matching answers that way (still authenticated, still typed)."""
        named = (msg.header.get("link_id"), msg.header.get("block_id"))
        return next((seq for seq, sent in waiting.items() if sent == named), None)
