"""The named steps of Bob's round (`kernels._descend`, `_toggle_path`, `_put` and `_grown`) and the sparse tree
state, each against a slow walk over `reference.node_range`."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postprocessing.cascade import kernels, reconcile_many_loopback, shuffle
from postprocessing.cascade.passes import tree_state
from postprocessing.cascade.variants import BLOCK
from tests.postprocessing.cascade import reference
from tests.postprocessing.cascade.test_reconcile import frame

EVEN, ODD, ASKED, UNKNOWN = kernels.EVEN, kernels.ODD, kernels.ASKED, kernels.UNKNOWN


def _child_holding(length: int, v: int, r: int) -> int:
    lo, hi = reference.node_range(length, 2 * v)
    return 2 * v if lo <= r < hi else 2 * v + 1


def _ref_toggle(state: list[int], length: int, r: int) -> int:
    """Toggle known nodes from the root down along position r while known; deepest node now odd."""
    v, deepest = 1, 0
    while v < len(state) and state[v] in (EVEN, ODD):
        state[v] = ODD if state[v] == EVEN else EVEN
        if state[v] == ODD:
            deepest = v
        lo, hi = reference.node_range(length, v)
        if hi - lo <= 1:
            break
        v = _child_holding(length, v, r)
    return deepest


def _ref_descend(state: list[int], length: int, v: int) -> tuple[int, int, int, int]:
    """Follow odd children down from v through known parities (BLOCK pass: nothing is implied by a
    subset); the right child's state follows from the parent's and the left's."""
    while True:
        lo, hi = reference.node_range(length, v)
        if state[v] != ODD:
            return 0, v, lo, hi  # _GONE
        if hi - lo == 1:
            return 1, v, lo, hi  # _FOUND
        left = state[2 * v]
        if left == UNKNOWN:
            state[2 * v] = ASKED
            return 2, v, lo, hi  # _ASK
        if left == ASKED:
            return 3, v, lo, hi  # _WAIT
        if state[2 * v + 1] not in (EVEN, ODD):
            state[2 * v + 1] = EVEN if left == ODD else ODD
        v = 2 * v if left == ODD else 2 * v + 1


tree_states = st.integers(1, 200).flatmap(
    lambda length: st.tuples(
        st.just(length),
        st.lists(
            st.sampled_from([UNKNOWN, EVEN, ODD, ASKED]),
            min_size=int(kernels.tree_stride(length)),
            max_size=int(kernels.tree_stride(length)),
        ),
    )
)


@given(tree=tree_states, r=st.integers(0, 199))
def test_toggle_path_matches_reference(tree: tuple[int, list[int]], r: int) -> None:
    length, cells = tree
    r %= length
    state = np.array(cells, dtype=np.int8)
    want = list(cells)
    deepest = _ref_toggle(want, length, r)
    got, lo, hi = kernels._toggle_path(0, length, r, state)
    assert got == deepest
    assert (lo, hi) == (reference.node_range(length, deepest) if deepest else (0, 0))
    assert state.tolist() == want


@given(tree=tree_states, v=st.integers(1, 400))
def test_descend_matches_reference(tree: tuple[int, list[int]], v: int) -> None:
    length, cells = tree
    lo, hi = reference.node_range(length, v)
    if v >= len(cells) or hi <= lo:
        return
    state = np.array(cells, dtype=np.int8)
    want = list(cells)
    expected = _ref_descend(want, length, v)
    dummy = np.zeros((1, 1), dtype=np.uint64)
    assert tuple(int(x) for x in kernels._descend(BLOCK, 0, v, lo, hi, 0, state, dummy, 0)) == expected
    assert state.tolist() == want


@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 63),
            st.integers(0, 2**31),
            st.integers(1, 2**20),
            st.integers(0, 2**31),
            st.integers(0, 2**31),
            st.integers(0, 1),
        ),
        max_size=70,
    )
)
def test_put_and_grown_keep_every_row_through_growth(rows: list[tuple[int, int, int, int, int, int]]) -> None:
    lst = np.empty((1, kernels.SEARCH_COLUMNS), dtype=np.int64)
    for i, row in enumerate(rows):
        if i == lst.shape[0]:
            before = lst
            lst = kernels._grown(lst, i, i + 1)
            assert lst.shape[0] >= i + 1 and lst is not before
        kernels._put(lst, i, *row)
    assert [tuple(r) for r in lst[: len(rows)].tolist()] == rows


def test_grown_makes_room_for_what_is_needed() -> None:
    lst = np.arange(4 * kernels.SEARCH_COLUMNS, dtype=np.int64).reshape(4, kernels.SEARCH_COLUMNS)
    grown = kernels._grown(lst, 3, 20)
    assert grown.shape == (20, kernels.SEARCH_COLUMNS)
    assert np.array_equal(grown[:3], lst[:3])
    assert kernels._grown(lst, 4, 5).shape[0] == 8  # at least twice the capacity


def test_tree_state_is_zeroed_writable_int8() -> None:
    s = tree_state(5 << 20)
    assert s.dtype == np.int8 and s.size == 5 << 20 and s.flags.writeable
    assert not s[::4096].any() and not s[-1]
    s[12345] = ODD
    assert int(s[12345]) == ODD
    assert tree_state(0).size == 0


@given(answers=st.lists(st.sampled_from([0, 1, 0, 1, kernels.INVALID]), max_size=100))
def test_pack_answers_matches_numpy_packbits(answers: list[int]) -> None:
    a = np.array(answers, dtype=np.uint8)
    packed, valid = kernels.pack_answers(a)
    assert valid == (kernels.INVALID not in answers)
    if valid:
        assert packed.dtype == np.uint8 and packed.tolist() == np.packbits(a, bitorder="little").tolist()


def _bob_round_from_tiny_lists(grows: dict[str, int]):
    """`kernels.bob_round` rebuilt in Python from its steps, its lists starting at one row (waits) and
    one cascade's worth (extra), so that `_walk` stops for room again and again mid-round."""

    def bob_round(kind, ksz, nb, stride, base, rowi, mrow, prow, n_started, n, state, rows, masks, perms, poss,
                  answers, searches, flipmap):  # fmt: skip
        no_q = (np.empty(0, np.uint8), np.empty(0, np.uint32), np.empty(0, np.uint32))
        waits = np.empty((1, kernels.SEARCH_COLUMNS), dtype=np.int64)
        got = kernels._record_answers(kind, ksz, stride, base, rowi, mrow, state, rows, masks, searches, answers)
        if got != answers.size:
            return (*no_q, waits[:0], -1)
        extra = np.empty((max(1, n_started), kernels.SEARCH_COLUMNS), dtype=np.int64)
        cursor = np.zeros(kernels._CURSOR, dtype=np.int64)
        while True:
            status = kernels._walk(kind, ksz, stride, base, mrow, prow, rowi, n_started, n, state, rows, masks,
                                   perms, poss, flipmap, searches, extra, waits, cursor)  # fmt: skip
            if status == kernels._WAITS_FULL:
                grows["waits"] += 1
                waits = kernels._grown(waits, int(cursor[2]), int(cursor[2]) + 1)
            elif status == kernels._EXTRA_FULL:
                grows["extra"] += 1
                extra = kernels._grown(extra, int(cursor[1]), int(cursor[1]) + n_started)
            else:
                break
        nk, nflip = int(cursor[2]), int(cursor[4])
        asked = waits[:nk][waits[:nk, 5] == 1]
        q = (asked[:, 0].astype(np.uint8), asked[:, 1].astype(np.uint32), (2 * asked[:, 2]).astype(np.uint32))
        return (*q, waits[:nk], nflip)

    return bob_round


def test_a_walk_stopped_for_room_and_resumed_corrects_the_same_bits_with_the_same_questions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frames = [frame(20_000, q, seed) for seed, q in enumerate((0.01, 0.03, 0.06))]

    def run() -> list[tuple[int, int, int, bytes]]:
        seeds = itertools.count()  # the same shuffle seeds in both runs
        monkeypatch.setattr(shuffle, "draw_seed", lambda: next(seeds).to_bytes(shuffle.SEED_BYTES, "little"))
        out = reconcile_many_loopback(frames, 0.03, max_in_flight=1)
        rows = []
        for o in out:
            assert o.error is None and o.bits is not None
            rows.append((o.stats.leaked_bits, o.stats.round_trips, o.stats.bytes_on_wire, o.bits.tobytes()))
        return rows

    whole = run()
    grows = {"waits": 0, "extra": 0}
    monkeypatch.setattr(kernels, "bob_round", _bob_round_from_tiny_lists(grows))
    assert run() == whole
    assert grows["waits"] > 0 and grows["extra"] > 0  # both lists filled up mid-walk, many times
    assert [a.tobytes() for a, _ in frames] == [w[3] for w in whole]
