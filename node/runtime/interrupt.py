"""A classical-channel wrapper whose receives and sends end early when the node is told to stop.

Bob waits up to `link.timeout_s` (20 s by default) for each of Alice's replies, and Alice's reply to
a Bob who has already gone waits up to 10 s for the socket; on SIGINT/SIGTERM neither may hold the
node. Both are cut into short polls that check the stop event in between, and raise
`StopRequested` once it is set. Nothing is lost or duplicated by the slicing: a message that
arrives is returned by the poll it arrives in, and a send that timed out queued nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from node.classical.errors import ChannelTimeout

POLL_S = 0.1


class StopRequested(ChannelTimeout):
    """The receive was abandoned because the node is stopping."""


class StopAwareChannel:
    """Delegates to a `PeerChannel`; `recv` and `send` give up within `POLL_S` of `stop` being set."""

    def __init__(self, channel: Any, stop: threading.Event) -> None:
        self._channel = channel
        self._stop = stop

    def recv(self, timeout: float | None = None) -> Any:
        """The inner channel's `recv`, in slices of `POLL_S` seconds that check the stop event."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._stop.is_set():
                raise StopRequested(f"receive on {getattr(self._channel, 'endpoint', '?')} abandoned: node stopping")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return self._channel.recv(0)  # a last non-blocking look, raising its own ChannelTimeout
            step = POLL_S if left is None else min(POLL_S, left)
            try:
                return self._channel.recv(step)
            except ChannelTimeout:
                if left is not None and left <= step:
                    raise

    def send(self, frames: Any, timeout: float | None = 10.0) -> None:
        """The inner channel's `send`, in slices that check the stop event (a send that times out has
        queued nothing, so trying again cannot duplicate a message)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._stop.is_set():
                raise StopRequested(f"send on {getattr(self._channel, 'endpoint', '?')} abandoned: node stopping")
            left = None if deadline is None else deadline - time.monotonic()
            step = POLL_S if left is None else max(0.0, min(POLL_S, left))
            try:
                return self._channel.send(frames, step)
            except ChannelTimeout:
                if left is not None and left <= step:
                    raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)
