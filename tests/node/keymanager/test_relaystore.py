"""Relay bookkeeping: one-time pads drawn and consumed identically, never twice, apart from SAE keys."""

from __future__ import annotations

import itertools
import os
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.keymanager.errors import KeysNotFound, NotAuthorized, PoolExhausted
from node.keymanager.relaystore import PadSlice, RelayStore, xor_bytes
from node.keymanager.store import KeyBlock, KeyStore
from tests.node.keymanager.conftest import same_secret


def stores(blocks: int = 2, nbytes: int = 1 << 14, chunk: int = 1024):
    a = KeyStore(":memory:", "KME_A", chunk_bytes=chunk)
    b = KeyStore(":memory:", "KME_B", chunk_bytes=chunk)
    keys = [os.urandom(nbytes) for _ in range(blocks)]
    for s, pool in ((a, "KME_B"), (b, "KME_A")):
        s.add_blocks([KeyBlock("L1", i, pool, nbytes * 8, k) for i, k in enumerate(keys)])
        s.confirm_blocks(pool, [("L1", i) for i in range(blocks)])
    return a, b, RelayStore(a), RelayStore(b)


def no_overlap(ledger) -> bool:
    by_chunk: dict[tuple, list[tuple[int, int]]] = {}
    for link, block, idx, off, nb, *_ in ledger:
        by_chunk.setdefault((link, block, idx), []).append((off, nb))
    for spans in by_chunk.values():
        spans.sort()
        if any(o1 + n1 > o2 for (o1, n1), (o2, _) in itertools.pairwise(spans)):
            return False
    return True


def test_receiver_gets_the_same_pad_the_sender_drew():
    _, _, ra, rb = stores()
    slices, pad = ra.take_pad("KME_B", "r1", 1500)  # spans two relay chunks
    assert len(pad) == 1500 and len(slices) == 2
    same_secret(rb.accept_pad("KME_A", "r1", slices), pad, "pads differ")
    assert ra.pad_ledger()[0][6] == "r1" and rb.pad_ledger()[0][7] == "in"


def test_a_pad_is_accepted_once_and_a_refused_one_consumes_nothing():
    _, _, ra, rb = stores()
    slices, _ = ra.take_pad("KME_B", "r1", 64)
    rb.accept_pad("KME_A", "r1", slices)
    ledger = rb.pad_ledger()
    with pytest.raises(ValueError, match="already used"):
        rb.accept_pad("KME_A", "r2", slices)
    with pytest.raises(ValueError, match="already used"):  # a slice inside one already used
        rb.accept_pad("KME_A", "r3", [PadSlice(slices[0].link_id, slices[0].block_id, slices[0].idx, 10, 4)])
    assert rb.pad_ledger() == ledger


def test_pads_from_the_receivers_own_stripe_or_unknown_chunks_are_refused():
    _, _, ra, rb = stores()
    own, _ = rb.take_pad("KME_A", "r1", 32)  # B's stripe: A could never have drawn it
    with pytest.raises(ValueError, match="stripe"):
        rb.accept_pad("KME_A", "r2", own)
    with pytest.raises(ValueError, match="not held"):
        rb.accept_pad("KME_A", "r3", [PadSlice("L1", 99, 0, 0, 32)])
    with pytest.raises(ValueError, match=r"not held|stripe"):
        ra.accept_pad("KME_B", "r4", [PadSlice("L1", 0, 0, 0, 5000)])


def test_exhausted_pool_draws_nothing():
    _, _, ra, _ = stores(blocks=1, nbytes=4096)
    before = ra.pad_bits_available("KME_B")
    assert before == 8 * 2048  # half the chunks belong to this KM's stripe
    with pytest.raises(PoolExhausted):
        ra.take_pad("KME_B", "r1", 2049)
    assert ra.pad_bits_available("KME_B") == before and ra.pad_ledger() == []


@settings(max_examples=25)
@given(st.lists(st.integers(1, 900), min_size=1, max_size=20), st.randoms(use_true_random=False))
def test_pads_taken_in_any_order_match_and_never_share_bits(sizes, rnd):
    a, _b, ra, rb = stores(blocks=2, nbytes=1 << 13)
    drawn = []
    for i, n in enumerate(sizes):
        try:
            drawn.append((f"r{i}", *ra.take_pad("KME_B", f"r{i}", n)))
        except PoolExhausted:
            break
    rnd.shuffle(drawn)
    for relay_id, slices, pad in drawn:
        same_secret(rb.accept_pad("KME_A", relay_id, slices), pad, "pads differ")
    assert no_overlap(ra.pad_ledger()) and no_overlap(rb.pad_ledger())
    assert sum(r[4] for r in rb.pad_ledger()) == sum(len(p) for _, _, p in drawn)
    # SAE keys drawn afterwards never touch a relay chunk
    relay_chunks = {(r[0], r[1], r[2]) for r in ra.pad_ledger()}
    try:
        res = a.reserve("KME_B", "SAE_A", ["SAE_B"], 8, 32)
    except PoolExhausted:
        return
    assert not relay_chunks & {(x.position.link_id, x.position.block_id, x.position.idx) for x in res.allocations}


def test_relayed_keys_are_served_once_and_only_to_the_named_slave():
    _, _, ra, rb = stores()
    keys = os.urandom(64)
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    slices, pad = ra.take_pad("KME_B", "r1", 64)
    rb.accept_relayed_keys("KME_A", "r1", slices, xor_bytes(keys, pad), ids, "SAE_A", ["SAE_B"], ["KME_A", "KME_B"])
    with pytest.raises(NotAuthorized):
        rb.fetch("SAE_X", "SAE_A", ids)
    with pytest.raises(KeysNotFound):
        rb.fetch("SAE_B", "SAE_Z", ids)
    got = rb.fetch("SAE_B", "SAE_A", ids)
    same_secret(b"".join(m for m, _ in got), keys, "relayed keys differ")
    assert got[0][1] == ["KME_A", "KME_B"]
    with pytest.raises(KeysNotFound):
        rb.fetch("SAE_B", "SAE_A", ids[:1])
    with pytest.raises(ValueError, match="already used"):  # the same relay again, same pad bits
        rb.accept_relayed_keys("KME_A", "r1", slices, xor_bytes(keys, pad), ids, "SAE_A", ["SAE_B"], ["KME_A"])
    # the same relay over another route (fresh pad bits): already stored, not stored twice
    slices2, pad2 = ra.take_pad("KME_B", "r1", 64)
    assert not rb.accept_relayed_keys("KME_A", "r1", slices2, xor_bytes(keys, pad2), ids, "SAE_A", ["SAE_B"], ["KME_A"])
    with pytest.raises(KeysNotFound):
        rb.fetch("SAE_B", "SAE_A", ids[:1])
    slices3, pad3 = ra.take_pad("KME_B", "r1", 64)  # same relay ID, other keys: refused
    with pytest.raises(ValueError, match="other keys"):
        rb.accept_relayed_keys(
            "KME_A", "r1", slices3, xor_bytes(os.urandom(64), pad3), ids, "SAE_A", ["SAE_B"], ["KME_A"]
        )


def test_void_relay_leaves_no_fetchable_key_and_recover_voids_pending():
    _, _, ra, rb = stores()
    ids = [str(uuid.uuid4())]
    slices, pad = ra.take_pad("KME_B", "r1", 32)
    rb.accept_relayed_keys("KME_A", "r1", slices, pad, ids, "SAE_A", ["SAE_B"], ["KME_A", "KME_B"])
    assert rb.void_relay("r1") == 1
    with pytest.raises(KeysNotFound):
        rb.fetch("SAE_B", "SAE_A", ids)
    assert ra.relay_state("r1") == "pending"
    assert ra.recover() == 1 and ra.relay_state("r1") == "void"


def test_xor_is_its_own_inverse():
    r = random.Random(1)
    a, b = r.randbytes(100), r.randbytes(100)
    assert xor_bytes(xor_bytes(a, b), b) == a
    with pytest.raises(ValueError):
        xor_bytes(a, b[:5])
