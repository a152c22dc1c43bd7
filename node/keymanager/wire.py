"""The one seam between the key manager and the authenticated classical channel (`node.classical`).

`PersistentLink` wraps one `SecureLink` flow (Wegman–Carter MAC, replay protection) and keeps its
sequence numbers across restarts with the link's one reservation scheme (`SecureLink.set_persistence`):
before the send counter passes the persisted reservation, the next one is written (fsync) to a small
owner-only state file, and a restarted process resumes sending at it, so a one-time mask is never
reused. The receive counter is persisted alongside; a replay of a
message older than the crash but newer than the persisted counter is possible after a restart, and
every key-manager message is idempotent for that reason.

One KM pair uses two flows, each carried by one DEALER -> ROUTER connection so that each direction
is in order: flow 0 carries requests of the KM whose ID sorts first (and the replies), flow 1 those
of the other. The pre-shared bootstrap secret is cut in two halves, one per flow.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node.classical import Message, SecureLink
from node.private_files import write_private_file

MARK_STEP = 32


def load_secret(path: str) -> bytes:
    """Read a pre-shared bootstrap secret file (a multiple of 64 bytes, at least 64)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"link secret {path!r} cannot be read: {exc.strerror}") from None
    if len(data) < 64 or len(data) % 64:
        raise ValueError(f"link secret {path!r} must hold a positive multiple of 64 bytes, has {len(data)}")
    return data


def flow_secret(secret: bytes, flow: int) -> bytes:
    """The half of the bootstrap secret that authenticates `flow` (0 or 1)."""
    if flow not in (0, 1):
        raise ValueError(f"flow must be 0 or 1, got {flow}")
    half = len(secret) // 2
    return secret[flow * half : (flow + 1) * half]


class LinkState:
    """An owner-only JSON file holding the sequence counters of every flow of a process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self.marks: dict[str, Any] = json.loads(Path(path).read_text())
        except FileNotFoundError:
            self.marks = {}
        except (OSError, ValueError) as exc:
            raise ValueError(f"link state file {path!r} is unreadable: {exc}") from None

    def save(self) -> None:
        """Write the counters durably (owner-only, write, fsync, rename)."""
        with self._lock:
            write_private_file(self.path, json.dumps(self.marks))


class PersistentLink:
    """A `SecureLink` flow whose send and receive counters survive restarts (see module doc).

    The counters are persisted by the link's own reservation scheme (`SecureLink.set_persistence`,
    the one the node daemon uses too): the send counter is written `MARK_STEP` ahead before a seal
    passes the last reservation. Only the counters are written: the keys are rebuilt from the
    bootstrap secret and the refills at every start.
    """

    def __init__(self, secret: bytes, initiator: bool, state: LinkState, name: str) -> None:
        base = SecureLink.from_bootstrap(secret, "initiator" if initiator else "responder").state()
        saved = state.marks.get(name, {})
        base["send_seq"] = int(saved.get("send_mark", 0))
        base["recv_last_seq"] = int(saved.get("recv_last", -1))
        self.link = SecureLink.from_state(base)
        self.state = state
        self.name = name
        self.link.set_persistence(self._persist, reserve=MARK_STEP, counters_only=True)

    def _persist(self, counters: dict[str, Any]) -> None:
        """Store the link's counters (its send_seq is the reservation's end)."""
        self.state.marks[self.name] = {"send_mark": counters["send_seq"], "recv_last": counters["recv_last_seq"]}
        self.state.save()

    def seal(self, message: Message) -> list[Any]:
        """Sealed frames of `message` (a new reservation is persisted first when the old one is used up)."""
        return self.link.seal(message)

    def open(self, frames: Sequence[Any]) -> Message:
        """Verify and decode; raises the `node.classical` errors on bad, forged or replayed frames."""
        return self.link.open(list(frames))

    def refill(self, material: bytes) -> None:
        """Append fresh shared key to both directions of this flow (identically on both KMs)."""
        self.link.refill(material)

    @property
    def messages_left(self) -> int:
        """How many more messages this flow can seal before its authentication key must be refilled."""
        return self.link.messages_left

    def close(self) -> None:
        """Persist the receive counter (with a send reservation ahead of the send counter)."""
        self.link.persist()
