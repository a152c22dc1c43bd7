"""Seed-derived shuffles against the pure-Python reference, and the seed exchange."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postprocessing.cascade import shuffle
from tests.postprocessing.cascade import reference


@given(n=st.integers(1, 300), seed=st.integers(0, 2**64 - 1))
def test_permutation_matches_reference_fisher_yates(n: int, seed: int) -> None:
    assert shuffle.permutation(n, seed).tolist() == reference.permutation(n, seed)


@given(n=st.integers(1, 300), seed=st.integers(0, 2**64 - 1))
def test_inverse_undoes_the_permutation(n: int, seed: int) -> None:
    perm = shuffle.permutation(n, seed)
    pos = shuffle.inverse(perm)
    assert np.array_equal(pos[perm], np.arange(n))


@given(n=st.integers(1, 300), seed=st.integers(0, 2**64 - 1))
def test_subset_mask_matches_reference_bits(n: int, seed: int) -> None:
    assert shuffle.subset_mask(n, seed).tolist() == reference.subset_mask(n, seed)
    words = shuffle.subset_words(n, seed)
    assert words.size == (n + 63) // 64
    if n % 64:
        assert int(words[-1]) >> (n % 64) == 0  # zero padding (DESIGN §3)


def test_pass_seed_matches_reference_and_differs_per_pass() -> None:
    seed = bytes(range(32))
    assert shuffle.pass_seed(seed, 3) == reference.pass_seed(seed, 3)
    assert len({shuffle.pass_seed(seed, j) for j in range(20)}) == 20


def test_shared_seed_depends_on_both_contributions() -> None:
    a, b = shuffle.draw_seed(), shuffle.draw_seed()
    assert a != b
    assert shuffle.shared_seed(a, b) != shuffle.shared_seed(a, shuffle.draw_seed())
    assert shuffle.shared_seed(a, b) != shuffle.shared_seed(shuffle.draw_seed(), b)


@pytest.mark.parametrize("bad", [b"short", "not bytes", b"x" * 17])
def test_shared_seed_rejects_malformed_contributions(bad: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        shuffle.shared_seed(bad, shuffle.draw_seed())  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, -1, 2**31])
def test_permutation_rejects_bad_length(n: int) -> None:
    with pytest.raises(ValueError, match="n must be"):
        shuffle.permutation(n, 1)
