"""Toeplitz hashing: the C kernel on every path against a naive GF(2) matrix-vector product."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from postprocessing import _cbackend
from postprocessing.bits import pack_bits, unpack_bits
from postprocessing.toeplitz import (
    draw_seed_words,
    seed_bits,
    toeplitz_hash,
    toeplitz_hash_fft,
    toeplitz_hash_words,
)

PATHS = _cbackend.available_paths()


def naive_toeplitz(x: np.ndarray, s: np.ndarray, l: int) -> np.ndarray:
    """y[i] = XOR_j s[i - j + n - 1] & x[j], as an explicit l x n matrix over GF(2)."""
    n = x.size
    rows = np.arange(l)[:, None]
    cols = np.arange(n)[None, :]
    matrix = s[rows - cols + n - 1].astype(np.int64)
    return ((matrix @ x.astype(np.int64)) & 1).astype(np.uint8)


def _bits(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    if kind == "ones":
        return np.ones(size, dtype=np.uint8)
    if kind == "sparse":
        return (rng.random(size) < 0.01).astype(np.uint8)
    return rng.integers(0, 2, size, dtype=np.uint8)


@st.composite
def hash_inputs(draw: st.DrawFn, max_n: int = 4096) -> tuple[np.ndarray, np.ndarray, int]:
    n = draw(st.one_of(st.integers(1, max_n), st.integers(max_n // 2, max_n)))
    l = draw(st.one_of(st.integers(0, n - 1), st.just(n - 1)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["random", "ones", "sparse"]))
    x = _bits(rng, n, kind)
    s = _bits(rng, n + l - 1, draw(st.sampled_from(["random", "ones", "sparse"])))
    return x, s, l


def _case(n: int, l: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, n, dtype=np.uint8), rng.integers(0, 2, n + l - 1, dtype=np.uint8), l


@pytest.mark.parametrize("path", PATHS)
@given(inputs=hash_inputs())
@example(inputs=_case(1, 0))
@example(inputs=_case(2, 1))
@example(inputs=_case(65, 64))
@example(inputs=_case(4096, 4095))
@example(inputs=_case(4095, 1))
@example(inputs=_case(129, 63))
def test_c_kernel_equals_naive_matrix_product_on_every_path(path: str, inputs: tuple) -> None:
    x, s, l = inputs
    n = x.size
    y = _cbackend.toeplitz_words(pack_bits(x), n, pack_bits(s), l, path=path)
    assert y.size == (l + 63) // 64
    assert np.array_equal(unpack_bits(y, l), naive_toeplitz(x, s, l)), f"path={path} n={n} l={l}"


@pytest.mark.parametrize("path", PATHS)
def test_public_api_follows_the_path_environment_variable(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_cbackend.ENV_VAR, path)
    x, s, l = _case(3000, 1700, seed=7)
    assert np.array_equal(toeplitz_hash(x, s, l), naive_toeplitz(x, s, l))


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=25)
@given(inputs=hash_inputs(max_n=60_000), threads=st.sampled_from([1, 2, 3]))
def test_c_kernel_equals_fft_reference_through_deep_recursion_on_every_path(
    path: str, inputs: tuple, threads: int
) -> None:
    # Tens of thousands of bits: several Karatsuba levels and tile layouts on every path.
    x, s, l = inputs
    y = _cbackend.toeplitz_words(pack_bits(x), x.size, pack_bits(s), l, path=path, threads=threads)
    assert np.array_equal(unpack_bits(y, l), toeplitz_hash_fft(x, s, l)), f"path={path} n={x.size} l={l}"


@given(inputs=hash_inputs(max_n=700))
def test_fft_reference_equals_naive_matrix_product(inputs: tuple) -> None:
    x, s, l = inputs
    assert np.array_equal(toeplitz_hash_fft(x, s, l), naive_toeplitz(x, s, l))


@given(inputs=hash_inputs(max_n=1500), other=st.integers(0, 2**32 - 1))
def test_hash_is_linear_in_the_key(inputs: tuple, other: int) -> None:
    x, s, l = inputs
    x2 = np.random.default_rng(other).integers(0, 2, x.size, dtype=np.uint8)
    lhs = toeplitz_hash(x ^ x2, s, l)
    assert np.array_equal(lhs, toeplitz_hash(x, s, l) ^ toeplitz_hash(x2, s, l))


def test_packed_and_unpacked_variants_agree() -> None:
    x, s, l = _case(10_007, 5_001, seed=3)
    y = toeplitz_hash_words(pack_bits(x), x.size, pack_bits(s), l)
    assert np.array_equal(unpack_bits(y, l), toeplitz_hash(x, s, l))


def test_zero_output_length_gives_empty_output() -> None:
    x, s, _ = _case(100, 0)
    assert toeplitz_hash(x, s, 0).size == 0
    assert toeplitz_hash_fft(x, s, 0).size == 0
    assert toeplitz_hash_words(pack_bits(x), 100, pack_bits(s), 0).size == 0


@pytest.mark.parametrize("path", PATHS)
def test_c_kernel_equals_fft_reference_at_one_million_bits(path: str) -> None:
    x, s, l = _case(1_000_000, 500_000, seed=11)
    y = _cbackend.toeplitz_words(pack_bits(x), x.size, pack_bits(s), l, path=path)
    assert np.array_equal(unpack_bits(y, l), toeplitz_hash_fft(x, s, l))


@pytest.mark.slow
def test_c_kernel_equals_fft_reference_at_ten_million_bits() -> None:
    x, s, l = _case(10_000_000, 3_000_017, seed=12)
    assert np.array_equal(toeplitz_hash(x, s, l), toeplitz_hash_fft(x, s, l))


@pytest.mark.parametrize(("n", "l"), [(1_000_000, 500_000), (1_000_000, 999_999), (300_001, 1_000), (5_000, 4_999)])
def test_threads_share_the_work_without_changing_the_result(n: int, l: int) -> None:
    x, s, _ = _case(n, l, seed=n + l)
    xw, sw = pack_bits(x), pack_bits(s)
    one = toeplitz_hash_words(xw, n, sw, l)
    for threads in (2, 3, 8):
        assert np.array_equal(toeplitz_hash_words(xw, n, sw, l, threads=threads), one), f"threads={threads}"


@pytest.mark.parametrize(("n", "l"), [(1, 0), (64, 1), (65, 0), (1000, 999), (100_000, 50_000)])
def test_drawn_seed_has_the_right_length_and_clean_padding(n: int, l: int) -> None:
    seed = draw_seed_words(n, l)
    x = pack_bits(np.ones(n, dtype=np.uint8))
    assert toeplitz_hash_words(x, n, seed, l).size == (l + 63) // 64  # accepted as a seed
    assert not np.array_equal(draw_seed_words(n, l), seed) or n + l - 1 < 64


def test_seed_bits_is_n_plus_l_minus_one() -> None:
    assert seed_bits(1000, 400) == 1399
    assert seed_bits(1, 0) == 0


# ---- bad input -------------------------------------------------------------------------------

GOOD_X, GOOD_S, GOOD_L = _case(200, 70)


@pytest.mark.parametrize(
    ("x", "seed", "l", "match"),
    [
        (GOOD_X.astype(np.int64), GOOD_S, GOOD_L, "x must have dtype uint8"),
        (GOOD_X.astype(bool), GOOD_S, GOOD_L, "x must have dtype uint8"),
        (GOOD_X.reshape(10, 20), GOOD_S, GOOD_L, "x must be one-dimensional"),
        (np.repeat(GOOD_X, 2)[::2], GOOD_S, GOOD_L, "x must be C-contiguous"),
        (GOOD_X * 2, GOOD_S, GOOD_L, "x must hold only 0 and 1"),
        (list(GOOD_X), GOOD_S, GOOD_L, "x must be a numpy uint8 array"),
        (GOOD_X, GOOD_S[:-1], GOOD_L, "seed must hold exactly 269 bits"),
        (GOOD_X, np.append(GOOD_S, 0).astype(np.uint8), GOOD_L, "seed must hold exactly 269 bits"),
        (GOOD_X, GOOD_S.astype(np.uint16), GOOD_L, "seed must have dtype uint8"),
        (GOOD_X, np.repeat(GOOD_S, 2)[::2], GOOD_L, "seed must be C-contiguous"),
        (GOOD_X, GOOD_S, 200, r"l \(output length in bits\) must be an integer in \[0, n-1\]"),
        (GOOD_X, GOOD_S, -1, r"l \(output length in bits\) must be"),
        (GOOD_X, GOOD_S, 70.0, r"l \(output length in bits\) must be"),
        (np.zeros(0, dtype=np.uint8), GOOD_S, 0, r"n \(input length in bits\) must be"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(x: object, seed: object, l: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        toeplitz_hash(x, seed, l)  # type: ignore[arg-type]
    if isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 1 and x.size:
        with pytest.raises(ValueError):
            toeplitz_hash_fft(x, seed, l)  # type: ignore[arg-type]


def test_packed_variant_rejects_padding_bits_wrong_word_counts_and_dtypes() -> None:
    n, l = 200, 70
    xw, sw = pack_bits(GOOD_X), pack_bits(GOOD_S)
    dirty = xw.copy()
    dirty[-1] |= np.uint64(1) << np.uint64(63)
    with pytest.raises(ValueError, match="x_words has padding bits set"):
        toeplitz_hash_words(dirty, n, sw, l)
    dirty_s = sw.copy()
    dirty_s[-1] |= np.uint64(1) << np.uint64(63)
    with pytest.raises(ValueError, match="seed_words has padding bits set"):
        toeplitz_hash_words(xw, n, dirty_s, l)
    with pytest.raises(ValueError, match="x_words must hold 4 words"):
        toeplitz_hash_words(xw[:-1].copy(), n, sw, l)
    with pytest.raises(ValueError, match="seed_words must hold 5 words"):
        toeplitz_hash_words(xw, n, np.append(sw, np.uint64(0)), l)
    with pytest.raises(ValueError, match="x_words must have dtype uint64"):
        toeplitz_hash_words(xw.astype(np.int64), n, sw, l)
    with pytest.raises(ValueError, match="x_words must be C-contiguous"):
        toeplitz_hash_words(np.repeat(xw, 2)[::2], n, sw, l)
    with pytest.raises(ValueError, match=r"l \(output length in bits\)"):
        toeplitz_hash_words(xw, n, sw, n)
    for bad_threads in (0, -1, 65, 1.5, True):
        with pytest.raises(ValueError, match=r"threads must be an integer in \[1, 64\]"):
            toeplitz_hash_words(xw, n, sw, l, threads=bad_threads)  # type: ignore[arg-type]


@pytest.mark.slow
def test_c_kernel_handles_the_largest_supported_input() -> None:
    # n = 2^27 with a short output, checked against direct dot products: y[i] is the parity of
    # x reversed AND the seed window [i, i + n).
    n, l = 2**27, 8
    rng = np.random.default_rng(13)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + l - 1, dtype=np.uint8)
    y = toeplitz_hash(x, s, l)
    x_reversed = x[::-1].copy()
    expected = np.array([np.count_nonzero(x_reversed & s[i : i + n]) & 1 for i in range(l)], dtype=np.uint8)
    assert np.array_equal(y, expected)
