"""The exception hierarchy of the post-processing package."""

from __future__ import annotations


class PostProcessingError(Exception):
    """Base class of every error raised by `postprocessing` (other than `ValueError` for bad input)."""


class ProtocolError(PostProcessingError):
    """A peer broke a post-processing protocol: malformed, truncated or unexpected message, or timeout."""


class ChannelTimeout(ProtocolError):
    """No message from the peer (or no room to send one) within the timeout: a silent or stalled
    peer. The one timeout class: the node's classical channel raises a subclass of it."""


class VerificationFailed(ProtocolError):
    """The verification tags of the two parties differ (residual errors after Cascade): the block
    must be discarded, as after any broken exchange."""
