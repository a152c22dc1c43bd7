"""A peer link run by its own I/O thread: thread-safe requests and sends, dispatched incoming messages.

ZeroMQ sockets have one owning thread; daemons have many threads that want to talk to a peer (an
HTTP handler asking the peer key manager to reserve key IDs while the peer asks us the same). A
`SecurePeer` owns the `PeerChannel` and its `SecureLink` in one I/O thread. Other threads hand it
messages through a queue (woken by a pipe, so there is no polling delay); it seals and sends them,
matches incoming replies to waiting requests by their `re`, and passes every other authentic
message to a `Dispatcher` whose handlers run on the I/O thread (keep them short) and whose replies
go straight back. Rejected frames are logged and counted by the dispatcher's loop rules: the
thread lives on.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
from collections import Counter
from typing import Any

import zmq

from node.classical.channel import DEFAULT_TIMEOUT_S, PeerChannel
from node.classical.dispatch import Dispatcher
from node.classical.envelope import Message
from node.classical.errors import ChannelClosed, ChannelTimeout, ClassicalChannelError
from node.classical.link import SecureLink

__all__ = ["SecurePeer"]

log = logging.getLogger(__name__)

_DRAIN = 64  # messages read per wake-up before the outbox gets a turn


class SecurePeer:
    """One authenticated peer link served by a dedicated I/O thread; `send`/`request` from any thread."""

    def __init__(
        self,
        channel: PeerChannel,
        link: SecureLink,
        dispatcher: Dispatcher | None = None,
        *,
        name: str = "peer",
        send_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """`channel` must not have been used by another thread yet; the I/O thread becomes its owner."""
        self.channel = channel
        self.link = link
        self.dispatcher = dispatcher if dispatcher is not None else Dispatcher()
        self.name = name
        self.send_timeout_s = send_timeout_s
        self.counts: Counter[str] = Counter()
        """Events by name: sent, replies, late_replies, rejected (and by error class), reply_failed."""
        self._outbox: queue.SimpleQueue[tuple[Message, concurrent.futures.Future[int], concurrent.futures.Future[Message] | None]] = queue.SimpleQueue()
        self._pending: dict[int, concurrent.futures.Future[Message]] = {}
        self._pending_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_lock = threading.Lock()
        self._wake_open = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"classical-{name}", daemon=True)
        self._started = False

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> SecurePeer:
        """Start the I/O thread."""
        if self._started:
            raise RuntimeError(f"SecurePeer {self.name} was already started")
        self._started = True
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the I/O thread and close the channel; waiting requests fail with `ChannelClosed`."""
        self._stop.set()
        self._wake()
        if self._started:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("peer link %s: I/O thread did not stop within %s s", self.name, timeout)
                return
        with self._wake_lock:
            if self._wake_open:
                self._wake_open = False
                os.close(self._wake_r)
                os.close(self._wake_w)

    @property
    def running(self) -> bool:
        """Whether the I/O thread is alive."""
        return self._thread.is_alive()

    def __enter__(self) -> SecurePeer:
        return self.start() if not self._started else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- API for any thread -----------------------------------------------------------------------

    def send(self, message: Message, timeout: float | None = DEFAULT_TIMEOUT_S) -> int:
        """Seal and send `message` on the I/O thread; returns its seq. Raises what sealing/sending raised.

        A send that times out here may still leave later; it is never sent twice.
        """
        fut: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._submit(message, fut, None)
        return self._wait(fut, timeout, f"send of {message.type}")

    def request(self, message: Message, timeout: float | None = DEFAULT_TIMEOUT_S) -> Message:
        """Send `message` and wait for the peer's reply to it (an ``ERROR`` reply is returned too)."""
        sent: concurrent.futures.Future[int] = concurrent.futures.Future()
        reply: concurrent.futures.Future[Message] = concurrent.futures.Future()
        self._submit(message, sent, reply)
        seq = self._wait(sent, timeout, f"send of {message.type}")
        try:
            return self._wait(reply, timeout, f"reply to {message.type} seq {seq}")
        finally:
            with self._pending_lock:
                self._pending.pop(seq, None)

    def _submit(self, message: Message, sent: Any, reply: Any) -> None:
        if not isinstance(message, Message):
            raise ValueError(f"message must be a Message, got {type(message).__name__}")
        if self._stop.is_set() or not self._thread.is_alive():
            raise ChannelClosed(f"peer link {self.name} is not running")
        self._outbox.put((message, sent, reply))
        self._wake()

    def _wait(self, fut: concurrent.futures.Future[Any], timeout: float | None, what: str) -> Any:
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            raise ChannelTimeout(f"{what} on peer link {self.name} timed out after {timeout} s") from None

    def _wake(self) -> None:
        with self._wake_lock:
            if not self._wake_open:
                return
            try:
                os.write(self._wake_w, b"\x00")
            except BlockingIOError:
                pass  # the pipe is full: a wake-up is pending anyway

    # -- the I/O thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.channel.socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(500))
                if self._wake_r in events:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                self._flush_outbox()
                if events.get(self.channel.socket):
                    self._read_incoming()
        except Exception:  # pragma: no cover - a bug here must not pass silently
            log.exception("peer link %s: I/O thread failed", self.name)
        finally:
            self._fail_all(ChannelClosed(f"peer link {self.name} stopped"))
            self.channel.close()

    def _flush_outbox(self) -> None:
        while True:
            try:
                message, sent, reply = self._outbox.get_nowait()
            except queue.Empty:
                return
            if not sent.set_running_or_notify_cancel():
                continue
            try:
                frames = self.link.seal(message)
                seq = message.seq
                assert seq is not None
                if reply is not None:
                    with self._pending_lock:
                        self._pending[seq] = reply
                self.channel.send(frames, self.send_timeout_s)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                if reply is not None and message.seq is not None:
                    with self._pending_lock:
                        self._pending.pop(message.seq, None)
                sent.set_exception(exc)
                continue
            self.counts["sent"] += 1
            sent.set_result(seq)

    def _read_incoming(self) -> None:
        for _ in range(_DRAIN):
            try:
                frames = self.channel.recv(0)
            except ChannelTimeout:
                return
            try:
                message = self.link.open(frames)
            except ClassicalChannelError as exc:
                self.counts["rejected"] += 1
                self.counts[type(exc).__name__] += 1
                log.warning("peer link %s rejected a message: %s: %s", self.name, type(exc).__name__, exc)
                continue
            except Exception:  # a decoder bug must not end the I/O thread
                self.counts["rejected"] += 1
                self.counts["internal_error"] += 1
                log.exception("peer link %s: unexpected error while opening a message", self.name)
                continue
            if message.re is not None:
                with self._pending_lock:
                    waiter = self._pending.pop(message.re, None)
                if waiter is not None:
                    self.counts["replies"] += 1
                    waiter.set_result(message)
                else:
                    self.counts["late_replies"] += 1
                    log.warning("peer link %s: dropped %s answering seq %s: nobody waits for it",
                                self.name, message.type, message.re)
                continue
            answer = self.dispatcher.dispatch(message)
            if answer is None:
                continue
            try:
                self.channel.send(self.link.seal(answer), self.send_timeout_s)
                self.counts["sent"] += 1
            except (ClassicalChannelError, ValueError) as exc:
                self.counts["reply_failed"] += 1
                log.error("peer link %s: could not send %s: %s: %s", self.name, answer.type, type(exc).__name__, exc)

    def _fail_all(self, exc: Exception) -> None:
        with self._pending_lock:
            waiting, self._pending = list(self._pending.values()), {}
        for fut in waiting:
            if not fut.done():
                fut.set_exception(exc)
        while True:
            try:
                _, sent, reply = self._outbox.get_nowait()
            except queue.Empty:
                break
            for fut in (sent, reply):
                if fut is not None and not fut.done():
                    fut.set_exception(exc)

    def __repr__(self) -> str:
        return f"SecurePeer({self.name!r}, {self.channel!r}, running={self.running})"
