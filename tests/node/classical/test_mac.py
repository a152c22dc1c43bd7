"""The Wegman–Carter MAC: Poly1305 against an independent reference, RFC 8439 vectors, the bound."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from node.classical import mac
from node.classical.mac import forgery_probability, poly1305_python, wc_tag

P = (1 << 130) - 5


def poly1305_naive(key: bytes, data: bytes) -> bytes:
    """Poly1305 as the polynomial sum_i c_i r^(q-i+1) mod p, plus s mod 2^128 (RFC 8439 §2.5)."""
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    blocks = [data[i : i + 16] for i in range(0, len(data), 16)]
    q = len(blocks)
    h = sum(int.from_bytes(c + b"\x01", "little") * pow(r, q - i, P) for i, c in enumerate(blocks)) % P
    return ((h + s) % (1 << 128)).to_bytes(16, "little")


def test_poly1305_matches_rfc8439_vector() -> None:
    key = bytes.fromhex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
    tag = bytes.fromhex("a8061dc1305136c6c22b8baf0c0127a9")
    assert poly1305_python(key, b"Cryptographic Forum Research Group") == tag
    assert poly1305_naive(key, b"Cryptographic Forum Research Group") == tag


@given(key=st.binary(min_size=32, max_size=32), data=st.binary(max_size=300))
def test_python_poly1305_matches_naive_polynomial(key: bytes, data: bytes) -> None:
    assert poly1305_python(key, data) == poly1305_naive(key, data)


@given(
    hash_key=st.binary(min_size=16, max_size=16),
    mask=st.binary(min_size=16, max_size=16),
    seq=st.integers(0, 2**64 - 1),
    frames=st.lists(st.binary(max_size=100), max_size=6),
)
def test_wc_tag_is_poly1305_of_the_length_prefixed_frames(
    hash_key: bytes, mask: bytes, seq: int, frames: list[bytes]
) -> None:
    data = seq.to_bytes(8, "little") + len(frames).to_bytes(8, "little")
    data += b"".join(len(f).to_bytes(8, "little") + f for f in frames)
    assert wc_tag(hash_key, mask, seq, frames) == poly1305_naive(hash_key + mask, data)
    assert mac.mac_input_bytes(frames) == len(data)


def test_frame_boundaries_change_the_tag() -> None:
    k, s = os.urandom(16), os.urandom(16)
    assert wc_tag(k, s, 0, [b"ab", b"c"]) != wc_tag(k, s, 0, [b"a", b"bc"])
    assert wc_tag(k, s, 0, [b"abc"]) != wc_tag(k, s, 1, [b"abc"])


def test_the_mask_is_added_to_the_hash_mod_2_128() -> None:
    k, frames = os.urandom(16), [b"payload"]
    zero = int.from_bytes(wc_tag(k, bytes(16), 3, frames), "little")
    s = int.from_bytes(os.urandom(16), "little")
    assert int.from_bytes(wc_tag(k, s.to_bytes(16, "little"), 3, frames), "little") == (zero + s) % (1 << 128)


def test_forgery_probability_is_bernsteins_bound() -> None:
    assert forgery_probability(16) == 8 / 2.0**106
    assert forgery_probability(17) == 16 / 2.0**106
    assert forgery_probability(16 << 20) == 2.0**-83
    assert forgery_probability(0) == 8 / 2.0**106
