"""Verification hash: the C kernel against a pure-Python GF(2^64) Horner evaluation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postprocessing import _cbackend
from postprocessing._ccore import lib
from postprocessing.bits import pack_bits, unpack_bits
from postprocessing.verification import (
    TAG_BITS_ALLOWED,
    draw_seed,
    epsilon_cor,
    tags_match,
    verification_tag,
    verification_tag_bits,
)

PATHS = _cbackend.available_paths()
MODULUS = (1 << 64) | 0b11011  # z^64 + z^4 + z^3 + z + 1


def gf64_mul(a: int, b: int) -> int:
    """Shift-and-add multiplication modulo MODULUS, one bit of b at a time."""
    product = 0
    for i in range(64):
        if (b >> i) & 1:
            product ^= a << i
    for bit in range(127, 63, -1):
        if (product >> bit) & 1:
            product ^= MODULUS << (bit - 64)
    return product


def reference_tag(bits: np.ndarray, seed: bytes) -> bytes:
    """Horner over the packed words, then the bit length, once per 8-byte key of the seed."""
    words = [int(w) for w in pack_bits(bits)]
    out = b""
    for i in range(0, len(seed), 8):
        k = int.from_bytes(seed[i : i + 8], "little")
        acc = 0
        for w in words:
            acc = gf64_mul(acc ^ w, k)
        acc = gf64_mul(acc ^ bits.size, k)
        out += acc.to_bytes(8, "little")
    return out


def _poly_mod(a: int, m: int) -> int:
    while a and a.bit_length() >= m.bit_length():
        a ^= m << (a.bit_length() - m.bit_length())
    return a


def _poly_gcd(a: int, b: int) -> int:
    while b:
        a, b = b, _poly_mod(a, b)
    return a


def _frobenius(times: int) -> int:
    """z^(2^times) mod MODULUS."""
    r = 2
    for _ in range(times):
        r = gf64_mul(r, r)
    return r


def test_field_modulus_is_irreducible() -> None:
    # Rabin: f of degree 64 is irreducible iff z^(2^64) = z mod f and gcd(z^(2^32) - z, f) = 1.
    assert _frobenius(64) == 2
    assert _poly_gcd(MODULUS, _frobenius(32) ^ 2) == 1


@given(a=st.integers(0, 2**64 - 1), b=st.integers(0, 2**64 - 1))
def test_c_field_multiplication_equals_shift_and_add(a: int, b: int) -> None:
    assert lib.qkd_gf64_mul(a, b) == gf64_mul(a, b)


@pytest.mark.parametrize("path", PATHS)
@given(
    n=st.integers(0, 1500),
    data_seed=st.integers(0, 2**32 - 1),
    key_bytes=st.sampled_from([8, 16, 24, 32]),
    seed_data=st.binary(min_size=32, max_size=32),
)
def test_tag_equals_python_reference_on_every_path(
    path: str, n: int, data_seed: int, key_bytes: int, seed_data: bytes
) -> None:
    bits = np.random.default_rng(data_seed).integers(0, 2, n, dtype=np.uint8)
    seed = seed_data[:key_bytes]
    keys = np.frombuffer(seed, dtype="<u8").astype(np.uint64)
    tags = _cbackend.polyhash_words(pack_bits(bits), n, keys, path=path)
    assert tags.astype("<u8").tobytes() == reference_tag(bits, seed)


@pytest.mark.parametrize("path", PATHS)
def test_public_tag_follows_the_path_environment_variable(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_cbackend.ENV_VAR, path)
    bits = np.random.default_rng(5).integers(0, 2, 777, dtype=np.uint8)
    seed = bytes(range(16))
    assert verification_tag_bits(bits, seed) == reference_tag(bits, seed)


def test_packed_and_unpacked_tags_agree() -> None:
    bits = np.random.default_rng(1).integers(0, 2, 100_003, dtype=np.uint8)
    seed = draw_seed()
    assert verification_tag(pack_bits(bits), bits.size, seed) == verification_tag_bits(bits, seed)


def test_keys_differing_in_one_bit_get_different_tags() -> None:
    # A collision among these 300 pairs has probability below 300 * 2^-100 for 128-bit tags.
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2, 5000, dtype=np.uint8)
    for _ in range(300):
        other = bits.copy()
        other[rng.integers(0, bits.size)] ^= 1
        seed = draw_seed()
        assert not tags_match(verification_tag_bits(bits, seed), verification_tag_bits(other, seed))


def test_keys_differing_only_in_length_get_different_tags() -> None:
    bits = np.random.default_rng(3).integers(0, 2, 1000, dtype=np.uint8)
    longer = np.append(bits, np.uint8(0))  # the same packed words, one more bit
    for _ in range(50):
        seed = draw_seed()
        assert verification_tag_bits(bits, seed) != verification_tag_bits(longer, seed)


def test_one_key_under_fresh_seeds_gets_distinct_tags() -> None:
    bits = np.random.default_rng(4).integers(0, 2, 640, dtype=np.uint8)
    tags = {verification_tag_bits(bits, draw_seed(64)) for _ in range(200)}
    assert len(tags) == 200


@pytest.mark.parametrize("tag_bits", TAG_BITS_ALLOWED)
def test_seed_and_tag_lengths_follow_tag_bits(tag_bits: int) -> None:
    seed = draw_seed(tag_bits)
    assert len(seed) == tag_bits // 8
    assert len(verification_tag_bits(np.ones(10, dtype=np.uint8), seed)) == tag_bits // 8


@pytest.mark.parametrize("bad", [b"", b"x" * 7, b"x" * 9, b"x" * 40, "0123456789abcdef", np.zeros(2, np.uint64)])
def test_seed_of_wrong_length_or_type_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="seed must be"):
        verification_tag_bits(np.ones(10, dtype=np.uint8), bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("tag_bits", [0, 32, 100, 512, True, 128.0])
def test_unsupported_tag_bits_are_refused(tag_bits: object) -> None:
    with pytest.raises(ValueError, match="tag_bits must be one of"):
        draw_seed(tag_bits)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tag_bits must be one of"):
        epsilon_cor(1000, tag_bits)  # type: ignore[arg-type]


def test_packed_tag_rejects_padding_bits_and_wrong_word_counts() -> None:
    words = pack_bits(np.ones(100, dtype=np.uint8))
    seed = draw_seed()
    dirty = words.copy()
    dirty[-1] |= np.uint64(1) << np.uint64(40)
    with pytest.raises(ValueError, match="words has padding bits set"):
        verification_tag(dirty, 100, seed)
    with pytest.raises(ValueError, match="words must hold 4 words"):
        verification_tag(words, 200, seed)
    with pytest.raises(ValueError, match="n_bits must be an integer"):
        verification_tag(words, -1, seed)
    with pytest.raises(ValueError, match="words must have dtype uint64"):
        verification_tag(words.astype(np.int64), 100, seed)


def test_epsilon_cor_is_monotone_in_key_length_and_matches_the_bound() -> None:
    lengths = [0, 1, 64, 65, 1000, 10**5, 10**6, 10**8, 2**27, 2**40]
    for tag_bits in TAG_BITS_ALLOWED:
        eps = [epsilon_cor(n, tag_bits) for n in lengths]
        assert all(a <= b for a, b in itertools.pairwise(eps))
        assert eps[0] < eps[-1]
    assert epsilon_cor(64, 128) < epsilon_cor(65, 128)
    assert epsilon_cor(10**8, 128) == pytest.approx(((1_562_500 + 1) / 2.0**64) ** 2, rel=1e-12)
    assert epsilon_cor(10**8, 128) < 2.0**-86
    assert epsilon_cor(10**8, 64) > epsilon_cor(10**8, 128)


def test_tags_match_compares_whole_tags() -> None:
    assert tags_match(b"\x01" * 16, b"\x01" * 16)
    assert not tags_match(b"\x01" * 16, b"\x01" * 15 + b"\x00")
    assert not tags_match(b"\x01" * 16, b"\x01" * 8)
    with pytest.raises(ValueError, match="a and b must be bytes"):
        tags_match("abc", b"abc")  # type: ignore[arg-type]


def test_unpacked_round_trip_keeps_tag_of_packed_key() -> None:
    words = pack_bits(np.random.default_rng(9).integers(0, 2, 321, dtype=np.uint8))
    seed = draw_seed(256)
    assert verification_tag(words, 321, seed) == verification_tag_bits(unpack_bits(words, 321), seed)


def test_bench_baseline_computes_the_same_tag() -> None:
    from node.bench.suites.verification import numpy_tag

    bits = np.random.default_rng(6).integers(0, 2, 5_000, dtype=np.uint8)
    seed = draw_seed()
    assert numpy_tag(pack_bits(bits), bits.size, seed) == verification_tag_bits(bits, seed)
