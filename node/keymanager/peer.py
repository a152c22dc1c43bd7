"""KM <-> KM link over ZeroMQ, every message authenticated (DESIGN §5); key IDs and positions only.

Each KM binds one ROUTER for its peers' requests and connects one DEALER to each peer. A request
carries a random `req` tag that its reply repeats. Message types:

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
- any failure -> `ERROR {message}`.
Lists travel as one JSON payload frame ([...] above), headers hold only small fields.
- `LINK_STATE [lsdb]` -> `LINK_STATE_ACK`, `RELAY_FORWARD [relay, ciphertext]` -> `RELAY_STORED
  {path}`: link-state gossip and trusted-node key relay (see `relay`);
Unknown types, bad MACs, replays and malformed frames are logged, reported to `on_reject` (an
alarm) and dropped; the loop lives on.

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
import os
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio

from node.classical import ClassicalChannelError, Message
from node.keymanager.errors import PeerError
from node.keymanager.wire import LinkState, PersistentLink, flow_secret

log = logging.getLogger(__name__)

Handler = Callable[[str, Message], Awaitable[tuple[str, dict[str, Any], bytes | None]]]


def flow_of(requester: str, responder: str) -> int:
    """Which half of the pair's secret authenticates `requester`'s requests and their replies."""
    return 0 if requester < responder else 1


class PeerClient:
    """Requests from this KM to one peer KM over a DEALER socket (one in-order flow)."""

    def __init__(self, ctx: zmq.asyncio.Context, kme_id: str, peer_id: str, endpoint: str, secret: bytes,
                 state: LinkState, timeout_s: float) -> None:
        self.kme_id, self.peer_id, self.endpoint, self.timeout_s = kme_id, peer_id, endpoint, timeout_s
        self.link = PersistentLink(flow_secret(secret, flow_of(kme_id, peer_id)), True, state, f"{peer_id}:out")
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, kme_id.encode())
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 50)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        self._pending: dict[str, asyncio.Future[Message]] = {}
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

    async def request(self, msg_type: str, header: dict[str, Any], timeout_s: float | None = None,
                      payload: bytes | list[bytes] | None = None) -> Message:
        """Send one request and wait for its reply; `PeerError` on timeout or an `ERROR` reply.
        `payload`: one frame, or a list of frames."""
        req = os.urandom(8).hex()
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[req] = fut
        try:
            async with asyncio.timeout(timeout_s or self.timeout_s):
                async with self._send_lock:
                    body = [] if payload is None else list(payload) if isinstance(payload, list) else [payload]
                    frames = self.link.seal(Message(msg_type, {**header, "req": req}, body))
                    await self.sock.send_multipart(frames)
                reply = await fut
        except TimeoutError:
            raise PeerError(f"peer KM {self.peer_id} did not answer {msg_type} in time") from None
        finally:
            self._pending.pop(req, None)
        if reply.type == "ERROR":
            raise PeerError(f"peer KM {self.peer_id} refused {msg_type}: {reply.header.get('message')}")
        return reply

    async def _read_replies(self) -> None:
        while True:
            frames = await self.sock.recv_multipart(copy=True)
            try:
                msg = self.link.open(frames)
            except ClassicalChannelError as exc:
                log.error("dropped a reply from peer KM %s: %s", self.peer_id, exc)
                continue
            fut = self._pending.get(str(msg.header.get("req")))
            if fut is not None and not fut.done():
                fut.set_result(msg)


class PeerServer:
    """Answers the peers' requests on one ROUTER socket, with a table of handlers per message type."""

    def __init__(self, ctx: zmq.asyncio.Context, kme_id: str, bind: str, peers: dict[str, bytes],
                 state: LinkState, handlers: dict[str, Handler],
                 on_reject: Callable[[str, str], None] | None = None) -> None:
        self.kme_id = kme_id
        self.on_reject = on_reject or (lambda peer, why: None)
        self.handlers = handlers
        self.links = {p: PersistentLink(flow_secret(s, flow_of(p, kme_id)), False, state, f"{p}:in")
                      for p, s in peers.items()}
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 64 << 20)
        self.sock.bind(bind)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._send_lock = asyncio.Lock()
        self._loop: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.rejected = 0

    async def start(self) -> None:
        """Start serving."""
        self._loop = asyncio.create_task(self._serve())

    async def close(self) -> None:
        """Stop serving and persist counters."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, *self._tasks, return_exceptions=True)
        for link in self.links.values():
            link.close()
        self.sock.close(0)

    async def _serve(self) -> None:
        while True:
            frames = await self.sock.recv_multipart(copy=True)
            if len(frames) < 2:
                self.rejected += 1
                continue
            ident, body = bytes(frames[0]), frames[1:]
            peer = ident.decode("utf-8", "replace")
            link = self.links.get(peer)
            if link is None:
                self.rejected += 1
                log.error("dropped a message from unknown peer identity %r", peer[:40])
                continue
            try:
                msg = link.open(body)
            except ClassicalChannelError as exc:
                self.rejected += 1
                log.error("dropped a message from peer KM %s: %s", peer, exc)
                self.on_reject(peer, f"{type(exc).__name__}: {exc}")
                continue
            task = asyncio.create_task(self._answer(ident, peer, link, msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, ident: bytes, peer: str, link: PersistentLink, msg: Message) -> None:
        req = msg.header.get("req")
        handler = self.handlers.get(msg.type)
        try:
            if handler is None:
                raise ValueError(f"unknown message type {msg.type}")
            if not isinstance(req, str) or len(req) > 64:
                raise ValueError("request lacks a valid 'req' tag")
            reply_type, header, payload = await handler(peer, msg)
        except Exception as exc:  # noqa: BLE001 - a handler's failure answers this request only
            log.error("request %s from peer KM %s failed: %s", msg.type, peer, exc)
            reply_type, header, payload = "ERROR", {"message": str(exc)[:500]}, None
        async with self._send_lock:
            frames = link.seal(Message(reply_type, {**header, "req": req if isinstance(req, str) else ""},
                                       [] if payload is None else [payload]))
            await self.sock.send_multipart([ident, *frames])
