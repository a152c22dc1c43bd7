"""The key pool: blocks from the local QKD module cut into chunks, each owned by one KM of the pair.

A chunk's `cursor` is the boundary between consumed and available bytes; consumed bytes are
overwritten with zeros in the same transaction. `pools.stored_bytes` counts what is left per pool
(both stripes) and is kept by this module alone: everything that takes bytes out of `chunks` goes
through it (allocations, the peer's allocations, whole chunks for relay pads and link
authentication).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from node.keymanager.records import KeyBlock, KeyPosition, chunk_owner
from node.keymanager.storedb import StoreDb


@dataclass(frozen=True)
class Chunk:
    """One untouched chunk of the pool (all its bytes available), as held in `chunks`."""

    id: int
    link_id: str
    block_id: int
    idx: int
    owner: int
    size: int
    data: bytes = field(repr=False)


_CHUNK_COLUMNS = "id, link_id, block_id, idx, owner, size, data"


def _chunk(row: tuple) -> Chunk:
    cid, link_id, block_id, idx, owner, size, data = row
    return Chunk(cid, link_id, block_id, idx, owner, size, bytes(data))


class ChunkPool(StoreDb):
    """Blocks, their chunks and the pool sizes (inside the key store's database)."""

    kme_id: str
    capacity_bytes: int
    chunk_bytes: int

    def role(self, pool: str) -> int:
        """This KM's stripe in the pool shared with peer KM `pool`."""
        if pool == self.kme_id:
            raise ValueError("pool must name a peer KME ID, not this KM's own")
        return 0 if self.kme_id < pool else 1

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
        with self.transaction(scrub=False):  # stores key, overwrites none
            return [self._add_block(b) for b in blocks]

    def _add_block(self, b: KeyBlock) -> str:
        row = self.db.execute(
            "SELECT length_bits FROM blocks WHERE link_id=? AND block_id=?", (b.link_id, b.block_id)
        ).fetchone()
        if row is not None:
            if row[0] != b.length_bits:
                return f"block {b.link_id}/{b.block_id} re-sent with a different length"
            return "duplicate"
        usable = b.length_bits // 8
        if self._pool_bytes(b.pool) + usable > self.capacity_bytes:
            return f"pool {b.pool} is full ({self.capacity_bytes} bytes)"
        self.db.execute(
            "INSERT INTO blocks(link_id, block_id, pool, length_bits, qber, params, received_at) VALUES(?,?,?,?,?,?,?)",
            (b.link_id, b.block_id, b.pool, b.length_bits, b.qber, json.dumps(b.params), time.time()),
        )
        cb = self.chunk_bytes
        rows = [
            (
                b.pool,
                b.link_id,
                b.block_id,
                i,
                chunk_owner(b.block_id, i),
                min(cb, usable - off),
                0,
                b.key[off : off + cb] if off + cb <= usable else b.key[off:usable],
            )
            for i, off in enumerate(range(0, usable, cb))
        ]
        self.db.executemany(
            "INSERT INTO chunks(pool, link_id, block_id, idx, owner, size, cursor, data) VALUES(?,?,?,?,?,?,?,?)", rows
        )
        self._add_pool_bytes(b.pool, usable)
        return "stored"

    def has_block(self, link_id: str, block_id: int) -> bool:
        """Whether the block is stored (acknowledged blocks always are)."""
        return (
            self.db.execute("SELECT 1 FROM blocks WHERE link_id=? AND block_id=?", (link_id, block_id)).fetchone()
            is not None
        )

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
            "ORDER BY rowid LIMIT ?",
            (pool, after, limit),
        ).fetchall()
        return [(r[1], r[2]) for r in rows], (rows[-1][0] if len(rows) == limit else 0)

    def confirm_blocks(self, pool: str, ids: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        """Mark the listed blocks (known to be held by the peer) usable; returns those held here too."""
        held: list[tuple[str, int]] = []
        with self.transaction(scrub=False):
            for link_id, block_id in ids:
                cur = self.db.execute(
                    "UPDATE blocks SET confirmed=1 WHERE link_id=? AND block_id=? AND pool=?", (link_id, block_id, pool)
                )
                if cur.rowcount:
                    self.db.execute("UPDATE chunks SET confirmed=1 WHERE link_id=? AND block_id=?", (link_id, block_id))
                    held.append((link_id, block_id))
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

    # -- taking bits out -----------------------------------------------------------------------

    def _own_chunks(self, pool: str, role: int, want_bytes: int) -> Iterable[tuple]:
        """This KM's confirmed chunks in allocation order, fetched a page at a time."""
        last = 0
        page = want_bytes // self.chunk_bytes + 2
        while True:
            rows = self.db.execute(
                "SELECT id, link_id, block_id, idx, size, cursor, data FROM chunks "
                "WHERE pool=? AND owner=? AND confirmed=1 AND id>? ORDER BY id LIMIT ?",
                (pool, role, last, page),
            ).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]
            page *= 2

    def _take_peer_bits(self, pool: str, peer_role: int, p: KeyPosition) -> bytes:
        """Consume the bits at `p` of the peer's stripe (inside a transaction); `ValueError` if not allowed."""
        row = self.db.execute(
            "SELECT id, owner, size, cursor, data FROM chunks WHERE pool=? AND link_id=? AND block_id=? AND idx=?",
            (pool, p.link_id, p.block_id, p.idx),
        ).fetchone()
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
            self.db.execute(
                "UPDATE chunks SET cursor=?, data=? WHERE id=?",
                (new_cursor, bytes(new_cursor) + bytes(data[new_cursor:]), cid),
            )
        self._add_pool_bytes(pool, -(new_cursor - cursor))
        return bytes(data[p.offset : new_cursor])

    def retire_peer_chunk(self, pool: str, peer_role: int, link_id: str, block_id: int, idx: int) -> None:
        """The peer gave up the tail of one of its chunks (too short for its keys): drop it here too."""
        row = self.db.execute(
            "SELECT id, owner, size, cursor FROM chunks WHERE pool=? AND link_id=? AND block_id=? AND idx=?",
            (pool, link_id, block_id, idx),
        ).fetchone()
        if row is not None and row[1] == peer_role:
            self.db.execute("DELETE FROM chunks WHERE id=?", (row[0],))
            self._add_pool_bytes(pool, -(row[2] - row[3]))

    # -- whole chunks (relay pads, link authentication), for the store's components -------------

    def whole_chunk_bytes(self, pool: str, owner: int) -> int:
        """Bytes in the untouched confirmed chunks of stripe `owner` of `pool`."""
        return int(
            self.db.execute(
                "SELECT COALESCE(SUM(size), 0) FROM chunks WHERE pool=? AND owner=? AND confirmed=1 AND cursor=0",
                (pool, owner),
            ).fetchone()[0]
        )

    def newest_whole_chunks(self, pool: str, owner: int, limit: int, size: int | None = None) -> list[Chunk]:
        """Up to `limit` untouched confirmed chunks of stripe `owner`, newest first (the end of the
        stripe, furthest from allocations in flight); only chunks of `size` bytes if given."""
        sql = (
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE pool=? AND owner=? AND confirmed=1 AND cursor=0"  # noqa: S608 - table/column names from fixed constants, values bound
            + (" AND size=?" if size is not None else "")
            + " ORDER BY id DESC LIMIT ?"
        )
        args = (pool, owner, size, limit) if size is not None else (pool, owner, limit)
        return [_chunk(r) for r in self.db.execute(sql, args)]

    def untouched_chunk(self, pool: str, link_id: str, block_id: int, idx: int) -> Chunk | None:
        """The chunk at (link, block, idx) of `pool` if none of its bytes was consumed yet."""
        r = self.db.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE pool=? AND link_id=? AND block_id=? "  # noqa: S608 - table/column names from fixed constants, values bound
            "AND idx=? AND cursor=0",
            (pool, link_id, block_id, idx),
        ).fetchone()
        return None if r is None else _chunk(r)

    def remove_chunks(self, pool: str, chunks: Sequence[Chunk]) -> None:
        """Take whole chunks out of the pool (inside the caller's transaction): their bytes now
        belong to the caller, which must record where they went in the same transaction."""
        self.db.executemany("DELETE FROM chunks WHERE id=?", [(c.id,) for c in chunks])
        self._add_pool_bytes(pool, -sum(c.size for c in chunks))
