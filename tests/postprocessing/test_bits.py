"""The bit layer against plain-Python references (DESIGN §3 packing order)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postprocessing import bits as B


def bit_arrays(max_size: int = 700) -> st.SearchStrategy[np.ndarray]:
    return st.lists(st.integers(0, 1), max_size=max_size).map(lambda v: np.array(v, dtype=np.uint8))


def reference_pack(bits: np.ndarray) -> np.ndarray:
    words = [0] * ((len(bits) + 63) // 64)
    for i, b in enumerate(bits.tolist()):
        words[i >> 6] |= b << (i & 63)
    return np.array(words, dtype=np.uint64)


@given(bit_arrays())
def test_pack_bits_puts_bit_i_at_word_i_div_64_position_i_mod_64(bits: np.ndarray) -> None:
    assert np.array_equal(B.pack_bits(bits), reference_pack(bits))


@given(bit_arrays())
def test_unpack_inverts_pack(bits: np.ndarray) -> None:
    assert np.array_equal(B.unpack_bits(B.pack_bits(bits), bits.size), bits)


@given(bit_arrays(), bit_arrays())
def test_bit_errors_words_counts_differing_positions(a: np.ndarray, b: np.ndarray) -> None:
    n = min(a.size, b.size)
    a, b = a[:n].copy(), b[:n].copy()
    expected = sum(int(x != y) for x, y in zip(a.tolist(), b.tolist()))
    assert B.bit_errors(a, b) == expected
    assert B.bit_errors_words(B.pack_bits(a), B.pack_bits(b)) == expected


@given(bit_arrays())
def test_parity_and_popcount_match_reference(bits: np.ndarray) -> None:
    w = B.pack_bits(bits)
    assert B.popcount_words(w) == sum(bits.tolist())
    assert B.parity_words(w) == sum(bits.tolist()) % 2
    assert B.parity_bits(bits) == sum(bits.tolist()) % 2


@given(bit_arrays(), bit_arrays())
def test_xor_words_is_packed_xor(a: np.ndarray, b: np.ndarray) -> None:
    n = min(a.size, b.size)
    a, b = a[:n].copy(), b[:n].copy()
    assert np.array_equal(B.xor_words(B.pack_bits(a), B.pack_bits(b)), B.pack_bits(a ^ b))


@given(st.integers(0, 5000), st.data())
def test_random_subset_is_sorted_distinct_and_in_range(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    idx = B.random_subset(n, k, np.random.default_rng(data.draw(st.integers(0, 2**32))))
    assert idx.dtype == np.int64 and idx.size == k
    assert np.all(np.diff(idx) > 0)
    if k:
        assert idx[0] >= 0 and idx[-1] < n


def test_random_subset_without_rng_is_unpredictable() -> None:
    draws = {tuple(B.random_subset(10_000, 5)) for _ in range(5)}
    assert len(draws) == 5


def test_check_words_rejects_set_padding_bits() -> None:
    w = np.array([1 << 10], dtype=np.uint64)
    with pytest.raises(ValueError, match="padding bits"):
        B.check_words(w, "x", 10)
    B.check_words(w, "x", 11)


@pytest.mark.parametrize(
    "arr, message",
    [
        (np.zeros(3, np.int8), "dtype uint8"),
        (np.zeros((2, 2), np.uint8), "one-dimensional"),
        (np.zeros(6, np.uint8)[::2], "C-contiguous"),
        (np.array([0, 2], np.uint8), "only 0 and 1"),
        ([0, 1], "numpy uint8 array"),
    ],
)
def test_pack_bits_rejects_bad_input_naming_what_is_allowed(arr: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        B.pack_bits(arr)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "words, n_bits, message",
    [
        (np.zeros(2, np.uint32), 64, "dtype uint64"),
        (np.zeros(2, np.uint64), 200, "must hold 4 words"),
        (np.zeros(4, np.uint64)[::2], 128, "C-contiguous"),
    ],
)
def test_unpack_bits_rejects_bad_words(words: np.ndarray, n_bits: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        B.unpack_bits(words, n_bits)
