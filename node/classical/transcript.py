"""Transcript authentication: one Wegman–Carter tag per key block and direction, not one per message.

Each side keeps, per block transcript (named by the block ID), the list of the messages it sent and
the list it received, in order, each reduced to a 16-byte inner digest

    u = Poly1305_{k_d}(MAC header || frames)        (unmasked, never sent; k_d the direction's inner key)

where the MAC header binds the message kind, its per-direction seq and the block ID. A closing
message carries the tag

    t = Poly1305_{r_S}(domain || block || sender role || mask position || n_i2r || n_r2i
                       || u_i2r,1 .. u_i2r,n || u_r2i,1 .. u_r2i,m) + s   (mod 2^128)

with r_S the sender's outer hash key and s a fresh 128-bit one-time mask from the sender's pool.
Both directions are in every closing tag, in a canonical order (initiator->responder first), so both
sides compute the same input from their own views, and a check of either side's tag compares the
whole transcript both ways.

Bound (per closing tag). Poly1305 with key r is ε-almost-Δ-universal over Z/2^128 with
ε(L) = 8·⌈L/16⌉/2^106 for inputs of at most L bytes (Bernstein, FSE 2005, Thm 3.3), hence also
ε(L)-almost-universal. Two transcripts that differ either differ in their digest lists (outer
input differs: ≤ ε(L_out)) or agree on them although some message differs (an inner collision at
that message: ≤ ε(L_i)), with inner and outer keys independent; so

    ε_tag ≤ ε(L_out) + Σ_i ε(L_i) ≤ 8·(⌈L_out/16⌉ + Σ_i ⌈L_i/16⌉) / 2^106,

which `TranscriptHash.epsilon()` returns (≈ 5e-25 for the 80 MB of a 4e6-bit block's messages).
The tags Eve sees are masked by fresh uniform masks, so they are independent of the hash keys and the
keys are reused across blocks (Wegman–Carter 1981); D verification attempts under one hash key
succeed with probability at most Σ ε_tag of the attempts, which is why failed tags are counted and
capped (`SecureLink.max_failed_tags`) and the hash keys are replaced from distilled key on a schedule.

Why delaying authentication to the end of the block is secure. Messages inside a block (sifting,
Cascade, verification, the Toeplitz seed) are used before their tag is checked, but only for
computations whose results are discarded unless the tag verifies: no key is committed, no refill is
applied, no block is confirmed and nothing reaches a key manager before the closing tags match.
The one persistent effect is Alice's slot high-water mark, which only ever rises, so a forged
request can only make raw key unusable (what Eve can always do by cutting the fibre), never make a
slot be sifted twice. If the tags match, the transcript both sides saw is, except with probability
ε_tag, the one the honest parties sent, and the execution is that of the protocol with an
authentic channel; if they do not, the block is discarded and what Eve learned concerns only the
discarded raw key. This is the argument of Portmann, "Key recycling in authentication" (IEEE TIT 60,
4383, 2014) for authenticating the transcript of a QKD round with one tag, used in practice by the
AIT QKD R10 post-processing (running hash of all messages sent and received, checked once per block)
and by Kiktenko et al., "Lightweight authentication for quantum key distribution" (IEEE TIT 66, 6354,
2020). Per block the composable failure probability adds ε_auth = Σ ε_tag over the tags checked
(two closing tags per key block), reported beside ε_sec and ε_cor.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from node.classical.mac import HASH_KEY_BYTES, MASK_BYTES, forgery_probability, poly1305_python

__all__ = ["TranscriptHash", "inner_digest", "closing_tag", "tag_epsilon", "DOMAIN"]

DOMAIN = b"qkdnode/transcript/1"

_Poly1305: Any = None
try:
    from cryptography.hazmat.primitives.poly1305 import Poly1305 as _OpenSSLPoly1305

    _OpenSSLPoly1305(bytes(32))  # raises UnsupportedAlgorithm where OpenSSL lacks Poly1305
    _Poly1305 = _OpenSSLPoly1305
except Exception:  # noqa: BLE001, S110 - the pure-Python fallback stays  # pragma: no cover - depends on the OpenSSL build
    pass


def _poly1305(key32: bytes, chunks: Iterable[Any]) -> bytes:
    if _Poly1305 is not None:
        p = _Poly1305(key32)
        for c in chunks:
            p.update(c)
        return p.finalize()
    return poly1305_python(key32, b"".join(bytes(c) for c in chunks))  # pragma: no cover


def _length_prefixed(frames: Iterable[Any]) -> tuple[list[Any], int]:
    frames = list(frames)
    chunks: list[Any] = [struct.pack("<Q", len(frames))]
    n = 8
    for f in frames:
        chunks.append(struct.pack("<Q", len(f)))
        chunks.append(f)
        n += 8 + len(f)
    return chunks, n


def inner_digest(inner_key: bytes, frames: Iterable[Any]) -> tuple[bytes, int]:
    """(16-byte unmasked Poly1305 digest of the length-prefixed frames, input length in bytes)."""
    if len(inner_key) != HASH_KEY_BYTES:
        raise ValueError(f"inner_key must be {HASH_KEY_BYTES} bytes")
    chunks, n = _length_prefixed(frames)
    return _poly1305(bytes(inner_key) + bytes(16), chunks), n


def tag_epsilon(outer_bytes: int, inner_blocks: int) -> float:
    """ε of one closing tag: ε(L_out) + Σ ε(L_i), with Σ ⌈L_i/16⌉ = `inner_blocks` (see module doc)."""
    return forgery_probability(outer_bytes) + 8 * inner_blocks / 2.0**106


@dataclass
class TranscriptHash:
    """One block transcript as one side sees it: the inner digests of each direction, in order."""

    block: int
    i2r: list[bytes] = field(default_factory=list)
    r2i: list[bytes] = field(default_factory=list)
    inner_blocks: int = 0  # Σ ⌈L_i/16⌉ over every absorbed message (for the bound)
    message_bytes: int = 0

    def absorb(self, direction: str, inner_key: bytes, frames: Iterable[Any]) -> None:
        """Add one message (its MAC header and body frames) sent in `direction` ('i2r' or 'r2i')."""
        digest, n = inner_digest(inner_key, frames)
        (self.i2r if direction == "i2r" else self.r2i).append(digest)
        self.inner_blocks += max(1, -(-n // 16))
        self.message_bytes += n

    def outer_input(self, sender: str, mask_position: int) -> bytes:
        """The canonical input of the closing tag sent by `sender` ('initiator' or 'responder')."""
        head = DOMAIN + struct.pack(
            "<QBQQQ", self.block, 0 if sender == "initiator" else 1, mask_position, len(self.i2r), len(self.r2i)
        )
        return head + b"".join(self.i2r) + b"".join(self.r2i)

    def epsilon(self) -> float:
        """ε of one closing tag over this transcript as it stands now."""
        return tag_epsilon(len(self.outer_input("initiator", 0)), self.inner_blocks)


def closing_tag(outer_key: bytes, mask: bytes, transcript: TranscriptHash, sender: str, mask_position: int) -> bytes:
    """The masked closing tag of `transcript` sent by `sender` with the mask at `mask_position`."""
    if len(outer_key) != HASH_KEY_BYTES or len(mask) != MASK_BYTES:
        raise ValueError(f"outer_key and mask must be {HASH_KEY_BYTES} and {MASK_BYTES} bytes")
    return _poly1305(bytes(outer_key) + bytes(mask), [transcript.outer_input(sender, mask_position)])
