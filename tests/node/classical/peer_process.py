"""A peer node in its own process for the multi-process tests: an authenticated echo server."""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any

from node.classical.channel import PeerChannel, SecureChannel
from node.classical.dispatch import Dispatcher
from node.classical.envelope import Message
from node.classical.link import SecureLink

RESERVE = 20  # seqs reserved per persisted state: a restarted sender never reuses a mask


def persist_to(path: str):
    """A `SecureLink` persistence hook writing the state atomically and durably to `path`."""

    def persist(state: dict) -> None:
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    return persist


def echo_server(secret: bytes, endpoint: str, ready: Any, results: Any, state_path: str | None = None) -> None:
    """Bind `endpoint`, answer ECHO with ECHO_REPLY (same header and frames) until a STOP message."""
    if state_path and os.path.exists(state_path):
        with open(state_path, "rb") as fh:
            link = SecureLink.from_state(pickle.load(fh))  # noqa: S301 - a file this test process wrote
    else:
        link = SecureLink.from_bootstrap(secret, "responder")
    if state_path:
        link.set_persistence(persist_to(state_path), reserve=RESERVE)
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
        secure = SecureChannel(channel, link)
        ready.put(channel.endpoint)
        dispatcher.serve(secure, stop, poll_s=0.05)
        results.put(dict(dispatcher.counts))


def duplex_peer(secret: bytes, ready: Any, results: Any, done: Any, n_requests: int) -> None:
    """Bind, serve RESERVE requests from the parent while sending `n_requests` of our own to it."""
    from node.classical.peer import SecurePeer

    dispatcher = Dispatcher()
    served = []

    @dispatcher.register("RESERVE")
    def reserve(m: Message) -> Message:
        served.append(m.header["id"])
        return Message("RESERVED", {"id": m.header["id"], "by": "child"})

    @dispatcher.register("STOP")
    def on_stop(m: Message) -> Message:
        return Message("STOPPED", {"served": len(served)})

    channel = PeerChannel.bind()
    ready.put(channel.endpoint)
    with SecurePeer(channel, SecureLink.from_bootstrap(secret, "responder"), dispatcher, name="child") as peer:
        ok = 0
        for i in range(n_requests):
            reply = peer.request(Message("RESERVE", {"id": f"c{i}"}), timeout=60)
            ok += reply.type == "RESERVED" and reply.header == {"id": f"c{i}", "by": "parent"}
        results.put(ok)
        done.get(timeout=120)  # wait until the parent is done with us
