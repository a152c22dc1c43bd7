"""A peer node in its own process for the multi-process tests: an authenticated echo server."""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any

from node.classical.channel import DEFAULT_TIMEOUT_S, PeerChannel, SecureChannel
from node.classical.dispatch import Dispatcher
from node.classical.envelope import Message
from node.classical.link import SecureLink

RESERVE = 20  # seqs reserved per persisted state: a restarted sender never reuses a mask


class PersistingChannel(SecureChannel):
    """Persists the link state with a reservation of `RESERVE` seqs before the reservation runs out."""

    def __init__(self, channel: PeerChannel, link: SecureLink, state_path: str | None) -> None:
        super().__init__(channel, link)
        self.state_path = state_path
        self.reserved_until = -1
        self._persist()

    def _persist(self) -> None:
        if self.state_path is None:
            return
        tmp = self.state_path + ".tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(self.link.state(send_reserve=RESERVE), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)
        self.reserved_until = self.link.send_seq + RESERVE

    def send(self, message: Message, timeout: float | None = DEFAULT_TIMEOUT_S) -> int:
        if self.state_path is not None and self.link.send_seq >= self.reserved_until:
            self._persist()
        return super().send(message, timeout)


def echo_server(secret: bytes, endpoint: str, ready: Any, results: Any, state_path: str | None = None) -> None:
    """Bind `endpoint`, answer ECHO with ECHO_REPLY (same header and frames) until a STOP message."""
    if state_path and os.path.exists(state_path):
        with open(state_path, "rb") as fh:
            link = SecureLink.from_state(pickle.load(fh))
    else:
        link = SecureLink.from_bootstrap(secret, "responder")
    stop = threading.Event()
    dispatcher = Dispatcher()

    @dispatcher.register("ECHO")
    def echo(m: Message) -> Message:
        return Message("ECHO_REPLY", dict(m.header, pid=os.getpid()), list(m.frames))

    @dispatcher.register("FAIL")
    def fail(m: Message) -> Message:
        raise RuntimeError("handler bug on purpose")

    @dispatcher.register("STOP")
    def on_stop(m: Message) -> Message:
        stop.set()
        return Message("STOPPED", {"counts": dict(dispatcher.counts)})

    with PeerChannel.bind(endpoint) as channel:
        secure = PersistingChannel(channel, link, state_path)
        ready.put(channel.endpoint)
        dispatcher.serve(secure, stop, poll_s=0.05)
        results.put(dict(dispatcher.counts))
