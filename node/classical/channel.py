"""ZeroMQ transport of the classical channel: point-to-point peer sockets with timeouts (DESIGN §4).

`PeerChannel` is one end of a link between two peers: a DEALER socket, bound by one side and
connected by the other, over TCP. The connecting side reconnects by itself after the peer restarts
(ZeroMQ's reconnect, bounded back-off) and heartbeats detect a dead peer. `RouterChannel` is the
bound side of a server that many peers connect to (each `PeerChannel.connect(..., identity=...)`);
it receives `(peer identity, frames)` and replies to a named peer. `SecureChannel` puts a
`SecureLink` on a `PeerChannel`: it sends and receives `Message`s; several sealed messages sent
together leave as one ZeroMQ message (a bundle, `node.classical.bundle`), and a received bundle is
opened one message per `recv`, as if its messages had come separately.

A ZeroMQ socket is not thread-safe: each channel belongs to the first thread that sends or receives
on it and refuses every other thread. Every send and receive takes a timeout in seconds (None
waits forever) and raises `ChannelTimeout` when it passes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Self

import zmq

from node.classical import bundle
from node.classical.envelope import MAX_MESSAGE_BYTES, Message
from node.classical.errors import ChannelClosed, ChannelTimeout, ClassicalChannelError, MessageFormatError
from node.classical.link import SecureLink

__all__ = ["PeerChannel", "RouterChannel", "SecureChannel", "ChannelStats", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)
_HEARTBEAT_MS = 1000
_HEARTBEAT_TIMEOUT_MS = 5000
_RECONNECT_MS = 100
_RECONNECT_MAX_MS = 2000


def _tcp_endpoint(endpoint: str) -> str:
    """Accept ``tcp://host:0`` for 'any free port' (ZeroMQ spells it ``*``)."""
    if not isinstance(endpoint, str) or not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise ValueError(f"endpoint must be a ZeroMQ address such as 'tcp://127.0.0.1:5555', got {endpoint!r}")
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        return endpoint[:-2] + ":*"
    return endpoint


def _context(context: zmq.Context | None) -> tuple[zmq.Context, bool]:
    """The caller's context, or a new one this channel owns (and terminates on close)."""
    return (context, False) if context is not None else (zmq.Context(), True)


class _OwnedSocket:
    """A ZeroMQ socket used by exactly one thread, with poll-based timeouts."""

    def __init__(self, sock: zmq.Socket, endpoint: str, context: zmq.Context, own_context: bool) -> None:
        self._sock = sock
        self.endpoint = endpoint
        self._context = context
        self._own_context = own_context
        self._owner: int | None = None
        self._closed = False

    @property
    def socket(self) -> zmq.Socket:
        """The ZeroMQ socket, for a poller in the owning thread."""
        return self._sock

    @staticmethod
    def _configure(sock: zmq.Socket, max_message_bytes: int, hwm: int) -> None:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)  # a larger frame drops the connection
        sock.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, _RECONNECT_MAX_MS)
        sock.setsockopt(zmq.HEARTBEAT_IVL, _HEARTBEAT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, _HEARTBEAT_TIMEOUT_MS)

    def _check(self) -> None:
        if self._closed:
            raise ChannelClosed(f"channel {self.endpoint} is closed")
        me = threading.get_ident()
        if self._owner is None:
            self._owner = me
        elif self._owner != me:
            raise RuntimeError(
                f"channel {self.endpoint} belongs to thread {self._owner}; a ZeroMQ socket has one owning thread"
            )

    def _wait(self, event: int, timeout: float | None, what: str) -> None:
        ms = None if timeout is None else max(0, int(timeout * 1000))
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout}")
        if not self._sock.poll(ms, event):
            raise ChannelTimeout(f"{what} on {self.endpoint} timed out after {timeout} s")

    def _send(self, frames: Sequence[Any], timeout: float | None) -> None:
        self._check()
        if not frames:
            raise ValueError("frames must hold at least one frame")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self._sock.send_multipart(list(frames), zmq.NOBLOCK, copy=True)
                return
            except zmq.Again:
                pass  # queue full (or, on a DEALER, no peer yet): wait for room below
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:  # ROUTER_MANDATORY: no such peer connected
                    raise ClassicalChannelError(f"send on {self.endpoint} failed: the peer is not connected") from None
                raise ClassicalChannelError(f"send on {self.endpoint} failed: {exc}") from None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ChannelTimeout(f"send on {self.endpoint} timed out after {timeout} s")
            if self._sock.poll(None if left is None else max(1, int(left * 1000)), zmq.POLLOUT):
                time.sleep(0.0005)  # a ROUTER reports room if any peer has some: do not spin on a full one

    def _recv(self, timeout: float | None) -> list[zmq.Frame]:
        self._check()
        self._wait(zmq.POLLIN, timeout, "receive")
        try:
            return self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise ChannelTimeout(f"receive on {self.endpoint} found no message") from None

    def close(self, linger_s: float = 0.5) -> None:
        """Close the socket; messages still queued get up to `linger_s` seconds to leave, then are dropped.

        With its own ZeroMQ context (the default) this waits for them, so a reply sent just before a
        graceful shutdown is not lost; with a shared `context`, terminating that context does.
        """
        if self._closed:
            return
        self._closed = True
        self._sock.close(linger=max(0, int(linger_s * 1000)))
        if self._own_context:
            self._context.term()

    #: the socket type `bind` opens, and the options set on it before binding
    _bind_kind: int
    _bind_options: dict[int, int] = {}

    @classmethod
    def bind(
        cls,
        endpoint: str = "tcp://127.0.0.1:0",
        *,
        context: zmq.Context | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        hwm: int = 1000,
    ) -> Self:
        """Listen on `endpoint` (port 0: a free port; read it back from `.endpoint`).

        `ClassicalChannelError` if it cannot bind."""
        ctx, own = _context(context)
        sock = ctx.socket(cls._bind_kind)
        cls._configure(sock, max_message_bytes, hwm)
        for option, value in cls._bind_options.items():
            sock.setsockopt(option, value)
        try:
            sock.bind(_tcp_endpoint(endpoint))
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            if own:
                ctx.term()
            raise ClassicalChannelError(f"cannot bind {endpoint}: {exc}") from None
        return cls(sock, sock.getsockopt_string(zmq.LAST_ENDPOINT), ctx, own)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"{type(self).__name__}({self.endpoint!r}, {state})"


class PeerChannel(_OwnedSocket):
    """One end of a point-to-point link (DEALER over TCP); `bind` on one peer, `connect` on the other."""

    _bind_kind = zmq.DEALER

    @classmethod
    def connect(
        cls,
        endpoint: str,
        *,
        identity: bytes | None = None,
        context: zmq.Context | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        hwm: int = 1000,
    ) -> PeerChannel:
        """Connect to a peer's `endpoint`; reconnects by itself. `identity` names us to a `RouterChannel`."""
        endpoint = _tcp_endpoint(endpoint)
        if identity is not None and (
            not isinstance(identity, bytes) or not 1 <= len(identity) <= 255 or identity[0] == 0
        ):
            raise ValueError("identity must be 1..255 bytes not starting with a zero byte")
        ctx, own = _context(context)
        sock = ctx.socket(zmq.DEALER)
        cls._configure(sock, max_message_bytes, hwm)
        # no ZMQ_IMMEDIATE: with it, replies already received but not yet read are discarded when the
        # peer disconnects. Without it, messages sent while the peer is down wait (up to `hwm`) and
        # leave when it is back; the protocols above re-send what was not acknowledged.
        if identity is not None:
            sock.setsockopt(zmq.ROUTING_ID, identity)
        sock.connect(endpoint)
        return cls(sock, endpoint, ctx, own)

    def send(self, frames: Sequence[Any], timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        """Queue one multipart message; `ChannelTimeout` if the queue stays full (`hwm`) for `timeout` s.

        On the connecting side a message sent while the peer is down waits in the queue and leaves
        when the connection is back; delivery is confirmed only by the peer's reply.
        """
        self._send(frames, timeout)

    def recv(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> list[zmq.Frame]:
        """Receive one multipart message (ZeroMQ frames, no copy); `ChannelTimeout` after `timeout` s."""
        return self._recv(timeout)


class RouterChannel(_OwnedSocket):
    """The bound side of a server many peers connect to (ROUTER): messages carry the peer identity."""

    _bind_kind = zmq.ROUTER
    # ROUTER_MANDATORY: a reply to an unknown peer is an error, not silently dropped
    _bind_options = {zmq.ROUTER_MANDATORY: 1}

    def send(self, peer: bytes, frames: Sequence[Any], timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        """Send one multipart message to the connected peer named `peer`."""
        if not isinstance(peer, bytes) or not peer:
            raise ValueError("peer must be the non-empty identity bytes received with a message")
        self._send([peer, *frames], timeout)

    def recv(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> tuple[bytes, list[zmq.Frame]]:
        """Receive one message: the sending peer's identity and its frames."""
        frames = self._recv(timeout)
        return frames[0].bytes, frames[1:]


@dataclass
class ChannelStats:
    """What crossed one `SecureChannel` (no key material): messages, and the ZeroMQ messages that
    carried them (a single message or a bundle of several), per direction."""

    messages_sent: int = 0
    zmq_sent: int = 0
    """ZeroMQ (multipart) messages sent: `messages_sent / zmq_sent` messages per ZeroMQ send."""
    bundles_sent: int = 0
    messages_received: int = 0
    """Messages taken out of received ZeroMQ messages and handed to `SecureLink.open` (refused ones too)."""
    zmq_received: int = 0
    bundles_received: int = 0
    bundles_refused: int = 0
    """Received bundles whose container was malformed (`MessageFormatError`): none of their messages opened."""

    def as_dict(self) -> dict[str, float]:
        """The counters and the messages per ZeroMQ message each way (1.0 before any traffic)."""
        out: dict[str, float] = dict(asdict(self))
        out["messages_per_zmq_sent"] = round(self.messages_sent / self.zmq_sent, 3) if self.zmq_sent else 1.0
        out["messages_per_zmq_received"] = (
            round(self.messages_received / self.zmq_received, 3) if self.zmq_received else 1.0
        )
        return out


class SecureChannel:
    """A `PeerChannel` whose messages are sealed and opened by a `SecureLink`."""

    def __init__(self, channel: PeerChannel, link: SecureLink) -> None:
        """Wrap `channel`; `link` holds this peer's keys for that channel."""
        self.channel = channel
        self.link = link
        self.dropped = 0
        self.stats = ChannelStats()
        self._pending: deque[list[Any]] = deque()  # messages of a received bundle not yet opened

    @property
    def pending(self) -> int:
        """Messages of the last received bundle that `recv` has not returned yet (0: none)."""
        return len(self._pending)

    def send(self, message: Message, timeout: float | None = DEFAULT_TIMEOUT_S) -> int:
        """Seal and send `message`; returns its seq. The mask is consumed even if the send times out."""
        frames = self.link.seal(message)
        self.send_sealed([frames], timeout)
        assert message.seq is not None
        return message.seq

    def send_many(self, messages: Sequence[Message], timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        """Seal `messages` in order and send them together: one bundle where there are several.

        If sealing one fails, those sealed before it are still sent, then its error is raised."""
        sealed: list[list[Any]] = []
        failure: Exception | None = None
        for message in messages:
            try:
                sealed.append(self.link.seal(message))
            except Exception as exc:  # noqa: BLE001 - re-raised below, once the sealed ones have left
                failure = exc
                break
        if sealed:
            self.send_sealed(sealed, timeout)
        if failure is not None:
            raise failure

    def send_sealed(self, sealed: Sequence[Sequence[Any]], timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        """Send messages already sealed by `link`, in order: consecutive ones share a bundle (up to
        `bundle.MAX_BUNDLE_MESSAGES` and the link's size limit), a lone one goes as itself.

        The first failed ZeroMQ send raises; the messages after it are not sent (their seqs are
        skipped, which the peer accepts)."""
        limit = min(bundle.MAX_BUNDLE_BYTES, self.link.max_message_bytes)
        for wire, n in bundle.pack(sealed, max_bytes=limit):
            self.channel.send(wire, timeout)
            self.stats.zmq_sent += 1
            self.stats.messages_sent += n
            self.stats.bundles_sent += n > 1

    def recv(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> Message:
        """Receive, verify and decode one message; raises the `ClassicalChannelError` of a bad one.

        The messages of a received bundle are returned by this and the next calls, in order, each
        opened (and refused) on its own, as if it had come alone; `pending` says how many are left."""
        if not self._pending:
            frames = self.channel.recv(timeout)
            self.stats.zmq_received += 1
            if bundle.is_bundle(frames):
                try:
                    messages = bundle.decode_bundle(frames, self.link.max_message_bytes)
                except MessageFormatError:
                    self.stats.bundles_refused += 1
                    raise
                self.stats.bundles_received += 1
                self._pending.extend(messages)
            else:
                self._pending.append(frames)
        frames = self._pending.popleft()
        self.stats.messages_received += 1
        return self.link.open(frames)

    def request(self, message: Message, timeout: float | None = DEFAULT_TIMEOUT_S) -> Message:
        """Send `message` and return the authentic reply whose `re` is its seq (an ``ERROR`` reply included).

        Authentic messages that answer something else (late replies to an earlier request that
        timed out) are dropped and counted in `dropped`; `ChannelTimeout` if no reply within `timeout`.
        """
        seq = self.send(message, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            reply = self.recv(left)
            if reply.re == seq:
                return reply
            self.dropped += 1
            log.warning(
                "dropped %s (seq %s, re %s) while waiting for the reply to seq %s", reply.type, reply.seq, reply.re, seq
            )

    def close(self) -> None:
        """Close the underlying channel."""
        self.channel.close()

    def __enter__(self) -> SecureChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SecureChannel({self.channel!r}, {self.link!r})"
