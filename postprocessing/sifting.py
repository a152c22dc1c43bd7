"""Sifting of decoy-state BB84 detections, one function per side and step (DESIGN §2).

The exchange, for one batch of Bob's detections:

1. Bob -> Alice, `SiftRequest`: the slots where Bob detected, and the basis he measured in
   (`bob_request`).
2. Alice -> Bob, `SiftReply`: per detection whether the bases matched; per matched detection the
   intensity class; her bits of the matched test-basis (X) detections, disclosed for phase-error
   estimation; optionally a random sample of matched key-basis (Z) bits for a QBER estimate
   (`alice_sift`).
3. Bob keeps his key bits and counts the errors in what Alice disclosed (`bob_sift`); he sends the
   error counts back, `SiftReport`, and Alice completes her counts (`alice_complete`).

Each function sees only what its side knows plus what it received: Alice's bits never reach a
function of Bob's except as disclosed test bits, and the other way round. The key is made of the
matched Z-basis detections of every intensity class (Lim et al. 2014); the counts per basis and
intensity are what the decoy-state bound needs. Bits here are one `uint8` (0/1) per bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel
from drivers.transmitter import SlotStates
from postprocessing.bits import random_subset
from postprocessing.errors import ProtocolError

Z_BASIS = 0
X_BASIS = 1
MAX_INTENSITIES = 16
_PAD = 64  # spare bytes the C kernels may write past an output's end (whole-vector stores)


CSift = tuple[Any, Any, int]  # (cffi ffi, lib, QKD_SIFT_* path code)


def _load_c_sift() -> dict[str, CSift]:
    """The C sift kernels this machine runs, by path name: "c-portable" (scalar, any CPU) and, where
    the CPU has AVX-512 VBMI2, "avx512-vbmi2"."""
    try:
        from postprocessing._ccore import ffi, lib
    except ImportError:
        return {}
    paths = {"c-portable": (ffi, lib, int(lib.QKD_SIFT_PORTABLE))}
    if lib.qkd_sift_simd_available():
        paths["avx512-vbmi2"] = (ffi, lib, int(lib.QKD_SIFT_VBMI2))
    return paths


def _choose_c_sift(paths: dict[str, CSift]) -> CSift | None:
    """`QKDNODE_C_PATH=portable` runs the scalar C kernels (as for the other C kernels); otherwise
    VBMI2 where the CPU has it, else the numba kernels (None)."""
    if os.environ.get("QKDNODE_C_PATH", "auto").strip().lower() == "portable":
        return paths.get("c-portable")
    return paths.get("avx512-vbmi2")


C_SIFT_PATHS = _load_c_sift()
_C_SIFT = _choose_c_sift(C_SIFT_PATHS)


def active_path() -> str:
    """Which sift kernel runs: "avx512-vbmi2" or "c-portable" (C), or "numba"."""
    return next((name for name, k in C_SIFT_PATHS.items() if k == _C_SIFT), "numba") if _C_SIFT else "numba"


def _ptr(ffi: object, arr: np.ndarray, ctype: str) -> object:
    return ffi.cast(ctype, arr.ctypes.data)  # type: ignore[attr-defined]


__all__ = [
    "Z_BASIS",
    "X_BASIS",
    "SiftRequest",
    "SiftReply",
    "SiftReport",
    "SiftCounts",
    "SiftedKey",
    "bob_request",
    "alice_sift",
    "bob_sift",
    "alice_complete",
]


@dataclass(frozen=True)
class SiftRequest:
    """Bob -> Alice: slots with a detection (strictly increasing) and Bob's measured basis (public)."""

    slot: NDArray[np.int64]
    basis: NDArray[np.uint8]


@dataclass(frozen=True)
class SiftReply:
    """Alice -> Bob (public): basis match per detection, and per matched detection its intensity class.

    `test_bits` are Alice's bits of the matched X-basis detections in detection order.
    `sample_index` are positions within the matched Z-basis detections (in detection order) whose
    bits `sample_bits` Alice discloses to estimate the QBER; they are dropped from both keys.
    """

    match: NDArray[np.uint8]
    intensity: NDArray[np.uint8]
    test_bits: NDArray[np.uint8]
    sample_index: NDArray[np.int64]
    sample_bits: NDArray[np.uint8]
    n_intensities: int


@dataclass(frozen=True)
class SiftCounts:
    """Per-basis, per-intensity statistics of one batch, arrays of shape (2, K) indexed [basis, class].

    `detections`: matched detections (the decoy analysis' n_{b,k}); `disclosed`: how many of them had
    their bits disclosed for error estimation; `errors`: errors among the disclosed bits.
    """

    detections: NDArray[np.int64]
    disclosed: NDArray[np.int64]
    errors: NDArray[np.int64]

    @property
    def n_intensities(self) -> int:
        """Number of intensity classes K."""
        return int(self.detections.shape[1])

    def qber(self, basis: int) -> float:
        """Observed error rate among the disclosed bits of `basis` (NaN when none were disclosed)."""
        d = int(self.disclosed[basis].sum())
        return float(self.errors[basis].sum()) / d if d else float("nan")

    def __add__(self, other: SiftCounts) -> SiftCounts:
        if self.detections.shape != other.detections.shape:
            raise ValueError(f"cannot add counts of {self.n_intensities} and {other.n_intensities} intensity classes")
        return SiftCounts(
            self.detections + other.detections, self.disclosed + other.disclosed, self.errors + other.errors
        )

    @classmethod
    def zeros(cls, n_intensities: int) -> SiftCounts:
        """Counts of an empty batch."""
        z = np.zeros((2, n_intensities), np.int64)
        return cls(z, z.copy(), z.copy())


@dataclass(frozen=True)
class SiftReport:
    """Bob -> Alice (public): errors Bob found among the disclosed bits, shape (2, K)."""

    errors: NDArray[np.int64]


@dataclass(frozen=True)
class SiftedKey:
    """One side's sifted key of a batch: key bits (Z basis, sample removed), each bit's intensity
    class, and the batch counts (Alice's `errors` are zero until `alice_complete`)."""

    bits: NDArray[np.uint8]
    intensity: NDArray[np.uint8]
    counts: SiftCounts

    def __repr__(self) -> str:  # never show key bits
        return f"SiftedKey(<{self.bits.size} bits>, counts={self.counts.detections.tolist()})"


# --------------------------------------------------------------------------------------------
# validation helpers


def _u8(arr: object, name: str, n: int | None = None) -> NDArray[np.uint8]:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 1:
        got = f"{arr.dtype}{arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ValueError(f"{name} must be a 1-D uint8 numpy array, got {got}")
    if n is not None and arr.size != n:
        raise ValueError(f"{name} must have one entry per detection ({n}), got {arr.size}")
    return np.ascontiguousarray(arr)


def _i64(arr: object, name: str) -> NDArray[np.int64]:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.ndim != 1:
        got = f"{arr.dtype}{arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ValueError(f"{name} must be a 1-D int64 numpy array, got {got}")
    return np.ascontiguousarray(arr)


def _check_k(n_intensities: int) -> int:
    if isinstance(n_intensities, bool) or not isinstance(n_intensities, (int, np.integer)):
        raise ValueError(f"n_intensities must be an integer in [1, {MAX_INTENSITIES}], got {n_intensities!r}")
    if not 1 <= n_intensities <= MAX_INTENSITIES:
        raise ValueError(f"n_intensities must be in [1, {MAX_INTENSITIES}], got {n_intensities}")
    return int(n_intensities)


# --------------------------------------------------------------------------------------------
# kernels (arithmetic only; the wrappers validate shapes and dtypes). Error codes: 0 ok, else the
# (1-based) index of the offending element encoded with a reason in the low bits.

_BAD_BASIS, _BAD_BIT, _BAD_CLASS, _BAD_ORDER, _BAD_SLOT, _BAD_MATCH, _SHORT, _BAD_TEST = range(1, 9)


@kernel
def _request_ok(slot: NDArray[np.int64], basis: NDArray[np.uint8]) -> bool:
    # branch-free, so LLVM vectorises it; `_request_kernel` locates the fault when this says no
    bad = False
    for i in range(1, slot.size):
        bad |= slot[i] <= slot[i - 1]
    for i in range(basis.size):
        bad |= basis[i] > 1
    return not bad and (slot.size == 0 or slot[0] >= 0)


@kernel
def _request_kernel(slot: NDArray[np.int64], basis: NDArray[np.uint8]) -> tuple[int, int]:
    n = slot.size
    for i in range(n):
        if basis[i] > 1:
            return _BAD_BASIS, i
        if slot[i] < 0 or (i > 0 and slot[i] <= slot[i - 1]):
            return _BAD_ORDER, i
    return 0, 0


@kernel
def _alice_fault(
    req_slot: NDArray[np.int64],
    bob_basis: NDArray[np.uint8],
    st_slot: NDArray[np.int64],
    a_basis: NDArray[np.uint8],
    a_bit: NDArray[np.uint8],
    a_class: NDArray[np.uint8],
    n_classes: int,
) -> tuple[int, int]:
    # Run only when a fast kernel flagged invalid input: the first fault and where it is.
    prev = np.int64(-1)
    for i in range(req_slot.size):
        s = req_slot[i]
        if s <= prev:
            return _BAD_ORDER, i
        prev = s
        if st_slot[i] != s:
            return _BAD_SLOT, i
        if (bob_basis[i] | a_basis[i]) > 1:
            return _BAD_BASIS, i
        if a_bit[i] > 1:
            return _BAD_BIT, i
        if a_class[i] >= n_classes:
            return _BAD_CLASS, i
    return 0, 0


@kernel
def _bob_fault(
    bob_basis: NDArray[np.uint8],
    bob_bit: NDArray[np.uint8],
    match: NDArray[np.uint8],
    intensity: NDArray[np.uint8],
    test_bits: NDArray[np.uint8],
    n_classes: int,
) -> tuple[int, int, int, int]:
    # The first fault of a reply (code, index) and how many classes and test bits it consumed.
    j = 0
    x = 0
    for i in range(bob_basis.size):
        m = match[i]
        if m > 1:
            return _BAD_MATCH, i, j, x
        if bob_bit[i] > 1:
            return _BAD_BIT, i, j, x
        if m == 0:
            continue
        if j >= intensity.size:
            return _SHORT, i, j, x
        if intensity[j] >= n_classes:
            return _BAD_CLASS, j, j, x
        j += 1
        if bob_basis[i] == 1:
            if x >= test_bits.size:
                return _SHORT, i, j, x
            if test_bits[x] > 1:
                return _BAD_TEST, x, j, x
            x += 1
    return 0, 0, j, x


@kernel
def _drop_sample(
    key: NDArray[np.uint8],
    key_class: NDArray[np.uint8],
    sample_index: NDArray[np.int64],
    sample_class: NDArray[np.uint8],
    out_key: NDArray[np.uint8],
    out_class: NDArray[np.uint8],
) -> int:
    # sample_index is sorted and within range (checked by the caller)
    s = 0
    o = 0
    n_s = sample_index.size
    for i in range(key.size):
        if s < n_s and sample_index[s] == i:
            sample_class[s] = key_class[i]
            s += 1
            continue
        out_key[o] = key[i]
        out_class[o] = key_class[i]
        o += 1
    return o


@kernel
def _alice_fast(
    req_slot: NDArray[np.int64],
    bob_basis: NDArray[np.uint8],
    st_slot: NDArray[np.int64],
    check_slots: bool,
    a_basis: NDArray[np.uint8],
    a_bit: NDArray[np.uint8],
    a_class: NDArray[np.uint8],
    n_classes: int,
    match: NDArray[np.uint8],
    intensity: NDArray[np.uint8],
    key: NDArray[np.uint8],
    key_class: NDArray[np.uint8],
    test_bits: NDArray[np.uint8],
    counts: NDArray[np.int64],
) -> tuple[bool, int, int, int]:
    # Branch-free on the (random) basis match: every output is written unconditionally and its
    # cursor advanced by 0 or 1; invalid input only sets a flag (the caller then locates it with
    # `_alice_fault`), so the loop runs without mispredicted branches.
    n = req_slot.size
    j = 0
    z = 0
    x = 0
    prev = np.int64(-1)
    bad = False
    for i in range(n):
        s = req_slot[i]
        b = bob_basis[i]
        a = a_basis[i]
        bit = a_bit[i]
        k = a_class[i]
        bad |= (s <= prev) | ((b | a | bit) > 1) | (k >= n_classes)
        a &= 1  # keep the writes below in bounds even for invalid input (flagged above)
        k = k if k < n_classes else 0
        if check_slots:
            bad |= st_slot[i] != s
        prev = s
        m = np.uint8(a == b)
        match[i] = m
        intensity[j] = k
        j += int(m)
        key[z] = bit
        key_class[z] = k
        z += m & (a ^ 1)
        test_bits[x] = bit
        x += m & a
        counts[a * n_classes + k] += m
    return bad, j, z, x


@kernel
def _bob_fast(
    bob_basis: NDArray[np.uint8],
    bob_bit: NDArray[np.uint8],
    match: NDArray[np.uint8],
    intensity: NDArray[np.uint8],
    test_bits: NDArray[np.uint8],
    n_classes: int,
    key: NDArray[np.uint8],
    key_class: NDArray[np.uint8],
    counts: NDArray[np.int64],
    errors: NDArray[np.int64],
) -> tuple[bool, int, int, int]:
    # Branch-free: every output written, cursors advanced by 0 or 1. Reads of the reply's arrays are clamped to their last
    # element, so a reply that claims more matches than it carries cannot read out of bounds;
    # the cursor totals then disagree with the array sizes and the caller rejects the reply.
    n = bob_basis.size
    n_int = intensity.size
    n_test = test_bits.size
    j = 0
    z = 0
    x = 0
    bad = False
    for i in range(n):
        m = match[i]
        b = bob_basis[i]
        bit = bob_bit[i]
        jj = j if j < n_int else n_int - 1
        xx = x if x < n_test else n_test - 1
        k = intensity[jj]
        t = test_bits[xx]
        bad |= ((m | bit) > 1) | (k >= n_classes) | ((t > 1) & ((m & b) == 1))
        m &= 1  # keep the writes below in bounds even for invalid input (flagged above)
        k = k if k < n_classes else 0
        key[z] = bit
        key_class[z] = k
        z += m & (b ^ 1)
        errors[k] += m & b & (bit ^ t)
        counts[b * n_classes + k] += m
        j += m
        x += m & b
    return bad, j, z, x


def _c_alice(
    slot, bob_basis, a_basis, a_bit, a_class, k_classes, match, intensity, key, key_class, test_bits, counts
) -> tuple[bool, int, int, int]:
    """Alice's sift through the C kernel; arrays are validated and outputs padded by the caller."""
    assert _C_SIFT is not None  # the caller checked
    ffi, lib, path = _C_SIFT
    lens = np.zeros(3, np.int64)
    u8 = "uint8_t *"
    rc = lib.qkd_sift_alice(
        path,
        _ptr(ffi, slot, "int64_t *"),
        _ptr(ffi, bob_basis, u8),
        _ptr(ffi, a_basis, u8),
        _ptr(ffi, a_bit, u8),
        _ptr(ffi, a_class, u8),
        slot.size,
        k_classes,
        _ptr(ffi, match, u8),
        _ptr(ffi, intensity, u8),
        _ptr(ffi, key, u8),
        _ptr(ffi, key_class, u8),
        _ptr(ffi, test_bits, u8),
        _ptr(ffi, counts, "int64_t *"),
        _ptr(ffi, lens, "int64_t *"),
    )
    if rc < 0:
        raise RuntimeError(f"qkd_sift_alice failed with code {rc}")
    return rc != 0, int(lens[0]), int(lens[1]), int(lens[2])


def _c_bob(
    bob_basis, bob_bit, match, intensity, test_bits, k_classes, key, key_class, counts, x_errors
) -> tuple[bool, int, int, int]:
    """Bob's sift through the C kernel; a reply too short for its matches reports as invalid."""
    assert _C_SIFT is not None  # the caller checked
    ffi, lib, path = _C_SIFT
    lens = np.zeros(3, np.int64)
    u8 = "uint8_t *"
    rc = lib.qkd_sift_bob(
        path,
        _ptr(ffi, bob_basis, u8),
        _ptr(ffi, bob_bit, u8),
        _ptr(ffi, match, u8),
        bob_basis.size,
        _ptr(ffi, intensity, u8),
        intensity.size,
        _ptr(ffi, test_bits, u8),
        test_bits.size,
        k_classes,
        _ptr(ffi, key, u8),
        _ptr(ffi, key_class, u8),
        _ptr(ffi, counts, "int64_t *"),
        _ptr(ffi, x_errors, "int64_t *"),
        _ptr(ffi, lens, "int64_t *"),
    )
    if rc < 0:
        raise RuntimeError(f"qkd_sift_bob failed with code {rc}")
    return rc != 0, int(lens[0]), int(lens[1]), int(lens[2])


# --------------------------------------------------------------------------------------------
# public API


def bob_request(slot: NDArray[np.int64], basis: NDArray[np.uint8]) -> SiftRequest:
    """Bob's announcement of his detections: slots (int64, strictly increasing) and measured bases."""
    slot = _i64(slot, "slot")
    basis = _u8(basis, "basis", slot.size)
    if _request_ok(slot, basis):
        return SiftRequest(slot, basis)
    code, i = _request_kernel(slot, basis)
    if code == _BAD_BASIS:
        raise ValueError(f"basis[{i}] = {int(basis[i])}; bases must be 0 (Z) or 1 (X)")
    if code == _BAD_ORDER:
        raise ValueError(f"slot must be non-negative and strictly increasing; slot[{i}] = {int(slot[i])} breaks that")
    return SiftRequest(slot, basis)


def alice_sift(
    request: SiftRequest,
    states: SlotStates,
    n_intensities: int,
    z_sample_fraction: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[SiftedKey, SiftReply]:
    """Alice's side: from Bob's request and her own states for those slots, her sifted key and her reply.

    `states` must be what the transmitter prepared in exactly `request.slot` (for instance
    `transmitter.states(request.slot)`). `z_sample_fraction` of the matched Z-basis bits are chosen
    at random (`rng`, default seeded from os.urandom) and disclosed for a QBER estimate.
    Raises `ProtocolError` when the request is malformed (it comes from the network).
    """
    k_classes = _check_k(n_intensities)
    if not 0.0 <= z_sample_fraction < 1.0:
        raise ValueError(f"z_sample_fraction must be in [0, 1), got {z_sample_fraction}")
    try:
        req_slot = _i64(request.slot, "request.slot")
        bob_basis = _u8(request.basis, "request.basis", req_slot.size)
    except ValueError as exc:
        raise ProtocolError(f"malformed sift request: {exc}") from None
    n = req_slot.size
    st_slot = _i64(states.slot, "states.slot")
    if st_slot.size != n:
        raise ValueError(f"states must cover the {n} requested slots, got {st_slot.size}")
    a_basis = _u8(states.basis, "states.basis", n)
    a_bit = _u8(states.bit, "states.bit", n)
    a_class = _u8(states.intensity, "states.intensity", n)

    match = np.empty(n, np.uint8)
    intensity = np.empty(n + _PAD, np.uint8)
    key = np.empty(n + _PAD, np.uint8)
    key_class = np.empty(n + _PAD, np.uint8)
    test_bits = np.empty(n + _PAD, np.uint8)
    counts = np.zeros(2 * k_classes, np.int64)
    same_slots = st_slot is req_slot or (
        st_slot.__array_interface__["data"][0] == req_slot.__array_interface__["data"][0]
    )
    if _C_SIFT is not None:
        if not same_slots and not np.array_equal(st_slot, req_slot):
            same_slots = True  # let the checked kernel below name the first differing slot
            bad = True
        else:
            bad, j, z, x = _c_alice(
                req_slot,
                bob_basis,
                a_basis,
                a_bit,
                a_class,
                k_classes,
                match,
                intensity,
                key,
                key_class,
                test_bits,
                counts,
            )
    else:
        bad, j, z, x = _alice_fast(
            req_slot,
            bob_basis,
            st_slot,
            not same_slots,
            a_basis,
            a_bit,
            a_class,
            k_classes,
            match,
            intensity,
            key,
            key_class,
            test_bits,
            counts,
        )
    code = i = 0
    if bad:
        code, i = _alice_fault(req_slot, bob_basis, st_slot, a_basis, a_bit, a_class, k_classes)
        if code == 0:
            raise RuntimeError("sift kernel flagged invalid input that the fault scan does not find")
    if code == _BAD_ORDER:
        raise ProtocolError(f"sift request slots must be non-negative and strictly increasing; slot[{i}] is not")
    if code == _BAD_SLOT:
        raise ValueError(f"states.slot[{i}] = {int(st_slot[i])} differs from the requested slot {int(req_slot[i])}")
    if code == _BAD_BASIS:
        if bob_basis[i] > 1:
            raise ProtocolError(f"sift request basis[{i}] = {int(bob_basis[i])}; bases must be 0 (Z) or 1 (X)")
        raise ValueError(f"states.basis[{i}] must be 0 (Z) or 1 (X), got {int(a_basis[i])}")
    if code == _BAD_BIT:
        raise ValueError(f"states.bit[{i}] must be 0 or 1, got {int(a_bit[i])}")
    if code == _BAD_CLASS:
        raise ValueError(f"states.intensity[{i}] = {int(a_class[i])}; classes must be < n_intensities = {k_classes}")

    detections = counts.reshape(2, k_classes)
    disclosed = np.zeros((2, k_classes), np.int64)
    disclosed[X_BASIS] = detections[X_BASIS]
    key, key_class = key[:z], key_class[:z]
    sample_index = np.empty(0, np.int64)
    sample_bits = np.empty(0, np.uint8)
    if z_sample_fraction > 0.0 and z > 0:
        sample_index = random_subset(z, int(round(z_sample_fraction * z)), rng)
        sample_bits = key[sample_index]
        key, key_class, sample_class = _remove_sample(key, key_class, sample_index)
        disclosed[Z_BASIS] = np.bincount(sample_class, minlength=k_classes)
    counts_obj = SiftCounts(detections, disclosed, np.zeros((2, k_classes), np.int64))
    reply = SiftReply(match, intensity[:j], test_bits[:x], sample_index, sample_bits, k_classes)
    return SiftedKey(key, key_class, counts_obj), reply


def _remove_sample(
    key: NDArray[np.uint8], key_class: NDArray[np.uint8], sample_index: NDArray[np.int64]
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]:
    out_key = np.empty(key.size - sample_index.size, np.uint8)
    out_class = np.empty_like(out_key)
    sample_class = np.empty(sample_index.size, np.uint8)
    _drop_sample(key, key_class, sample_index, sample_class, out_key, out_class)
    return out_key, out_class, sample_class


def bob_sift(request: SiftRequest, bits: NDArray[np.uint8], reply: SiftReply) -> tuple[SiftedKey, SiftReport]:
    """Bob's side: from his own request and bits and Alice's reply, his sifted key and his error report.

    `bits` are Bob's measured bits, one per detection of `request`. Raises `ProtocolError` when the
    reply does not fit the request (it comes from the network).
    """
    n = request.slot.size
    bob_basis = _u8(request.basis, "request.basis", n)
    bob_bit = _u8(bits, "bits", n)
    try:
        k_classes = _check_k(reply.n_intensities)
        match = _u8(reply.match, "reply.match", n)
        intensity = _u8(reply.intensity, "reply.intensity")
        test_bits = _u8(reply.test_bits, "reply.test_bits")
        sample_index = _i64(reply.sample_index, "reply.sample_index")
        sample_bits = _u8(reply.sample_bits, "reply.sample_bits", sample_index.size)
    except ValueError as exc:
        raise ProtocolError(f"malformed sift reply: {exc}") from None

    key = np.empty(n + _PAD, np.uint8)
    key_class = np.empty(n + _PAD, np.uint8)
    counts = np.zeros(2 * k_classes, np.int64)
    x_errors = np.zeros(k_classes, np.int64)
    # the fast kernel clamps its reads to the last element, so give it at least one
    int_in = intensity if intensity.size else np.zeros(1, np.uint8)
    test_in = test_bits if test_bits.size else np.zeros(1, np.uint8)
    if _C_SIFT is not None:
        bad, j, z, x = _c_bob(
            bob_basis, bob_bit, match, intensity, test_bits, k_classes, key, key_class, counts, x_errors
        )
    else:
        bad, j, z, x = _bob_fast(
            bob_basis, bob_bit, match, int_in, test_in, k_classes, key, key_class, counts, x_errors
        )
    code = 0
    if bad or j != intensity.size or x != test_bits.size:
        code, where, j, x = _bob_fault(bob_basis, bob_bit, match, intensity, test_bits, k_classes)
        j = where if code in (_BAD_BIT, _BAD_MATCH, _BAD_CLASS, _BAD_TEST) else j
    if code == _BAD_BIT:
        raise ValueError(f"bits[{j}] must be 0 or 1, got {int(bob_bit[j])}")
    if code == _BAD_MATCH:
        raise ProtocolError(f"sift reply match[{j}] = {int(match[j])}; must be 0 or 1")
    if code == _BAD_CLASS:
        raise ProtocolError(f"sift reply intensity[{j}] = {int(intensity[j])}; classes must be < {k_classes}")
    if code == _BAD_TEST:
        raise ProtocolError(f"sift reply test_bits[{j}] = {int(test_bits[j])}; bits must be 0 or 1")
    if code == _SHORT:
        raise ProtocolError("sift reply is short: fewer intensity classes or test bits than matched detections")
    if j != intensity.size or x != test_bits.size:
        raise ProtocolError(
            f"sift reply does not fit the request: {intensity.size} intensity classes and {test_bits.size} "
            f"test bits for {j} matched detections of which {x} in X"
        )
    detections = counts.reshape(2, k_classes)
    disclosed = np.zeros((2, k_classes), np.int64)
    disclosed[X_BASIS] = detections[X_BASIS]
    errors = np.zeros((2, k_classes), np.int64)
    errors[X_BASIS] = x_errors
    key, key_class = key[:z], key_class[:z]
    if sample_index.size:
        if np.any(sample_index[1:] <= sample_index[:-1]) or sample_index[0] < 0 or sample_index[-1] >= z:
            raise ProtocolError(f"sift reply sample_index must be strictly increasing positions in [0, {z})")
        if np.any(sample_bits > 1):
            raise ProtocolError("sift reply sample_bits must be 0 or 1")
        bob_sample = key[sample_index]
        key, key_class, sample_class = _remove_sample(key, key_class, sample_index)
        disclosed[Z_BASIS] = np.bincount(sample_class, minlength=k_classes)
        errors[Z_BASIS] = np.bincount(sample_class, weights=bob_sample != sample_bits, minlength=k_classes).astype(
            np.int64
        )
    counts_obj = SiftCounts(detections, disclosed, errors)
    return SiftedKey(key, key_class, counts_obj), SiftReport(errors.copy())


def alice_complete(sifted: SiftedKey, report: SiftReport) -> SiftedKey:
    """Alice's last step: take Bob's error counts into her batch counts.

    Raises `ProtocolError` when the report is malformed or claims more errors than disclosed bits.
    """
    counts = sifted.counts
    errors = report.errors
    if not isinstance(errors, np.ndarray) or errors.shape != counts.detections.shape or errors.dtype != np.int64:
        raise ProtocolError(
            f"sift report errors must be an int64 array of shape {counts.detections.shape}, got "
            f"{getattr(errors, 'dtype', type(errors).__name__)}{getattr(errors, 'shape', '')}"
        )
    if np.any(errors < 0) or np.any(errors > counts.disclosed):
        raise ProtocolError("sift report claims a negative error count or more errors than disclosed bits")
    return SiftedKey(sifted.bits, sifted.intensity, SiftCounts(counts.detections, counts.disclosed, errors.copy()))
