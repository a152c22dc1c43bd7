"""Durable link state and the single-use bootstrap secret (DESIGN §5).

A link's authentication state (hash keys, unconsumed masks, counters) lives in one owner-only file,
rewritten atomically; the previous version's bytes are overwritten before they are dropped, so a
consumed mask or a replaced hash key does not linger on disk. The pre-shared bootstrap secret is
used once: when its material has been imported into the link state, its file is overwritten in place
with `USED_MARKER`. A node whose link state is missing refuses to start on a used secret: starting
again from the same secret would reuse masks under the same hash keys, and two tags under one mask
reveal the hash key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from node.private_files import write_private_file

__all__ = [
    "USED_MARKER",
    "BootstrapUsed",
    "overwrite_replace",
    "overwrite_file",
    "bootstrap_is_used",
    "read_bootstrap",
    "mark_bootstrap_used",
    "save_link_state",
    "load_link_state",
]

USED_MARKER = b"qkdnode: bootstrap secret used; provision a new one\n"


class BootstrapUsed(ValueError):
    """The link state is missing and the bootstrap secret was already imported once."""


def _zero(fd: int) -> None:
    """Overwrite every byte of the open file `fd` with zeros and flush them to disk."""
    size = os.fstat(fd).st_size
    os.lseek(fd, 0, os.SEEK_SET)
    written = 0
    while written < size:
        written += os.write(fd, bytes(min(size - written, 1 << 20)))
    os.fsync(fd)


def overwrite_file(path: Path) -> None:
    """Overwrite a file's bytes with zeros in place (same inode) and flush them to disk."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        _zero(fd)
    finally:
        os.close(fd)


def overwrite_replace(path: Path, data: bytes) -> None:
    """Replace `path` by `data` atomically and durably (owner-only), then zero the old file's bytes."""
    old = None
    try:
        old = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        pass
    try:
        write_private_file(path, data)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        if old is not None:  # the old inode is unlinked but still open: wipe what it held
            _zero(old)
    finally:
        if old is not None:
            os.close(old)


def bootstrap_is_used(path: Path) -> bool:
    """True when the bootstrap file carries the used marker."""
    with open(path, "rb") as fh:
        return fh.read(len(USED_MARKER)) == USED_MARKER


def read_bootstrap(path: Path, state_path: Path, config_key: str) -> bytes:
    """The bootstrap secret, or `BootstrapUsed` (with what to do) if it was imported before."""
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise ValueError(
            f"config key '{config_key}': cannot read the bootstrap secret {path}: {exc.strerror}"
        ) from None
    if secret.startswith(USED_MARKER):
        raise BootstrapUsed(
            f"link state {state_path} is missing and the bootstrap secret {path} (config key '{config_key}') was "
            "already used once; reusing it would reuse one-time masks. Provision a new pre-shared secret: write the "
            "same fresh random bytes (a multiple of 32, e.g. 131072) to this file on BOTH nodes of the link, remove "
            "the link_state.json of both nodes, then start both"
        )
    return secret


def mark_bootstrap_used(path: Path) -> None:
    """Overwrite the bootstrap secret in place with zeros, then with `USED_MARKER` (single use)."""
    overwrite_file(path)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, USED_MARKER)
        os.ftruncate(fd, len(USED_MARKER))
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__hex__": bytes(value).hex()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__hex__"}:
            return bytes.fromhex(value["__hex__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def save_link_state(path: Path, state: dict[str, Any]) -> None:
    """Persist a `SecureLink.state()` (secret: owner-only, the old version overwritten)."""
    overwrite_replace(path, json.dumps(_encode(state)).encode())


def load_link_state(path: Path) -> dict[str, Any]:
    """Read back what `save_link_state` wrote; ValueError naming the file if it is damaged."""
    try:
        return _decode(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"link state {path} cannot be read ({type(exc).__name__}); restore it from a backup "
            "or provision a new bootstrap secret on both nodes"
        ) from None
