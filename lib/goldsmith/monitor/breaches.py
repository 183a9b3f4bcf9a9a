"""A monitor run's checks: each drift value and realised metric against its threshold, which of them are
violations, and the `ops.monitor_results` row of each. Plain Python over the measured values (no Spark).

- Drift (feature, prediction, label): a value above `monitor.thresholds[metric]` is a violation, unless the value is
  NaN (undefined) or its period has fewer than `min_rows` window rows. A metric without a threshold is reported,
  never a violation.
- Performance: the primary metric on the labelled window rows against the champion's recorded test value; worse by
  more than `performance_drop` (higher for rmse / mae / log_loss, lower for the others) is a violation, with the
  same NaN and `min_rows` exceptions. Without a recorded test value or a `performance_drop` there is no threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from goldsmith.config.models import LOWER_IS_BETTER
from goldsmith.monitor.drift import DriftResult

# What a check measures: a feature's drift, the predictions' drift, the labels' drift, the realised metric.
CheckKind = Literal["feature", "prediction", "label", "performance"]


@dataclass(frozen=True)
class Check:
    """One measured value of one period (`all` = the whole window), its threshold and whether it is a violation;
    `message` says what was violated (empty when nothing was)."""

    period: str
    kind: CheckKind
    column: str
    metric: str
    value: float
    threshold: float | None
    breached: bool
    baseline_rows: int | None
    window_rows: int | None
    message: str = ""


def drift_checks(
    found: Sequence[tuple[CheckKind, DriftResult]], thresholds: Mapping[str, float], min_rows: int, label: str,
) -> list[Check]:
    """A check per drift result, in order. A `label` result is reported under the label column's name `label`."""
    checks = []
    for kind, r in found:
        threshold = thresholds.get(r.metric)
        breached = bool(threshold is not None and not math.isnan(r.value) and r.value > threshold
                        and r.window_rows >= min_rows)
        column = label if kind == "label" else r.column
        message = f"{kind} {column} {r.metric} {r.value:.3f} > {threshold:.3f} ({r.period})" if breached else ""
        checks.append(Check(r.period, kind, column, r.metric, r.value, threshold, breached, r.baseline_rows,
                            r.window_rows, message))
    return checks


def performance_checks(
    performance: Mapping[str, tuple[float, int]], metric: str, champion_test: float | None,
    performance_drop: float | None, min_rows: int,
) -> list[Check]:
    """A check per period (sorted) of `performance` ({period: (metric value, labelled rows)}) against the
    champion's test value `champion_test` of the primary `metric`."""
    lower = metric in LOWER_IS_BETTER
    checks = []
    for period, (value, rows) in sorted(performance.items()):
        threshold = None
        breached = False
        if champion_test is not None and performance_drop is not None:
            threshold = champion_test + performance_drop if lower else champion_test - performance_drop
            breached = bool(not math.isnan(value) and rows >= min_rows
                            and (value > threshold if lower else value < threshold))
        message = (f"performance {metric} {value:.3f} vs test {champion_test:.3f} (drop > {performance_drop}) "
                   f"({period})") if breached else ""
        checks.append(Check(period, "performance", metric, metric, value, threshold, breached, None, rows, message))
    return checks


def violations(checks: Sequence[Check]) -> list[str]:
    """The messages of the checks that are violations, in order."""
    return [c.message for c in checks if c.breached]


@dataclass(frozen=True)
class MonitorRun:
    """What every `ops.monitor_results` row of one model's check shares: the run, the champion version, what
    was compared (`baseline`, `score_window`), the inputs' fingerprint (JSON) and when."""

    run_id: str
    pipeline: str
    model_name: str
    model_version: int
    baseline: str
    score_window: str
    inputs: str
    checked_at: datetime

    def row(self, check: Check) -> dict[str, Any]:
        """The `ops.monitor_results` row of `check` (a NaN value is stored as null)."""
        value = check.value
        return {
            "run_id": self.run_id, "pipeline": self.pipeline, "model_name": self.model_name,
            "model_version": self.model_version, "baseline": self.baseline, "score_window": self.score_window,
            "period": check.period, "kind": check.kind, "column_name": check.column, "metric": check.metric,
            "value": None if value is None or math.isnan(value) else float(value), "threshold": check.threshold,
            "breached": check.breached, "baseline_rows": check.baseline_rows, "window_rows": check.window_rows,
            "inputs": self.inputs, "checked_at": self.checked_at,
        }
