"""The node's key outbox: distilled keys persisted before they are confirmed and handed to the KM.

A block's key goes through `unconfirmed` (Bob has it, Alice may not yet) -> `confirmed` (both ends
hold it) -> `delivered` (the local key manager acknowledged it durably; the key bytes are then
wiped). After a crash the two ends compare their unconfirmed and confirmed block ids, so a key
reaches the key managers on both sides or on neither. SQLite with `secure_delete`, full sync, an
owner-only file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.link.distill import DistilledKey

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    link_id TEXT NOT NULL,
    block_id INTEGER NOT NULL,
    key BLOB,
    length_bits INTEGER NOT NULL,
    qber REAL NOT NULL,
    meta TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('unconfirmed', 'confirmed', 'delivered')),
    refill BLOB,
    PRIMARY KEY (link_id, block_id)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class OutboxEntry:
    """A key waiting in the outbox (its bytes never printed)."""

    link_id: str
    block_id: int
    key: bytes
    length_bits: int
    qber: float
    meta: dict[str, Any]

    def __repr__(self) -> str:
        return f"OutboxEntry({self.link_id}/{self.block_id}, <{self.length_bits} bits>)"


class Outbox:
    """Durable store of one node's distilled keys until its key manager has them."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        for suffix in ("-wal", "-shm"):
            aux = Path(str(path) + suffix)
            if aux.exists():
                os.chmod(aux, 0o600)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def put(self, key: DistilledKey, state: str, refill: bytes = b"") -> None:
        """Persist a block's key as `unconfirmed` or `confirmed` (an existing row is left as it is).

        `refill` is the block's authentication refill, kept until `take_refill` so that a node that
        crashed between its peer's refill and its own applies it in the same order after restart.
        """
        if state not in ("unconfirmed", "confirmed"):
            raise ValueError(f"state must be 'unconfirmed' or 'confirmed', got {state!r}")
        meta = json.dumps({"leaked_bits": key.leaked_bits, "sifted_bits": key.sifted_bits})
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key.link_id, key.block_id, key.key, key.length_bits, key.qber, meta, state, refill or None),
            )

    def confirm(self, link_id: str, block_ids: list[int]) -> None:
        """Mark blocks as held by both ends."""
        with self._lock:
            self._db.executemany(
                "UPDATE outbox SET state='confirmed' WHERE link_id=? AND block_id=? AND state='unconfirmed'",
                [(link_id, b) for b in block_ids],
            )

    def pending_refills(self, link_id: str) -> list[int]:
        """Confirmed blocks whose authentication refill is not yet applied, in block order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT block_id FROM outbox WHERE link_id=? AND state!='unconfirmed' AND refill IS NOT NULL "
                "ORDER BY block_id",
                (link_id,),
            ).fetchall()
        return [r[0] for r in rows]

    def refill_of(self, link_id: str, block_id: int) -> bytes:
        """The block's pending authentication refill (empty when none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT refill FROM outbox WHERE link_id=? AND block_id=?", (link_id, block_id)
            ).fetchone()
        return b"" if row is None or row[0] is None else bytes(row[0])

    def refill_applied(self, link_id: str, block_id: int) -> None:
        """Forget a block's refill once the authentication pools hold it."""
        with self._lock:
            self._db.execute("UPDATE outbox SET refill=NULL WHERE link_id=? AND block_id=?", (link_id, block_id))

    def drop(self, link_id: str, block_ids: list[int]) -> None:
        """Forget unconfirmed blocks the peer does not hold (their keys are overwritten on disk)."""
        with self._lock:
            self._db.executemany(
                "DELETE FROM outbox WHERE link_id=? AND block_id=? AND state='unconfirmed'",
                [(link_id, b) for b in block_ids],
            )

    def block_ids(self, link_id: str, state: str) -> list[int]:
        """Block ids of a link in one state, ascending."""
        with self._lock:
            rows = self._db.execute(
                "SELECT block_id FROM outbox WHERE link_id=? AND state=? ORDER BY block_id", (link_id, state)
            ).fetchall()
        return [r[0] for r in rows]

    def pending_delivery(self, limit: int = 16) -> list[OutboxEntry]:
        """Confirmed keys not yet acknowledged by the key manager, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT link_id, block_id, key, length_bits, qber, meta FROM outbox WHERE state='confirmed' "
                "ORDER BY link_id, block_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [OutboxEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def delivered(self, link_id: str, block_id: int) -> None:
        """The key manager holds the block: wipe its key bytes, keep the row as a record."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state='delivered', key=NULL WHERE link_id=? AND block_id=?", (link_id, block_id)
            )

    def max_block_id(self, link_id: str) -> int:
        """Largest block id recorded for the link (-1 when none)."""
        with self._lock:
            row = self._db.execute("SELECT MAX(block_id) FROM outbox WHERE link_id=?", (link_id,)).fetchone()
        return -1 if row[0] is None else int(row[0])

    def get_counter(self, name: str, default: int = 0) -> int:
        """A persisted counter (for instance the next block id or the slot high-water mark)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return default if row is None else int(row[0])

    def set_counter(self, name: str, value: int) -> None:
        """Persist a counter."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", (name, int(value)))
