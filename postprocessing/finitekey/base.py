"""One interface for every finite-key bound of decoy-state BB84: the observed statistics, the result
with every intermediate bound, and a registry of bounds by name.

Conventions (DESIGN.md section 3): basis 0 = Z is the key basis, basis 1 = X the test basis;
intensity class 0 is the signal (largest mean photon number), classes ordered by decreasing
intensity. Lim et al. 2014 extract the key from their X basis: their X is our Z.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

KEY_BASIS = 0
TEST_BASIS = 1
_PROBABILITY_TOLERANCE = 1e-9


def _as_counts(name: str, value: ArrayLike, n_classes: int | None, expected: bool) -> NDArray[np.float64]:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a 2 x K array of counts (rows: Z key basis, X test basis)") from None
    if arr.ndim != 2 or arr.shape[0] != 2 or (n_classes is not None and arr.shape[1] != n_classes):
        raise ValueError(
            f"{name}: must have shape (2, {n_classes if n_classes is not None else 'K'}) "
            f"(rows: Z key basis, X test basis; columns: intensity classes), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: counts must be finite")
    if np.any(arr < 0):
        raise ValueError(f"{name}: counts must be non-negative")
    if not expected and np.any(arr != np.floor(arr)):
        raise ValueError(f"{name}: observed counts must be integers (pass expected=True for model expectations)")
    return arr


@dataclass(frozen=True, eq=False)
class DecoyStatistics:
    """Detections and errors per basis and intensity class of one block, with the intensities and
    their probabilities. `detections[b, k]`: sifted detections in basis b (0 = Z key, 1 = X test)
    with intensity class k; `errors[b, k]`: how many of them were bit errors. `expected=True` marks
    model expectations (non-integer counts allowed) rather than observations."""

    intensities: NDArray[np.float64]
    probabilities: NDArray[np.float64]
    detections: NDArray[np.float64]
    errors: NDArray[np.float64]
    expected: bool = False

    def __init__(
        self,
        intensities: ArrayLike,
        probabilities: ArrayLike,
        detections: ArrayLike,
        errors: ArrayLike,
        expected: bool = False,
    ) -> None:
        """Validate any array-like input and keep it as read-only float arrays (the fields' type)."""
        mu = np.asarray(intensities, dtype=np.float64).ravel()
        if mu.size < 2:
            raise ValueError("intensities: need at least two intensity classes (signal and a decoy)")
        if not np.all(np.isfinite(mu)) or np.any(mu < 0):
            raise ValueError("intensities: mean photon numbers must be finite and non-negative")
        if np.any(np.diff(mu) >= 0):
            raise ValueError("intensities: must be strictly decreasing (class 0 is the signal)")
        p = np.asarray(probabilities, dtype=np.float64).ravel()
        if p.shape != mu.shape:
            raise ValueError(f"probabilities: need one per intensity ({mu.size}), got {p.size}")
        if not np.all(np.isfinite(p)) or np.any(p <= 0) or np.any(p > 1):
            raise ValueError("probabilities: each must lie in (0, 1]")
        if abs(float(p.sum()) - 1.0) > _PROBABILITY_TOLERANCE:
            raise ValueError(f"probabilities: must sum to one, got {float(p.sum())!r}")
        expected = bool(expected)
        n = _as_counts("detections", detections, mu.size, expected)
        m = _as_counts("errors", errors, mu.size, expected)
        if np.any(m > n):
            raise ValueError("errors: cannot exceed the detections of the same basis and intensity")
        for name, arr in (("intensities", mu), ("probabilities", p), ("detections", n), ("errors", m)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "expected", expected)

    @classmethod
    def from_events(
        cls, intensities: Any, probabilities: Any, bases: Any, classes: Any, bit_errors: Any
    ) -> DecoyStatistics:
        """Count the sifted detections of one block given per detection its basis (0 = Z, 1 = X,
        integers), its intensity class (integers 0..K-1) and whether it was a bit error (bool)."""
        k = np.asarray(intensities).size
        b = np.asarray(bases)
        c = np.asarray(classes)
        e = np.asarray(bit_errors)
        if b.ndim != 1 or c.shape != b.shape or e.shape != b.shape:
            raise ValueError("bases, classes, bit_errors: must be 1-D arrays of one length")
        if b.size and (b.dtype.kind not in "iu" or b.min() < 0 or b.max() > 1):
            raise ValueError("bases: must be integers 0 (Z) or 1 (X)")
        if c.size and (c.dtype.kind not in "iu" or c.min() < 0 or c.max() >= k):
            raise ValueError(f"classes: must be integers in 0..{k - 1}")
        if e.dtype.kind != "b":
            raise ValueError("bit_errors: must be booleans")
        cell = b.astype(np.int64) * k + c.astype(np.int64)
        detections = np.bincount(cell, minlength=2 * k).reshape(2, k)
        errors = np.bincount(cell[e], minlength=2 * k).reshape(2, k)
        return cls(intensities, probabilities, detections, errors)

    @property
    def n_classes(self) -> int:
        """How many intensity classes."""
        return int(self.intensities.size)

    @property
    def block_size(self) -> float:
        """n_Z: key-basis detections, the post-processing block size."""
        return float(self.detections[KEY_BASIS].sum())

    def qber(self, basis: int = KEY_BASIS) -> float:
        """Observed bit error rate of one basis over all intensities (0 if it has no detections)."""
        n = float(self.detections[basis].sum())
        return float(self.errors[basis].sum()) / n if n > 0 else 0.0


@dataclass(frozen=True)
class FiniteKeyResult:
    """The secret key length and every intermediate bound that produced it. Counts are of the key
    basis Z unless named `_test` (basis X). `length` is the floor of `length_bound`, or 0 when the
    bound leaves nothing; `length_bound` is unfloored and may be negative (useful to optimisers)."""

    protocol: str
    length: int
    length_bound: float
    block_size: float
    eps_sec: float
    eps_cor: float
    eps_term: float  # failure probability of each estimate: eps_sec / (number of terms in the proof)
    vacuum: float  # s_{Z,0} lower bound
    single_photon: float  # s_{Z,1} lower bound
    vacuum_test: float  # s_{X,0} lower bound
    single_photon_test: float  # s_{X,1} lower bound
    single_photon_errors_test: float  # v_{X,1} upper bound
    phase_error_test_rate: float  # v_{X,1} / s_{X,1}
    phase_error_deviation: float  # gamma
    phase_error_rate: float  # phi_Z upper bound = rate + gamma (may exceed 1/2: no secrecy)
    privacy_amplification_cost: float  # s_{Z,1} h(phi_Z)
    error_correction_leak: float  # lambda_EC
    secrecy_cost: float  # 6 log2(c / eps_sec)
    correctness_cost: float  # the verification tag's length when given, else the papers' log2(2 / eps_cor)
    qber: float
    qber_test: float
    vacuum_upper: float | None = None  # s^u_{Z,0} (one-decoy bound only)
    vacuum_upper_test: float | None = None  # s^u_{X,0} (one-decoy bound only)
    deviations: dict[str, float] = field(default_factory=dict)  # Hoeffding deltas used
    disclosed_cost: float = 0.0  # other bits disclosed about the key (e.g. per-class error counts)

    @property
    def subtracted(self) -> dict[str, float]:
        """Every term subtracted from s_{Z,0} + s_{Z,1}, by name."""
        return {
            "privacy_amplification": self.privacy_amplification_cost,
            "error_correction": self.error_correction_leak,
            "secrecy": self.secrecy_cost,
            "correctness": self.correctness_cost,
            "disclosed": self.disclosed_cost,
        }

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary of every field (infinities as None)."""
        out = asdict(self)
        for key, value in list(out.items()):
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out


class FiniteKeyBound(ABC):
    """A finite-key security proof: validates the intensity set it supports and turns the statistics
    of one block into a `FiniteKeyResult`. Subclasses implement `_key_length` on validated input."""

    name: str = ""
    reference: str = ""
    n_intensities: int = 0
    proof_terms: int = 1  # eps_sec = proof_terms * eps (every error term set to a common eps)

    def _assemble(
        self,
        stats: DecoyStatistics,
        lambda_ec: float,
        eps_cor: float,
        eps_sec: float,
        eps: float,
        key: tuple[float, float],
        test: tuple[float, float, float],
        **extra: Any,
    ) -> FiniteKeyResult:
        """The last steps both proofs share: the phase-error bound phi <= v/s + gamma(eps, v/s, s_test, s_key)
        (Lim et al. Eq. (5), Rusca et al. (A20)-(A23)), then (Lim Eq. (1), Rusca (A25))
        l = floor(s_0 + s_1 - s_1 h(phi) - lambda_EC - 6 log2(proof_terms / eps_sec) - log2(2 / eps_cor)).
        `key` is the key basis's (s_0, s_1), `test` the test basis's (s_0, s_1, v_1) lower/upper bounds;
        `extra` fills the optional fields."""
        from postprocessing.finitekey.estimates import binary_entropy, phase_error_bound

        vacuum, single = key
        vacuum_test, single_test, errors_test = test
        rate, gamma, phi = phase_error_bound(eps, errors_test, single_test, single)
        pa_cost = single * binary_entropy(phi)
        secrecy_cost = 6.0 * math.log2(self.proof_terms / eps_sec)
        correctness_cost = math.log2(2.0 / eps_cor)
        bound = vacuum + single - pa_cost - lambda_ec - secrecy_cost - correctness_cost
        return FiniteKeyResult(
            protocol=self.name,
            length=max(int(math.floor(bound)), 0),
            length_bound=bound,
            block_size=float(stats.detections[KEY_BASIS].sum()),
            eps_sec=eps_sec,
            eps_cor=eps_cor,
            eps_term=eps,
            vacuum=vacuum,
            single_photon=single,
            vacuum_test=vacuum_test,
            single_photon_test=single_test,
            single_photon_errors_test=errors_test,
            phase_error_test_rate=rate,
            phase_error_deviation=gamma,
            phase_error_rate=phi,
            privacy_amplification_cost=pa_cost,
            error_correction_leak=lambda_ec,
            secrecy_cost=secrecy_cost,
            correctness_cost=correctness_cost,
            qber=stats.qber(KEY_BASIS),
            qber_test=stats.qber(TEST_BASIS),
            **extra,
        )

    def check_intensities(self, intensities: np.ndarray) -> None:
        """Raise `ValueError` naming `intensities` if this proof does not cover them."""
        if intensities.size != self.n_intensities:
            raise ValueError(
                f"intensities: protocol {self.name!r} needs {self.n_intensities} intensities, got {intensities.size}"
            )

    def key_length(
        self,
        stats: DecoyStatistics,
        lambda_ec: float,
        eps_cor: float,
        eps_sec: float,
        *,
        verification_bits: float | None = None,
        disclosed_bits: float = 0.0,
    ) -> FiniteKeyResult:
        """The secret key length of one block (validates, then applies the proof).

        Every bit disclosed about the key is subtracted (DESIGN §5): `lambda_ec` the error
        correction's parities; `verification_bits` the verification tag actually sent (it replaces
        the papers' log2(2/eps_cor), which stands for an ideal tag of that length; None keeps the
        papers' term, as the simulations do); `disclosed_bits` anything else (the per-class error
        counts Bob announces), at most log2 of the number of values each could take."""
        if not isinstance(stats, DecoyStatistics):
            raise ValueError("stats: must be a DecoyStatistics")
        self.check_intensities(stats.intensities)
        lambda_ec = _check_real("lambda_ec", lambda_ec)
        if lambda_ec < 0:
            raise ValueError("lambda_ec: the error-correction leak must be non-negative")
        eps_cor = _check_eps("eps_cor", eps_cor)
        eps_sec = _check_eps("eps_sec", eps_sec)
        result = self._key_length(stats, lambda_ec, eps_cor, eps_sec)
        if verification_bits is None and not disclosed_bits:
            return result
        correctness = (
            result.correctness_cost
            if verification_bits is None
            else _check_real("verification_bits", verification_bits)
        )
        disclosed = _check_real("disclosed_bits", disclosed_bits)
        if correctness < 0 or disclosed < 0:
            raise ValueError("verification_bits, disclosed_bits: must be non-negative")
        bound = result.length_bound + result.correctness_cost - correctness - disclosed
        return replace(
            result,
            length_bound=bound,
            length=max(int(math.floor(bound)), 0),
            correctness_cost=correctness,
            disclosed_cost=disclosed,
        )

    @abstractmethod
    def _key_length(self, stats: DecoyStatistics, lambda_ec: float, eps_cor: float, eps_sec: float) -> FiniteKeyResult:
        """The proof's formulas on validated input."""


def _check_real(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a real number") from None
    if not math.isfinite(out):
        raise ValueError(f"{name}: must be finite")
    return out


def _check_eps(name: str, value: Any) -> float:
    out = _check_real(name, value)
    if not 0.0 < out < 1.0:
        raise ValueError(f"{name}: must lie in the open interval (0, 1), got {out!r}")
    return out


_REGISTRY: dict[str, FiniteKeyBound] = {}


def register_bound(bound: FiniteKeyBound) -> FiniteKeyBound:
    """Make a bound available under `bound.name` (a newer proof is added by registering it)."""
    if not bound.name:
        raise ValueError("bound: needs a non-empty name")
    _REGISTRY[bound.name] = bound
    return bound


def get_bound(protocol: str) -> FiniteKeyBound:
    """The registered bound called `protocol`."""
    try:
        return _REGISTRY[protocol]
    except KeyError:
        raise ValueError(f"protocol: unknown {protocol!r}; allowed: {', '.join(sorted(_REGISTRY))}") from None


def available_bounds() -> tuple[str, ...]:
    """Names of the registered bounds."""
    return tuple(sorted(_REGISTRY))


def finite_key_length(
    protocol: str,
    stats: DecoyStatistics,
    lambda_ec: float,
    eps_cor: float,
    eps_sec: float,
    *,
    verification_bits: float | None = None,
    disclosed_bits: float = 0.0,
) -> FiniteKeyResult:
    """Secret key length of one block under the named proof ('lim2014' two-decoy, 'rusca2018'
    one-decoy), with every intermediate bound; `.length` is 0 when nothing is left. See
    `FiniteKeyBound.key_length` for the disclosed bits."""
    return get_bound(protocol).key_length(
        stats, lambda_ec, eps_cor, eps_sec, verification_bits=verification_bits, disclosed_bits=disclosed_bits
    )
