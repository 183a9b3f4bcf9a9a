"""Slices: a model's metric per class and per value of chosen columns, against its overall value.

A slice is flagged when its metric is worse than the overall value by more than `margin` (below it for metrics
where higher is better, above it for rmse / mae / log_loss) and it has at least `min_rows` rows; smaller slices
are reported, never flagged (their metric is too noisy to act on). Per class, the metric is F1 (recall and
precision are reported beside it) against the mean F1 over classes: "poor on one class". All slice columns are
counted in one Spark job: the rows are exploded to (column, value) pairs and grouped with the labels and
predictions (binary ranking metrics use 1,000 probability buckets per slice, so AUC is exact to ~1e-3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from goldsmith.config.models import LOWER_IS_BETTER, SliceConfig
from goldsmith.ml.base import Problem
from goldsmith.ml.metrics import (
    ClassificationCounts,
    classification_metrics,
    grouped_classification_counts,
    grouped_regression_sums,
    per_class_report,
    regression_metrics,
)

CLASS_SLICE = "(class)"
SLICE_BINS = 1000


@dataclass(frozen=True)
class SliceResult:
    """One slice: `slice_column` = value, its metric, the overall metric, and whether it is flagged."""

    slice_column: str
    slice_value: str
    metric: str
    value: float
    overall: float
    rows: int
    flagged: bool
    reason: str


def _worse_by(value: float, overall: float, metric: str) -> float:
    """How much worse `value` is than `overall` (positive = worse)."""
    return value - overall if metric in LOWER_IS_BETTER else overall - value


def _judge(column: str, value_name: str, metric: str, value: float, overall: float, rows: int,
           config: SliceConfig) -> SliceResult:
    if math.isnan(value) or math.isnan(overall):
        return SliceResult(column, value_name, metric, value, overall, rows, False, f"{metric} undefined")
    gap = _worse_by(value, overall, metric)
    if rows < config.min_rows:
        return SliceResult(column, value_name, metric, value, overall, rows, False,
                           f"{rows} rows < min_rows {config.min_rows}: not judged")
    if gap > config.margin:
        side = "above" if metric in LOWER_IS_BETTER else "below"
        return SliceResult(column, value_name, metric, value, overall, rows, True,
                           f"{metric} {value:.4f} is {gap:.4f} {side} overall {overall:.4f} (margin {config.margin})")
    return SliceResult(column, value_name, metric, value, overall, rows, False, "")


def class_slices(counts: ClassificationCounts, classes: Sequence[str], config: SliceConfig) -> list[SliceResult]:
    """Per class F1 against the mean F1 of all classes (plus recall and precision, never flagged)."""
    report = per_class_report(counts, classes)
    mean_f1 = sum(r["f1"] for r in report) / len(report) if report else math.nan
    results = []
    for r in report:
        results.append(_judge(CLASS_SLICE, str(r["class"]), "f1", r["f1"], mean_f1, r["support"], config))
        for metric in ("recall", "precision"):
            results.append(SliceResult(CLASS_SLICE, str(r["class"]), metric, r[metric], math.nan, r["support"],
                                       False, ""))
    return results


def column_slices(scored: DataFrame, problem: Problem, config: SliceConfig, metric: str,
                  overall: float) -> list[SliceResult]:
    """`metric` per value of each of `config.columns` (the most frequent `max_values` values of each)."""
    if not config.columns:
        return []
    pairs = F.explode(F.array(*[
        F.struct(F.lit(c).alias("column"), F.coalesce(F.col(c).cast("string"), F.lit("(null)")).alias("value"))
        for c in config.columns
    ])).alias("_slice")
    stacked = scored.select("*", pairs)
    groups = [F.col("_slice.column"), F.col("_slice.value")]
    values: dict[tuple[str, str], tuple[float, int]] = {}
    if problem.is_classifier:
        for (column, value), counts in grouped_classification_counts(
            stacked, problem.n_classes, groups, bins=SLICE_BINS
        ).items():
            values[(column, value)] = (
                classification_metrics(counts, problem.classes, problem.task).get(metric, math.nan), counts.n)
    else:
        for (column, value), sums in grouped_regression_sums(stacked, groups).items():
            values[(column, value)] = (regression_metrics(sums).get(metric, math.nan), sums.n)
    results = []
    for column in config.columns:
        found = sorted(((v, mv) for (c, v), mv in values.items() if c == column), key=lambda x: (-x[1][1], x[0]))
        for value_name, (value, rows) in found[: config.max_values]:
            results.append(_judge(column, value_name, metric, value, overall, rows, config))
    return results


def slice_report(scored: DataFrame, problem: Problem, config: SliceConfig, metric: str, overall: float,
                 counts: ClassificationCounts | None) -> list[SliceResult]:
    """Class slices (classification) then column slices, flagged ones marked."""
    results = class_slices(counts, problem.classes, config) if counts is not None else []
    return [*results, *column_slices(scored, problem, config, metric, overall)]


def slice_records(slices: Sequence[SliceResult]) -> list[dict[str, Any]]:
    """Every slice as an `ops.slice_metrics` row, without the run's and the model version's columns."""
    return [{
        "dataset": "test", "slice_column": r.slice_column, "slice_value": r.slice_value, "metric": r.metric,
        "value": None if math.isnan(r.value) else float(r.value),
        "overall": None if math.isnan(r.overall) else float(r.overall), "rows": r.rows, "flagged": r.flagged,
        "reason": r.reason,
    } for r in slices]
