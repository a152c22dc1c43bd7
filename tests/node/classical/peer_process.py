"""A peer node in its own process for the multi-process tests: an authenticated echo server."""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any

from node.classical.channel import PeerChannel, SecureChannel
from node.classical.dispatch import DispatchTable, Handler, serve
from node.classical.envelope import Message
from node.classical.link import SecureLink
from node.classical.messages import MessageType

RESERVE = 20  # seqs reserved per persisted state: a restarted sender never reuses a mask

# the echo server borrows real wire types: the dispatch table takes nothing else
ECHO, ECHO_REPLY = MessageType.KEY_QUERY, MessageType.KEY_STATES
FAIL = MessageType.RECONCILE
STOP, STOPPED = MessageType.LINK_STATE, MessageType.LINK_STATE_ACK


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

    def echo(m: Message) -> Message:
        return Message(ECHO_REPLY, dict(m.header, pid=os.getpid()), list(m.frames))

    def fail(m: Message) -> Message:
        raise RuntimeError("handler bug on purpose")

    def on_stop(m: Message) -> Message:
        stop.set()
        return Message(STOPPED, {"counts": dict(table.counts)})

    table: DispatchTable[Handler] = DispatchTable({ECHO: echo, FAIL: fail, STOP: on_stop}, name="echo")
    with PeerChannel.bind(endpoint) as channel:
        secure = SecureChannel(channel, link)
        ready.put(channel.endpoint)
        serve(table, secure, stop, poll_s=0.05)
        results.put(dict(table.counts))
