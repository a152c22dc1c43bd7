"""Cascade's channel interface carried over the authenticated node channel: each Cascade message
travels as a CASCADE envelope inside the transcript of the block it reconciles."""

from __future__ import annotations

from node.classical import AuthenticationLocked, ClassicalChannelError
from node.link import protocol as P
from postprocessing.cascade import ClassicalChannel
from postprocessing.cascade import Message as CascadeMessage
from postprocessing.errors import ProtocolError


class CascadeOverSecureChannel(ClassicalChannel):
    """Cascade's channel interface on top of the authenticated node channel (CASCADE envelopes)."""

    def __init__(self, channel: object) -> None:
        self.channel = channel
        self.block = 0  # the transcript the Cascade messages belong to

    def send(self, msg: CascadeMessage) -> None:
        try:
            self.channel.send(P.in_block(P.wrap_cascade(msg), self.block))  # type: ignore[attr-defined]
        except AuthenticationLocked:
            raise
        except ClassicalChannelError as exc:
            raise ProtocolError(f"cascade: cannot send: {exc}") from None

    def recv(self, timeout_s: float) -> CascadeMessage:
        try:
            return P.unwrap_cascade(self.channel.recv(timeout=max(0.0, timeout_s)))  # type: ignore[attr-defined]
        except AuthenticationLocked:
            raise
        except ClassicalChannelError as exc:
            raise ProtocolError(f"cascade: {exc}") from None
