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

The store in parts: `storedb` (connection, transactions, scrubbing), `records` (blocks, positions,
allocations), `chunks` (the pool: blocks, chunks, pool sizes), `delivery` (grants to slave SAEs, the
one at-most-once rule, lost answers), `authrefill` (the KM link's authentication key) and this
module (allocation by either KM of the pair, and reconciliation). `relaystore` keeps the relay
tables in the same database, through the public methods of these parts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from node.keymanager.authrefill import AuthRefills
from node.keymanager.chunks import ChunkPool
from node.keymanager.delivery import DIRECT, SlaveDelivery, add_grants
from node.keymanager.errors import PoolExhausted
from node.keymanager.records import (
    AUTH_SAE,
    Allocation,
    KeyBlock,
    KeyPosition,
    Reserved,
    chunk_owner,
    new_key_id,
)
from node.keymanager.storedb import StoreDb, create_owner_only

__all__ = [
    "AUTH_SAE",
    "Allocation",
    "ChunkPool",
    "KeyBlock",
    "KeyPosition",
    "KeyStore",
    "Reserved",
    "chunk_owner",
    "create_owner_only",
]

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


class KeyStore(AuthRefills, SlaveDelivery):
    """The key manager's SQLite store: the pool (`chunks`), allocations by either KM of the pair,
    delivery to slave SAEs (`delivery`), the link's authentication key (`authrefill`) and
    reconciliation with the peer. Not thread-safe: one owning thread calls every method."""

    def __init__(
        self,
        path: str,
        kme_id: str,
        *,
        capacity_bytes: int = 1 << 30,
        chunk_bytes: int = 4096,
        scrub_deferred: bool = False,
    ) -> None:
        if not kme_id:
            raise ValueError("kme_id must be a non-empty string")
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        if chunk_bytes < 64 or chunk_bytes > 1 << 20:
            raise ValueError(f"chunk_bytes must be in [64, 1048576], got {chunk_bytes}")
        self.kme_id = kme_id
        self.capacity_bytes = capacity_bytes
        self.chunk_bytes = chunk_bytes
        StoreDb.__init__(self, path, SCHEMA, scrub_deferred=scrub_deferred)

    def knows_key(self, key_id: str) -> bool:
        """Whether `key_id` names a key allocated here or by the peer (in any state)."""
        return self.db.execute("SELECT 1 FROM keys WHERE key_id=?", (key_id,)).fetchone() is not None

    # -- master side ---------------------------------------------------------------------------

    def reserve(self, pool: str, master_sae: str, slaves: Sequence[str], number: int, nbytes: int) -> Reserved:
        """Bind `number` new key IDs to `nbytes` each of this KM's stripe, durably (state reserved).

        Raises `PoolExhausted` (nothing consumed) when the stripe holds too few confirmed bytes.
        """
        result = self.reserve_many(pool, [(master_sae, slaves, number, nbytes)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def reserve_many(
        self,
        pool: str,
        requests: Sequence[tuple[str, Sequence[str], int, int]],
        deliver: Sequence[str] = (),
        void: Sequence[str] = (),
    ) -> list[Reserved | PoolExhausted]:
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
        # A pure reservation is written to the WAL without fsync: it survives the death of the
        # process, and the next durable commit (the delivery, before any answer) syncs it. If the
        # machine loses power in between, the cursor may come back behind bits already bound at the
        # peer, which then refuses the overlapping allocation (see `accept_allocations`): those
        # keys become void, never handed out twice. It serves nothing yet either; the commit that
        # delivers or voids its keys (before any answer leaves) scrubs the WAL of the bytes this
        # one overwrote.
        durable = bool(deliver or void)
        with self.transaction(scrub=durable, synced=durable):
            for state, ids in (("delivered", deliver), ("void", void)):
                self.db.executemany(
                    "UPDATE keys SET state=?, material=NULL WHERE key_id=? AND state='reserved'",
                    [(state, k) for k in ids],
                )
            for master_sae, slaves, number, nbytes in requests:
                try:
                    with self.savepoint():
                        out.append(self._reserve_one(pool, role, master_sae, slaves, number, nbytes))
                except PoolExhausted as exc:
                    out.append(exc)
        return out

    def _reserve_one(
        self, pool: str, role: int, master_sae: str, slaves: Sequence[str], number: int, nbytes: int
    ) -> Reserved:
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
                allocations.append(
                    Allocation(
                        new_key_id(), master_sae, tuple(slaves), KeyPosition(link_id, block_id, idx, cursor, nbytes)
                    )
                )
                material.append(bytes(data[cursor : cursor + nbytes]))
                cursor += nbytes
            consumed += cursor - start
            if size - cursor < nbytes and (len(allocations) < number or size - cursor == 0):
                # The tail cannot hold a key of this size: retire the chunk (its bits are wasted).
                consumed += size - cursor
                self.db.execute("DELETE FROM chunks WHERE id=?", (cid,))
                retired.append((link_id, block_id, idx))
            else:
                self.db.execute(
                    "UPDATE chunks SET cursor=?, data=? WHERE id=?", (cursor, bytes(cursor) + bytes(data[cursor:]), cid)
                )
        if len(allocations) < number:
            raise PoolExhausted(f"pool {pool} cannot serve {number} keys of {nbytes * 8} bits")
        slaves_json = json.dumps(list(slaves))
        self.db.executemany(
            "INSERT INTO keys(key_id, pool, origin, master_sae, slaves, link_id, block_id, idx, offset, nbytes, "
            "state, created) VALUES(?,?,1,?,?,?,?,?,?,?,'reserved',?)",
            [
                (
                    a.key_id,
                    pool,
                    master_sae,
                    slaves_json,
                    a.position.link_id,
                    a.position.block_id,
                    a.position.idx,
                    a.position.offset,
                    nbytes,
                    now,
                )
                for a in allocations
            ],
        )
        self._add_pool_bytes(pool, -consumed)
        return Reserved(allocations, material, retired)

    def set_state(self, key_ids: Sequence[str], state: str) -> None:
        """Move reserved keys allocated here to 'delivered' or 'void', in one transaction."""
        if state not in ("delivered", "void"):
            raise ValueError(f"state must be 'delivered' or 'void', got {state!r}")
        with self.transaction():
            self.db.executemany(
                "UPDATE keys SET state=?, material=NULL WHERE key_id=? AND state='reserved'",
                [(state, k) for k in key_ids],
            )

    def recover(self) -> int:
        """At start: void keys reserved here whose delivery was cut short (their answer never left)."""
        with self.transaction(scrub=False):
            n = self.db.execute("UPDATE keys SET state='void' WHERE origin=1 AND state='reserved'").rowcount
        if n:
            self.after_overwrite()
        return n

    # -- slave side ----------------------------------------------------------------------------

    def accept_allocations(
        self, pool: str, allocations: Sequence[Allocation], retired: Sequence[tuple[str, int, int]] = ()
    ) -> None:
        """Record the peer's allocations from its stripe (state reserved, bytes kept for the slaves).

        Idempotent for a re-sent allocation. Raises `ValueError` (nothing recorded) if an allocation
        lies outside the peer's stripe, overlaps bits already allocated, or names an unknown chunk.
        """
        peer_role = 1 - self.role(pool)
        now = time.time()
        with self.transaction(scrub=False):  # the bits live on in keys.material until fetched or voided
            for a in allocations:
                p = a.position
                known = self.db.execute(
                    "SELECT link_id, block_id, idx, offset, nbytes FROM keys WHERE key_id=?", (a.key_id,)
                ).fetchone()
                if known is not None:
                    if tuple(known) != (p.link_id, p.block_id, p.idx, p.offset, p.nbytes):
                        raise ValueError("allocation re-uses a known key ID for other bits")
                    continue
                material = self._take_peer_bits(pool, peer_role, p)
                self.db.execute(
                    "INSERT INTO keys(key_id, pool, origin, master_sae, slaves, link_id, block_id, idx, offset, nbytes, "
                    "state, material, created) VALUES(?,?,0,?,?,?,?,?,?,?,'reserved',?,?)",
                    (
                        a.key_id,
                        pool,
                        a.master_sae,
                        json.dumps(list(a.slaves)),
                        p.link_id,
                        p.block_id,
                        p.idx,
                        p.offset,
                        p.nbytes,
                        material,
                        now,
                    ),
                )
                add_grants(self.db, DIRECT, a.key_id, a.slaves)
            for link_id, block_id, idx in retired:
                self.retire_peer_chunk(pool, peer_role, link_id, block_id, idx)

    def void_peer_keys(self, key_ids: Sequence[str]) -> int:
        """Void reserved keys the peer allocated but never delivered (learned by reconciliation)."""
        n = 0
        with self.transaction():
            for k in key_ids:
                n += self.db.execute(
                    "UPDATE keys SET state='void', material=NULL WHERE key_id=? AND origin=0 AND state='reserved'", (k,)
                ).rowcount
        return n

    # -- reconciliation (key IDs only) ---------------------------------------------------------

    def own_keys(self, pool: str, after_rowid: int = 0, limit: int = 5000) -> list[tuple[int, str, str]]:
        """(rowid, key ID, state) of keys allocated here in `pool`, in allocation order."""
        return [
            tuple(r)
            for r in self.db.execute(
                "SELECT rowid, key_id, state FROM keys WHERE pool=? AND origin=1 AND rowid>? ORDER BY rowid LIMIT ?",
                (pool, after_rowid, limit),
            )
        ]

    def stale_peer_reservations(self, pool: str, older_than_s: float, limit: int = 2000) -> list[str]:
        """IDs of keys the peer bound in `pool` more than `older_than_s` ago that are still reserved here."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT key_id FROM keys WHERE pool=? AND origin=0 AND state='reserved' AND created<? "
                "ORDER BY rowid LIMIT ?",
                (pool, time.time() - older_than_s, limit),
            )
        ]

    def peer_key_states(self, key_ids: Sequence[str]) -> dict[str, str]:
        """State of each listed key as recorded here (absent keys are left out)."""
        out: dict[str, str] = {}
        ids = list(key_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            out.update(
                self.db.execute(
                    f"SELECT key_id, state FROM keys WHERE key_id IN ({marks})",  # noqa: S608 - only ?s
                    part,
                ).fetchall()
            )
        return out

    def key_record(self, key_id: str) -> dict | None:
        """The record of one key (position and states; never its bits), for audits and tests."""
        row = self.db.execute(
            "SELECT pool, origin, master_sae, slaves, link_id, block_id, idx, offset, nbytes, state FROM keys "
            "WHERE key_id=?",
            (key_id,),
        ).fetchone()
        if row is None:
            return None
        names = ("pool", "origin", "master_sae", "slaves", "link_id", "block_id", "idx", "offset", "nbytes", "state")
        rec = dict(zip(names, row))
        rec["slaves"] = json.loads(rec["slaves"])
        return rec
