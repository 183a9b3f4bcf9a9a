"""Which monitored values are violations (`goldsmith.monitor.breaches`), against values worked by hand."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from goldsmith.monitor.breaches import Check, MonitorRun, drift_checks, performance_checks, violations
from goldsmith.monitor.drift import DriftResult

THRESHOLDS = {"psi": 0.25, "js": 0.1}


def drift(column: str, metric: str, value: float, window_rows: int = 500, period: str = "all") -> DriftResult:
    return DriftResult(column=column, kind="numeric", period=period, metric=metric, value=value, baseline_rows=1000,
                       window_rows=window_rows)


def test_a_drift_value_above_its_threshold_is_a_violation() -> None:
    [check] = drift_checks([("feature", drift("x1", "psi", 0.31))], THRESHOLDS, min_rows=100, label="delayed")
    assert check == Check("all", "feature", "x1", "psi", 0.31, 0.25, True, 1000, 500,
                          "feature x1 psi 0.310 > 0.250 (all)")


def test_drift_at_the_threshold_small_periods_undefined_values_and_unthresholded_metrics_are_reported_only() -> None:
    found = [
        ("feature", drift("x1", "psi", 0.25)),  # equal to the threshold: not above it
        ("feature", drift("x1", "psi", 0.40, window_rows=99, period="2013-05")),  # 99 rows < min_rows 100
        ("feature", drift("x1", "psi", 0.40, window_rows=100, period="2013-06")),  # 100 rows: counts
        ("feature", drift("x2", "ks", 0.90)),  # no ks threshold
        ("prediction", drift("prediction", "js", math.nan)),  # undefined
    ]
    checks = drift_checks(found, THRESHOLDS, min_rows=100, label="delayed")
    assert [c.breached for c in checks] == [False, False, True, False, False]
    assert [c.threshold for c in checks] == [0.25, 0.25, 0.25, None, 0.1]
    assert [c.message for c in checks] == ["", "", "feature x1 psi 0.400 > 0.250 (2013-06)", "", ""]


def test_label_drift_is_reported_under_the_label_column() -> None:
    [check] = drift_checks([("label", drift("label", "js", 0.2))], THRESHOLDS, min_rows=100, label="delayed")
    assert (check.kind, check.column, check.breached) == ("label", "delayed", True)
    assert check.message == "label delayed js 0.200 > 0.100 (all)"


def test_a_metric_worse_than_the_champion_test_value_by_more_than_the_drop_is_a_violation() -> None:
    # roc_auc is higher-is-better: threshold 0.80 - 0.05 = 0.75; periods come out sorted.
    performance = {"all": (0.74, 300), "2013-05": (0.70, 50), "2013-04": (0.76, 250), "2013-06": (0.75, 200)}
    checks = performance_checks(performance, "roc_auc", champion_test=0.80, performance_drop=0.05, min_rows=100)
    assert [c.period for c in checks] == ["2013-04", "2013-05", "2013-06", "all"]
    assert [c.threshold for c in checks] == pytest.approx([0.75] * 4)
    # 0.76 is better; 0.70 is worse but has 50 < 100 rows; 0.75 is not below 0.75; 0.74 is.
    assert [c.breached for c in checks] == [False, False, False, True]
    assert checks[3] == Check("all", "performance", "roc_auc", "roc_auc", 0.74, checks[3].threshold, True, None, 300,
                              "performance roc_auc 0.740 vs test 0.800 (drop > 0.05) (all)")


def test_a_lower_is_better_metric_breaches_above_the_champion_value_plus_the_drop() -> None:
    # rmse: threshold 10.0 + 2.0 = 12.0
    checks = performance_checks({"a": (12.5, 200), "b": (12.0, 200), "c": (9.0, 200)}, "rmse", champion_test=10.0,
                                performance_drop=2.0, min_rows=100)
    assert [(c.threshold, c.breached) for c in checks] == [(12.0, True), (12.0, False), (12.0, False)]


def test_no_threshold_without_a_recorded_test_value_or_a_drop_and_nan_never_breaches() -> None:
    no_test = performance_checks({"all": (0.1, 500)}, "accuracy", champion_test=None, performance_drop=0.05,
                                 min_rows=100)
    no_drop = performance_checks({"all": (0.1, 500)}, "accuracy", champion_test=0.9, performance_drop=None,
                                 min_rows=100)
    undefined = performance_checks({"all": (math.nan, 500)}, "accuracy", champion_test=0.9, performance_drop=0.05,
                                   min_rows=100)
    assert [(c.threshold, c.breached) for c in [*no_test, *no_drop]] == [(None, False), (None, False)]
    assert undefined[0].threshold == pytest.approx(0.85) and not undefined[0].breached


def test_violations_keep_the_checks_order() -> None:
    checks = [
        *drift_checks([("feature", drift("x1", "psi", 0.5)), ("feature", drift("x2", "psi", 0.1))], THRESHOLDS,
                      min_rows=100, label="y"),
        *performance_checks({"all": (0.5, 500)}, "accuracy", champion_test=0.9, performance_drop=0.05, min_rows=100),
    ]
    assert violations(checks) == [
        "feature x1 psi 0.500 > 0.250 (all)",
        "performance accuracy 0.500 vs test 0.900 (drop > 0.05) (all)",
    ]


def test_an_ops_row_per_check_with_nan_stored_as_null() -> None:
    at = datetime(2026, 12, 1, 12, 0)
    run = MonitorRun("r1", "flights", "delay", 3, "gold.f@v7 train split", "(all rows)", '{"champion": 3}', at)
    check = Check("2013-05", "prediction", "prediction", "js", math.nan, 0.1, False, 1000, 40)
    assert run.row(check) == {
        "run_id": "r1", "pipeline": "flights", "model_name": "delay", "model_version": 3,
        "baseline": "gold.f@v7 train split", "score_window": "(all rows)", "period": "2013-05", "kind": "prediction",
        "column_name": "prediction", "metric": "js", "value": None, "threshold": 0.1, "breached": False,
        "baseline_rows": 1000, "window_rows": 40, "inputs": '{"champion": 3}', "checked_at": at,
    }
