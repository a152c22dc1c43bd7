"""The array pool that carries big per-block arrays across blocks, and the kernels that make reuse safe."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postprocessing.bits import pack_bits, unpack_bits
from postprocessing.cascade import (
    VARIANTS,
    CascadeReconciler,
    CascadeResponder,
    LoopbackLink,
    reconcile_many_loopback,
    shuffle,
)
from postprocessing.cascade.passes import _gather_packed
from postprocessing.cascade.scratch import POOL, ArrayPool
from tests.postprocessing.cascade import reference
from tests.postprocessing.cascade.test_reconcile import frame


def test_pool_hands_back_the_array_it_was_given() -> None:
    pool = ArrayPool()
    a = pool.take((3, 5), np.uint64)
    assert a.shape == (3, 5) and a.dtype == np.uint64
    pool.give(a)
    assert pool.take((3, 5), np.uint64) is a
    assert pool.take((3, 5), np.uint64) is not a  # given once, handed out once


def test_pool_keeps_shapes_and_dtypes_apart() -> None:
    pool = ArrayPool()
    a = pool.take((4,), np.int32)
    pool.give(a)
    assert pool.take((4,), np.uint32) is not a
    assert pool.take((5,), np.int32) is not a
    assert pool.take((4,), np.int32) is a


def test_pool_drops_the_oldest_beyond_its_cap() -> None:
    pool = ArrayPool(max_free_bytes=1000)
    old, new = np.zeros(100, np.int64), np.zeros(100, np.int64)  # 800 bytes each
    pool.give(old)
    pool.give(new)
    assert pool.free_bytes == 800
    assert pool.take((100,), np.int64) is new
    assert pool.take((100,), np.int64) is not old


def test_pool_drops_a_tree_state_that_holds_too_many_pages() -> None:
    pool = ArrayPool(max_free_bytes=1 << 20)
    s, resident = pool.take_state(1 << 16)
    assert resident == 0 and not s.any()
    pool.give_state(s, 1 << 19)  # more than a quarter of the cap: dropped
    assert pool.take_state(1 << 16)[0] is not s
    pool.give_state(s, 4096)
    got, resident = pool.take_state(1 << 16)
    assert got is s and resident == 4096


@given(n=st.integers(1, 500), seed=st.integers(0, 2**64 - 1), data=st.data())
def test_gather_with_and_without_inverse_matches_reference(n: int, seed: int, data: st.DataObject) -> None:
    bits = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.uint8)
    perm = shuffle.permutation(n, seed)
    out = np.zeros((n + 63) // 64, dtype=np.uint64)
    pos = np.empty(n, dtype=np.int32)
    _gather_packed(pack_bits(bits), perm, out, pos)
    order = reference.permutation(n, seed)
    assert unpack_bits(out, n).tolist() == [int(bits[p]) for p in order]
    assert [order[int(pos[p])] for p in range(n)] == list(range(n))
    alone = np.zeros_like(out)
    _gather_packed(pack_bits(bits), perm, alone, np.zeros(0, dtype=np.int32))
    assert np.array_equal(alone, out)


@given(n=st.integers(1, 300), seed=st.integers(0, 2**64 - 1))
def test_permutation_and_subset_into_a_buffer_match_fresh_ones(n: int, seed: int) -> None:
    buf = np.full(n, -7, dtype=np.int32)
    assert shuffle.permutation(n, seed, out=buf) is buf
    assert buf.tolist() == reference.permutation(n, seed)
    words = np.full((n + 63) // 64, 12345, dtype=np.uint64)
    shuffle.subset_words(n, seed, out=words)
    assert np.array_equal(words, shuffle.subset_words(n, seed))


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 4000),
    qber=st.floats(0.0, 0.12),
    seed=st.integers(0, 2**32 - 1),
    variant=st.sampled_from(sorted(VARIANTS)),
)
def test_blocks_leave_their_pooled_tree_states_zeroed(n: int, qber: float, seed: int, variant: str) -> None:
    frames = [frame(n, qber, seed), frame(n, qber, seed + 1)]
    outcomes = reconcile_many_loopback(frames, max(qber, 0.001), variant, max_in_flight=1)
    assert all(o.error is None for o in outcomes)
    for key, entries in list(POOL._free.items()):
        if key[0] == "s":
            assert all(not s.any() for s, _ in entries), "a tree state went back to the pool with nodes set"


def test_reused_arrays_give_the_same_transcript_as_fresh_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [frame(30_000, 0.03, s) for s in range(4)]

    def run() -> list[tuple[int, int, bytes]]:
        seeds = itertools.count()  # the same shuffle seeds in both runs: the same questions, bit for bit
        monkeypatch.setattr(shuffle, "draw_seed", lambda: next(seeds).to_bytes(shuffle.SEED_BYTES, "little"))
        out = reconcile_many_loopback(frames, 0.03, "yanetal", max_in_flight=2)
        assert all(o.error is None for o in out)
        rows = []
        for o in out:
            assert o.bits is not None
            rows.append((o.stats.leaked_bits, o.stats.round_trips, o.bits.tobytes()))
        return rows

    POOL.clear()
    fresh = run()
    assert POOL.free_bytes > 0
    assert run() == fresh  # every array now comes from the pool, holding the previous blocks' data


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(200, 5000))
def test_a_block_ended_by_lying_answers_also_leaves_its_tree_state_zeroed(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    alice, bob = frame(n, 0.05, seed)
    link = LoopbackLink()
    responder = CascadeResponder(link.alice)
    link.serve(1, responder.serve_pending)
    responder.tamper_answers = lambda buf: buf ^ rng.integers(0, 256, buf.size, dtype=np.uint8) if buf.size else buf
    responder.add_block(1, alice)
    POOL.clear()
    CascadeReconciler(link.bob, "yanetal").reconcile_many([(1, bob, 0.05)])  # may end either way
    link.drain()
    states = [s for key, entries in POOL._free.items() if key[0] == "s" for s, _ in entries]
    assert states and all(not s.any() for s in states)
