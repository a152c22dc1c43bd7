"""The exception hierarchy of the authenticated classical channel (DESIGN §4–5).

Messages never carry key material: they name the frame, the sequence number or the limit that was
broken, never the bits of a key, a mask or a tag.
"""

from __future__ import annotations

from postprocessing.errors import ChannelTimeout as PeerTimeout


class ClassicalChannelError(Exception):
    """Base class of every error raised by `node.classical` (other than `ValueError` for bad arguments)."""


class MessageFormatError(ClassicalChannelError):
    """A received message is malformed: wrong frame count, oversized, bad JSON header, bad buffer."""


class VersionError(MessageFormatError):
    """The protocol/version frame names a protocol or version this node does not speak."""


class AuthenticationError(ClassicalChannelError):
    """The message's Wegman–Carter tag does not verify: it was altered, forged or sent on another link."""


class ReplayError(AuthenticationError):
    """The message's sequence number was already accepted (or is older than one that was)."""


class AuthKeyExhausted(ClassicalChannelError):
    """The authentication key pool holds too few bits for the next one-time mask; refill it."""


class UnknownMessageType(ClassicalChannelError):
    """An authentic message whose type has no handler on this node."""


class ChannelTimeout(ClassicalChannelError, PeerTimeout):
    """A send or receive did not complete within its timeout; also the post-processing layer's
    `ChannelTimeout`, so a protocol waiting on this channel sees a silent peer as a timeout."""


class ChannelClosed(ClassicalChannelError):
    """The channel was closed; no more messages can be sent or received on it."""


class TranscriptAuthenticationError(AuthenticationError):
    """A closing tag over a block transcript does not verify: some message of that block was altered,
    dropped, injected or reordered. `transcript` names the block; the mask was consumed."""

    def __init__(self, message: str, transcript: int) -> None:
        super().__init__(message)
        self.transcript = transcript


class AuthenticationLocked(ClassicalChannelError):
    """Too many tags failed under the current hash key: the link refuses to go on until the hash key is
    replaced (a fresh bootstrap secret), so the forgery probability stays bounded."""
