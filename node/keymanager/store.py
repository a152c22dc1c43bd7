"""Durable key store: SQLite pools of shared key per peer KM, with exact key states.

Layout. A key block from the local QKD module is cut into chunks of `chunk_bytes`. Each chunk is
owned by exactly one of the two KMs of the pair (owner = (block_id + chunk index) mod 2; owner 0 is
the KM whose KME ID sorts first), and only its owner ever allocates keys from it. Keys are cut
sequentially from a chunk, so a chunk's `cursor` is the boundary between consumed and available
bytes; the consumed prefix is overwritten with zeros in the same transaction. Both KMs therefore
allocate from disjoint bits by construction, and the owner tells the peer which (chunk, offset,
length) carries which key ID before its master SAE gets the key.

Key states: bits are *available* in a chunk; a key is *reserved* (a key ID bound to bits) and then
*delivered*; a reserved key that can no longer be delivered safely becomes *void* (its bits are never
reused). Every state change is one SQLite transaction, committed with synchronous=FULL before the
caller answers anyone (a pure reservation, which answers no one, is only written to the WAL; see
`reserve_many`). The file is created owner-only (0600) and `secure_delete` makes
SQLite overwrite freed content.

No served, voided or consumed key left on disk. Consumed bytes are overwritten in place (zeros, or
NULL with `secure_delete`), but SQLite's write-ahead log still holds the earlier images of those
pages. So every commit that serves or voids keys (or consumes relay pads) is followed by a TRUNCATE
checkpoint (`scrub`): the current pages go into the database file and the WAL is cut to zero bytes.
By default (`scrub_deferred=False`) that happens in the commit, before the answer leaves; a key
manager may defer it (`scrub_deferred=True`, then `scrub_if_due` at most every few tens of ms), so
one checkpoint covers every batch served meanwhile: each checkpoint costs a database fsync. Eve with a copy of the disk afterwards finds only unserved key; what
the file system did with the freed blocks (SSD wear levelling, snapshots) is outside this process's
reach: put the store on an encrypted volume.

Answers the slave SAE may never have received. `fetch` marks the slave's grant "answering" (2) in
the commit before the answer leaves; `confirm_answered` marks it delivered (1) once aiohttp has
written the answer. A crash in between leaves grants at 2: `recover_unanswered` records them in
`unanswered` (the key is never served again: at most once), and the peer KM is told so that the
master's side voids the key (`void_lost_at_peer`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.keymanager.errors import ConflictingBlock, KeysNotFound, NotAuthorized, PoolExhausted, PoolFull
from node.private_files import create_private_file

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks(
    link_id TEXT NOT NULL, block_id INTEGER NOT NULL, pool TEXT NOT NULL,
    length_bits INTEGER NOT NULL, qber REAL, params TEXT NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0, received_at REAL NOT NULL,
    PRIMARY KEY(link_id, block_id));
CREATE INDEX IF NOT EXISTS blocks_unconfirmed ON blocks(pool, confirmed);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY, pool TEXT NOT NULL, link_id TEXT NOT NULL, block_id INTEGER NOT NULL,
    idx INTEGER NOT NULL, owner INTEGER NOT NULL, size INTEGER NOT NULL, cursor INTEGER NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL,
    UNIQUE(link_id, block_id, idx));
CREATE INDEX IF NOT EXISTS chunks_alloc ON chunks(pool, owner, confirmed, id);
CREATE TABLE IF NOT EXISTS keys(
    key_id TEXT PRIMARY KEY, pool TEXT NOT NULL, origin INTEGER NOT NULL, master_sae TEXT NOT NULL,
    slaves TEXT NOT NULL, link_id TEXT NOT NULL, block_id INTEGER NOT NULL, idx INTEGER NOT NULL,
    offset INTEGER NOT NULL, nbytes INTEGER NOT NULL,
    state TEXT NOT NULL CHECK(state IN ('reserved', 'delivered', 'void')),
    material BLOB, created REAL NOT NULL,
    UNIQUE(link_id, block_id, idx, offset));
CREATE INDEX IF NOT EXISTS keys_origin ON keys(pool, origin, state);
CREATE TABLE IF NOT EXISTS grants(
    key_id TEXT NOT NULL, sae_id TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(key_id, sae_id));
CREATE TABLE IF NOT EXISTS pools(pool TEXT PRIMARY KEY, stored_bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS auth_refills(
    flow TEXT NOT NULL, n INTEGER NOT NULL, allocations TEXT NOT NULL, material BLOB NOT NULL,
    applied INTEGER NOT NULL, PRIMARY KEY(flow, n));
CREATE TABLE IF NOT EXISTS unanswered(
    key_id TEXT NOT NULL, sae_id TEXT NOT NULL, pool TEXT NOT NULL, at REAL NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(key_id, sae_id));
CREATE TABLE IF NOT EXISTS lost_at_peer(
    key_id TEXT PRIMARY KEY, pool TEXT NOT NULL, master_sae TEXT NOT NULL, at REAL NOT NULL);
"""


AUTH_SAE = "@auth"  # the "master SAE" of bits drawn to authenticate the KM link (no SAE can fetch them)


@dataclass(frozen=True)
class KeyBlock:
    """One distilled block as the local QKD module delivered it (DESIGN §4 `KEY_BLOCK`)."""

    link_id: str
    block_id: int
    pool: str
    length_bits: int
    key: bytes = field(repr=False)
    qber: float | None = None
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class KeyPosition:
    """Where a key's bits lie: a byte range of one chunk of one block."""

    link_id: str
    block_id: int
    idx: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Allocation:
    """A key ID bound to bits: what the owner KM tells its peer (never the bits themselves)."""

    key_id: str
    master_sae: str
    slaves: tuple[str, ...]
    position: KeyPosition

    def to_json(self) -> dict:
        """The wire form of the allocation (key IDs and positions only)."""
        p = self.position
        return {"key_ID": self.key_id, "master": self.master_sae, "slaves": list(self.slaves),
                "link": p.link_id, "block": p.block_id, "chunk": p.idx, "offset": p.offset, "nbytes": p.nbytes}

    @classmethod
    def from_json(cls, obj: object) -> Allocation:
        """Parse the wire form, raising `ValueError` on anything malformed."""
        if not isinstance(obj, dict):
            raise ValueError("allocation must be a JSON object")
        try:
            key_id = str(uuid.UUID(_typed(obj, "key_ID", str)))
            slaves = _typed(obj, "slaves", list)
            if not slaves or not all(isinstance(s, str) and s for s in slaves):
                raise ValueError("allocation field 'slaves' must be a non-empty list of SAE IDs")
            pos = KeyPosition(_typed(obj, "link", str), _typed(obj, "block", int), _typed(obj, "chunk", int),
                              _typed(obj, "offset", int), _typed(obj, "nbytes", int))
        except KeyError as exc:
            raise ValueError(f"allocation lacks field {exc}") from None
        if pos.offset < 0 or pos.nbytes <= 0 or pos.idx < 0:
            raise ValueError("allocation offset/nbytes/chunk out of range")
        return cls(key_id, _typed(obj, "master", str), tuple(slaves), pos)


def _typed(obj: dict, name: str, kind: type) -> Any:
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"allocation field {name!r} must be of type {kind.__name__}")
    return value


@dataclass
class Reserved:
    """Keys reserved for a master SAE: the allocations, the key bytes (memory only) and retired chunks."""

    allocations: list[Allocation]
    material: list[bytes] = field(repr=False)
    retired: list[tuple[str, int, int]]


def chunk_owner(block_id: int, idx: int) -> int:
    """Which KM of the pair (0: the KME ID that sorts first) may allocate from this chunk."""
    return (block_id + idx) & 1


def create_owner_only(path: str) -> None:
    """Create `path` (if absent) with mode 0600 before SQLite opens it, and tighten it if present
    (SQLite gives the -wal and -shm files the database file's mode)."""
    create_private_file(path)


class KeyStore:
    """The key manager's SQLite store. Not thread-safe: one owning thread calls every method."""

    def __init__(self, path: str, kme_id: str, *, capacity_bytes: int = 1 << 30, chunk_bytes: int = 4096,
                 scrub_deferred: bool = False) -> None:
        if not kme_id:
            raise ValueError("kme_id must be a non-empty string")
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        if chunk_bytes < 64 or chunk_bytes > 1 << 20:
            raise ValueError(f"chunk_bytes must be in [64, 1048576], got {chunk_bytes}")
        self.path = path
        self.kme_id = kme_id
        self.capacity_bytes = capacity_bytes
        self.chunk_bytes = chunk_bytes
        crashed = False
        if path != ":memory:":
            create_owner_only(path)
            # a WAL left with frames by a crash may hold images of pages since overwritten
            crashed = os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._scrub_pending = False
        self.scrub_deferred = scrub_deferred  # True: commits only mark `scrub_due`; the owner calls scrub_if_due
        self.db.executescript(SCHEMA)
        if path != ":memory:":
            for aux in (path + "-wal", path + "-shm"):
                if os.path.exists(aux):
                    os.chmod(aux, 0o600)
        if crashed:
            self.scrub()

    def scrub(self) -> bool:
        """Checkpoint the WAL into the database and truncate it to zero bytes, so that earlier page
        images (which held bytes since overwritten) are gone from disk. Another process reading the
        database (an operator's `sqlite3` shell) can block it for longer than the busy timeout: then
        the scrub is retried after the next commit, and False is returned."""
        row = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        self._scrub_pending = bool(row is not None and row[0])
        if self._scrub_pending:
            log.warning("key store %s: a reader blocked the WAL checkpoint; overwritten key bytes stay in the "
                        "WAL until the next one", self.path)
        return not self._scrub_pending

    def close(self) -> None:
        """Checkpoint and close the database."""
        self.db.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def role(self, pool: str) -> int:
        """This KM's stripe in the pool shared with peer KM `pool`."""
        if pool == self.kme_id:
            raise ValueError("pool must name a peer KME ID, not this KM's own")
        return 0 if self.kme_id < pool else 1

    # -- transactions --------------------------------------------------------------------------

    def _begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    @property
    def scrub_due(self) -> bool:
        """Whether a commit overwrote key bytes whose earlier images may still be in the WAL."""
        return self._scrub_pending

    def scrub_if_due(self) -> bool:
        """Scrub if a commit asked for it since the last scrub (deferred mode); True if done or not due."""
        return self.scrub() if self._scrub_pending else True

    def _commit(self, scrub: bool = True) -> None:
        """Commit; with `scrub` (the default, for any transaction that may overwrite key material)
        then checkpoint and truncate the WAL (see the module docstring)."""
        self.db.execute("COMMIT")
        if scrub or self._scrub_pending:
            if self.scrub_deferred:
                self._scrub_pending = True
            else:
                self.scrub()

    def _rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def _pool_bytes(self, pool: str) -> int:
        row = self.db.execute("SELECT stored_bytes FROM pools WHERE pool=?", (pool,)).fetchone()
        return row[0] if row else 0

    def _add_pool_bytes(self, pool: str, delta: int) -> None:
        self.db.execute(
            "INSERT INTO pools(pool, stored_bytes) VALUES(?, ?) "
            "ON CONFLICT(pool) DO UPDATE SET stored_bytes = stored_bytes + excluded.stored_bytes",
            (pool, delta),
        )

    # -- ingest --------------------------------------------------------------------------------

    def add_blocks(self, blocks: Sequence[KeyBlock]) -> list[str]:
        """Store blocks durably in one transaction; per block 'stored', 'duplicate' or an error text.

        A block already present (same link and block ID, same length) is a duplicate and stored
        once. Blocks that do not fit the pool's capacity, or conflict, are not stored; the others are.
        """
        outcomes: list[str] = []
        self._begin()
        try:
            for b in blocks:
                outcomes.append(self._add_block(b))
            self._commit(scrub=False)  # stores key, overwrites none
        except BaseException:
            self._rollback()
            raise
        return outcomes

    def _add_block(self, b: KeyBlock) -> str:
        row = self.db.execute(
            "SELECT length_bits FROM blocks WHERE link_id=? AND block_id=?", (b.link_id, b.block_id)
        ).fetchone()
        if row is not None:
            if row[0] != b.length_bits:
                return str(ConflictingBlock(f"block {b.link_id}/{b.block_id} re-sent with a different length"))
            return "duplicate"
        usable = b.length_bits // 8
        if self._pool_bytes(b.pool) + usable > self.capacity_bytes:
            return str(PoolFull(f"pool {b.pool} is full ({self.capacity_bytes} bytes)"))
        self.db.execute(
            "INSERT INTO blocks(link_id, block_id, pool, length_bits, qber, params, received_at) "
            "VALUES(?,?,?,?,?,?,?)",
            (b.link_id, b.block_id, b.pool, b.length_bits, b.qber, json.dumps(b.params), time.time()),
        )
        cb = self.chunk_bytes
        rows = [
            (b.pool, b.link_id, b.block_id, i, chunk_owner(b.block_id, i), min(cb, usable - off), 0,
             b.key[off:off + cb] if off + cb <= usable else b.key[off:usable])
            for i, off in enumerate(range(0, usable, cb))
        ]
        self.db.executemany(
            "INSERT INTO chunks(pool, link_id, block_id, idx, owner, size, cursor, data) VALUES(?,?,?,?,?,?,?,?)", rows
        )
        self._add_pool_bytes(b.pool, usable)
        return "stored"

    def has_block(self, link_id: str, block_id: int) -> bool:
        """Whether the block is stored (acknowledged blocks always are)."""
        return self.db.execute(
            "SELECT 1 FROM blocks WHERE link_id=? AND block_id=?", (link_id, block_id)
        ).fetchone() is not None

    def block_ids(self) -> set[tuple[str, int]]:
        """Every stored (link ID, block ID)."""
        return {(r[0], r[1]) for r in self.db.execute("SELECT link_id, block_id FROM blocks")}

    # -- confirmation with the peer ------------------------------------------------------------

    def unconfirmed_blocks(self, pool: str, limit: int = 1000, after: int = 0) -> tuple[list[tuple[str, int]], int]:
        """Up to `limit` blocks of `pool` the peer has not yet been seen to hold, after row `after`.

        Returns them and the row to continue after (0 once the end is reached), so that blocks the
        peer never gets cannot starve newer ones.
        """
        rows = self.db.execute(
            "SELECT rowid, link_id, block_id FROM blocks WHERE pool=? AND confirmed=0 AND rowid>? "
            "ORDER BY rowid LIMIT ?", (pool, after, limit)).fetchall()
        return [(r[1], r[2]) for r in rows], (rows[-1][0] if len(rows) == limit else 0)

    def confirm_blocks(self, pool: str, ids: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        """Mark the listed blocks (known to be held by the peer) usable; returns those held here too."""
        held: list[tuple[str, int]] = []
        self._begin()
        try:
            for link_id, block_id in ids:
                cur = self.db.execute(
                    "UPDATE blocks SET confirmed=1 WHERE link_id=? AND block_id=? AND pool=?", (link_id, block_id, pool))
                if cur.rowcount:
                    self.db.execute("UPDATE chunks SET confirmed=1 WHERE link_id=? AND block_id=?", (link_id, block_id))
                    held.append((link_id, block_id))
            self._commit(scrub=False)
        except BaseException:
            self._rollback()
            raise
        return held

    # -- status --------------------------------------------------------------------------------

    def stored_key_count(self, pool: str, key_bytes: int) -> int:
        """How many keys of `key_bytes` this KM could hand to masters now from its stripe."""
        row = self.db.execute(
            "SELECT COALESCE(SUM((size - cursor) / ?), 0) FROM chunks WHERE pool=? AND owner=? AND confirmed=1",
            (key_bytes, pool, self.role(pool)),
        ).fetchone()
        return int(row[0])

    def stored_bytes(self, pool: str) -> int:
        """Bytes of key stored in the pool, both stripes, confirmed or not."""
        return self._pool_bytes(pool)

    # -- master side ---------------------------------------------------------------------------

    def reserve(self, pool: str, master_sae: str, slaves: Sequence[str], number: int, nbytes: int) -> Reserved:
        """Bind `number` new key IDs to `nbytes` each of this KM's stripe, durably (state reserved).

        Raises `PoolExhausted` (nothing consumed) when the stripe holds too few confirmed bytes.
        """
        result = self.reserve_many(pool, [(master_sae, slaves, number, nbytes)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def reserve_many(self, pool: str, requests: Sequence[tuple[str, Sequence[str], int, int]],
                     deliver: Sequence[str] = (), void: Sequence[str] = ()) -> list[Reserved | PoolExhausted]:
        """`reserve` for several (master, slaves, number, nbytes) requests in one durable transaction.

        A request the pool cannot serve gets a `PoolExhausted` in its place and consumes nothing.
        The same transaction first moves the reserved keys `deliver` to delivered and `void` to void
        (the outcome of the previous batch), so a batch costs one commit.
        """
        for _, slaves, number, nbytes in requests:
            if number < 1 or nbytes < 1 or nbytes > self.chunk_bytes:
                raise ValueError(f"number must be >= 1 and nbytes in [1, {self.chunk_bytes}]")
            if not slaves:
                raise ValueError("slaves must name at least one slave SAE")
        role = self.role(pool)
        out: list[Reserved | PoolExhausted] = []
        durable = bool(deliver or void)
        if not durable:
            # A pure reservation is written to the WAL without fsync: it survives the death of the
            # process, and the next durable commit (the delivery, before any answer) syncs it. If
            # the machine loses power in between, the cursor may come back behind bits already
            # bound at the peer, which then refuses the overlapping allocation (see
            # `accept_allocations`): those keys become void, never handed out twice.
            self.db.execute("PRAGMA synchronous=NORMAL")
        self._begin()
        try:
            for state, ids in (("delivered", deliver), ("void", void)):
                self.db.executemany("UPDATE keys SET state=?, material=NULL WHERE key_id=? AND state='reserved'",
                                    [(state, k) for k in ids])
            for master_sae, slaves, number, nbytes in requests:
                self.db.execute("SAVEPOINT one")
                try:
                    out.append(self._reserve_one(pool, role, master_sae, slaves, number, nbytes))
                    self.db.execute("RELEASE one")
                except PoolExhausted as exc:
                    self.db.execute("ROLLBACK TO one")
                    self.db.execute("RELEASE one")
                    out.append(exc)
            # A pure reservation serves nothing yet; the commit that delivers or voids its keys
            # (before any answer leaves) scrubs the WAL of the bytes this one overwrote.
            self._commit(scrub=durable)
        except BaseException:
            self._rollback()
            raise
        finally:
            if not durable:
                self.db.execute("PRAGMA synchronous=FULL")
        return out

    def _reserve_one(self, pool: str, role: int, master_sae: str, slaves: Sequence[str], number: int,
                     nbytes: int) -> Reserved:
        allocations: list[Allocation] = []
        material: list[bytes] = []
        retired: list[tuple[str, int, int]] = []
        consumed = 0
        now = time.time()
        for cid, link_id, block_id, idx, size, cursor, data in self._own_chunks(pool, role, number * nbytes):
            if len(allocations) == number:
                break
            start = cursor
            while len(allocations) < number and size - cursor >= nbytes:
                key_id = str(uuid.UUID(bytes=os.urandom(16), version=4))
                allocations.append(Allocation(key_id, master_sae, tuple(slaves),
                                              KeyPosition(link_id, block_id, idx, cursor, nbytes)))
                material.append(bytes(data[cursor:cursor + nbytes]))
                cursor += nbytes
            consumed += cursor - start
            if size - cursor < nbytes and (len(allocations) < number or size - cursor == 0):
                # The tail cannot hold a key of this size: retire the chunk (its bits are wasted).
                consumed += size - cursor
                self.db.execute("DELETE FROM chunks WHERE id=?", (cid,))
                retired.append((link_id, block_id, idx))
            else:
                self.db.execute("UPDATE chunks SET cursor=?, data=? WHERE id=?",
                                (cursor, bytes(cursor) + bytes(data[cursor:]), cid))
        if len(allocations) < number:
            raise PoolExhausted(f"pool {pool} cannot serve {number} keys of {nbytes * 8} bits")
        slaves_json = json.dumps(list(slaves))
        self.db.executemany(
            "INSERT INTO keys(key_id, pool, origin, master_sae, slaves, link_id, block_id, idx, offset, nbytes, "
            "state, created) VALUES(?,?,1,?,?,?,?,?,?,?,'reserved',?)",
            [(a.key_id, pool, master_sae, slaves_json, a.position.link_id, a.position.block_id,
              a.position.idx, a.position.offset, nbytes, now) for a in allocations],
        )
        self._add_pool_bytes(pool, -consumed)
        return Reserved(allocations, material, retired)

    def _own_chunks(self, pool: str, role: int, want_bytes: int) -> Iterable[tuple]:
        """This KM's confirmed chunks in allocation order, fetched a page at a time."""
        last = 0
        page = want_bytes // self.chunk_bytes + 2
        while True:
            rows = self.db.execute(
                "SELECT id, link_id, block_id, idx, size, cursor, data FROM chunks "
                "WHERE pool=? AND owner=? AND confirmed=1 AND id>? ORDER BY id LIMIT ?",
                (pool, role, last, page)).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]
            page *= 2

    def set_state(self, key_ids: Sequence[str], state: str) -> None:
        """Move reserved keys allocated here to 'delivered' or 'void', in one transaction."""
        if state not in ("delivered", "void"):
            raise ValueError(f"state must be 'delivered' or 'void', got {state!r}")
        self._begin()
        try:
            self.db.executemany("UPDATE keys SET state=?, material=NULL WHERE key_id=? AND state='reserved'",
                                [(state, k) for k in key_ids])
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def recover(self) -> int:
        """At start: void keys reserved here whose delivery was cut short (their answer never left)."""
        self._begin()
        n = self.db.execute("UPDATE keys SET state='void' WHERE origin=1 AND state='reserved'").rowcount
        self._commit(scrub=n > 0)
        return n

    # -- slave side ----------------------------------------------------------------------------

    def accept_allocations(self, pool: str, allocations: Sequence[Allocation],
                           retired: Sequence[tuple[str, int, int]] = ()) -> None:
        """Record the peer's allocations from its stripe (state reserved, bytes kept for the slaves).

        Idempotent for a re-sent allocation. Raises `ValueError` (nothing recorded) if an allocation
        lies outside the peer's stripe, overlaps bits already allocated, or names an unknown chunk.
        """
        peer_role = 1 - self.role(pool)
        now = time.time()
        self._begin()
        try:
            for a in allocations:
                p = a.position
                known = self.db.execute(
                    "SELECT link_id, block_id, idx, offset, nbytes FROM keys WHERE key_id=?", (a.key_id,)).fetchone()
                if known is not None:
                    if tuple(known) != (p.link_id, p.block_id, p.idx, p.offset, p.nbytes):
                        raise ValueError("allocation re-uses a known key ID for other bits")
                    continue
                material = self._take_peer_bits(pool, peer_role, p)
                self.db.execute(
                    "INSERT INTO keys(key_id, pool, origin, master_sae, slaves, link_id, block_id, idx, offset, nbytes, "
                    "state, material, created) VALUES(?,?,0,?,?,?,?,?,?,?,'reserved',?,?)",
                    (a.key_id, pool, a.master_sae, json.dumps(list(a.slaves)), p.link_id, p.block_id, p.idx,
                     p.offset, p.nbytes, material, now))
                self.db.executemany("INSERT INTO grants(key_id, sae_id) VALUES(?, ?)",
                                    [(a.key_id, s) for s in dict.fromkeys(a.slaves)])
            for link_id, block_id, idx in retired:
                row = self.db.execute(
                    "SELECT id, owner, size, cursor FROM chunks WHERE pool=? AND link_id=? AND block_id=? AND idx=?",
                    (pool, link_id, block_id, idx)).fetchone()
                if row is not None and row[1] == peer_role:
                    self.db.execute("DELETE FROM chunks WHERE id=?", (row[0],))
                    self._add_pool_bytes(pool, -(row[2] - row[3]))
            self._commit(scrub=False)  # the bits live on in keys.material until fetched or voided
        except BaseException:
            self._rollback()
            raise

    def _take_peer_bits(self, pool: str, peer_role: int, p: KeyPosition) -> bytes:
        """Consume the bits at `p` of the peer's stripe (inside a transaction); `ValueError` if not allowed."""
        row = self.db.execute(
            "SELECT id, owner, size, cursor, data FROM chunks WHERE pool=? AND link_id=? AND block_id=? AND idx=?",
            (pool, p.link_id, p.block_id, p.idx)).fetchone()
        if row is None:
            raise ValueError(f"allocation names chunk {p.link_id}/{p.block_id}/{p.idx} not held here")
        cid, owner, size, cursor, data = row
        if owner != peer_role:
            raise ValueError("allocation lies outside the peer's stripe")
        if p.offset < cursor or p.offset + p.nbytes > size:
            raise ValueError("allocation overlaps consumed bits or runs past the chunk")
        new_cursor = p.offset + p.nbytes
        if new_cursor == size:
            self.db.execute("DELETE FROM chunks WHERE id=?", (cid,))
        else:
            self.db.execute("UPDATE chunks SET cursor=?, data=? WHERE id=?",
                            (new_cursor, bytes(new_cursor) + bytes(data[new_cursor:]), cid))
        self._add_pool_bytes(pool, -(new_cursor - cursor))
        return bytes(data[p.offset:new_cursor])

    # -- authentication key for the KM link, drawn from the pool ---------------------------------

    def reserve_auth_refill(self, pool: str, flow: str, chunks: int) -> tuple[int, list[Allocation]]:
        """Bind `chunks` whole untouched chunks of this KM's stripe as refill n of link flow `flow`.

        Whole chunks, taken from the end of the stripe, never share bits with a key allocation in
        flight, so the peer may receive the refill before or after those. Returns n and the
        allocations (to tell the peer); the bytes are kept in `auth_refills` (pending until
        `mark_refill_applied`) and never handed to an SAE. `PoolExhausted` if too few chunks.
        """
        if chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {chunks}")
        self._begin()
        try:
            rows = self.db.execute(
                "SELECT id, link_id, block_id, idx, data FROM chunks WHERE pool=? AND owner=? AND confirmed=1 "
                "AND cursor=0 AND size=? ORDER BY id DESC LIMIT ?",
                (pool, self.role(pool), self.chunk_bytes, chunks)).fetchall()
            if len(rows) < chunks:
                raise PoolExhausted(f"pool {pool} holds fewer than {chunks} whole chunks for the link's key")
            allocations = [Allocation(str(uuid.UUID(bytes=os.urandom(16), version=4)), AUTH_SAE, (AUTH_SAE,),
                                      KeyPosition(link_id, block_id, idx, 0, self.chunk_bytes))
                           for _, link_id, block_id, idx, _ in rows]
            material = b"".join(bytes(r[4]) for r in rows)
            self.db.executemany("DELETE FROM chunks WHERE id=?", [(r[0],) for r in rows])
            self._add_pool_bytes(pool, -len(material))
            now = time.time()
            self.db.executemany(
                "INSERT INTO keys(key_id, pool, origin, master_sae, slaves, link_id, block_id, idx, offset, nbytes, "
                "state, created) VALUES(?,?,1,?,?,?,?,?,0,?,'delivered',?)",
                [(a.key_id, pool, AUTH_SAE, json.dumps([AUTH_SAE]), a.position.link_id, a.position.block_id,
                  a.position.idx, self.chunk_bytes, now) for a in allocations])
            n = self._next_refill(flow)
            self.db.execute("INSERT INTO auth_refills(flow, n, allocations, material, applied) VALUES(?,?,?,?,0)",
                            (flow, n, json.dumps([a.to_json() for a in allocations]), material))
            self._commit(scrub=False)  # the bits live on as the link's key
        except BaseException:
            self._rollback()
            raise
        return n, allocations

    def accept_auth_refill(self, pool: str, flow: str, n: int, allocations: Sequence[Allocation]) -> tuple[bytes, bool]:
        """The peer's refill number n of flow `flow`: (its bytes, whether it is new here). Refills are
        taken strictly in order; a re-sent one must name the same bits."""
        wire = json.dumps([a.to_json() for a in allocations])
        self._begin()
        try:
            row = self.db.execute("SELECT allocations, material FROM auth_refills WHERE flow=? AND n=?",
                                  (flow, n)).fetchone()
            if row is not None:
                if row[0] != wire:
                    raise ValueError(f"authentication refill {n} re-sent with other bits")
                self._commit(scrub=False)
                return bytes(row[1]), False
            if n != self._next_refill(flow):
                raise ValueError(f"authentication refill {n} out of order (expected {self._next_refill(flow)})")
            peer_role = 1 - self.role(pool)
            now = time.time()
            parts = []
            for a in allocations:
                if a.master_sae != AUTH_SAE:
                    raise ValueError("authentication refill allocations must name the master '@auth'")
                p = a.position
                parts.append(self._take_peer_bits(pool, peer_role, p))
                self.db.execute(
                    "INSERT INTO keys(key_id, pool, origin, master_sae, slaves, link_id, block_id, idx, offset, nbytes, "
                    "state, created) VALUES(?,?,0,?,?,?,?,?,?,?,'delivered',?)",
                    (a.key_id, pool, AUTH_SAE, json.dumps([AUTH_SAE]), p.link_id, p.block_id, p.idx, p.offset,
                     p.nbytes, now))
            material = b"".join(parts)
            self.db.execute("INSERT INTO auth_refills(flow, n, allocations, material, applied) VALUES(?,?,?,?,1)",
                            (flow, n, wire, material))
            self._commit(scrub=False)  # the bits live on as the link's key
        except BaseException:
            self._rollback()
            raise
        return material, True

    def _next_refill(self, flow: str) -> int:
        return self.db.execute("SELECT COALESCE(MAX(n) + 1, 0) FROM auth_refills WHERE flow=?", (flow,)).fetchone()[0]

    def mark_refill_applied(self, flow: str, n: int) -> None:
        """The peer acknowledged refill n: it is part of the flow's key stream from now on."""
        self._begin()
        self.db.execute("UPDATE auth_refills SET applied=1 WHERE flow=? AND n=?", (flow, n))
        self._commit(scrub=False)

    def auth_refills(self, flow: str) -> list[tuple[int, list[Allocation], bytes, bool]]:
        """Every refill of `flow` in order: (n, allocations, bytes, applied)."""
        return [(n, [Allocation.from_json(a) for a in json.loads(allocs)], bytes(material), bool(applied))
                for n, allocs, material, applied in self.db.execute(
                    "SELECT n, allocations, material, applied FROM auth_refills WHERE flow=? ORDER BY n", (flow,))]

    def fetch(self, requester: str, master_sae: str, key_ids: Sequence[str]) -> list[bytes]:
        """Deliver keys to slave SAE `requester`, all or none, each at most once per slave.

        Raises `NotAuthorized` if a key exists but `requester` was not named for it, else
        `KeysNotFound` if a key is unknown, was allocated here, has another master, or was already
        delivered to `requester`.
        """
        out: list[bytes] = []
        unauthorized = missing = False
        self._begin()
        try:
            for key_id in key_ids:
                row = self.db.execute(
                    "SELECT origin, master_sae, state, material FROM keys WHERE key_id=?", (key_id,)).fetchone()
                if row is None or row[0] != 0 or row[1] != master_sae or row[2] != "reserved":
                    missing = True
                    continue
                grant = self.db.execute(
                    "SELECT delivered FROM grants WHERE key_id=? AND sae_id=?", (key_id, requester)).fetchone()
                if grant is None:
                    unauthorized = True
                    continue
                if grant[0]:
                    missing = True
                    continue
                out.append(bytes(row[3]))
                # 2: committed as delivered, answer not yet known to have left (see confirm_answered)
                self.db.execute("UPDATE grants SET delivered=2 WHERE key_id=? AND sae_id=?", (key_id, requester))
                left = self.db.execute(
                    "SELECT COUNT(*) FROM grants WHERE key_id=? AND delivered=0", (key_id,)).fetchone()[0]
                if left == 0:
                    self.db.execute("UPDATE keys SET state='delivered', material=NULL WHERE key_id=?", (key_id,))
            if unauthorized:
                raise NotAuthorized("the calling SAE was not named by the master SAE for every requested key")
            if missing:
                raise KeysNotFound("one or more keys specified are not found on KME")
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return out

    def confirm_answered(self, requester: str, key_ids: Sequence[str], answered: bool = True) -> None:
        """The answer carrying `key_ids` to slave SAE `requester` has been written to its connection
        (`answered`), or writing it failed (the keys go to `unanswered`; never served again).

        Not synced (synchronous=NORMAL): after a power loss the grant may read "answering" again and
        be reported as unanswered, which only errs towards voiding a key the SAE may hold."""
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._begin()
            try:
                if not answered:
                    now = time.time()
                    self.db.executemany(
                        "INSERT OR IGNORE INTO unanswered(key_id, sae_id, pool, at) SELECT g.key_id, g.sae_id, "
                        "k.pool, ? FROM grants g JOIN keys k ON k.key_id = g.key_id "
                        "WHERE g.key_id=? AND g.sae_id=? AND g.delivered=2", [(now, k, requester) for k in key_ids])
                self.db.executemany("UPDATE grants SET delivered=1 WHERE key_id=? AND sae_id=? AND delivered=2",
                                    [(k, requester) for k in key_ids])
                self._commit(scrub=False)
            except BaseException:
                self._rollback()
                raise
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def recover_unanswered(self) -> int:
        """At start: grants committed as delivered whose answer may not have left (a crash between
        commit and answer). They stay delivered (never served twice) and are recorded in
        `unanswered`, to be reported to the master's KM; returns how many were found."""
        self._begin()
        try:
            now = time.time()
            n = self.db.execute(
                "INSERT OR IGNORE INTO unanswered(key_id, sae_id, pool, at) SELECT g.key_id, g.sae_id, k.pool, ? "
                "FROM grants g JOIN keys k ON k.key_id = g.key_id WHERE g.delivered=2", (now,)).rowcount
            self.db.execute("UPDATE grants SET delivered=1 WHERE delivered=2")
            self._commit(scrub=False)
        except BaseException:
            self._rollback()
            raise
        return n

    def unanswered_count(self) -> int:
        """Keys whose answer to a slave SAE may have been lost in a crash, since the store was created."""
        return self.db.execute("SELECT COUNT(*) FROM unanswered").fetchone()[0]

    def unreported_unanswered(self, pool: str, limit: int = 2000) -> list[str]:
        """Key IDs of `pool` whose possibly lost answers the peer (the master's KM) was not yet told of."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT key_id FROM unanswered WHERE pool=? AND reported=0 ORDER BY at LIMIT ?", (pool, limit))]

    def mark_unanswered_reported(self, key_ids: Sequence[str]) -> None:
        """The master's KM acknowledged these key IDs."""
        self._begin()
        self.db.executemany("UPDATE unanswered SET reported=1 WHERE key_id=?", [(k,) for k in key_ids])
        self._commit(scrub=False)

    def void_lost_at_peer(self, pool: str, key_ids: Sequence[str]) -> list[str]:
        """Master side: keys allocated here in `pool` whose answer to a slave SAE was lost at the peer
        become void (state 'void', recorded in `lost_at_peer`); returns those newly voided."""
        now = time.time()
        voided: list[str] = []
        self._begin()
        try:
            for k in key_ids:
                row = self.db.execute("SELECT master_sae FROM keys WHERE key_id=? AND pool=? AND origin=1 "
                                      "AND state='delivered'", (k, pool)).fetchone()
                if row is None:
                    continue
                self.db.execute("UPDATE keys SET state='void' WHERE key_id=?", (k,))
                self.db.execute("INSERT OR IGNORE INTO lost_at_peer(key_id, pool, master_sae, at) VALUES(?,?,?,?)",
                                (k, pool, row[0], now))
                voided.append(k)
            self._commit(scrub=False)
        except BaseException:
            self._rollback()
            raise
        return voided

    def lost_at_peer(self, pool: str, master_sae: str, recent: int = 16) -> tuple[int, list[str]]:
        """How many keys of master SAE `master_sae` in `pool` were lost at the peer, and the most recent IDs."""
        n = self.db.execute("SELECT COUNT(*) FROM lost_at_peer WHERE pool=? AND master_sae=?",
                            (pool, master_sae)).fetchone()[0]
        ids = [r[0] for r in self.db.execute(
            "SELECT key_id FROM lost_at_peer WHERE pool=? AND master_sae=? ORDER BY at DESC, key_id LIMIT ?",
            (pool, master_sae, recent))] if n else []
        return n, ids

    def void_peer_keys(self, key_ids: Sequence[str]) -> int:
        """Void reserved keys the peer allocated but never delivered (learned by reconciliation)."""
        self._begin()
        try:
            n = 0
            for k in key_ids:
                n += self.db.execute("UPDATE keys SET state='void', material=NULL WHERE key_id=? AND origin=0 "
                                     "AND state='reserved'", (k,)).rowcount
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return n

    # -- reconciliation (key IDs only) ---------------------------------------------------------

    def own_keys(self, pool: str, after_rowid: int = 0, limit: int = 5000) -> list[tuple[int, str, str]]:
        """(rowid, key ID, state) of keys allocated here in `pool`, in allocation order."""
        return [tuple(r) for r in self.db.execute(
            "SELECT rowid, key_id, state FROM keys WHERE pool=? AND origin=1 AND rowid>? ORDER BY rowid LIMIT ?",
            (pool, after_rowid, limit))]

    def stale_peer_reservations(self, pool: str, older_than_s: float, limit: int = 2000) -> list[str]:
        """IDs of keys the peer bound in `pool` more than `older_than_s` ago that are still reserved here."""
        return [r[0] for r in self.db.execute(
            "SELECT key_id FROM keys WHERE pool=? AND origin=0 AND state='reserved' AND created<? "
            "ORDER BY rowid LIMIT ?", (pool, time.time() - older_than_s, limit))]

    def peer_key_states(self, key_ids: Sequence[str]) -> dict[str, str]:
        """State of each listed key as recorded here (absent keys are left out)."""
        out: dict[str, str] = {}
        ids = list(key_ids)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ",".join("?" * len(part))
            out.update(self.db.execute(f"SELECT key_id, state FROM keys WHERE key_id IN ({marks})",  # noqa: S608 - only ?s
                                       part).fetchall())
        return out

    def key_record(self, key_id: str) -> dict | None:
        """The record of one key (position and states; never its bits), for audits and tests."""
        row = self.db.execute(
            "SELECT pool, origin, master_sae, slaves, link_id, block_id, idx, offset, nbytes, state FROM keys "
            "WHERE key_id=?", (key_id,)).fetchone()
        if row is None:
            return None
        names = ("pool", "origin", "master_sae", "slaves", "link_id", "block_id", "idx", "offset", "nbytes", "state")
        rec = dict(zip(names, row))
        rec["slaves"] = json.loads(rec["slaves"])
        return rec
