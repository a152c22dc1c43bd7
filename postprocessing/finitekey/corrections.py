"""Which corrections of Wiesemann, Krause, Tupkary, Lütkenhaus, Rusca, Walenta, "A consolidated and
accessible security proof for finite-size decoy-state quantum key distribution", arXiv:2405.16578,
apply to the two bounds here (Lim 2014, Rusca 2018), and which this package adopted.

Read from the paper's abstract and front matter (v2/v3); the full text could not be reached from
the build environment, so each entry states the correction as the abstract does and our reading
of what it means for our code. `qkdnode simulate` and the node report bounds under these terms.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Correction:
    """One technical point of the consolidated proof and where it stands in this package."""

    topic: str
    applies: bool
    adopted: str  # "yes", "partly" or "no"
    note: str


WIESEMANN_2024: tuple[Correction, ...] = (
    Correction(
        "fixed-length treatment",
        True,
        "no",
        "Both papers prove a fixed-length protocol but evaluate the length from each block's observed "
        "statistics (variable length). The node does the same: l is computed per block from the counts. "
        "The consolidated proof fixes l in advance and accepts or aborts on an acceptance test; a "
        "variable-length proof would need eps_sec split over the lengths that can be chosen. Open.",
    ),
    Correction(
        "acceptance testing and conditioning on events",
        True,
        "partly",
        "Bounds must hold conditioned on the protocol not aborting. The node aborts on a QBER above "
        "qber_abort and on a failed verification before any key is used, and every estimate's failure "
        "probability is charged in eps_sec (proof_terms); the conditioning itself (dividing by the "
        "probability of acceptance) is not modelled.",
    ),
    Correction(
        "one-decoy statistics computed after error correction",
        True,
        "yes",
        "Rusca 2018's vacuum upper bound (A16) uses the key basis's error counts per intensity, which "
        "exist only after error correction and are announced by Bob. They are trusted only once "
        "verification passes (eps_cor), and the announcement is paid for: node.link.distill charges "
        "log2(n_k + 1) bits per class (disclosed_bits), for lim2014 as well, where the counts are "
        "announced but not needed.",
    ),
    Correction(
        "slight improvement of the secret key length",
        True,
        "no",
        "Not adopted: our lengths stay those of the published bounds (within 0.1 % on the hand-worked "
        "Lim block), never above them.",
    ),
    # Our own corrections, in the same spirit, listed here so the reader finds them in one place:
    Correction(
        "phase-error bound at zero observed errors",
        True,
        "yes",
        "Lim's gamma (Eq. (5)/(B2), Rusca (A23)) vanishes as the test error rate goes to 0; the bound "
        "is now the larger of it and the Chernoff tail of the random sampling "
        "(estimates.sampling_tail_bound), so phi > 0 at zero errors (about ln(1/eps)/s_X1).",
    ),
    Correction(
        "verification tag length",
        True,
        "yes",
        "The papers subtract log2(2/eps_cor) for verification; the node subtracts the tag it sends "
        "(tag_bits, 64 or 128), which is what Eve sees.",
    ),
)
