"""What both ends of a link compute alike for a key block: settings, the finite-key length, privacy
amplification, and the distilled key handed to the key manager."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from postprocessing.bits import pack_bits, unpack_bits
from postprocessing.finitekey import DecoyStatistics, FiniteKeyResult, finite_key_length
from postprocessing.sifting import SiftCounts
from postprocessing.toeplitz import toeplitz_hash_words
from postprocessing.verification import epsilon_cor

RETUNE_MODES = ("apply", "advise", "off")


@dataclass(frozen=True)
class LinkSettings:
    """Parameters both nodes of a link must agree on (validated at start)."""

    link_id: str
    intensities: tuple[float, ...]
    class_probabilities: tuple[float, ...]
    block_bits: int = 1_000_000
    batch_detections: int = 200_000
    protocol: str = "lim2014"
    eps_sec: float = 1e-9
    tag_bits: int = 128
    qber_abort: float = 0.11
    cascade_variant: str | None = None
    auth_reserve_bits: int = 262_144
    timeout_s: float = 20.0
    auth_max_failures: int = 3
    """Failed authentication tags tolerated under one hash key before the session stops."""
    retune: str = "advise"
    """QL02 re-tune of Alice's transmitter (node.link.retune): "apply", "advise" or "off"."""
    retune_min_blocks: int = 8
    retune_max_intensity: float = 1.0
    retune_min_probability: float = 0.01

    def __post_init__(self) -> None:
        if not self.link_id or not isinstance(self.link_id, str) or len(self.link_id) > 64:
            raise ValueError(f"link_id must be a non-empty string of at most 64 characters, got {self.link_id!r}")
        if len(self.intensities) != len(self.class_probabilities) or len(self.intensities) < 2:
            raise ValueError("intensities and class_probabilities must have the same length, at least 2")
        if not 1_000 <= self.block_bits <= 100_000_000:
            raise ValueError(f"block_bits must be in [1e3, 1e8], got {self.block_bits}")
        if not 1 <= self.batch_detections <= 50_000_000:
            raise ValueError(f"batch_detections must be in [1, 5e7], got {self.batch_detections}")
        if not 0 < self.eps_sec < 1:
            raise ValueError(f"eps_sec must be in (0, 1), got {self.eps_sec}")
        if self.tag_bits not in (64, 128):
            raise ValueError(f"tag_bits must be 64 or 128, got {self.tag_bits}")
        if not 0 < self.qber_abort <= 0.5:
            raise ValueError(f"qber_abort must be in (0, 0.5], got {self.qber_abort}")
        if self.auth_reserve_bits < 0:
            raise ValueError(f"auth_reserve_bits must be >= 0, got {self.auth_reserve_bits}")
        if not isinstance(self.auth_max_failures, int) or not 1 <= self.auth_max_failures <= 1000:
            raise ValueError(f"auth_max_failures must be an integer in [1, 1000], got {self.auth_max_failures!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.retune not in RETUNE_MODES:
            raise ValueError(f"retune must be one of {', '.join(RETUNE_MODES)}, got {self.retune!r}")
        if not isinstance(self.retune_min_blocks, int) or not 1 <= self.retune_min_blocks <= 1_000_000:
            raise ValueError(f"retune_min_blocks must be an integer in [1, 1e6], got {self.retune_min_blocks!r}")
        if not 0 < self.retune_max_intensity <= 10:
            raise ValueError(f"retune_max_intensity must be in (0, 10], got {self.retune_max_intensity}")
        if not 0 < self.retune_min_probability < 0.5:
            raise ValueError(f"retune_min_probability must be in (0, 0.5), got {self.retune_min_probability}")

    @property
    def n_intensities(self) -> int:
        """Number of intensity classes."""
        return len(self.intensities)

    def fingerprint(self) -> dict[str, Any]:
        """The settings both peers compare in their HELLO exchange."""
        return {
            "link_id": self.link_id,
            "intensities": list(self.intensities),
            "class_probabilities": list(self.class_probabilities),
            "block_bits": self.block_bits,
            "protocol": self.protocol,
            "eps_sec": self.eps_sec,
            "tag_bits": self.tag_bits,
        }


@dataclass(frozen=True)
class DistilledKey:
    """One block's secret key as handed to the key manager, with what it cost (never printed)."""

    link_id: str
    block_id: int
    key: bytes = field(repr=False)
    length_bits: int
    qber: float
    leaked_bits: int
    sifted_bits: int
    finite_key: dict[str, Any] = field(repr=False)


def z_errors_by_class(
    before: NDArray[np.uint8], after: NDArray[np.uint8], classes: NDArray[np.uint8], k: int
) -> list[int]:
    """Bob's corrected errors per intensity class (public after error correction)."""
    return np.bincount(classes[before != after], minlength=k).astype(np.int64).tolist()


def error_count_disclosure_bits(key_detections: NDArray[np.int64]) -> float:
    """Bits Bob's announcement of the key-basis error count of each intensity class can carry
    about the key: class k's count is one of n_k + 1 values, so at most log2(n_k + 1) bits."""
    return float(np.sum(np.log2(np.asarray(key_detections, np.float64) + 1.0)))


def block_key_length(
    settings: LinkSettings, counts: SiftCounts, z_errors: list[int], leaked_bits: int, n_bits: int
) -> FiniteKeyResult:
    """The finite-key length of a block from its statistics, with every bit disclosed about the key
    subtracted (DESIGN §5; what Eve learns, and where it is paid for):
    - Cascade's parities: `leaked_bits`, as lambda_EC;
    - the verification tag: `settings.tag_bits` (Bob's tag; Alice's echo is the same value when the
      block goes on, so it tells nothing new), as the correctness term in place of log2(2/eps_cor);
    - the per-class key-basis error counts Bob announces (VERIFY 'z_errors', which the one-decoy
      bound needs for its vacuum upper bound): `error_count_disclosure_bits`, as disclosed bits;
    - sifting (slots, bases, classes, the test basis's bits) discloses nothing about the key bits."""
    detections = counts.detections.copy()
    errors = counts.errors.copy()
    errors[0] = np.asarray(z_errors, np.int64)
    stats = DecoyStatistics(
        np.asarray(settings.intensities), np.asarray(settings.class_probabilities), detections, errors
    )
    return finite_key_length(
        settings.protocol,
        stats,
        float(leaked_bits),
        epsilon_cor(n_bits, settings.tag_bits),
        settings.eps_sec,
        verification_bits=float(settings.tag_bits),
        disclosed_bits=error_count_disclosure_bits(detections[0]),
    )


def privacy_amplification(bits: NDArray[np.uint8], seed_words: NDArray[np.uint64], length: int) -> NDArray[np.uint64]:
    """The `length` secret bits (packed) of a corrected block under Toeplitz seed `seed_words`."""
    return toeplitz_hash_words(pack_bits(bits), bits.size, seed_words, length)


def refill_needed(send_available: int, recv_available: int, reserve_bits: int, length: int) -> int:
    """Bits of a block's secret key that go back into the authentication pools (a multiple of 256).

    Enough to bring the emptier direction back to `reserve_bits` (the refill is split evenly between
    the two directions), never more than the block's secret key allows.
    """
    deficit = max(0, reserve_bits - min(send_available, recv_available))
    want = -(-2 * deficit // 256) * 256
    return min(want, (length // 256) * 256)


def split_secret(words: NDArray[np.uint64], length: int, refill_bits: int) -> tuple[bytes, bytes]:
    """(authentication refill, key for the key manager) from the packed secret bits.

    The first `refill_bits` bits refill the classical channel's authentication pools; the rest,
    cut to whole bytes, go to the key manager.
    """
    if refill_bits < 0 or refill_bits % 256 or refill_bits > length:
        raise ValueError(f"refill_bits must be a multiple of 256 in [0, {length}], got {refill_bits}")
    bits = unpack_bits(words, length)
    refill = np.packbits(bits[:refill_bits], bitorder="little").tobytes()
    rest = bits[refill_bits:]
    rest = rest[: rest.size - rest.size % 8]
    return refill, np.packbits(rest, bitorder="little").tobytes()
