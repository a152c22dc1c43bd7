"""Sifting against a plain-Python reference of the whole exchange, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import postprocessing.sifting as sifting_module
from drivers.transmitter import SlotStates
from postprocessing.errors import ProtocolError
from postprocessing.sifting import (
    SiftCounts,
    SiftReply,
    SiftReport,
    SiftRequest,
    alice_complete,
    alice_sift,
    bob_request,
    bob_sift,
)

C_PATHS = sifting_module.C_SIFT_PATHS


@pytest.fixture(autouse=True, params=["avx512-vbmi2", "c-portable", "numba"])
def kernel_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on each sift kernel path this CPU has: C VBMI2, portable C and numba."""
    if request.param == "numba":
        monkeypatch.setattr(sifting_module, "_C_SIFT", None)
    elif request.param in C_PATHS:
        monkeypatch.setattr(sifting_module, "_C_SIFT", C_PATHS[request.param])
    else:
        pytest.skip(f"this CPU has no {request.param} sift kernel")
    assert sifting_module.active_path() == request.param
    return request.param


def test_the_portable_c_kernel_is_built_on_every_machine() -> None:
    assert "c-portable" in C_PATHS


def reference_sift(slot, bob_basis, bob_bit, a_basis, a_bit, a_class, k_classes, sample_index):
    """The exchange written out plainly: lists and loops, one detection at a time."""
    z_positions = [i for i in range(len(slot)) if a_basis[i] == bob_basis[i] == 0]
    sampled = {z_positions[s] for s in sample_index}
    alice_key, bob_key, key_class = [], [], []
    det = [[0] * k_classes for _ in range(2)]
    disclosed = [[0] * k_classes for _ in range(2)]
    errors = [[0] * k_classes for _ in range(2)]
    for i in range(len(slot)):
        if a_basis[i] != bob_basis[i]:
            continue
        b, k = a_basis[i], a_class[i]
        det[b][k] += 1
        if b == 1 or i in sampled:
            disclosed[b][k] += 1
            errors[b][k] += int(a_bit[i] != bob_bit[i])
        else:
            alice_key.append(a_bit[i])
            bob_key.append(bob_bit[i])
            key_class.append(k)
    return alice_key, bob_key, key_class, det, disclosed, errors


@st.composite
def batches(draw):
    n = draw(st.integers(0, 300))
    k = draw(st.integers(1, 4))
    gaps = draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n))
    slot = np.cumsum(np.array(gaps, dtype=np.int64)) + draw(st.integers(0, 10**12)) if n else np.empty(0, np.int64)

    def u8(hi):
        return np.array(draw(st.lists(st.integers(0, hi), min_size=n, max_size=n)), dtype=np.uint8)

    return slot.astype(np.int64), u8(1), u8(1), u8(1), u8(1), u8(k - 1), k, draw(st.floats(0, 0.9))


def run_exchange(slot, bob_basis, bob_bit, a_basis, a_bit, a_class, k, fraction, seed=0):
    request = bob_request(slot, bob_basis)
    states = SlotStates(slot.copy(), a_basis, a_bit, a_class)  # a copy: exercises the slot check
    alice_key, reply = alice_sift(request, states, k, fraction, np.random.default_rng(seed))
    bob_key, report = bob_sift(request, bob_bit, reply)
    alice_key = alice_complete(alice_key, report)
    return alice_key, bob_key, reply


@given(batches())
def test_sifting_equals_plain_python_reference(batch) -> None:
    slot, bob_basis, bob_bit, a_basis, a_bit, a_class, k, fraction = batch
    alice_key, bob_key, reply = run_exchange(slot, bob_basis, bob_bit, a_basis, a_bit, a_class, k, fraction)
    ref = reference_sift(slot, bob_basis, bob_bit, a_basis, a_bit, a_class, k, reply.sample_index.tolist())
    ref_alice, ref_bob, ref_class, det, disclosed, errors = ref
    assert alice_key.bits.tolist() == ref_alice
    assert bob_key.bits.tolist() == ref_bob
    assert alice_key.intensity.tolist() == ref_class == bob_key.intensity.tolist()
    for side in (alice_key, bob_key):
        assert side.counts.detections.tolist() == det
        assert side.counts.disclosed.tolist() == disclosed
        assert side.counts.errors.tolist() == errors


def test_sample_fraction_discloses_that_share_of_z_bits_and_removes_them_from_the_key() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    slot = np.arange(n, dtype=np.int64) * 3
    a_basis = np.zeros(n, np.uint8)
    a_bit = rng.integers(0, 2, n, dtype=np.uint8)
    flips = (rng.random(n) < 0.05).astype(np.uint8)
    alice_key, bob_key, reply = run_exchange(
        slot, a_basis.copy(), a_bit ^ flips, a_basis, a_bit, np.zeros(n, np.uint8), 1, 0.1, seed=3
    )
    assert reply.sample_index.size == 2000
    assert alice_key.bits.size == bob_key.bits.size == n - 2000
    assert abs(bob_key.counts.qber(0) - 0.05) < 0.015
    assert alice_key.counts.errors.tolist() == bob_key.counts.errors.tolist()


def test_counts_add_per_basis_and_intensity() -> None:
    a = SiftCounts(np.ones((2, 3), np.int64), np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64))
    assert (a + a).detections.tolist() == [[2, 2, 2], [2, 2, 2]]
    with pytest.raises(ValueError, match="intensity classes"):
        a + SiftCounts.zeros(2)


def test_sifted_key_repr_shows_no_bits() -> None:
    n = 64
    slot = np.arange(n, dtype=np.int64)
    z = np.zeros(n, np.uint8)
    key, _ = alice_sift(bob_request(slot, z), SlotStates(slot, z, np.ones(n, np.uint8), z), 1)
    assert "1, 1" not in repr(key) and "64 bits" in repr(key)


@pytest.mark.parametrize(
    "slot, basis, message",
    [
        (np.array([3, 2], np.int64), np.zeros(2, np.uint8), "strictly increasing"),
        (np.array([1, 1], np.int64), np.zeros(2, np.uint8), "strictly increasing"),
        (np.array([-1], np.int64), np.zeros(1, np.uint8), "non-negative"),
        (np.array([1, 2], np.int64), np.array([0, 2], np.uint8), "0 \\(Z\\) or 1 \\(X\\)"),
        (np.array([1, 2], np.int32), np.zeros(2, np.uint8), "int64"),
        (np.array([1, 2], np.int64), np.zeros(3, np.uint8), "one entry per detection"),
    ],
)
def test_bob_request_rejects_bad_input(slot, basis, message) -> None:
    with pytest.raises(ValueError, match=message):
        bob_request(slot, basis)


def _valid(n=8):
    slot = np.arange(n, dtype=np.int64) * 2
    basis = np.array([0, 1] * (n // 2), np.uint8)
    return slot, basis, SlotStates(slot, basis.copy(), np.ones(n, np.uint8), np.zeros(n, np.uint8))


def test_alice_rejects_states_for_other_slots() -> None:
    slot, basis, states = _valid()
    other = SlotStates(slot + 1, states.basis, states.bit, states.intensity)
    with pytest.raises(ValueError, match="differs from the requested slot"):
        alice_sift(bob_request(slot, basis), other, 1)


def test_alice_rejects_intensity_class_out_of_range() -> None:
    slot, basis, states = _valid()
    bad = SlotStates(slot, states.basis, states.bit, np.full(8, 2, np.uint8))
    with pytest.raises(ValueError, match="n_intensities = 2"):
        alice_sift(bob_request(slot, basis), bad, 2)


def test_alice_treats_a_malformed_request_as_a_protocol_error() -> None:
    slot, basis, states = _valid()
    forged = SiftRequest(slot[::-1].copy(), basis)
    with pytest.raises(ProtocolError, match="strictly increasing"):
        alice_sift(forged, SlotStates(forged.slot, states.basis, states.bit, states.intensity), 1)
    with pytest.raises(ProtocolError, match="0 \\(Z\\) or 1 \\(X\\)"):
        alice_sift(SiftRequest(slot, np.full(8, 7, np.uint8)), states, 1)


@given(st.data())
def test_bob_rejects_any_reply_that_does_not_fit_his_request(data) -> None:
    slot, basis, states = _valid(16)
    request = bob_request(slot, basis)
    _, reply = alice_sift(request, states, 2)
    field = data.draw(st.sampled_from(["match", "intensity", "test_bits", "sample_index"]))
    arr = getattr(reply, field)
    mutation = data.draw(st.sampled_from(["truncate", "extend", "garble"]))
    assume(not (mutation == "truncate" and arr.size == 0))  # nothing to take away
    if mutation == "truncate":
        arr = arr[: data.draw(st.integers(0, max(arr.size - 1, 0)))]
    elif mutation == "extend":
        arr = np.concatenate([arr, np.full(data.draw(st.integers(1, 4)), 9, arr.dtype)])
    else:
        arr = arr.copy()
        if arr.size == 0:
            arr = np.full(1, 5, arr.dtype)
        # values no valid reply holds: bits/classes above 1, sample positions past the 8 Z bits
        low = 8 if field == "sample_index" else 2
        arr[data.draw(st.integers(0, arr.size - 1))] = data.draw(st.integers(low, 200))
    fields = {f: getattr(reply, f) for f in ("match", "intensity", "test_bits", "sample_index", "sample_bits")}
    fields[field] = arr
    if field == "sample_index":
        fields["sample_bits"] = np.zeros(arr.size, np.uint8)
    forged = SiftReply(n_intensities=2, **fields)
    with pytest.raises(ProtocolError):
        bob_sift(request, np.ones(16, np.uint8), forged)


def test_alice_rejects_a_report_with_more_errors_than_disclosed_bits() -> None:
    slot, basis, states = _valid()
    key, _ = alice_sift(bob_request(slot, basis), states, 1)
    with pytest.raises(ProtocolError, match="more errors than disclosed"):
        alice_complete(key, SiftReport(np.full((2, 1), 100, np.int64)))
    with pytest.raises(ProtocolError, match="shape"):
        alice_complete(key, SiftReport(np.zeros((2, 3), np.int64)))


@pytest.fixture
def c_only(kernel_path: str) -> None:
    if kernel_path == "numba":
        pytest.skip("compares a C kernel with numba; runs on the C paths")


def test_qkdnode_c_path_portable_chooses_the_portable_c_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QKDNODE_C_PATH", "portable")
    assert sifting_module._choose_c_sift(C_PATHS) == C_PATHS["c-portable"]
    monkeypatch.setenv("QKDNODE_C_PATH", "auto")
    assert sifting_module._choose_c_sift(C_PATHS) == C_PATHS.get("avx512-vbmi2")  # else numba (None)


@pytest.mark.usefixtures("c_only")
@given(st.integers(0, 700), st.integers(1, 16), st.integers(0, 2**32))
def test_c_kernels_equal_the_numba_kernels_without_falling_back(n: int, k: int, seed: int) -> None:
    """The C path must produce the result itself (a silent fallback would hide a broken kernel)."""
    rng = np.random.default_rng(seed)
    slot = np.cumsum(rng.integers(1, 9, n)).astype(np.int64)
    bb, ab, bit, bbit = (rng.integers(0, 2, n, dtype=np.uint8) for _ in range(4))
    cls = rng.integers(0, k, n, dtype=np.uint8)
    outs_c = [np.zeros(n + 64, np.uint8) for _ in range(5)]
    outs_n = [np.zeros(n + 64, np.uint8) for _ in range(5)]
    cc, cn = np.zeros(2 * k, np.int64), np.zeros(2 * k, np.int64)
    m_c, i_c, key_c, kc_c, t_c = outs_c
    m_n, i_n, key_n, kc_n, t_n = outs_n
    rc = sifting_module._c_alice(slot, bb, ab, bit, cls, k, m_c, i_c, key_c, kc_c, t_c, cc)
    rn = sifting_module._alice_fast(slot, bb, slot, False, ab, bit, cls, k, m_n, i_n, key_n, kc_n, t_n, cn)
    assert rc == tuple(rn) and not rc[0]
    _, j, z, x = rc
    for a, b, used in zip(outs_c, outs_n, (n, j, z, z, x)):
        assert np.array_equal(a[:used], b[:used])
    assert np.array_equal(cc, cn)
    match, intensity, test = outs_c[0][:n], outs_c[1][:j], outs_c[4][:x]
    keys = [np.zeros(n + 64, np.uint8) for _ in range(4)]
    bc, bn = np.zeros(2 * k, np.int64), np.zeros(2 * k, np.int64)
    ec, en = np.zeros(k, np.int64), np.zeros(k, np.int64)
    rc = sifting_module._c_bob(bb, bbit, match, intensity, test, k, keys[0], keys[1], bc, ec)
    rn = sifting_module._bob_fast(
        bb, bbit, match, np.append(intensity, 0), np.append(test, 0), k, keys[2], keys[3], bn, en
    )
    assert rc == tuple(rn) and not rc[0]
    z = rc[2]
    assert np.array_equal(keys[0][:z], keys[2][:z]) and np.array_equal(keys[1][:z], keys[3][:z])
    assert np.array_equal(bc, bn) and np.array_equal(ec, en)
