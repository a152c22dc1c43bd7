"""Block parities, parity-tree ranges and the batched binary search against slow references."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from postprocessing.bits import pack_bits
from postprocessing.cascade import kernels
from postprocessing.cascade.passes import PassTables
from postprocessing.cascade.variants import BLOCK, HALF
from tests.postprocessing.cascade import reference

bit_lists = st.lists(st.integers(0, 1), min_size=1, max_size=700)


@given(bits=bit_lists, k=st.integers(1, 130))
def test_block_parities_match_reference(bits: list[int], k: int) -> None:
    row = np.array(bits, dtype=np.uint8)
    nb = -(-row.size // k)
    dummy = np.zeros(1, dtype=np.uint64)
    got = kernels.top_parities(BLOCK, k, nb, row.size, pack_bits(row), dummy)
    for lo in range(0, row.size, max(1, k // 3)):
        hi = min(row.size, lo + k)
        assert kernels.packed_parity(pack_bits(row), lo, hi) == sum(bits[lo:hi]) % 2
    assert got.tolist() == reference.block_parities(bits, k)


@given(bits=bit_lists, mask_seed=st.integers(0, 2**32), lo=st.integers(0, 700), span=st.integers(0, 700))
def test_subset_parities_match_reference(bits: list[int], mask_seed: int, lo: int, span: int) -> None:
    n = len(bits)
    mask = np.random.default_rng(mask_seed).integers(0, 2, n, dtype=np.uint8)
    row = np.array(bits, dtype=np.uint8)
    words, mwords = pack_bits(row), pack_bits(mask)
    lo = min(lo, n)
    hi = min(n, lo + span)
    for flip in (0, 1):
        want = sum(b for b, m in zip(bits[lo:hi], mask[lo:hi]) if m ^ flip) % 2
        assert kernels.masked_parity(words, mwords, flip, lo, hi) == want
    top = kernels.top_parities(HALF, n, 2, n, words, mwords)
    assert top.tolist() == [
        sum(b for b, m in zip(bits, mask) if m) % 2,
        sum(b for b, m in zip(bits, mask) if not m) % 2,
    ]


@given(length=st.integers(1, 5000), v=st.integers(1, 2**14))
def test_node_range_matches_reference_walk(length: int, v: int) -> None:
    assert kernels.node_range(length, v) == reference.node_range(length, v)


def _search_one_block(alice: np.ndarray, bob: np.ndarray) -> tuple[int, int, int, np.ndarray]:
    """Run the kernel binary search on one BLOCK pass of one block, Alice answering from her tables."""
    n = alice.size
    bt = PassTables(bob.copy(), 1, keep_inverse=True)
    at = PassTables(alice, 1, keep_inverse=False, range_tables=True)
    for t in (bt, at):
        t.plan(0, BLOCK, n)
        t.start(0, None, shuffle_block=False)
    state = np.zeros(int(bt.base[1]), dtype=np.int8)
    top = kernels.top_parities(BLOCK, n, 1, n, at.rows[0], at.masks[0])
    odd = kernels.set_roots(
        0, bt.kind, bt.ksz, bt.nb, bt.stride, bt.base, bt.rowi, bt.mrow, n, state, bt.rows, bt.masks, top
    )
    ans = np.zeros(0, dtype=np.uint8)
    searches = kernels.root_searches(0, odd, bt.kind, bt.ksz, n)
    flipmap = np.zeros((n + 63) // 64, dtype=np.uint64)
    asked = rounds = flips = 0
    while True:
        qp, qb, qn, searches, nf = kernels.bob_round(
            bt.kind,
            bt.ksz,
            bt.nb,
            bt.stride,
            bt.base,
            bt.rowi,
            bt.mrow,
            bt.prow,
            1,
            n,
            state,
            bt.rows,
            bt.masks,
            bt.perms,
            bt.poss,
            ans,
            searches,
            flipmap,
        )
        flips += nf
        if qp.size == 0:
            break
        rounds += 1
        asked += qp.size
        ans = kernels.answer_questions(
            at.kind, at.ksz, at.nb, at.stride, at.rowi, at.mrow, at.trow, at.ranges, 1, n, at.rows, at.masks, qp, qb, qn
        )
    corrected = bt.bits()
    pos = int(np.flatnonzero(corrected != bob)[0]) if flips else -1
    return pos, asked, rounds, corrected


@given(bits=st.lists(st.integers(0, 1), min_size=2, max_size=600), where=st.integers(0, 10**6))
def test_binary_search_finds_the_error_with_reference_questions(bits: list[int], where: int) -> None:
    alice = np.array(bits, dtype=np.uint8)
    bob = alice.copy()
    p = where % alice.size
    bob[p] ^= 1
    pos, asked, rounds, _ = _search_one_block(alice, bob)
    ref_pos, ref_asked = reference.binary_search(alice.tolist(), bob.tolist())
    assert pos == ref_pos == p
    assert asked == ref_asked
    assert rounds == ref_asked  # one question per round trip for a single search


@given(bits=st.lists(st.integers(0, 1), min_size=2, max_size=300), errs=st.sets(st.integers(0, 299), max_size=6))
def test_single_block_search_only_flips_true_errors(bits: list[int], errs: set[int]) -> None:
    alice = np.array(bits, dtype=np.uint8)
    bob = alice.copy()
    bob[[e % alice.size for e in errs]] ^= 1
    _, _, _, corrected = _search_one_block(alice, bob)
    changed = corrected != bob
    assert not np.any(changed & (alice == bob)), "a correct bit was flipped"
    residual = int(np.count_nonzero(corrected != alice))
    assert residual == len({e % alice.size for e in errs}) - int(np.count_nonzero(changed))
    if residual % 2 == 1:
        raise AssertionError("a block of odd error parity was left uncorrected")


@given(
    bits=st.lists(st.integers(0, 1), min_size=1, max_size=700),
    k=st.integers(1, 300),
    questions=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10), st.integers(0, 600)), max_size=60),
)
def test_range_tables_answer_as_the_walk_does(bits: list[int], k: int, questions: list[tuple[int, int, int]]) -> None:
    """Alice's node-range tables give every answer (INVALID included) that walking node_range gives,
    and each answer is the reference parity of the node's range."""
    row = np.array(bits, dtype=np.uint8)
    n = row.size
    k = min(k, n)
    walk = PassTables(row, 1, keep_inverse=False)
    table = PassTables(row, 1, keep_inverse=False, range_tables=True)
    for t in (walk, table):
        t.plan(0, BLOCK, k)
        t.start(0, None, shuffle_block=False)
    assert table.trow[0] >= 0
    qp = np.array([q[0] for q in questions], dtype=np.uint8)
    qb = np.array([q[1] for q in questions], dtype=np.uint32)
    qn = np.array([q[2] for q in questions], dtype=np.uint32)
    got = [
        kernels.answer_questions(
            t.kind, t.ksz, t.nb, t.stride, t.rowi, t.mrow, t.trow, t.ranges, 1, n, t.rows, t.masks, qp, qb, qn
        ).tolist()
        for t in (walk, table)
    ]
    assert got[0] == got[1]
    for (j, b, v), a in zip(questions, got[1]):
        length = min(k, n - b * k) if j == 0 and b * k < n else 0
        lo, hi = reference.node_range(length, v) if length and v >= 1 else (0, 0)
        if j != 0 or not length or v < 1 or v >= kernels.tree_stride(min(k, n)) or hi <= lo:
            assert a == kernels.INVALID
        else:
            assert a == sum(bits[b * k + lo : b * k + hi]) % 2
