"""The exception hierarchy of the post-processing package."""

from __future__ import annotations


class PostProcessingError(Exception):
    """Base class of every error raised by `postprocessing` (other than `ValueError` for bad input)."""


class ProtocolError(PostProcessingError):
    """A peer broke a post-processing protocol: malformed, truncated or unexpected message, or timeout."""


class VerificationFailed(PostProcessingError):
    """The verification tags of the two parties differ: the block must be discarded."""
