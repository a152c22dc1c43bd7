"""Durable bookkeeping of trusted-node key relay (ITU-T Y.3803) in the key manager's SQLite store.

One-time pads. A hop X -> Y encrypts the relayed key with bits of the pool X shares with Y. The
sender X draws them from *relay chunks*: whole untouched chunks of its own stripe (see `store`),
moved out of the SAE allocation path, so pads never interleave with KEY_ALLOC allocations in flight
and the receiver can take them in any order. A pad is a list of (link, block, chunk, offset,
nbytes) slices; the sender cuts relay chunks sequentially (cursor), the receiver records every
slice it used in `relay_pads` and refuses one that overlaps a slice already used (a replayed or
forged pad). Used bytes are overwritten with zeros in the same transaction. `relay_pads` is thus
the ledger of link key consumed by relaying: every row names the one relay that used those bits.

Relayed keys. The destination KM stores each relayed key (state reserved, with grants for the
named slave SAEs) in the same transaction that consumes the incoming pad; the source KM records
the keys as delivered once the destination acknowledged, before its master SAE gets the answer.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from node.keymanager.chunks import Chunk
from node.keymanager.delivery import GRANT_DELIVERED, RELAYED, add_grants, consume_grants
from node.keymanager.errors import PoolExhausted
from node.keymanager.store import KeyStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS relay_chunks(
    pool TEXT NOT NULL, link_id TEXT NOT NULL, block_id INTEGER NOT NULL, idx INTEGER NOT NULL,
    owner INTEGER NOT NULL, size INTEGER NOT NULL, cursor INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY(link_id, block_id, idx));
CREATE TABLE IF NOT EXISTS relay_pads(
    link_id TEXT NOT NULL, block_id INTEGER NOT NULL, idx INTEGER NOT NULL, offset INTEGER NOT NULL,
    nbytes INTEGER NOT NULL, pool TEXT NOT NULL, relay_id TEXT NOT NULL,
    direction TEXT NOT NULL CHECK(direction IN ('out', 'in')), created REAL NOT NULL,
    PRIMARY KEY(link_id, block_id, idx, offset));
CREATE TABLE IF NOT EXISTS relays(
    relay_id TEXT PRIMARY KEY, role TEXT NOT NULL, state TEXT NOT NULL CHECK(state IN ('pending', 'done', 'void')),
    path TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS relayed_keys(
    key_id TEXT PRIMARY KEY, relay_id TEXT NOT NULL, origin INTEGER NOT NULL, master_sae TEXT NOT NULL,
    slaves TEXT NOT NULL, path TEXT NOT NULL,
    state TEXT NOT NULL CHECK(state IN ('reserved', 'delivered', 'void')), material BLOB, digest BLOB,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS relay_grants(
    key_id TEXT NOT NULL, sae_id TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(key_id, sae_id));
"""


@dataclass(frozen=True)
class PadSlice:
    """Bytes [offset, offset + nbytes) of one chunk of one block: part of a one-time pad."""

    link_id: str
    block_id: int
    idx: int
    offset: int
    nbytes: int

    def to_json(self) -> list:
        """Wire form: [link, block, chunk, offset, nbytes]."""
        return [self.link_id, self.block_id, self.idx, self.offset, self.nbytes]

    @classmethod
    def from_json(cls, obj: object) -> PadSlice:
        """Parse the wire form; `ValueError` on anything malformed."""
        if not (
            isinstance(obj, list)
            and len(obj) == 5
            and isinstance(obj[0], str)
            and obj[0]
            and all(type(v) is int for v in obj[1:])
        ):
            raise ValueError("pad slice must be [link_id, block_id, chunk, offset, nbytes]")
        s = cls(obj[0], obj[1], obj[2], obj[3], obj[4])
        if s.block_id < 0 or s.idx < 0 or s.offset < 0 or s.nbytes <= 0:
            raise ValueError("pad slice block/chunk/offset must be >= 0 and nbytes > 0")
        return s


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """a XOR b (equal lengths): one-time-pad encryption and decryption."""
    if len(a) != len(b):
        raise ValueError(f"pad length {len(b)} differs from data length {len(a)}")
    return np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)).tobytes()


class RelayStore:
    """Relay tables next to a `KeyStore` (same connection and transactions; called from the store's
    thread only). Takes whole chunks out of the pool through the store's public methods."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.db = store.db
        store.add_schema(SCHEMA)

    # -- one-time pads ---------------------------------------------------------------------------

    def pad_bits_available(self, pool: str) -> int:
        """Bits this KM could still draw for relay pads towards peer `pool` (its stripe's whole
        untouched confirmed chunks plus what is left of its relay chunks)."""
        role = self.store.role(pool)
        whole = self.store.whole_chunk_bytes(pool, role)
        left = self.db.execute(
            "SELECT COALESCE(SUM(size - cursor), 0) FROM relay_chunks WHERE pool=? AND owner=?", (pool, role)
        ).fetchone()[0]
        return 8 * int(whole + left)

    def take_pad(
        self, pool: str, relay_id: str, nbytes: int, role: str = "source", path: Sequence[str] = ()
    ) -> tuple[list[PadSlice], bytes]:
        """Draw `nbytes` of pad from this KM's stripe towards `pool` for relay `relay_id`, durably.

        Raises `PoolExhausted` (nothing consumed) when the stripe holds too little.
        """
        if nbytes < 1:
            raise ValueError(f"nbytes must be >= 1, got {nbytes}")
        own = self.store.role(pool)
        slices: list[PadSlice] = []
        parts: list[bytes] = []
        want = nbytes
        now = time.time()
        with self.store.transaction():
            while want:
                row = self.db.execute(
                    "SELECT link_id, block_id, idx, size, cursor, data FROM relay_chunks "
                    "WHERE pool=? AND owner=? AND cursor<size ORDER BY rowid LIMIT 1",
                    (pool, own),
                ).fetchone()
                if row is None:
                    self._claim_whole_chunk(pool, own)
                    continue
                link_id, block_id, idx, size, cursor, data = row
                n = min(want, size - cursor)
                slices.append(PadSlice(link_id, block_id, idx, cursor, n))
                parts.append(bytes(data[cursor : cursor + n]))
                self.db.execute(
                    "UPDATE relay_chunks SET cursor=?, data=? WHERE link_id=? AND block_id=? AND idx=?",
                    (cursor + n, bytes(cursor + n) + bytes(data[cursor + n :]), link_id, block_id, idx),
                )
                self.db.execute(
                    "INSERT INTO relay_pads(link_id, block_id, idx, offset, nbytes, pool, relay_id, "
                    "direction, created) VALUES(?,?,?,?,?,?,?,'out',?)",
                    (link_id, block_id, idx, cursor, n, pool, relay_id, now),
                )
                want -= n
            self._note_relay(relay_id, role, path, now)
        return slices, b"".join(parts)

    def _claim_whole_chunk(self, pool: str, own: int) -> None:
        """Move one whole untouched chunk of this KM's stripe (the newest) into the relay chunks."""
        newest = self.store.newest_whole_chunks(pool, own, 1)
        if not newest:
            raise PoolExhausted(f"pool {pool} holds too little key for a relay pad")
        self._move_chunk(pool, newest[0])

    def _move_chunk(self, pool: str, c: Chunk) -> None:
        """Take chunk `c` out of the key pool into the relay chunks (inside a transaction)."""
        self.store.remove_chunks(pool, [c])
        self.db.execute(
            "INSERT INTO relay_chunks(pool, link_id, block_id, idx, owner, size, cursor, data) VALUES(?,?,?,?,?,?,0,?)",
            (pool, c.link_id, c.block_id, c.idx, c.owner, c.size, c.data),
        )

    def _accept_pad_locked(self, pool: str, relay_id: str, slices: Sequence[PadSlice], now: float) -> bytes:
        peer_role = 1 - self.store.role(pool)
        parts = []
        for s in slices:
            row = self.db.execute(
                "SELECT owner, size, data FROM relay_chunks WHERE pool=? AND link_id=? AND block_id=? AND idx=?",
                (pool, s.link_id, s.block_id, s.idx),
            ).fetchone()
            if row is None:
                whole = self.store.untouched_chunk(pool, s.link_id, s.block_id, s.idx)
                if whole is None:
                    raise ValueError("relay pad names a chunk not held here as untouched key")
                if whole.owner != peer_role:
                    raise ValueError("relay pad lies outside the sending KM's stripe")
                self._move_chunk(pool, whole)
                row = (whole.owner, whole.size, whole.data)
            owner, size, data = row
            if owner != peer_role:
                raise ValueError("relay pad lies outside the sending KM's stripe")
            if s.offset + s.nbytes > size:
                raise ValueError("relay pad runs past its chunk")
            clash = self.db.execute(
                "SELECT 1 FROM relay_pads WHERE link_id=? AND block_id=? AND idx=? AND offset<? AND offset+nbytes>? "
                "LIMIT 1",
                (s.link_id, s.block_id, s.idx, s.offset + s.nbytes, s.offset),
            ).fetchone()
            if clash is not None:
                raise ValueError("relay pad overlaps link key already used by a relay (replay?)")
            parts.append(bytes(data[s.offset : s.offset + s.nbytes]))
            zeroed = bytes(data[: s.offset]) + bytes(s.nbytes) + bytes(data[s.offset + s.nbytes :])
            self.db.execute(
                "UPDATE relay_chunks SET data=? WHERE link_id=? AND block_id=? AND idx=?",
                (zeroed, s.link_id, s.block_id, s.idx),
            )
            self.db.execute(
                "INSERT INTO relay_pads(link_id, block_id, idx, offset, nbytes, pool, relay_id, "
                "direction, created) VALUES(?,?,?,?,?,?,?,'in',?)",
                (s.link_id, s.block_id, s.idx, s.offset, s.nbytes, pool, relay_id, now),
            )
        return b"".join(parts)

    def accept_pad(self, pool: str, relay_id: str, slices: Sequence[PadSlice], path: Sequence[str] = ()) -> bytes:
        """Consume the pad the peer `pool` drew for relay `relay_id` (a transit hop), durably.

        Raises `ValueError` (nothing consumed) for slices outside the peer's stripe, unknown chunks,
        or bits already used by a relay.
        """
        now = time.time()
        with self.store.transaction():
            pad = self._accept_pad_locked(pool, relay_id, slices, now)
            self._note_relay(relay_id, "transit", path, now)
        return pad

    def _note_relay(self, relay_id: str, role: str, path: Sequence[str], now: float) -> None:
        self.db.execute(
            "INSERT INTO relays(relay_id, role, state, path, created) VALUES(?,?,'pending',?,?) "
            "ON CONFLICT(relay_id) DO NOTHING",
            (relay_id, role, json.dumps(list(path)), now),
        )

    # -- relay outcomes --------------------------------------------------------------------------

    def accept_relayed_keys(
        self,
        pool: str,
        relay_id: str,
        slices: Sequence[PadSlice],
        ciphertext: bytes,
        key_ids: Sequence[str],
        master: str,
        slaves: Sequence[str],
        path: Sequence[str],
    ) -> bool:
        """At the destination: consume the incoming pad, decrypt and store the keys for `slaves`, in
        one durable transaction; True if stored, False if this relay was stored already (it came again
        over another route after a hop gave up waiting: same key IDs and same keys, checked by digest).
        `ValueError` (nothing stored) on a bad pad, or a known relay or key ID with other content."""
        now = time.time()
        with self.store.transaction():
            pad = self._accept_pad_locked(pool, relay_id, slices, now)
            plain = xor_bytes(ciphertext, pad)
            n = len(plain) // len(key_ids)
            digests = [hashlib.sha256(plain[i * n : (i + 1) * n]).digest() for i in range(len(key_ids))]
            if self.db.execute("SELECT 1 FROM relays WHERE relay_id=?", (relay_id,)).fetchone() is not None:
                stored = self.db.execute(
                    "SELECT key_id, digest FROM relayed_keys WHERE relay_id=? AND origin=0 ORDER BY rowid", (relay_id,)
                ).fetchall()
                if [(k, bytes(d)) for k, d in stored] != list(zip(key_ids, digests)):
                    raise ValueError("relay ID already seen here with other keys (replay?)")
                return False
            path_json = json.dumps(list(path))
            for i, key_id in enumerate(key_ids):
                if (
                    self.store.knows_key(key_id)
                    or self.db.execute("SELECT 1 FROM relayed_keys WHERE key_id=?", (key_id,)).fetchone() is not None
                ):
                    raise ValueError("relayed key ID already known here (replay?)")
                self.db.execute(
                    "INSERT INTO relayed_keys(key_id, relay_id, origin, master_sae, slaves, path, state, "
                    "material, digest, created) VALUES(?,?,0,?,?,?,'reserved',?,?,?)",
                    (
                        key_id,
                        relay_id,
                        master,
                        json.dumps(list(slaves)),
                        path_json,
                        plain[i * n : (i + 1) * n],
                        digests[i],
                        now,
                    ),
                )
                add_grants(self.db, RELAYED, key_id, slaves)
            self.db.execute(
                "INSERT INTO relays(relay_id, role, state, path, created) VALUES(?,?,?,?,?)",
                (relay_id, "destination", "done", path_json, now),
            )
        return True

    def finish_source(
        self, relay_id: str, key_ids: Sequence[str], master: str, slaves: Sequence[str], path: Sequence[str]
    ) -> None:
        """At the source, once the destination acknowledged: the keys are delivered to the master."""
        now = time.time()
        path_json = json.dumps(list(path))
        with self.store.transaction():
            self.db.executemany(
                "INSERT INTO relayed_keys(key_id, relay_id, origin, master_sae, slaves, path, state, created) "
                "VALUES(?,?,1,?,?,?,'delivered',?)",
                [(k, relay_id, master, json.dumps(list(slaves)), path_json, now) for k in key_ids],
            )
            self.db.execute("UPDATE relays SET state='done', path=? WHERE relay_id=?", (path_json, relay_id))

    def set_relay_state(self, relay_id: str, state: str, path: Sequence[str] = ()) -> None:
        """Mark a relay done or void at this hop (its pads stay consumed either way)."""
        if state not in ("done", "void"):
            raise ValueError(f"state must be 'done' or 'void', got {state!r}")
        with self.store.transaction():
            self.db.execute("UPDATE relays SET state=? WHERE relay_id=? AND state='pending'", (state, relay_id))

    def void_relay(self, relay_id: str) -> int:
        """Void a relay here; at its destination also the keys no slave fetched yet. Returns keys voided."""
        with self.store.transaction():
            self.db.execute("UPDATE relays SET state='void' WHERE relay_id=?", (relay_id,))
            return self.db.execute(
                "UPDATE relayed_keys SET state='void', material=NULL WHERE relay_id=? AND origin=0 "
                "AND state='reserved' AND key_id NOT IN (SELECT key_id FROM relay_grants "
                "WHERE delivered=1)",
                (relay_id,),
            ).rowcount

    def recover(self) -> int:
        """At start: void relays left pending here (cut short by a crash; their master got no answer,
        and a transit hop's upstream saw a failure). Their pads stay consumed."""
        with self.store.transaction():
            return self.db.execute("UPDATE relays SET state='void' WHERE state='pending'").rowcount

    def relay_state(self, relay_id: str) -> str | None:
        """State of a relay at this hop (None if unknown here)."""
        row = self.db.execute("SELECT state FROM relays WHERE relay_id=?", (relay_id,)).fetchone()
        return None if row is None else row[0]

    # -- slave side ------------------------------------------------------------------------------

    def holds_relayed(self, key_ids: Sequence[str]) -> bool:
        """Whether any of `key_ids` is a relayed key recorded here."""
        return any(
            self.db.execute("SELECT 1 FROM relayed_keys WHERE key_id=?", (k,)).fetchone() is not None for k in key_ids
        )

    def fetch(self, requester: str, master: str, key_ids: Sequence[str]) -> list[tuple[bytes, list[str]]]:
        """Deliver relayed keys to slave SAE `requester`, all or none, each at most once per slave:
        (key bytes, path) per key. The same rule as `KeyStore.fetch` (`delivery.consume_grants`);
        the grant goes straight to delivered (a relayed key has no master KM next door to tell of
        an answer lost in a crash)."""
        with self.store.transaction():
            rows = consume_grants(self.db, RELAYED, requester, master, key_ids, GRANT_DELIVERED)
        return [(bytes(material), json.loads(path)) for material, path in rows]

    # -- audits (positions and states only, never bits) ------------------------------------------

    def pad_ledger(self) -> list[tuple[str, int, int, int, int, str, str, str]]:
        """Every pad slice used here: (link, block, chunk, offset, nbytes, pool, relay ID, direction)."""
        return [
            tuple(r)
            for r in self.db.execute(
                "SELECT link_id, block_id, idx, offset, nbytes, pool, relay_id, direction FROM relay_pads"
            )
        ]

    def relays(self) -> dict[str, tuple[str, str, list[str]]]:
        """Relay ID -> (role, state, path) of every relay seen here."""
        return {
            r[0]: (r[1], r[2], json.loads(r[3]))
            for r in self.db.execute("SELECT relay_id, role, state, path FROM relays")
        }

    def relayed_key_states(self) -> dict[str, tuple[int, str, str]]:
        """Key ID -> (origin, state, relay ID) of every relayed key recorded here."""
        return {
            r[0]: (r[1], r[2], r[3])
            for r in self.db.execute("SELECT key_id, origin, state, relay_id FROM relayed_keys")
        }
