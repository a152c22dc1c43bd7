"""Post-processing of a decoy-state BB84 link: sifting, parameter estimation, Cascade,
verification, finite-key bounds and Toeplitz privacy amplification, over numpy arrays."""

from __future__ import annotations

from postprocessing.errors import PostProcessingError

__all__ = ["PostProcessingError"]
