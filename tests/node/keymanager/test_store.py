"""The SQLite key store: durable states, disjoint stripes, dedup, capacity, at-most-once delivery."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.keymanager.errors import KeysNotFound, NotAuthorized, PoolExhausted
from node.keymanager.store import Allocation, KeyBlock, KeyStore
from tests.node.keymanager.conftest import same_secret


def pair(tmp_path, **kw):
    a = KeyStore(str(tmp_path / "a.db"), "KME_A", **kw)
    b = KeyStore(str(tmp_path / "b.db"), "KME_B", **kw)
    return a, b


def feed(a, b, blocks):
    for s, pool in ((a, "KME_B"), (b, "KME_A")):
        s.add_blocks([KeyBlock("L1", i, pool, len(k) * 8, k) for i, k in blocks])
        s.confirm_blocks(pool, [("L1", i) for i, _ in blocks])


def transfer(master, slave, pool_m, pool_s, sae_m, sae_s, number, nbytes):
    r = master.reserve(pool_m, sae_m, [sae_s], number, nbytes)
    slave.accept_allocations(pool_s, r.allocations, r.retired)
    master.set_state([x.key_id for x in r.allocations], "delivered")
    return r


def test_store_file_and_wal_are_owner_only(tmp_path):
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(256))])
    for name in ("a.db", "a.db-wal"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, name
    assert a.db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert a.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert a.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_duplicate_block_is_stored_once(tmp_path):
    s = KeyStore(str(tmp_path / "s.db"), "KME_A")
    blk = KeyBlock("L1", 7, "KME_B", 8000, os.urandom(1000))
    assert s.add_blocks([blk]) == ["stored"]
    assert s.add_blocks([blk, blk]) == ["duplicate", "duplicate"]
    assert s.stored_bytes("KME_B") == 1000
    assert s.db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] == 1


def test_block_over_capacity_is_refused_and_others_stored(tmp_path):
    s = KeyStore(str(tmp_path / "s.db"), "KME_A", capacity_bytes=1500)
    out = s.add_blocks(
        [KeyBlock("L1", 0, "KME_B", 8000, os.urandom(1000)), KeyBlock("L1", 1, "KME_B", 8000, os.urandom(1000))]
    )
    assert out[0] == "stored" and "full" in out[1]
    assert s.has_block("L1", 0) and not s.has_block("L1", 1)


def test_unconfirmed_blocks_serve_no_keys(tmp_path):
    s = KeyStore(str(tmp_path / "s.db"), "KME_A")
    s.add_blocks([KeyBlock("L1", 0, "KME_B", 80000, os.urandom(10000))])
    with pytest.raises(PoolExhausted):
        s.reserve("KME_B", "SAE_A", ["SAE_B"], 1, 32)
    assert s.stored_key_count("KME_B", 32) == 0


def test_master_and_slave_get_identical_bytes_once(tmp_path):
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(20000))])
    r = transfer(a, b, "KME_B", "KME_A", "SAE_A", "SAE_B", 5, 32)
    ids = [x.key_id for x in r.allocations]
    got = b.fetch("SAE_B", "SAE_A", ids)
    same_secret(got, r.material, "slave keys differ from master keys")
    with pytest.raises(KeysNotFound):
        b.fetch("SAE_B", "SAE_A", ids[:1])
    assert all(a.key_record(k)["state"] == "delivered" for k in ids)
    assert all(b.key_record(k)["state"] == "delivered" for k in ids)


def test_third_sae_is_not_authorized_and_nothing_is_consumed(tmp_path):
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(20000))])
    r = transfer(a, b, "KME_B", "KME_A", "SAE_A", "SAE_B", 2, 32)
    ids = [x.key_id for x in r.allocations]
    with pytest.raises(NotAuthorized):
        b.fetch("SAE_C", "SAE_A", ids)
    same_secret(b.fetch("SAE_B", "SAE_A", ids), r.material, "slave keys differ from master keys")


def test_failed_fetch_consumes_nothing(tmp_path):
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(20000))])
    r = transfer(a, b, "KME_B", "KME_A", "SAE_A", "SAE_B", 1, 32)
    ids = [r.allocations[0].key_id, "00000000-0000-4000-8000-000000000000"]
    with pytest.raises(KeysNotFound):
        b.fetch("SAE_B", "SAE_A", ids)
    same_secret(b.fetch("SAE_B", "SAE_A", ids[:1]), r.material, "slave keys differ from master keys")


def test_multicast_key_is_delivered_once_to_each_slave(tmp_path):
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(20000))])
    r = a.reserve("KME_B", "SAE_A", ["SAE_B", "SAE_C"], 1, 64)
    b.accept_allocations("KME_A", r.allocations, r.retired)
    ids = [r.allocations[0].key_id]
    same_secret(b.fetch("SAE_B", "SAE_A", ids), r.material, "slave keys differ from master keys")
    assert b.key_record(ids[0])["state"] == "reserved"
    same_secret(b.fetch("SAE_C", "SAE_A", ids), r.material, "slave keys differ from master keys")
    assert b.key_record(ids[0])["state"] == "delivered"


def test_pool_exhaustion_consumes_nothing(tmp_path):
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(4096 * 2))])
    count = a.stored_key_count("KME_B", 32)
    with pytest.raises(PoolExhausted):
        a.reserve("KME_B", "SAE_A", ["SAE_B"], count + 1, 32)
    assert a.stored_key_count("KME_B", 32) == count
    assert len(a.reserve("KME_B", "SAE_A", ["SAE_B"], count, 32).allocations) == count


def test_recover_voids_keys_reserved_but_never_delivered(tmp_path):
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(20000))])
    r = a.reserve("KME_B", "SAE_A", ["SAE_B"], 3, 32)
    a.close()
    a2 = KeyStore(str(tmp_path / "a.db"), "KME_A")
    assert a2.recover() == 3
    assert all(a2.key_record(x.key_id)["state"] == "void" for x in r.allocations)


def test_peer_allocation_outside_its_stripe_is_rejected(tmp_path):
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(20000))])
    r = b.reserve("KME_A", "SAE_B", ["SAE_A"], 1, 32)  # b's own stripe
    forged = Allocation("00000000-0000-4000-8000-000000000001", "SAE_A", ("SAE_B",), r.allocations[0].position)
    with pytest.raises(ValueError, match="stripe"):
        b.accept_allocations("KME_A", [forged])


def test_overlapping_peer_allocation_is_rejected(tmp_path):
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(20000))])
    r = transfer(a, b, "KME_B", "KME_A", "SAE_A", "SAE_B", 1, 32)
    again = Allocation("00000000-0000-4000-8000-000000000002", "SAE_A", ("SAE_B",), r.allocations[0].position)
    with pytest.raises(ValueError, match="overlaps"):
        b.accept_allocations("KME_A", [again])


@settings(max_examples=25)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, 6), st.sampled_from([8, 32, 128, 1000])), max_size=25),
    st.lists(st.integers(64, 9000), min_size=1, max_size=4),
)
def test_both_kms_serving_masters_never_hand_out_the_same_bits(tmp_path_factory, ops, sizes):
    tmp = tmp_path_factory.mktemp("s")
    a, b = pair(tmp, chunk_bytes=1024)
    feed(a, b, [(i, os.urandom(n)) for i, n in enumerate(sizes)])
    seen: dict[tuple[str, int, int], list[tuple[int, int]]] = {}
    for from_a, number, nbytes in ops:
        m, s, pm, ps, sm, ss = (
            (a, b, "KME_B", "KME_A", "SAE_A", "SAE_B") if from_a else (b, a, "KME_A", "KME_B", "SAE_B", "SAE_A")
        )
        try:
            r = transfer(m, s, pm, ps, sm, ss, number, nbytes)
        except PoolExhausted:
            continue
        same_secret(
            s.fetch(ss, sm, [x.key_id for x in r.allocations]), r.material, "slave keys differ from master keys"
        )
        for x in r.allocations:
            p = x.position
            seen.setdefault((p.link_id, p.block_id, p.idx), []).append((p.offset, p.offset + p.nbytes))
    for ranges in seen.values():
        ranges.sort()
        assert all(ranges[i][1] <= ranges[i + 1][0] for i in range(len(ranges) - 1))
    a.close()
    b.close()


def test_reservation_leaves_the_connection_at_synchronous_full(tmp_path):
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(8192))])
    a.reserve("KME_B", "SAE_A", ["SAE_B"], 2, 32)
    assert a.db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_bits_rebound_after_a_lost_reservation_are_refused_by_the_peer(tmp_path):
    """A reservation lost to a power cut (its cursor rolled back) cannot bind bits the peer already holds."""
    a, b = pair(tmp_path)
    feed(a, b, [(0, os.urandom(8192))])
    first = a.reserve("KME_B", "SAE_A", ["SAE_B"], 2, 32)
    b.accept_allocations("KME_A", first.allocations, first.retired)
    # power cut at the owner before its next durable commit: the reservation is gone
    p = first.allocations[0].position
    a.db.execute("UPDATE chunks SET cursor=0 WHERE link_id=? AND block_id=? AND idx=?", (p.link_id, p.block_id, p.idx))
    a.db.execute("DELETE FROM keys")
    again = a.reserve("KME_B", "SAE_A", ["SAE_B"], 1, 32)
    assert again.allocations[0].position == p
    with pytest.raises(ValueError, match="overlaps"):
        b.accept_allocations("KME_A", again.allocations, again.retired)
    a.set_state([x.key_id for x in again.allocations], "void")
    for _ in range(3):  # each refused batch is voided and the owner's cursor moves on past the bound bits
        later = a.reserve("KME_B", "SAE_A", ["SAE_B"], 1, 32)
        try:
            b.accept_allocations("KME_A", later.allocations, later.retired)
            break
        except ValueError:
            a.set_state([x.key_id for x in later.allocations], "void")
    assert later.allocations[0].position.offset >= 64
    same_secret(
        b.fetch("SAE_B", "SAE_A", [later.allocations[0].key_id]), later.material, "slave keys differ from master keys"
    )


def test_link_key_refill_takes_whole_chunks_both_sides_agree_and_is_idempotent(tmp_path):
    a, b = pair(tmp_path, chunk_bytes=1024)
    feed(a, b, [(0, os.urandom(8192)), (1, os.urandom(8192))])
    inflight = a.reserve("KME_B", "SAE_A", ["SAE_B"], 3, 32)  # a key batch not yet at the peer
    n, allocs = a.reserve_auth_refill("KME_B", "KME_B:out", 2)
    assert n == 0 and all(x.position.offset == 0 and x.position.nbytes == 1024 for x in allocs)
    material, new = b.accept_auth_refill("KME_A", "KME_A:in", 0, allocs)  # arrives before the key batch
    assert new
    b.accept_allocations("KME_A", inflight.allocations, inflight.retired)  # still accepted: disjoint bits
    ((_, _, mine, applied),) = a.auth_refills("KME_B:out")
    assert not applied
    same_secret(mine, material, "the two sides drew different link key")
    again, new = b.accept_auth_refill("KME_A", "KME_A:in", 0, allocs)
    assert not new
    same_secret(again, material, "a re-sent refill gave other bytes")
    with pytest.raises(ValueError, match="out of order"):
        b.accept_auth_refill("KME_A", "KME_A:in", 5, allocs)
    a.mark_refill_applied("KME_B:out", 0)
    assert a.auth_refills("KME_B:out")[0][3] is True
