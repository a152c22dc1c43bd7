"""The key store's transactions: all or nothing, savepoints undo one step, WAL scrubbed after commit."""

from __future__ import annotations

import os

import pytest

from node.keymanager.storedb import StoreDb

SCHEMA = "CREATE TABLE IF NOT EXISTS t(k TEXT PRIMARY KEY, v BLOB);"


def rows(s: StoreDb) -> dict[str, bytes]:
    return {k: bytes(v) for k, v in s.db.execute("SELECT k, v FROM t")}


def test_a_transaction_that_raises_leaves_nothing_behind(tmp_path):
    s = StoreDb(str(tmp_path / "s.db"), SCHEMA)
    with s.transaction():
        s.db.execute("INSERT INTO t VALUES('a', x'01')")
    with pytest.raises(RuntimeError), s.transaction():
        s.db.execute("INSERT INTO t VALUES('b', x'02')")
        s.db.execute("UPDATE t SET v=x'ff' WHERE k='a'")
        raise RuntimeError("cut short")
    assert rows(s) == {"a": b"\x01"}
    assert not s.db.in_transaction


def test_a_failed_commit_is_rolled_back(tmp_path):
    s = StoreDb(
        str(tmp_path / "s.db"), SCHEMA + "CREATE TABLE u(x INTEGER REFERENCES t(k) DEFERRABLE INITIALLY DEFERRED);"
    )
    with pytest.raises(Exception, match="FOREIGN KEY"), s.transaction():
        s.db.execute("INSERT INTO t VALUES('a', x'01')")
        s.db.execute("INSERT INTO u VALUES('nowhere')")  # checked at COMMIT
    assert rows(s) == {} and not s.db.in_transaction


def test_a_savepoint_undoes_only_its_own_step(tmp_path):
    s = StoreDb(str(tmp_path / "s.db"), SCHEMA)
    with s.transaction():
        s.db.execute("INSERT INTO t VALUES('a', x'01')")
        with pytest.raises(KeyError), s.savepoint():
            s.db.execute("INSERT INTO t VALUES('b', x'02')")
            raise KeyError("b")
        with s.savepoint():
            s.db.execute("INSERT INTO t VALUES('c', x'03')")
    assert rows(s) == {"a": b"\x01", "c": b"\x03"}


def test_a_scrubbing_commit_leaves_an_empty_wal_and_an_unsynced_one_restores_full_sync(tmp_path):
    path = str(tmp_path / "s.db")
    s = StoreDb(path, SCHEMA)
    with s.transaction(scrub=False, synced=False):
        s.db.execute("INSERT INTO t VALUES('a', ?)", (os.urandom(4096),))
    assert os.path.getsize(path + "-wal") > 0
    assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    with s.transaction():
        s.db.execute("UPDATE t SET v=zeroblob(4096) WHERE k='a'")
    assert os.path.getsize(path + "-wal") == 0


def test_deferred_scrubbing_waits_for_scrub_if_due(tmp_path):
    path = str(tmp_path / "s.db")
    s = StoreDb(path, SCHEMA, scrub_deferred=True)
    with s.transaction():
        s.db.execute("INSERT INTO t VALUES('a', ?)", (os.urandom(4096),))
    assert s.scrub_due and os.path.getsize(path + "-wal") > 0
    assert s.scrub_if_due() and not s.scrub_due
    assert os.path.getsize(path + "-wal") == 0
