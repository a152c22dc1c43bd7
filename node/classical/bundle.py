"""Bundles: several sealed messages of the classical channel carried in one ZeroMQ message.

With several key blocks in flight (`[link] workers` > 1) each round of Cascade has one message per
block to send; sent one by one they cost one ZeroMQ send, one receive and one wakeup of the peer's
loop each. A bundle carries them in one ZeroMQ multipart message:

    [BUNDLE_PROTOCOL, index, frames of message 0 ..., frames of message 1 ..., ...]

- ``BUNDLE_PROTOCOL``: the ASCII bytes ``b"qkdnode-bundle/1"`` (container name and major version;
  a receiver that only speaks single messages refuses it as a bad protocol/version frame);
- index: little-endian ``uint16`` message count n (2 <= n <= `MAX_BUNDLE_MESSAGES`), then n
  ``uint16`` frame counts, one per message, each in [`MIN_MESSAGE_FRAMES`, `MAX_MESSAGE_FRAMES`],
  summing to the number of frames that follow;
- the frames of each message exactly as `SecureLink.seal` made them (the envelope and its MAC frame).

A bundle is a transport container only: each message keeps its own seq, its own MAC frame and its
place in its block's transcript, and the receiver opens the messages one by one, in order, exactly
as if they had come separately (`SecureChannel.recv`). The container itself carries no tag, so
`decode_bundle` checks its structure only (counts, sizes, the index against the frames) and leaves
everything inside a message to `SecureLink.open`: an altered message fails there, alone, with the
block it belongs to, and the other messages of the bundle are opened as usual; a replayed,
duplicated or reordered one is refused by its seq. An altered index either fails here (the whole
bundle is refused, as one malformed message is) or cuts the frames elsewhere, and then the messages
it cut wrongly fail their MAC or format checks.

What Eve learns. Nothing she did not see before: the boundaries, sizes and count of the messages
(now in the index instead of in ZeroMQ's framing) and when they leave. Bundling only tells her which
messages were sent together, i.e. that their senders had them ready within one flush of the I/O
thread, which the send times of separate messages showed already. No key material, tag or mask is
added, moved or removed; the index is a function of the frame lengths she sees in any case. What
she can do to a bundle (split, join, reorder, drop, replay its messages) she could do to the separate
messages, and the seq and MAC rules refuse it the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

from node.classical.envelope import MAX_MESSAGE_BYTES, MAX_PAYLOAD_FRAMES, as_buffer
from node.classical.errors import MessageFormatError

__all__ = [
    "BUNDLE_PROTOCOL",
    "MAX_BUNDLE_MESSAGES",
    "MAX_BUNDLE_BYTES",
    "MIN_MESSAGE_FRAMES",
    "MAX_MESSAGE_FRAMES",
    "is_bundle",
    "encode_bundle",
    "decode_bundle",
    "pack",
]

BUNDLE_PROTOCOL = b"qkdnode-bundle/1"
"""Frame 0 of a bundle: container name and major version (never equal to a message's `PROTOCOL`)."""
MAX_BUNDLE_MESSAGES = 64
"""Messages in one bundle at most (a node has up to 32 blocks in flight, plus its sifting)."""
MAX_BUNDLE_BYTES = MAX_MESSAGE_BYTES
"""All frames of one bundle together, at most (the limit of one message: bundling never lets a
peer make a receiver hold more at once than one message could)."""
MIN_MESSAGE_FRAMES = 4
"""A sealed message has at least the version, type, header and MAC frames."""
MAX_MESSAGE_FRAMES = 4 + MAX_PAYLOAD_FRAMES
"""... and at most `MAX_PAYLOAD_FRAMES` payload frames besides."""

_COUNT = struct.Struct("<H")


def is_bundle(frames: Sequence[Any]) -> bool:
    """True when received `frames` are a bundle (frame 0 is `BUNDLE_PROTOCOL`), not a single message."""
    if not frames:
        return False
    first = as_buffer(frames[0])
    return len(first) == len(BUNDLE_PROTOCOL) and bytes(first) == BUNDLE_PROTOCOL


def _size(frames: Sequence[Any]) -> int:
    return sum(len(as_buffer(f)) for f in frames)


def encode_bundle(messages: Sequence[Sequence[Any]]) -> list[Any]:
    """The ZeroMQ frames of a bundle of `messages` (each a sealed message's frames, in send order).

    `ValueError` unless there are 2..`MAX_BUNDLE_MESSAGES` messages of `MIN_MESSAGE_FRAMES`..
    `MAX_MESSAGE_FRAMES` frames each, at most `MAX_BUNDLE_BYTES` in all. Frames are not copied."""
    if not 2 <= len(messages) <= MAX_BUNDLE_MESSAGES:
        raise ValueError(f"a bundle holds 2..{MAX_BUNDLE_MESSAGES} messages, got {len(messages)}")
    index = [_COUNT.pack(len(messages))]
    out: list[Any] = [BUNDLE_PROTOCOL, b""]
    total = 0
    for i, frames in enumerate(messages):
        if not MIN_MESSAGE_FRAMES <= len(frames) <= MAX_MESSAGE_FRAMES:
            raise ValueError(
                f"message {i} of a bundle must have {MIN_MESSAGE_FRAMES}..{MAX_MESSAGE_FRAMES} frames, got {len(frames)}"
            )
        index.append(_COUNT.pack(len(frames)))
        out.extend(frames)
        total += _size(frames)
    if total > MAX_BUNDLE_BYTES:
        raise ValueError(f"a bundle's messages are {total} bytes; at most {MAX_BUNDLE_BYTES} are allowed")
    out[1] = b"".join(index)
    return out


def decode_bundle(frames: Sequence[Any], max_bytes: int = MAX_BUNDLE_BYTES) -> list[list[Any]]:
    """The messages of a received bundle, each as its list of frames (not copied, not opened).

    Every rule broken is a `MessageFormatError` naming it; see the module docstring for the format."""
    if not isinstance(frames, (list, tuple)):
        raise MessageFormatError(f"a bundle must be a list of frames, got {type(frames).__name__}")
    if len(frames) < 2:
        raise MessageFormatError(f"a bundle needs its protocol and index frames, got {len(frames)} frames")
    bufs = [as_buffer(f) for f in frames]
    if not is_bundle(bufs):
        shown = repr(bytes(memoryview(bufs[0])[:32]))[:40]
        raise MessageFormatError(f"bundle frame 0 (protocol/version) must be {BUNDLE_PROTOCOL!r}, got {shown}")
    total = sum(len(b) for b in bufs[2:])
    if total > max_bytes:
        raise MessageFormatError(f"a bundle's messages are {total} bytes; at most {max_bytes} are allowed")
    index = bytes(bufs[1])
    if len(index) < _COUNT.size or len(index) % _COUNT.size:
        raise MessageFormatError(
            f"bundle frame 1 (index) must be uint16 counts (an even number of bytes >= 2), got {len(index)} bytes"
        )
    n = _COUNT.unpack_from(index)[0]
    if not 2 <= n <= MAX_BUNDLE_MESSAGES:
        raise MessageFormatError(f"bundle frame 1 (index): a bundle holds 2..{MAX_BUNDLE_MESSAGES} messages, got {n}")
    if len(index) != _COUNT.size * (n + 1):
        raise MessageFormatError(
            f"bundle frame 1 (index) must be {_COUNT.size * (n + 1)} bytes for {n} messages, got {len(index)}"
        )
    counts = [c for (c,) in _COUNT.iter_unpack(index[_COUNT.size :])]
    for i, c in enumerate(counts):
        if not MIN_MESSAGE_FRAMES <= c <= MAX_MESSAGE_FRAMES:
            raise MessageFormatError(
                f"bundle frame 1 (index): message {i} has {c} frames; "
                f"a message has {MIN_MESSAGE_FRAMES}..{MAX_MESSAGE_FRAMES}"
            )
    if sum(counts) != len(bufs) - 2:
        raise MessageFormatError(
            f"bundle frame 1 (index) counts {sum(counts)} message frames but {len(bufs) - 2} follow"
        )
    out = []
    start = 2
    for c in counts:
        out.append(list(frames[start : start + c]))
        start += c
    return out


def pack(
    messages: Sequence[Sequence[Any]],
    max_messages: int = MAX_BUNDLE_MESSAGES,
    max_bytes: int = MAX_BUNDLE_BYTES,
) -> Iterator[tuple[list[Any], int]]:
    """The ZeroMQ messages that carry `messages` (sealed frames, in send order), in the same order,
    each with the number of messages it carries: consecutive messages share a bundle up to
    `max_messages` / `max_bytes` (<= `MAX_BUNDLE_BYTES`); a lone one goes as itself."""
    group: list[Sequence[Any]] = []
    size = 0
    for frames in messages:
        n = _size(frames)
        if group and (len(group) >= max_messages or size + n > max_bytes):
            yield _wire(group)
            group, size = [], 0
        group.append(frames)
        size += n
    if group:
        yield _wire(group)


def _wire(group: list[Sequence[Any]]) -> tuple[list[Any], int]:
    return (list(group[0]) if len(group) == 1 else encode_bundle(group)), len(group)
