"""QL02 re-tune policy: acts on a real change of the link, not on noise, logs and alarms each change."""

from __future__ import annotations

from node.ml.policy import RetunePolicy
from postprocessing.finitekey import PRESETS, ProtocolSettings

START = ProtocolSettings((0.5, 0.1), (0.7, 0.3), 0.9)


def test_retunes_once_per_real_change_with_hysteresis() -> None:
    sent: list[ProtocolSettings] = []
    alarms: list[tuple[str, str]] = []
    policy = RetunePolicy(
        "rusca2018",
        PRESETS["rusca2018"],
        1e7,
        START,
        sent.append,
        lambda s, t: alarms.append((s, t)),
        hysteresis_db=0.5,
    )
    first = policy.observe(10.0)
    assert first is not None and sent == [first] and alarms[0][0] == "warning" and "re-tune" in alarms[0][1]
    for noise in (10.1, 9.8, 10.3):  # within the hysteresis: nothing moves
        assert policy.observe(noise) is None
    assert len(sent) == 1
    second = policy.observe(20.0)  # 10 dB more loss: the optimum moves
    assert second is not None and len(sent) == 2 and second != first


def test_no_retune_when_the_prediction_is_not_better() -> None:
    sent: list[ProtocolSettings] = []
    policy = RetunePolicy("rusca2018", PRESETS["rusca2018"], 1e7, START, sent.append, lambda s, t: None)
    tuned = policy.observe(15.0)
    assert tuned is not None
    policy.tuned_loss_db = None  # forget the hysteresis: the same link again gains nothing
    assert policy.observe(15.0) is None and len(sent) == 1


def test_a_fixed_basis_probability_changes_only_intensities_and_classes() -> None:
    sent: list[ProtocolSettings] = []
    policy = RetunePolicy(
        "rusca2018", PRESETS["rusca2018"], 1e7, START, sent.append, lambda s, t: None, basis_fixed=True
    )
    tuned = policy.observe(20.0)
    assert tuned is not None and tuned.basis_probability == START.basis_probability
    assert tuned.intensities != START.intensities and policy.settings == tuned
