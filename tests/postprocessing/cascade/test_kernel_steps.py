"""The named steps of Bob's round (`kernels._descend`, `_toggle_path`, `_put` and `_grown`) and the sparse tree
state, each against a slow walk over `reference.node_range`."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from postprocessing.cascade import kernels
from postprocessing.cascade.passes import tree_state
from postprocessing.cascade.variants import BLOCK
from tests.postprocessing.cascade import reference

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
