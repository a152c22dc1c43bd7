"""Handing keys to slave SAEs at most once: the grants, and answers a crash may have lost.

A key held for slave SAEs (allocated here by the peer KM, or relayed here) has one grant per named
slave. `consume_grants` is the one place that hands such keys out: all requested keys or none,
each at most once per slave, for direct keys (`keys`/`grants`) and relayed keys
(`relayed_keys`/`relay_grants`) alike. Once every grant of a key is consumed its bits are erased.

Answers the slave SAE may never have received. `fetch` marks the slave's grant "answering" (2) in
the commit before the answer leaves; `confirm_answered` marks it delivered (1) once aiohttp has
written the answer. A crash in between leaves grants at 2: `recover_unanswered` records them in
`unanswered` (the key is never served again: at most once), and the peer KM is told so that the
master's side voids the key (`void_lost_at_peer`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from node.keymanager.errors import KeysNotFound, NotAuthorized
from node.keymanager.storedb import StoreDb

GRANT_OPEN, GRANT_DELIVERED, GRANT_ANSWERING = 0, 1, 2


@dataclass(frozen=True)
class GrantTables:
    """Where one kind of key lives: its key table, its grant table and the columns handed out."""

    keys: str
    grants: str
    served: str  # columns returned per key (the first is `material`)


DIRECT = GrantTables("keys", "grants", "material")
RELAYED = GrantTables("relayed_keys", "relay_grants", "material, path")


def add_grants(db: sqlite3.Connection, tables: GrantTables, key_id: str, slaves: Sequence[str]) -> None:
    """Name the slave SAEs that may fetch `key_id` (each once)."""
    db.executemany(
        f"INSERT INTO {tables.grants}(key_id, sae_id) VALUES(?, ?)", [(key_id, s) for s in dict.fromkeys(slaves)]
    )


def consume_grants(
    db: sqlite3.Connection, tables: GrantTables, requester: str, master: str, key_ids: Sequence[str], mark: int
) -> list[tuple[Any, ...]]:
    """Consume slave SAE `requester`'s grant of each key (inside the caller's transaction), all or
    none; returns the `served` columns per key. The grant is set to `mark` (delivered, or
    answering: see the module docstring); a key whose last grant is consumed becomes delivered and
    its bits are erased.

    Raises `NotAuthorized` if a key exists but `requester` was not named for it, else
    `KeysNotFound` if a key is unknown, was allocated here, has another master, or was already
    delivered to `requester` (the caller's transaction then rolls back: nothing consumed).
    """
    out: list[tuple[Any, ...]] = []
    unauthorized = missing = False
    for key_id in key_ids:
        row = db.execute(
            f"SELECT origin, master_sae, state, {tables.served} FROM {tables.keys} WHERE key_id=?",  # noqa: S608 - table/column names from fixed constants, values bound
            (key_id,),
        ).fetchone()
        if row is None or row[0] != 0 or row[1] != master or row[2] != "reserved":
            missing = True
            continue
        grant = db.execute(
            f"SELECT delivered FROM {tables.grants} WHERE key_id=? AND sae_id=?",  # noqa: S608 - table/column names from fixed constants, values bound
            (key_id, requester),
        ).fetchone()
        if grant is None:
            unauthorized = True
            continue
        if grant[0] != GRANT_OPEN:
            missing = True
            continue
        out.append(tuple(row[3:]))
        db.execute(f"UPDATE {tables.grants} SET delivered=? WHERE key_id=? AND sae_id=?", (mark, key_id, requester))  # noqa: S608 - table/column names from fixed constants, values bound
        left = db.execute(
            f"SELECT COUNT(*) FROM {tables.grants} WHERE key_id=? AND delivered=0",  # noqa: S608 - table/column names from fixed constants, values bound
            (key_id,),
        ).fetchone()[0]
        if left == 0:
            db.execute(f"UPDATE {tables.keys} SET state='delivered', material=NULL WHERE key_id=?", (key_id,))  # noqa: S608 - table/column names from fixed constants, values bound
    if unauthorized:
        raise NotAuthorized("the calling SAE was not named by the master SAE for every requested key")
    if missing:
        raise KeysNotFound("one or more keys specified are not found on KME")
    return out


class SlaveDelivery(StoreDb):
    """Direct keys to slave SAEs, and the bookkeeping of answers that may have been lost."""

    def fetch(self, requester: str, master_sae: str, key_ids: Sequence[str]) -> list[bytes]:
        """Deliver keys to slave SAE `requester`, all or none, each at most once per slave (errors:
        see `consume_grants`); committed, and the WAL scrubbed, before the answer leaves."""
        with self.transaction():
            rows = consume_grants(self.db, DIRECT, requester, master_sae, key_ids, GRANT_ANSWERING)
        return [bytes(r[0]) for r in rows]

    def confirm_answered(self, requester: str, key_ids: Sequence[str], answered: bool = True) -> None:
        """The answer carrying `key_ids` to slave SAE `requester` has been written to its connection
        (`answered`), or writing it failed (the keys go to `unanswered`; never served again).

        Not synced (synchronous=NORMAL): after a power loss the grant may read "answering" again and
        be reported as unanswered, which only errs towards voiding a key the SAE may hold."""
        with self.transaction(scrub=False, synced=False):
            if not answered:
                now = time.time()
                self.db.executemany(
                    "INSERT OR IGNORE INTO unanswered(key_id, sae_id, pool, at) SELECT g.key_id, g.sae_id, "
                    "k.pool, ? FROM grants g JOIN keys k ON k.key_id = g.key_id "
                    "WHERE g.key_id=? AND g.sae_id=? AND g.delivered=2",
                    [(now, k, requester) for k in key_ids],
                )
            self.db.executemany(
                "UPDATE grants SET delivered=1 WHERE key_id=? AND sae_id=? AND delivered=2",
                [(k, requester) for k in key_ids],
            )

    def recover_unanswered(self) -> int:
        """At start: grants committed as delivered whose answer may not have left (a crash between
        commit and answer). They stay delivered (never served twice) and are recorded in
        `unanswered`, to be reported to the master's KM; returns how many were found."""
        with self.transaction(scrub=False):
            n = self.db.execute(
                "INSERT OR IGNORE INTO unanswered(key_id, sae_id, pool, at) SELECT g.key_id, g.sae_id, k.pool, ? "
                "FROM grants g JOIN keys k ON k.key_id = g.key_id WHERE g.delivered=2",
                (time.time(),),
            ).rowcount
            self.db.execute("UPDATE grants SET delivered=1 WHERE delivered=2")
        return n

    def unanswered_count(self) -> int:
        """Keys whose answer to a slave SAE may have been lost in a crash, since the store was created."""
        return self.db.execute("SELECT COUNT(*) FROM unanswered").fetchone()[0]

    def unreported_unanswered(self, pool: str, limit: int = 2000) -> list[str]:
        """Key IDs of `pool` whose possibly lost answers the peer (the master's KM) was not yet told of."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT DISTINCT key_id FROM unanswered WHERE pool=? AND reported=0 ORDER BY at LIMIT ?", (pool, limit)
            )
        ]

    def mark_unanswered_reported(self, key_ids: Sequence[str]) -> None:
        """The master's KM acknowledged these key IDs."""
        with self.transaction(scrub=False):
            self.db.executemany("UPDATE unanswered SET reported=1 WHERE key_id=?", [(k,) for k in key_ids])

    def void_lost_at_peer(self, pool: str, key_ids: Sequence[str]) -> list[str]:
        """Master side: keys allocated here in `pool` whose answer to a slave SAE was lost at the peer
        become void (state 'void', recorded in `lost_at_peer`); returns those newly voided."""
        now = time.time()
        voided: list[str] = []
        with self.transaction(scrub=False):
            for k in key_ids:
                row = self.db.execute(
                    "SELECT master_sae FROM keys WHERE key_id=? AND pool=? AND origin=1 AND state='delivered'",
                    (k, pool),
                ).fetchone()
                if row is None:
                    continue
                self.db.execute("UPDATE keys SET state='void' WHERE key_id=?", (k,))
                self.db.execute(
                    "INSERT OR IGNORE INTO lost_at_peer(key_id, pool, master_sae, at) VALUES(?,?,?,?)",
                    (k, pool, row[0], now),
                )
                voided.append(k)
        return voided

    def lost_at_peer(self, pool: str, master_sae: str, recent: int = 16) -> tuple[int, list[str]]:
        """How many keys of master SAE `master_sae` in `pool` were lost at the peer, and the most recent IDs."""
        n = self.db.execute(
            "SELECT COUNT(*) FROM lost_at_peer WHERE pool=? AND master_sae=?", (pool, master_sae)
        ).fetchone()[0]
        ids = (
            [
                r[0]
                for r in self.db.execute(
                    "SELECT key_id FROM lost_at_peer WHERE pool=? AND master_sae=? ORDER BY at DESC, key_id LIMIT ?",
                    (pool, master_sae, recent),
                )
            ]
            if n
            else []
        )
        return n, ids
