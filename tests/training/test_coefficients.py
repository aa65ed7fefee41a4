from __future__ import annotations

import pytest

from saecore.training.coefficients import CoefficientSchedule
from saecore.training_sae import TrainCoefficientConfig


def test_warm_up_ramps_linearly_then_holds() -> None:
    schedule = CoefficientSchedule({"l1": TrainCoefficientConfig(2.0, 4), "aux": 0.5})
    expected_l1 = [2.0 * min((t + 1) / 4, 1.0) for t in range(8)]
    assert [schedule.at(t)["l1"] for t in range(8)] == pytest.approx(expected_l1)
    assert all(schedule.at(t)["aux"] == 0.5 for t in range(8))


def test_constant_and_zero_warm_up_coefficients_never_change() -> None:
    schedule = CoefficientSchedule({"l0": TrainCoefficientConfig(3.0, 0), "plain": 1})
    assert schedule.at(0) == {"l0": 3.0, "plain": 1.0}
    assert schedule.at(1000) is schedule.at(0)


def test_rejects_non_numbers() -> None:
    with pytest.raises(TypeError, match="coefficient 'l1' must be a number"):
        CoefficientSchedule({"l1": "big"})  # type: ignore[dict-item]
