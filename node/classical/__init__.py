"""The authenticated classical channel between nodes and key managers (DESIGN §4–5).

- `envelope`: the versioned multipart message (`Message`) and its strict decoder;
- `bundle`: several sealed messages carried in one ZeroMQ message (blocks in flight), a transport
  container only: each message keeps its own seq and authentication;
- `keypool`: `AuthKeyPool`, one direction's accounted stream of authentication key bits;
- `mac`: the Wegman–Carter one-time MAC (Poly1305 hash + one-time mask) and its forgery bound;
- `link`: `SecureLink`, which seals and opens messages of one peer link (keys, seq, replays), with a
  tag per message or, in transcript mode, one tag per block transcript and direction;
- `transcript`: the running ε-almost-Δ-universal transcript hash, its closing tag and its bound;
- `linkstate`: durable, overwritten link-state files and the single-use bootstrap secret;
- `channel`: the blocking adapter: `PeerChannel` / `RouterChannel`, ZeroMQ sockets owned by one
  thread, with timeouts, and `SecureChannel` (a `PeerChannel` + `SecureLink`: send/recv/request);
- `aio`: the asyncio adapter: `AsyncRouter`, one ROUTER socket serving many authenticated flows
  (the key manager's peer server and ingest);
- `messages`: `MessageType`, every wire name (link, ingest, KM sync, relay), and the typed bodies
  both ends share (`ErrorBody`, the one ERROR shape; `KeyBlockHeader`, `KeyBlockAck`, `KeyBlockNack`);
- `dispatch`: `DispatchTable`, a server's message-type -> handler table, built once, that answers
  unknown types and failed handlers with the one ERROR shape; `serve`, its blocking loop.

Message counters survive restarts by one scheme, `SecureLink.set_persistence` (a send reservation
written ahead, so a crash never reuses a mask): the node daemon persists the whole link state
through it, the key manager's flows (`node.keymanager.wire.PersistentLink`) their counters.
"""

from __future__ import annotations

from node.classical.channel import PeerChannel, RouterChannel, SecureChannel
from node.classical.dispatch import DispatchTable
from node.classical.envelope import PROTOCOL, Message
from node.classical.errors import (
    AuthenticationError,
    AuthenticationLocked,
    AuthKeyExhausted,
    ChannelClosed,
    ChannelTimeout,
    ClassicalChannelError,
    MessageFormatError,
    ReplayError,
    TranscriptAuthenticationError,
    UnknownMessageType,
    VersionError,
)
from node.classical.keypool import AuthKeyPool
from node.classical.link import SecureLink, split_directions
from node.classical.mac import TAG_BITS, forgery_probability
from node.classical.messages import BodyError, ErrorBody, MessageType

__all__ = [
    "PROTOCOL",
    "Message",
    "AuthKeyPool",
    "SecureLink",
    "split_directions",
    "TAG_BITS",
    "forgery_probability",
    "PeerChannel",
    "RouterChannel",
    "SecureChannel",
    "DispatchTable",
    "MessageType",
    "ErrorBody",
    "BodyError",
    "ClassicalChannelError",
    "MessageFormatError",
    "VersionError",
    "AuthenticationError",
    "ReplayError",
    "AuthKeyExhausted",
    "AuthenticationLocked",
    "TranscriptAuthenticationError",
    "UnknownMessageType",
    "ChannelTimeout",
    "ChannelClosed",
]
