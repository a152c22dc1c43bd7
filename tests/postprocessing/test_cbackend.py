"""The typed binding over the C core: path selection and argument checks before C is called."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postprocessing import _cbackend


def test_portable_path_is_always_available() -> None:
    assert "portable" in _cbackend.available_paths()


def test_auto_resolves_to_the_fastest_available_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_cbackend.ENV_VAR, raising=False)
    assert _cbackend.resolve_path() == _cbackend.available_paths()[-1]
    assert _cbackend.resolve_path("auto") == _cbackend.available_paths()[-1]


def test_environment_variable_forces_the_portable_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_cbackend.ENV_VAR, "portable")
    assert _cbackend.resolve_path() == "portable"
    assert _cbackend.active_paths() == {"toeplitz": "portable-karatsuba", "polyhash": "portable"}


def test_active_paths_names_each_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_cbackend.ENV_VAR, "auto")
    paths = _cbackend.active_paths()
    assert set(paths) == {"toeplitz", "polyhash"}
    assert paths["toeplitz"].startswith(_cbackend.available_paths()[-1])


def test_unknown_path_in_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_cbackend.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="QKDNODE_C_PATH must be one of"):
        _cbackend.resolve_path()
    with pytest.raises(ValueError, match="path must be one of"):
        _cbackend.resolve_path("gpu")


def test_path_the_cpu_lacks_is_refused() -> None:
    missing = [p for p in ("pclmul", "vpclmulqdq") if p not in _cbackend.available_paths()]
    for path in missing:
        with pytest.raises(ValueError, match="not supported by this CPU"):
            _cbackend.resolve_path(path)


X = np.zeros(4, dtype=np.uint64)  # 200 bits
S = np.zeros(5, dtype=np.uint64)  # 269 bits: n = 200, l = 70


@pytest.mark.parametrize(
    ("x", "n", "s", "l", "match"),
    [
        (X, 200, S, 70, None),
        (X[:3], 200, S, 70, "x must hold 4 words"),
        (X, 200, S[:4], 70, "seed must hold 5 words"),
        (X, 200, np.zeros(6, np.uint64), 70, "seed must hold 5 words"),
        (X, 0, S, 70, "n must be an integer"),
        (X, 200, S, 200, r"l must be an integer in \[0, n-1\]"),
        (X, 200, S, -3, r"l must be an integer in \[0, n-1\]"),
        (X.astype(np.int64), 200, S, 70, "x must be a 1-D numpy uint64 array"),
        (X.reshape(2, 2), 200, S, 70, "x must be a 1-D numpy uint64 array"),
        (np.zeros(8, np.uint64)[::2], 200, S, 70, "x must be C-contiguous"),
        (np.array([0, 0, 0, 1 << 8], dtype=np.uint64), 200, S, 70, "x has padding bits set"),
        (X, 2**41, S, 70, "n must be an integer"),
    ],
)
def test_toeplitz_binding_checks_every_length_before_calling_c(
    x: np.ndarray, n: int, s: np.ndarray, l: int, match: str | None
) -> None:
    if match is None:
        assert _cbackend.toeplitz_words(x, n, s, l).size == 2
        return
    with pytest.raises(ValueError, match=match):
        _cbackend.toeplitz_words(x, n, s, l)


def test_polyhash_binding_checks_words_and_keys() -> None:
    words = np.zeros(2, dtype=np.uint64)
    keys = np.ones(2, dtype=np.uint64)
    assert _cbackend.polyhash_words(words, 100, keys).size == 2
    with pytest.raises(ValueError, match="words must hold 1 words"):
        _cbackend.polyhash_words(words, 64, keys)
    with pytest.raises(ValueError, match="keys must be a non-empty"):
        _cbackend.polyhash_words(words, 100, np.zeros(0, dtype=np.uint64))
    with pytest.raises(ValueError, match="keys must be a non-empty"):
        _cbackend.polyhash_words(words, 100, keys.astype(np.int64))
    with pytest.raises(ValueError, match="n_bits must be an integer"):
        _cbackend.polyhash_words(words, -1, keys)


def test_empty_key_is_hashed_by_its_length_alone() -> None:
    keys = np.array([3], dtype=np.uint64)
    tag = _cbackend.polyhash_words(np.zeros(0, dtype=np.uint64), 0, keys)
    assert int(tag[0]) == 0  # (0 + n_bits = 0) * k


@given(
    n=st.integers(-5, 3000),
    l=st.integers(-5, 3000),
    x_words=st.integers(0, 60),
    s_words=st.integers(0, 110),
    path=st.sampled_from(_cbackend.available_paths()),
)
def test_toeplitz_binding_never_passes_inconsistent_lengths_to_c(
    n: int, l: int, x_words: int, s_words: int, path: str
) -> None:
    x = np.zeros(x_words, dtype=np.uint64)
    s = np.zeros(s_words, dtype=np.uint64)
    consistent = n >= 1 and 0 <= l < n and x_words == (n + 63) // 64 and s_words == (n + l - 1 + 63) // 64
    if consistent:
        assert not _cbackend.toeplitz_words(x, n, s, l, path=path).any()
    else:
        with pytest.raises(ValueError):
            _cbackend.toeplitz_words(x, n, s, l, path=path)
