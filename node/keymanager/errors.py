"""The exception hierarchy of the key manager (bad input raises `ValueError`)."""

from __future__ import annotations


class KeyManagerError(Exception):
    """Base class of every error the key manager raises on purpose."""


class PoolExhausted(KeyManagerError):
    """The pool holds too little shared key to serve the request; nothing was consumed."""


class PoolFull(KeyManagerError):
    """Storing the block would exceed the pool's capacity; the block was not stored."""


class KeysNotFound(KeyManagerError):
    """One or more requested key IDs are unknown here, or were already delivered to the caller."""


class NotAuthorized(KeyManagerError):
    """The calling SAE was not named by the master SAE for one of the requested keys."""


class ConflictingBlock(KeyManagerError):
    """A block arrived again under a known (link, block) ID but with different content."""


class PeerError(KeyManagerError):
    """The peer key manager did not answer in time, or answered with an error."""
