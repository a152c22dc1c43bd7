"""One link's authenticated channel shared by the key blocks in flight (Bob, `[link] workers` > 1).

A ZeroMQ socket belongs to one thread, so one I/O thread owns it. Senders seal their message on
their own thread and queue the frames under one lock, so frames leave in the order their seqs were
given (the peer refuses a seq below the last it accepted); the I/O thread sends them. It also opens
every received message and routes it by the block transcript it belongs to (`Message.transcript`,
bound by the MAC frame) to that block's queue, or to the session queue when it belongs to no block
(HELLO_ACK). A failed closing tag goes to its block's queue as the error; any other refused message
(its block unknown: the channel is out of step) fails every waiting receive, and the session
queue keeps it for the sift thread, which resynchronises with HELLO.
Threads talk through `BlockChannel` views that look like the `SecureChannel` the serial code uses.
Messages queued while the I/O thread was busy leave together as one bundle, and a bundle Alice
sends back is split and routed message by message (`SecureChannel.send_sealed` / `recv`);
`stats` counts messages and the ZeroMQ messages that carried them.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
import time
from typing import Any

import zmq

from node.classical import AuthenticationLocked, ChannelTimeout, ClassicalChannelError, Message
from node.classical.errors import TranscriptAuthenticationError

log = logging.getLogger(__name__)

POLL_S = 0.1
"""How often waits look at the stop event and the I/O thread at its close flag."""
LINGER_S = 0.0
"""Default of `BlockMux(linger_s=...)`: how long a flush may wait for blocks that were just handed a
message to queue their answer, so they share the bundle (0: send what is queued at once). The wait
depends only on when the blocks' answers are ready, which their send times show Eve anyway."""
SESSION = -1
"""The route of messages outside any block transcript (block ids are >= 0)."""


class _Failure:
    """An error routed to a queue: the receive that takes it raises it."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class BlockMux:
    """The I/O thread of one `SecureChannel` and the per-block queues of its received messages."""

    def __init__(
        self,
        secure: Any,
        stop: threading.Event | None = None,
        send_timeout_s: float = 10.0,
        linger_s: float | None = None,
    ) -> None:
        """Start the I/O thread of `secure`; `linger_s` (default `LINGER_S`): see `LINGER_S`."""
        self.secure = secure
        self.linger_s = LINGER_S if linger_s is None else linger_s
        self._expecting: set[int] = set()  # blocks handed a message that have not sent since
        self.link = secure.link
        self.stop = stop or threading.Event()
        self.send_timeout_s = send_timeout_s
        self.dropped = 0
        """Authentic messages for a block no longer in flight (late replies after its abort)."""
        self.rejected = 0
        """Messages refused by authentication or decoding."""
        self._seal_lock = threading.Lock()
        self._outgoing: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
        self._routes: dict[int, queue.SimpleQueue[Any]] = {SESSION: queue.SimpleQueue()}
        self._routes_lock = threading.Lock()
        self._fatal: BaseException | None = None
        self._closed = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name="link-io", daemon=True)
        self._thread.start()

    # -- the callers' side ----------------------------------------------------------------------

    @property
    def stats(self) -> Any:
        """The channel's `ChannelStats`: messages and the ZeroMQ messages (single or bundles) that carried them."""
        return self.secure.stats

    def view(self, block: int) -> BlockChannel:
        """The channel of block `block` (or `SESSION`): its received messages are queued from now on."""
        with self._routes_lock:
            self._routes.setdefault(block, queue.SimpleQueue())
        return BlockChannel(self, block)

    def release(self, block: int) -> None:
        """Block `block` is over: its late messages are dropped from now on (those already waiting
        in its queue are dropped and counted too, whichever came first)."""
        if block != SESSION:
            with self._routes_lock:
                q = self._routes.pop(block, None)
            if q is not None:
                self.dropped += q.qsize()
            self._expecting.discard(block)

    def release_all(self) -> None:
        """Every block is over (a new session): only the session queue stays."""
        with self._routes_lock:
            for block in [b for b in self._routes if b != SESSION]:
                del self._routes[block]

    def session_failure(self) -> BaseException | None:
        """The first error waiting in the session queue (a refused message outside every block), or
        None; messages waiting there outside a HELLO exchange are stale and dropped."""
        q = self._routes[SESSION]
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                return self._fatal
            if isinstance(item, _Failure):
                return item.exc
            self.dropped += 1

    def cancel(self, block: int, exc: BaseException) -> None:
        """Make the receive of block `block` (waiting or next) raise `exc`."""
        with self._routes_lock:
            q = self._routes.get(block)
        if q is not None:
            q.put(_Failure(exc))

    def in_flight(self) -> list[int]:
        """The blocks with a queue."""
        with self._routes_lock:
            return sorted(b for b in self._routes if b != SESSION)

    def send(self, message: Message) -> int:
        """Seal `message` now and queue its frames for the I/O thread; returns its seq."""
        if self._fatal is not None:
            raise self._fatal
        if self._closed.is_set():
            raise ClassicalChannelError("the link's channel is closed")
        with self._seal_lock:  # seal order is wire order
            frames = self.link.seal(message)
            self._outgoing.put(frames)
            self._expecting.discard(SESSION if message.transcript is None else message.transcript)
        self._wake()
        assert message.seq is not None
        return message.seq

    def recv(self, block: int, timeout: float | None) -> Message:
        """The next message routed to `block`; `ChannelTimeout` after `timeout` s (None: no limit)."""
        with self._routes_lock:
            q = self._routes.get(block)
        if q is None:
            raise ClassicalChannelError(f"block {block} is no longer in flight on this channel")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._fatal is not None:
                raise self._fatal
            if self.stop.is_set() or self._closed.is_set():
                raise ChannelTimeout(f"receive for block {block} abandoned: the link is stopping")
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            try:
                item = q.get(timeout=max(0.0, left))
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise ChannelTimeout(f"no message for block {block} within {timeout} s") from None
                continue
            if isinstance(item, _Failure):
                raise item.exc
            return item

    def close(self) -> None:
        """Stop the I/O thread (frames still queued are sent first, within `send_timeout_s`)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake()
        self._thread.join(self.send_timeout_s + 5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- the I/O thread -----------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):  # the pipe is full (the I/O thread is awake) or closed
            pass

    def _drain_wake(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass

    def _run(self) -> None:
        try:
            sock = self.secure.channel.socket
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(self._wake_r, zmq.POLLIN)
            while True:
                ready = dict(poller.poll(int(POLL_S * 1000)))
                if self._wake_r in ready:
                    self._drain_wake()
                self._flush()
                if sock in ready:
                    self._receive()
                if self.stop.is_set() or (self._closed.is_set() and self._outgoing.empty()):
                    return
        except Exception as exc:  # the channel is gone: every waiting block hears it
            if not self._closed.is_set():
                log.exception("link I/O thread stopped")
            self._fail_all(exc if isinstance(exc, ClassicalChannelError) else ClassicalChannelError(str(exc)))

    def _flush(self) -> None:
        """Send every queued message; those queued together leave as one ZeroMQ message (a bundle,
        `node.classical.bundle`): with blocks in flight, one send and one wakeup of Alice's loop
        carry a message of each block that was ready, in seal order."""
        batch: list[list[Any]] = []
        deadline = time.monotonic() + self.linger_s
        while True:
            try:
                batch.append(self._outgoing.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if not batch or not self._expecting or left <= 0 or self._closed.is_set():
                break
            # blocks just handed a message are computing their answer: wait (briefly) to bundle it
            select.select([self._wake_r], [], [], left)
            self._drain_wake()
        if not batch:
            return
        try:
            self.secure.send_sealed(batch, self.send_timeout_s)
        except ClassicalChannelError as exc:  # lost: their blocks hear it by timeout, the session at once
            log.warning("link: queued messages could not be sent: %s", exc)
            self._route(SESSION, _Failure(exc))

    def _receive(self) -> None:
        while True:
            try:
                msg = self.secure.recv(0)
            except ChannelTimeout:
                return
            except AuthenticationLocked as exc:
                self._fail_all(exc)
                return
            except TranscriptAuthenticationError as exc:
                self.rejected += 1
                self._route(exc.transcript, _Failure(exc))
                continue
            except ClassicalChannelError as exc:  # whose block is unknown: the channel is out of step
                self.rejected += 1
                log.warning("link: refused a message: %s", exc)
                self._fail_all(exc)
                continue
            self._route(self._block_of(msg), msg)

    def _block_of(self, msg: Message) -> int:
        """The block a message belongs to: its transcript, or for a BLOCK_ABORT with its own tag (Alice
        refusing a block's closing tag) the block it names when that block is in flight."""
        if msg.transcript is not None:
            return msg.transcript
        block = msg.header.get("block")
        if msg.type == "BLOCK_ABORT" and isinstance(block, int) and not isinstance(block, bool):
            with self._routes_lock:
                if block in self._routes and block != SESSION:
                    return block
        return SESSION

    def _route(self, block: int, item: Any) -> None:
        with self._routes_lock:
            q = self._routes.get(block)
        if q is not None and block != SESSION and isinstance(item, Message):
            self._expecting.add(block)
        if q is None:
            self.dropped += 1
            log.debug("link: dropped a message for block %d, no longer in flight", block)
            return
        q.put(item)

    def _fail_all(self, exc: BaseException) -> None:
        if isinstance(exc, AuthenticationLocked):
            self._fatal = exc
        with self._routes_lock:
            queues = list(self._routes.values())
        for q in queues:
            q.put(_Failure(exc))


class BlockChannel:
    """One block's (or the session's) side of a `BlockMux`, with a `SecureChannel`'s send and recv."""

    def __init__(self, mux: BlockMux, block: int) -> None:
        self.mux = mux
        self.block = block
        self.link = mux.link

    def send(self, message: Message, timeout: float | None = None) -> int:
        """Seal and queue `message` (the I/O thread sends it)."""
        return self.mux.send(message)

    def recv(self, timeout: float | None = None) -> Message:
        """The next message of this block."""
        return self.mux.recv(self.block, timeout)
