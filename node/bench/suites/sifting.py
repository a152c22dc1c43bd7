"""Bench rows for sifting: each side's work and the whole exchange, against a numpy boolean-mask version."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.transmitter import SlotStates
from node.bench.core import BenchCase, BenchProfile
from postprocessing.sifting import alice_complete, alice_sift, bob_request, bob_sift

N_CLASSES = 3


def make_batch(n: int, seed: int = 1, qber: float = 0.02) -> dict[str, Any]:
    """A batch of n detections of a 3-intensity link: Bob's slots, bases and bits, Alice's states."""
    return dict(_batch(n, seed, qber))  # a fresh dict over shared (read-only) arrays


@lru_cache(maxsize=2)
def _batch(n: int, seed: int, qber: float) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    slot = np.cumsum(rng.integers(1, 64, n)).astype(np.int64)
    bob_basis = rng.integers(0, 2, n, dtype=np.uint8)
    a_basis = rng.integers(0, 2, n, dtype=np.uint8)
    a_bit = rng.integers(0, 2, n, dtype=np.uint8)
    u = rng.random(n)
    a_class = (u >= 0.7).astype(np.uint8) + (u >= 0.9).astype(np.uint8)  # classes 0/1/2 with p 0.7/0.2/0.1
    flip = (rng.random(n) < qber).astype(np.uint8)
    bob_bit = np.where(bob_basis == a_basis, a_bit ^ flip, rng.integers(0, 2, n, dtype=np.uint8)).astype(np.uint8)
    return {
        "slot": slot,
        "bob_basis": bob_basis,
        "bob_bit": bob_bit,
        "states": SlotStates(slot, a_basis, a_bit, a_class),
    }


def numpy_alice(slot: NDArray[np.int64], bob_basis: NDArray[np.uint8], states: SlotStates) -> tuple:
    """Alice's sifting written the straightforward numpy way: boolean masks and bincount."""
    if slot.size and (slot[0] < 0 or np.any(np.diff(slot) <= 0)):
        raise ValueError("slots must be strictly increasing")
    match = states.basis == bob_basis
    zmask = match & (states.basis == 0)
    xmask = match & (states.basis == 1)
    counts = np.stack(
        [
            np.bincount(states.intensity[zmask], minlength=N_CLASSES),
            np.bincount(states.intensity[xmask], minlength=N_CLASSES),
        ]
    )
    reply = (match.astype(np.uint8), states.intensity[match], states.bit[xmask])
    return states.bit[zmask], states.intensity[zmask], counts, reply


def numpy_bob(bob_basis: NDArray[np.uint8], bob_bit: NDArray[np.uint8], reply: tuple) -> tuple:
    """Bob's sifting the straightforward numpy way."""
    match = reply[0].astype(bool)
    intensity, test_bits = reply[1], reply[2]
    matched_basis = bob_basis[match]
    zmask = match & (bob_basis == 0)
    xmask = match & (bob_basis == 1)
    x_class = intensity[matched_basis == 1]
    errors = np.bincount(x_class, weights=bob_bit[xmask] != test_bits, minlength=N_CLASSES)
    counts = np.stack(
        [np.bincount(intensity[matched_basis == 0], minlength=N_CLASSES), np.bincount(x_class, minlength=N_CLASSES)]
    )
    return bob_bit[zmask], intensity[matched_basis == 0], counts, errors


def _exchange(b: dict[str, Any]) -> None:
    request = bob_request(b["slot"], b["bob_basis"])
    alice, reply = alice_sift(request, b["states"], N_CLASSES)
    _, report = bob_sift(request, b["bob_bit"], reply)
    alice_complete(alice, report)


def _exchange_numpy(b: dict[str, Any]) -> None:
    *_, reply = numpy_alice(b["slot"], b["bob_basis"], b["states"])
    numpy_bob(b["bob_basis"], b["bob_bit"], reply)


def _alice_setup(n: int) -> Callable[[], dict[str, Any]]:
    def setup() -> dict[str, Any]:
        b = make_batch(n)
        b["request"] = bob_request(b["slot"], b["bob_basis"])
        return b

    return setup


def _bob_setup(n: int) -> Callable[[], dict[str, Any]]:
    def setup() -> dict[str, Any]:
        b = make_batch(n)
        _, b["reply"] = alice_sift(bob_request(b["slot"], b["bob_basis"]), b["states"], N_CLASSES)
        b["np_reply"] = numpy_alice(b["slot"], b["bob_basis"], b["states"])[3]
        return b

    return setup


def _bob_side(b: dict[str, Any]) -> None:
    request = bob_request(b["slot"], b["bob_basis"])
    bob_sift(request, b["bob_bit"], b["reply"])


def _bob_side_numpy(b: dict[str, Any]) -> None:
    if b["slot"].size and np.any(np.diff(b["slot"]) <= 0):
        raise ValueError("slots must be strictly increasing")
    numpy_bob(b["bob_basis"], b["bob_bit"], b["np_reply"])


def _alice_side(b: dict[str, Any]) -> None:
    alice_sift(b["request"], b["states"], N_CLASSES)


def _alice_side_numpy(b: dict[str, Any]) -> None:
    numpy_alice(b["slot"], b["bob_basis"], b["states"])


def cases(profile: BenchProfile) -> list[BenchCase]:
    """Sifting rows: the exchange (both sides in turn, one core) and each side on its own."""

    def row(
        stage: str,
        n: int,
        setup: Callable[[], dict[str, Any]],
        run: Callable[[dict[str, Any]], None],
        reference: Callable[[dict[str, Any]], None],
    ) -> BenchCase:
        return BenchCase(
            stage=stage,
            n=n,
            setup=setup,
            run=run,
            reference=reference,
            unit="M det/s",
            reference_name="numpy-boolean-mask",
            params={"intensities": N_CLASSES},
            reference_max_runs=1 if profile.quick else 3,
        )

    out = []
    for n in profile.sizes:
        out.append(row("sifting", n, partial(make_batch, n), _exchange, _exchange_numpy))
        out.append(row("sifting-alice", n, _alice_setup(n), _alice_side, _alice_side_numpy))
        out.append(row("sifting-bob", n, _bob_setup(n), _bob_side, _bob_side_numpy))
    return out


def machine_info() -> dict[str, Any]:
    """Which sift kernel path is active on this machine."""
    from postprocessing.sifting import active_path

    return {"sifting_kernel": active_path()}
