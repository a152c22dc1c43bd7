"""KM <-> KM link over ZeroMQ, every message authenticated (DESIGN §5); key IDs and positions only.

Each KM binds one ROUTER for its peers' requests and connects one DEALER to each peer. A reply names
the seq of the request it answers in the envelope's `re` (seqs never repeat on a flow, restarts
included). Message types (`node.classical.messages.MessageType`):

- `BLOCKS_HAVE [blocks]` -> `BLOCKS_HELD [blocks]`: which key blocks both KMs hold (only those
  serve keys, so a slave can always fetch what its master got);
- `KEY_ALLOC {allocations, retired}` -> `KEY_ALLOC_ACK {}`: the owner of a stripe tells the peer
  which bits carry which key IDs; the peer acks after its durable commit, before the master SAE
  gets its answer;
- `RECONCILE [keys: [[key_ID, state], ...]]` -> `RECONCILE_REPORT {unknown, voided} [unknown IDs]`: periodic
  comparison of delivered/void key IDs (never key bits);
- `KEY_QUERY [key IDs]` -> `KEY_STATES [states]`: the slave side asks the owner about keys bound
  long ago and never fetched; those the owner voided or never recorded are voided;
- `AUTH_REFILL {n} [allocations]` -> `AUTH_REFILL_ACK {n}`: the requester of a flow tops up the
  flow's authentication key with whole chunks of its stripe (both ends append the same bytes, in
  order n, and rebuild the flow from the bootstrap secret and refills 0..n at start);
- any failure, an unknown type included -> `ERROR {error, type, seq}` (`ErrorBody`, the one shape).
Lists travel as one JSON payload frame ([...] above), headers hold only small fields.
- `LINK_STATE [lsdb]` -> `LINK_STATE_ACK`, `RELAY_FORWARD [relay, ciphertext]` -> `RELAY_STORED
  {path}`: link-state gossip and trusted-node key relay (see `relay`);
Bad MACs, replays and malformed frames are logged, reported to `on_reject` (an alarm) and dropped;
unknown types are reported the same way and answered with ERROR; the loop lives on. The handlers
sit in one `DispatchTable`, built once.

Authentication stays one Wegman–Carter tag per message here, unlike the node link's one tag per block
transcript (`node.classical.transcript`): every request above is acted on when it arrives (key IDs
bound or voided, a relayed key stored, a flow refilled) and answered at once, so there is no later
point, before the effect, at which a transcript tag could be checked. The cost is 128 mask bits per
message, paid from the KM pool's own key, a few messages per served key rather than hundreds per
distilled block.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio

from node.classical import ClassicalChannelError, Message, UnknownMessageType
from node.classical.aio import AsyncRouter, Received
from node.classical.dispatch import DispatchTable
from node.classical.envelope import Payload
from node.classical.messages import ErrorBody, MessageType
from node.keymanager.errors import PeerError
from node.keymanager.wire import LinkState, PersistentLink, flow_secret

log = logging.getLogger(__name__)

Handler = Callable[[str, Message], Awaitable[tuple[str, dict[str, Any], bytes | None]]]


def flow_of(requester: str, responder: str) -> int:
    """Which half of the pair's secret authenticates `requester`'s requests and their replies."""
    return 0 if requester < responder else 1


class PeerClient:
    """Requests from this KM to one peer KM over a DEALER socket (one in-order flow)."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        kme_id: str,
        peer_id: str,
        endpoint: str,
        secret: bytes,
        state: LinkState,
        timeout_s: float,
    ) -> None:
        self.kme_id, self.peer_id, self.endpoint, self.timeout_s = kme_id, peer_id, endpoint, timeout_s
        self.link = PersistentLink(flow_secret(secret, flow_of(kme_id, peer_id)), True, state, f"{peer_id}:out")
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, kme_id.encode())
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 50)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        self._pending: dict[int, asyncio.Future[Message]] = {}  # seq of a request -> its reply
        self._send_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and start reading replies."""
        self.sock.connect(self.endpoint)
        self._reader = asyncio.create_task(self._read_replies())

    async def close(self) -> None:
        """Stop reading, fail pending requests, persist counters, close the socket."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(PeerError("link closed"))
        self.link.close()
        self.sock.close(0)

    async def request(
        self,
        msg_type: MessageType,
        header: dict[str, Any],
        timeout_s: float | None = None,
        payload: bytes | list[bytes] | None = None,
    ) -> Message:
        """Send one request and wait for its reply; `PeerError` on timeout or an `ERROR` reply.
        `payload`: one frame, or a list of frames."""
        body: list[Payload] = [] if payload is None else list(payload) if isinstance(payload, list) else [payload]
        msg = Message(MessageType(msg_type), header, body)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s or self.timeout_s):
                async with self._send_lock:
                    frames = self.link.seal(msg)
                    assert msg.seq is not None
                    self._pending[msg.seq] = fut
                    await self.sock.send_multipart(frames)
                reply = await fut
        except TimeoutError:
            raise PeerError(f"peer KM {self.peer_id} did not answer {msg_type} in time") from None
        finally:
            if msg.seq is not None:
                self._pending.pop(msg.seq, None)
        if reply.type == MessageType.ERROR:
            try:
                why = ErrorBody.decode(reply).error
            except ValueError as exc:
                why = f"malformed ERROR ({exc})"
            raise PeerError(f"peer KM {self.peer_id} refused {msg_type}: {why}")
        return reply

    async def _read_replies(self) -> None:
        while True:
            frames = await self.sock.recv_multipart(copy=True)
            try:
                msg = self.link.open(frames)
            except ClassicalChannelError as exc:
                log.error("dropped a reply from peer KM %s: %s", self.peer_id, exc)
                continue
            fut = self._pending.get(msg.re) if msg.re is not None else None
            if fut is not None and not fut.done():
                fut.set_result(msg)


class PeerServer:
    """Answers the peers' requests on one ROUTER socket, with one dispatch table of handlers per type."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        kme_id: str,
        bind: str,
        peers: dict[str, bytes],
        state: LinkState,
        handlers: dict[str, Handler],
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        self.kme_id = kme_id
        self.on_reject = on_reject or (lambda peer, why: None)
        self.table: DispatchTable[Handler] = DispatchTable(
            {MessageType(t): h for t, h in handlers.items()}, name=f"KM {kme_id} peer server", logger=log
        )
        self.links = {
            p: PersistentLink(flow_secret(s, flow_of(p, kme_id)), False, state, f"{p}:in") for p, s in peers.items()
        }
        self.router = AsyncRouter(
            ctx, bind, self.links, name=f"KM {kme_id} peer server", max_message_bytes=64 << 20, on_reject=self.on_reject
        )
        self.endpoint = self.router.endpoint
        self._loop: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def rejected(self) -> int:
        """Messages dropped (forged, replayed, malformed, unknown sender) or of a type not served."""
        return self.router.rejected + self.table.counts["unknown_type"]

    async def start(self) -> None:
        """Start serving."""
        self._loop = asyncio.create_task(self._serve())

    async def close(self) -> None:
        """Stop serving and persist counters."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, *self._tasks, return_exceptions=True)
        self.router.close()

    async def _serve(self) -> None:
        while True:
            got = await self.router.recv()
            if got is None:
                continue
            task = asyncio.create_task(self._answer(got))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, got: Received) -> None:
        msg, peer = got.message, got.peer
        reply: Message | None
        try:
            reply_type, header, payload = await self.table.handler_for(msg)(peer, msg)
            reply = Message(MessageType(reply_type), header, [] if payload is None else [payload], re=msg.seq)
        except Exception as exc:  # noqa: BLE001 - a handler's failure answers this request only
            if isinstance(exc, UnknownMessageType):
                self.on_reject(peer, str(exc))
            else:
                log.error("request %s from peer KM %s failed: %s", msg.type, peer, exc)
            reply = self.table.failed(msg, exc)
        if reply is not None:
            await self.router.send(got, reply)
