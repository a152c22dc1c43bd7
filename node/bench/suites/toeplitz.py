"""Bench of Toeplitz privacy amplification: the C kernel (packed API) against the float64 FFT reference."""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import numpy as np

from node.bench.core import BenchCase, BenchProfile

STAGE = "toeplitz"
THREADED_STAGE = "toeplitz-threads"
REFERENCE_MAX_N = 10_000_000  # the FFT at 1e8 takes about half a minute: not timed there


def _setup_threaded(n: int, l: int, threads: int) -> dict[str, Any]:
    return dict(_setup(n, l), threads=threads)


def _setup(n: int, l: int) -> dict[str, Any]:
    from postprocessing.bits import pack_bits

    # Bench inputs, not key material: a seeded generator keeps runs comparable.
    rng = np.random.default_rng(n)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, n + l - 1, dtype=np.uint8)
    return {"n": n, "l": l, "x": x, "seed": seed, "x_words": pack_bits(x), "seed_words": pack_bits(seed)}


def _run(state: dict[str, Any]) -> dict[str, Any]:
    from postprocessing.toeplitz import toeplitz_hash_words

    toeplitz_hash_words(state["x_words"], state["n"], state["seed_words"], state["l"])
    return {}


def _run_threaded(state: dict[str, Any]) -> dict[str, Any]:
    from postprocessing.toeplitz import toeplitz_hash_words

    toeplitz_hash_words(state["x_words"], state["n"], state["seed_words"], state["l"], threads=state["threads"])
    return {}


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _reference(state: dict[str, Any]) -> dict[str, Any]:
    from postprocessing.toeplitz import toeplitz_hash_fft

    toeplitz_hash_fft(state["x"], state["seed"], state["l"])
    return {}


def cases(profile: BenchProfile) -> list[BenchCase]:
    """One row per size: n input bits, l = n/2 output bits, throughput in Mbit/s of input key.

    With --full, rows of stage "toeplitz-threads" (n >= 1e6, when the machine has several cores)
    time the same kernel on all usable cores against itself on one; that only pays when the cores
    are otherwise idle, so the default table leaves it out.
    """
    rows = []
    for n in profile.sizes:
        l = n // 2
        with_reference = n <= REFERENCE_MAX_N
        rows.append(
            BenchCase(
                stage=STAGE,
                n=n,
                setup=partial(_setup, n, l),
                run=_run,
                reference=_reference if with_reference else None,
                unit="Mbit/s",
                params={"l": l, "api": "toeplitz_hash_words (packed)"},
                reference_name="numpy-fft-float64" if with_reference else None,
                reference_max_runs=1 if profile.quick else 3,  # medians of 3 keep the ratio steady under load
            )
        )
    threads = min(_usable_cores(), 64)
    if threads > 1 and profile.full:
        for n in profile.sizes:
            if n < 1_000_000:
                continue
            l = n // 2
            rows.append(
                BenchCase(
                    stage=THREADED_STAGE,
                    n=n,
                    setup=partial(_setup_threaded, n, l, threads),
                    run=_run_threaded,
                    reference=_run,
                    unit="Mbit/s",
                    params={"l": l, "threads": threads},
                    reference_name="same kernel, 1 thread",
                    reference_max_runs=3,
                )
            )
    return rows


def machine_info() -> dict[str, Any]:
    """The C kernel paths in use and the CPU features they were chosen from."""
    from postprocessing import _cbackend
    from postprocessing._ccore import lib

    flags = lib.qkd_cpu_features()
    names = {
        "pclmul": lib.QKD_CPU_PCLMUL,
        "avx2": lib.QKD_CPU_AVX2,
        "avx512": lib.QKD_CPU_AVX512,
        "vpclmulqdq": lib.QKD_CPU_VPCLMUL,
    }
    return {
        "c_paths": _cbackend.active_paths(),
        "c_paths_available": _cbackend.available_paths(),
        "cpu_features_used": [name for name, bit in names.items() if flags & bit],
    }
