"""The authenticated classical channel between nodes and key managers (DESIGN §4–5).

- `envelope`: the versioned multipart message (`Message`) and its strict decoder;
- `keypool`: `AuthKeyPool`, one direction's accounted stream of authentication key bits;
- `mac`: the Wegman–Carter one-time MAC (Poly1305 hash + one-time mask) and its forgery bound;
- `link`: `SecureLink`, which seals and opens messages of one peer link (keys, seq, replays);
- `channel`: `PeerChannel`, a ZeroMQ socket owned by one thread, with timeouts;
- `dispatch`: `Dispatcher`, the message-type -> handler table whose loop survives bad messages.
"""

from __future__ import annotations

from node.classical.envelope import PROTOCOL, Message
from node.classical.errors import (
    AuthenticationError,
    AuthKeyExhausted,
    ChannelClosed,
    ChannelTimeout,
    ClassicalChannelError,
    MessageFormatError,
    ReplayError,
    UnknownMessageType,
    VersionError,
)
from node.classical.keypool import AuthKeyPool
from node.classical.link import SecureLink, split_directions
from node.classical.mac import TAG_BITS, forgery_probability

__all__ = [
    "PROTOCOL",
    "Message",
    "AuthKeyPool",
    "SecureLink",
    "split_directions",
    "TAG_BITS",
    "forgery_probability",
    "ClassicalChannelError",
    "MessageFormatError",
    "VersionError",
    "AuthenticationError",
    "ReplayError",
    "AuthKeyExhausted",
    "UnknownMessageType",
    "ChannelTimeout",
    "ChannelClosed",
]
