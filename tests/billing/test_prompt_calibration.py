"""The prompt-token calibration budgets reserve with: what each target really bills per
token we count (providers/tokens.PromptCalibration)."""

from __future__ import annotations

from providers.tokens import PromptCalibration

OPENAI = "openai"


def test_before_a_target_reports_the_margin_is_reserved():
    calibration = PromptCalibration()

    assert calibration.reserve(8, counted_with=OPENAI, target_keys=["a/m"], margin=1.25) == 10


def test_after_reports_the_largest_recent_ratio_is_reserved():
    calibration = PromptCalibration()
    calibration.observe("a/m", counted_with=OPENAI, counted=8, billed=12)
    calibration.observe("a/m", counted_with=OPENAI, counted=100, billed=110)

    assert calibration.reserve(8, counted_with=OPENAI, target_keys=["a/m"], margin=1.25) == 12
    assert calibration.reserve(100, counted_with=OPENAI, target_keys=["a/m"], margin=1) == 150


def test_old_reports_leave_the_window():
    calibration = PromptCalibration()
    calibration.observe("a/m", counted_with=OPENAI, counted=8, billed=16)
    for _ in range(PromptCalibration.WINDOW):
        calibration.observe("a/m", counted_with=OPENAI, counted=10, billed=11)

    assert calibration.reserve(10, counted_with=OPENAI, target_keys=["a/m"], margin=3) == 11


def test_the_reservation_never_falls_below_our_own_count():
    calibration = PromptCalibration()
    calibration.observe("a/m", counted_with=OPENAI, counted=100, billed=60)

    assert calibration.reserve(100, counted_with=OPENAI, target_keys=["a/m"], margin=0.5) == 100
    assert calibration.reserve(100, counted_with=OPENAI, target_keys=["b/m"], margin=0.5) == 100


def test_a_route_reserves_for_the_hungriest_of_its_targets():
    calibration = PromptCalibration()
    calibration.observe("cheap/m", counted_with=OPENAI, counted=10, billed=10)
    calibration.observe("other/m", counted_with=OPENAI, counted=10, billed=13)

    keys = ["cheap/m", "other/m"]
    assert calibration.reserve(10, counted_with=OPENAI, target_keys=keys, margin=1) == 13
    # A fallback target never seen yet counts at the margin.
    keys = ["cheap/m", "new/m"]
    assert calibration.reserve(10, counted_with=OPENAI, target_keys=keys, margin=1.5) == 15


def test_ratios_are_kept_apart_for_each_of_our_counters():
    calibration = PromptCalibration()
    calibration.observe("a/m", counted_with="anthropic", counted=10, billed=20)

    assert calibration.reserve(10, counted_with="anthropic", target_keys=["a/m"], margin=1) == 20
    assert calibration.reserve(10, counted_with=OPENAI, target_keys=["a/m"], margin=1) == 10
