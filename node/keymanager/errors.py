"""The exception hierarchy of the key manager (bad input raises `ValueError`).

Every error the key manager raises on purpose is a `KeyManagerError`: the store's (`PoolExhausted`,
`KeysNotFound`, `NotAuthorized`), the peer link's (`PeerError`), the relay's (`RelayFailed`), the
application QoS's (`qos.QosRefused`) and the ETSI 014 API's error answer (`etsi014.ApiError`).
"""

from __future__ import annotations


class KeyManagerError(Exception):
    """Base class of every error the key manager raises on purpose."""


class PoolExhausted(KeyManagerError):
    """The pool holds too little shared key to serve the request; nothing was consumed."""


class KeysNotFound(KeyManagerError):
    """One or more requested key IDs are unknown here, or were already delivered to the caller."""


class NotAuthorized(KeyManagerError):
    """The calling SAE was not named by the master SAE for one of the requested keys."""


class PeerError(KeyManagerError):
    """The peer key manager did not answer in time, or answered with an error."""


class RelayFailed(KeyManagerError):
    """A key relay could not be completed (no route with enough key, every route tried failed, or a
    hop refused it): no key was delivered, and the one-time pads already drawn for it on the hops
    it crossed stay consumed (link key is never reused)."""
