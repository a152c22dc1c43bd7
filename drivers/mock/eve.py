"""An intercept-resend eavesdropper acting on a given fraction of slots.

On an attacked slot Eve measures Alice's pulse in a random basis with an ideal detector and
re-prepares a pulse of the same mean photon number in her basis and result (she cannot tell the
intensity class, so she leaves it). Detection rates are unchanged; in the sifted key half of the
attacked slots carry a random bit, so a full attack adds 25 % QBER. Which slots, Eve's basis and
her random result come from `hash64(eve_key, slot)`.
"""

from __future__ import annotations

import numpy as np

from drivers.jit import kernel
from drivers.mock.counter import hash64, unit

_ONE = np.uint64(1)


@kernel
def resend_state(eve_key: np.uint64, slot: np.int64, fraction: float, basis: np.int64, bit: np.int64) -> tuple[np.int64, np.int64]:
    """The (basis, bit) that leaves Eve for this slot: Alice's own when the slot is not attacked."""
    if fraction <= 0.0:
        return basis, bit
    h = hash64(eve_key, np.uint64(slot))
    if unit(h) >= fraction:
        return basis, bit
    eve_basis = np.int64(h & _ONE)
    if eve_basis == basis:
        return basis, bit
    return eve_basis, np.int64((h >> _ONE) & _ONE)
