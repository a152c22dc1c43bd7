"""The key store's SQLite connection: an owner-only file, durable transactions, and WAL scrubbing.

Every state change of the key store is one `transaction()`: BEGIN IMMEDIATE, the caller's
statements, COMMIT with synchronous=FULL (or NORMAL for a transaction that answers no one), and
ROLLBACK on any exception, so nothing half-done ever reaches the disk.

Scrubbing. Consumed key bytes are overwritten in place (`secure_delete`), but SQLite's write-ahead
log still holds the earlier images of those pages. A transaction that serves, voids or consumes key
is therefore followed by a TRUNCATE checkpoint (`scrub`): the current pages go into the database
file and the WAL is cut to zero bytes, at once or (with `scrub_deferred`) at the owner's next
`scrub_if_due`, so that one checkpoint (one database fsync) covers every batch served meanwhile.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from node.private_files import create_private_file

log = logging.getLogger(__name__)


def create_owner_only(path: str) -> None:
    """Create `path` (if absent) with mode 0600 before SQLite opens it, and tighten it if present
    (SQLite gives the -wal and -shm files the database file's mode)."""
    create_private_file(path)


class StoreDb:
    """One SQLite connection in WAL mode with `secure_delete`. Not thread-safe: one owning thread
    calls every method."""

    def __init__(self, path: str, schema: str, *, scrub_deferred: bool = False) -> None:
        self.path = path
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
        self.db.executescript(schema)
        if path != ":memory:":
            for aux in (path + "-wal", path + "-shm"):
                if os.path.exists(aux):
                    os.chmod(aux, 0o600)
        if crashed:
            self.scrub()

    def add_schema(self, schema: str) -> None:
        """Create further tables (a component's) in this database, if absent."""
        self.db.executescript(schema)

    @contextmanager
    def transaction(self, *, scrub: bool = True, synced: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic state change: committed when the block ends, rolled back if it raises.

        `scrub` (the default, for any transaction that may overwrite key material): checkpoint and
        truncate the WAL after the commit (see the module docstring). `synced=False`: commit with
        synchronous=NORMAL (written to the WAL without fsync; survives the process, not a power
        loss), for transactions whose outcome no one has been told yet.
        """
        if not synced:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            if scrub or self._scrub_pending:
                self.after_overwrite()
        finally:
            if not synced:
                self.db.execute("PRAGMA synchronous=FULL")

    def after_overwrite(self) -> None:
        """A committed transaction overwrote key bytes: scrub the WAL now, or mark it due (deferred mode)."""
        if self.scrub_deferred:
            self._scrub_pending = True
        else:
            self.scrub()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested step inside a transaction: undone alone if it raises (the exception propagates)."""
        self.db.execute("SAVEPOINT step")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK TO step")
            self.db.execute("RELEASE step")
            raise
        self.db.execute("RELEASE step")

    @property
    def scrub_due(self) -> bool:
        """Whether a commit overwrote key bytes whose earlier images may still be in the WAL."""
        return self._scrub_pending

    def scrub(self) -> bool:
        """Checkpoint the WAL into the database and truncate it to zero bytes, so that earlier page
        images (which held bytes since overwritten) are gone from disk. Another process reading the
        database (an operator's `sqlite3` shell) can block it for longer than the busy timeout: then
        the scrub is retried after the next commit, and False is returned."""
        row = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        self._scrub_pending = bool(row is not None and row[0])
        if self._scrub_pending:
            log.warning(
                "key store %s: a reader blocked the WAL checkpoint; overwritten key bytes stay in the "
                "WAL until the next one",
                self.path,
            )
        return not self._scrub_pending

    def scrub_if_due(self) -> bool:
        """Scrub if a commit asked for it since the last scrub (deferred mode); True if done or not due."""
        return self.scrub() if self._scrub_pending else True

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
