"""The replay transmitter's merge lookup equals a binary-search lookup of the same window bit for bit,
and stops at the first slot the window lacks or that breaks the increasing order."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.replay.recording import pack_states, unpack_states
from drivers.replay.transmitter import _merge_lookup


def reference(window: np.ndarray, packed: np.ndarray, slots: np.ndarray) -> tuple[int, tuple[np.ndarray, ...]]:
    """(first bad index or -1, states of the slots before it) by searchsorted, one slot at a time."""
    states: list[Any] = []
    for i, s in enumerate(slots.tolist()):
        j = int(np.searchsorted(window, s))
        if (i and s <= slots[i - 1]) or j == window.size or window[j] != s:
            return i, tuple(np.asarray(x, np.uint8) for x in zip(*states, strict=True)) if states else ()
        states.append(tuple(int(v[0]) for v in unpack_states(packed[j : j + 1])))
    return -1, tuple(np.asarray(x, np.uint8) for x in zip(*states, strict=True)) if states else ()


@st.composite
def lookups(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    window = np.unique(np.asarray(draw(st.lists(st.integers(0, 2**40), max_size=200)), np.int64))
    basis, bit = (
        np.asarray(draw(st.lists(st.integers(0, 1), min_size=window.size, max_size=window.size)), np.uint8)
        for _ in range(2)
    )
    cls = np.asarray(draw(st.lists(st.integers(0, 63), min_size=window.size, max_size=window.size)), np.uint8)
    packed = pack_states(basis, bit, cls)
    if window.size and draw(st.booleans()):
        take = draw(st.lists(st.booleans(), min_size=window.size, max_size=window.size))
        slots = window[np.asarray(take, bool)]
    else:
        slots = np.asarray(draw(st.lists(st.integers(0, 2**40), max_size=50)), np.int64)
    if draw(st.booleans()):  # a stray slot, a repeat or a step back somewhere
        extra = draw(st.sampled_from(["missing", "repeat", "back"]))
        at = draw(st.integers(0, slots.size))
        value = {"missing": -1, "repeat": slots[at - 1] if at else 0, "back": slots[0] - 1 if slots.size else 0}[extra]
        slots = np.insert(slots, at, value)
    return window, packed, slots.astype(np.int64)


@settings(max_examples=300, deadline=None)
@given(lookups())
def test_merge_lookup_equals_the_binary_search_reference(case: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    window, packed, slots = case
    out = tuple(np.full(slots.size, 255, np.uint8) for _ in range(3))
    bad = _merge_lookup(window, packed, slots, *out)
    want_bad, want = reference(window, packed, slots)
    assert bad == want_bad
    done = slots.size if bad < 0 else bad
    for got, ref in zip(out, want or ((),) * 3, strict=True):
        assert got[:done].tobytes() == np.asarray(ref, np.uint8).tobytes()
