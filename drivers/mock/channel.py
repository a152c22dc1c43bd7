"""The fibre channel between Alice and Bob: loss and propagation delay."""

from __future__ import annotations

SPEED_OF_LIGHT_M_PER_S = 299_792_458.0


def transmittance(length_km: float, loss_db_per_km: float, insertion_loss_db: float = 0.0) -> float:
    """Fraction of photons reaching Bob's detectors' inputs: fibre attenuation plus receiver insertion loss."""
    if length_km < 0:
        raise ValueError(f"length_km must be >= 0, got {length_km}")
    if loss_db_per_km < 0:
        raise ValueError(f"loss_db_per_km must be >= 0, got {loss_db_per_km}")
    if insertion_loss_db < 0:
        raise ValueError(f"insertion_loss_db must be >= 0, got {insertion_loss_db}")
    return 10.0 ** (-(length_km * loss_db_per_km + insertion_loss_db) / 10.0)


def propagation_delay_ps(length_km: float, group_index: float = 1.468) -> float:
    """Time of flight through the fibre in picoseconds (SMF-28 group index by default)."""
    if length_km < 0:
        raise ValueError(f"length_km must be >= 0, got {length_km}")
    if group_index < 1.0:
        raise ValueError(f"group_index must be >= 1, got {group_index}")
    return length_km * 1e3 * group_index / SPEED_OF_LIGHT_M_PER_S * 1e12
