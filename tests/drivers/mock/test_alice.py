"""Alice's counter-based pattern and the keyed hash behind it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.mock.alice import alice_states
from drivers.mock.counter import STREAM_ALICE, derive_key, hash64, hash64_py, unit

MASK = 0xFFFFFFFFFFFFFFFF


def _mix_ref(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _hash_ref(key: int, counter: int) -> int:
    return _mix_ref(_mix_ref((counter * 0x9E3779B97F4A7C15 + key) & MASK) ^ key)


def _state_ref(seed: int, slot: int, p_z: float, probs: tuple[float, ...]) -> tuple[int, int, int]:
    key = int(derive_key(seed, STREAM_ALICE))
    h = _hash_ref(key, slot)
    basis = 0 if (h >> 32) / 2.0**32 < p_z else 1
    bit = h & 1
    u = ((h >> 1) & 0x7FFFFFFF) / 2.0**31
    cdf = np.cumsum(probs)
    cdf[-1] = 1.0
    k = 0
    while k < len(probs) - 1 and u >= cdf[k]:
        k += 1
    return basis, bit, k


@given(st.integers(0, MASK), st.integers(0, MASK))
def test_hash64_kernel_matches_python_reference(key: int, counter: int) -> None:
    assert int(hash64(np.uint64(key), np.uint64(counter))) == _hash_ref(key, counter)
    assert int(hash64_py(key, counter)) == _hash_ref(key, counter)


@given(st.integers(0, 2**63 - 1))
def test_unit_is_in_the_half_open_interval(h: int) -> None:
    u = unit(np.uint64(h))
    assert 0.0 <= u < 1.0


@given(
    st.integers(0, 2**40),
    st.lists(st.integers(0, 2**62), min_size=1, max_size=50),
    st.floats(0.0, 1.0),
    st.sampled_from([(1.0,), (0.7, 0.2, 0.1), (0.5, 0.5), (0.25, 0.25, 0.25, 0.25)]),
)
def test_alice_states_match_reference_for_any_slot(
    seed: int, slots: list[int], p_z: float, probs: tuple[float, ...]
) -> None:
    basis, bit, k = alice_states(seed, np.array(slots, np.int64), p_z, probs)
    for i, s in enumerate(slots):
        assert (basis[i], bit[i], k[i]) == _state_ref(seed, s, p_z, probs)


def test_alice_state_of_a_slot_does_not_depend_on_the_query() -> None:
    slots = np.arange(1000, dtype=np.int64)
    full = alice_states(7, slots, 0.5, (0.8, 0.15, 0.05))
    perm = np.random.default_rng(0).permutation(slots)
    part = alice_states(7, perm, 0.5, (0.8, 0.15, 0.05))
    for a, b in zip(full, part):
        assert np.array_equal(a[perm], b)


def test_alice_frequencies_follow_the_probabilities() -> None:
    n = 400_000
    probs = (0.7, 0.2, 0.1)
    basis, bit, k = alice_states(3, np.arange(n, dtype=np.int64), 0.8, probs)
    for observed, p in [(np.mean(basis == 0), 0.8), (np.mean(bit), 0.5)] + [
        (np.mean(k == c), probs[c]) for c in range(3)
    ]:
        assert abs(observed - p) <= 5 * np.sqrt(p * (1 - p) / n)
    # basis, bit and class are independent of each other
    joint = np.mean((basis == 0) & (bit == 1) & (k == 1))
    p = 0.8 * 0.5 * 0.2
    assert abs(joint - p) <= 5 * np.sqrt(p * (1 - p) / n)


def test_different_seeds_give_different_patterns() -> None:
    slots = np.arange(256, dtype=np.int64)
    assert not np.array_equal(alice_states(1, slots, 0.5, (1.0,))[1], alice_states(2, slots, 0.5, (1.0,))[1])


@pytest.mark.parametrize("bad", [-1, 1.5, "x"])
def test_derive_key_rejects_bad_seed(bad: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        derive_key(bad, STREAM_ALICE)  # type: ignore[arg-type]


def test_alice_states_reject_negative_or_wrongly_typed_slots() -> None:
    with pytest.raises(ValueError, match="slots"):
        alice_states(0, np.array([-1], np.int64), 0.5, (1.0,))
    with pytest.raises(ValueError, match="slots"):
        alice_states(0, np.array([1.0]), 0.5, (1.0,))
