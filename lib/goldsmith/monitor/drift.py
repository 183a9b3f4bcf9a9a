"""Drift of feature columns between a baseline and a window: PSI, Jensen-Shannon divergence and the KS statistic.

Buckets:

- Numeric column: the edges e_1 < ... < e_k are the baseline's exact quantiles at 1/bins, ..., (bins-1)/bins, where
  the quantile at p is the smallest non-null baseline value x with F_baseline(x) >= p (numpy's
  `method="inverted_cdf"`); equal edges are merged. The bins are (-inf, e_1], (e_1, e_2], ..., (e_k, +inf) plus one
  bin for null. NaN counts as null.
- Categorical column: the `max_categories` most frequent non-null baseline values (a tie goes to the smaller value),
  "(other)" for every other value and "(null)" for null. Values are compared as strings.

Metrics, with b_i and a_i the baseline and window proportions of bucket i:

- PSI = sum_i (a_i - b_i) * ln(a_i / b_i), where each proportion is first floored at 1e-4 (`PSI_FLOOR`, no
  renormalisation), so a bucket empty on one side adds a large but finite term.
- JS = 0.5 * sum_i a_i ln(a_i / m_i) + 0.5 * sum_i b_i ln(b_i / m_i), m = (a + b) / 2, on the unsmoothed proportions
  (0 ln 0 = 0): natural log, so in [0, ln 2].
- KS (numeric only) = sup_x |F_baseline(x) - F_window(x)| over the non-null values: the statistic of
  `scipy.stats.ks_2samp`.

A value is NaN when undefined: a side without rows (PSI, JS) or without non-null values (KS). With `period`, every
metric is computed for the whole window (period "all") and for each distinct value of the window's period column
(as a string; null is "(null)"), always against the whole baseline. A period value "all" would be ambiguous.

On Spark: both sides are stacked into (side, period, column, value) rows and counted per distinct value in one
aggregation. Window functions partitioned by column and ordered by value give each distinct value the number of
baseline values below it (which is its quantile bin, so no separate quantile pass), its baseline frequency rank
(categorical) and both empirical CDFs (KS). A last aggregation leaves one row per (column, side, period, bucket);
only those rows are collected. `drift_metrics` runs one Spark action (two shuffles: with adaptive execution, three
jobs in all, whatever the number of columns and periods) and caches nothing. Each side is scanned once. The distinct
values of one column meet in one task, so that task's work grows with the column's number of distinct values.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from goldsmith.errors import SchemaMismatch

logger = logging.getLogger(__name__)

PSI_FLOOR = 1e-4
ALL = "all"
NULL_BUCKET = "(null)"
OTHER_BUCKET = "(other)"

_BASELINE = "baseline"
_WINDOW = "window"


@dataclass(frozen=True)
class DriftResult:
    """One drift metric of one column in one period of the window."""

    column: str
    kind: str
    period: str
    metric: str
    value: float
    baseline_rows: int
    window_rows: int


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of `actual` (window) against `expected` (baseline).

    Both are counts or proportions per bucket, in the same order. Each side is normalised to proportions, which are
    floored at `PSI_FLOOR`. NaN when a side sums to 0.
    """
    baseline, window = _proportions_pair(expected, actual)
    if baseline is None or window is None:
        return math.nan
    total = 0.0
    for b, a in zip(baseline, window, strict=True):
        b, a = max(b, PSI_FLOOR), max(a, PSI_FLOOR)
        total += (a - b) * math.log(a / b)
    return total


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence of two distributions (counts or proportions per bucket), natural log.

    In [0, ln 2]; 0 for identical distributions, ln 2 for disjoint ones. NaN when a side sums to 0.
    """
    p_norm, q_norm = _proportions_pair(p, q)
    if p_norm is None or q_norm is None:
        return math.nan
    total = 0.0
    for pi, qi in zip(p_norm, q_norm, strict=True):
        mi = (pi + qi) / 2
        if pi > 0:
            total += 0.5 * pi * math.log(pi / mi)
        if qi > 0:
            total += 0.5 * qi * math.log(qi / mi)
    return min(max(total, 0.0), math.log(2))  # rounding can step just outside the bounds


def _proportions_pair(
    first: Sequence[float], second: Sequence[float]
) -> tuple[list[float] | None, list[float] | None]:
    if len(first) != len(second):
        raise ValueError(f"distributions differ in length: {len(first)} and {len(second)} buckets")
    return _proportions(first), _proportions(second)


def _proportions(counts: Sequence[float]) -> list[float] | None:
    values = [float(c) for c in counts]
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"bucket counts must be finite and non-negative, got {values}")
    total = sum(values)
    return None if total == 0 else [v / total for v in values]


def drift_metrics(
    baseline: DataFrame,
    window: DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    period: str | None = None,
    bins: int = 10,
    max_categories: int = 50,
) -> list[DriftResult]:
    """PSI, JS and (numeric) KS of each column, window against baseline, as defined in the module docstring.

    Results come period by period ("all" first, then the periods in string order), column by column (numeric, then
    categorical, in the given order), metric by metric (psi, js, ks). Raises `SchemaMismatch` when a column is
    missing or a numeric column is not numeric, `ValueError` for a bad argument.
    """
    numeric, categorical = list(numeric), list(categorical)
    _check_arguments(baseline, window, numeric, categorical, period, bins, max_categories)
    if not numeric and not categorical:
        return []
    stacked_df = _stacked(baseline, _BASELINE, numeric, categorical, None).unionByName(
        _stacked(window, _WINDOW, numeric, categorical, period)
    )
    counts_df = stacked_df.groupBy("side", "period_key", "column", "num", "cat").agg(F.count(F.lit(1)).alias("n"))
    rows = (
        _with_bucket_and_ks_gap(counts_df, bins, max_categories)
        .groupBy("column", "side", "period_key", "bucket")
        .agg(F.sum("n").alias("n"), F.max("ks_gap").alias("ks_gap"))
        .collect()
    )
    logger.debug("drift: %d bucket rows for %d columns", len(rows), len(numeric) + len(categorical))
    return _results(rows, numeric, categorical)


def _check_arguments(
    baseline: DataFrame,
    window: DataFrame,
    numeric: list[str],
    categorical: list[str],
    period: str | None,
    bins: int,
    max_categories: int,
) -> None:
    if bins < 2:
        raise ValueError(f"drift: bins must be at least 2, got {bins}")
    if max_categories < 1:
        raise ValueError(f"drift: max_categories must be at least 1, got {max_categories}")
    names = [*numeric, *categorical]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"drift: columns listed more than once (numeric and categorical together): {repeated}")
    for side, df in ((_BASELINE, baseline), (_WINDOW, window)):
        types = {f.name: f.dataType for f in df.schema.fields}
        missing = [n for n in names if n not in types]
        if missing:
            raise SchemaMismatch(f"drift: the {side} has no column {missing}; its columns are {sorted(types)}")
        not_numeric = {n: types[n].simpleString() for n in numeric if not isinstance(types[n], T.NumericType)}
        if not_numeric:
            raise SchemaMismatch(
                f"drift: numeric columns of the {side} are not numeric: {not_numeric}; cast them or list them as "
                "categorical"
            )
    if period is not None and period not in window.columns:
        raise SchemaMismatch(f"drift: the window has no period column {period!r}; its columns are {window.columns}")


def _col(name: str) -> Column:
    """A top-level column by its exact name, even with dots or backticks in it."""
    return F.col("`" + name.replace("`", "``") + "`")


def _stacked(
    df: DataFrame, side: str, numeric: list[str], categorical: list[str], period: str | None
) -> DataFrame:
    """One row per (input row, column, period key): side, period_key, column, num (numeric), cat (categorical).

    `period_key` null is the whole side; with `period`, each window row also appears under its own period.
    """
    no_num, no_cat = F.lit(None).cast("double"), F.lit(None).cast("string")
    period_keys = [no_cat]
    if period is not None:
        period_keys.append(F.coalesce(_col(period).cast("string"), F.lit(NULL_BUCKET)))
    values = [(name, F.nanvl(_col(name).cast("double"), no_num), no_cat) for name in numeric]
    values += [(name, no_num, _col(name).cast("string")) for name in categorical]
    cells = [
        F.struct(key.alias("period_key"), F.lit(name).alias("column"), num.alias("num"), cat.alias("cat"))
        for key in period_keys
        for name, num, cat in values
    ]
    return df.select(F.lit(side).alias("side"), F.explode(F.array(*cells)).alias("cell")).select(
        "side", "cell.period_key", "cell.column", "cell.num", "cell.cat"
    )


def _with_bucket_and_ks_gap(counts_df: DataFrame, bins: int, max_categories: int) -> DataFrame:
    """Each distinct (side, period, column, value) count with its bucket and, for window values, its KS gap.

    For a window value w: baseline_le / baseline_eq count the baseline values <= w / == w, own_le the values <= w of
    w's own sample (its side and period). D- = F_window - F_baseline peaks at a window value; D+ = F_baseline -
    F_window peaks just before the next window value, where both CDFs are their left limits at that value. So
    max(0, max over window values of both gaps) is the KS statistic.
    """
    is_present = F.col("num").isNotNull() | F.col("cat").isNotNull()
    present_n = F.when(is_present, F.col("n")).otherwise(F.lit(0))
    baseline_n = F.when(F.col("side") == _BASELINE, present_n).otherwise(F.lit(0))
    by_column = Window.partitionBy("column")
    by_value = Window.partitionBy("column", "num", "cat")
    by_sample = Window.partitionBy("column", "side", "period_key")
    up_to = (Window.unboundedPreceding, Window.currentRow)  # a range frame: ties with the current value included
    cdf_df = counts_df.select(
        "*",
        F.sum(baseline_n).over(by_column.orderBy("num").rangeBetween(*up_to)).alias("baseline_le"),
        F.sum(baseline_n).over(by_value).alias("baseline_eq"),
        F.sum(baseline_n).over(by_column).alias("baseline_total"),
        F.sum(present_n).over(by_sample.orderBy("num").rangeBetween(*up_to)).alias("own_le"),
        F.sum(present_n).over(by_sample).alias("own_total"),
    )
    rank_order = by_column.orderBy(F.col("baseline_eq").desc(), F.col("cat").asc_nulls_last())
    ranked_df = cdf_df.select("*", F.dense_rank().over(rank_order).alias("cat_rank"))

    baseline_lt = F.col("baseline_le") - F.col("baseline_eq")
    own_lt = F.col("own_le") - F.col("n")
    baseline_total, own_total = F.col("baseline_total"), F.col("own_total")
    # The bin of v is the number of edges below v: edge j (quantile j/bins) is below v exactly when the share of
    # baseline values below v is at least j/bins.
    below_share_bins = F.coalesce(F.try_divide(baseline_lt * bins, baseline_total), F.lit(0.0))
    numeric_bin = F.least(F.lit(bins - 1), F.floor(below_share_bins))
    is_top_category = (F.col("baseline_eq") > 0) & (F.col("cat_rank") <= max_categories)
    bucket = (
        F.when(~is_present, F.lit(NULL_BUCKET))
        .when(F.col("cat").isNotNull() & is_top_category, F.concat(F.lit("="), F.col("cat")))
        .when(F.col("cat").isNotNull(), F.lit(OTHER_BUCKET))
        .otherwise(numeric_bin.cast("string"))
    )
    ks_gap = F.when(
        (F.col("side") == _WINDOW) & F.col("num").isNotNull(),
        F.greatest(
            F.try_divide(baseline_lt, baseline_total) - F.try_divide(own_lt, own_total),
            F.try_divide(F.col("own_le"), own_total) - F.try_divide(F.col("baseline_le"), baseline_total),
        ),
    )
    return ranked_df.select("column", "side", "period_key", bucket.alias("bucket"), "n", ks_gap.alias("ks_gap"))


def _results(rows: Iterable[Any], numeric: list[str], categorical: list[str]) -> list[DriftResult]:
    counts: dict[tuple[str, str, str | None], dict[str, int]] = defaultdict(dict)
    ks: dict[tuple[str, str | None], float] = {}
    periods: set[str] = set()
    for row in rows:
        counts[(row["column"], row["side"], row["period_key"])][row["bucket"]] = int(row["n"])
        if row["side"] == _WINDOW and row["period_key"] is not None:
            periods.add(row["period_key"])
        if row["ks_gap"] is not None:
            key = (row["column"], row["period_key"])
            ks[key] = max(ks.get(key, 0.0), float(row["ks_gap"]))

    results: list[DriftResult] = []
    for period_key in [None, *sorted(periods)]:
        for kind, names in (("numeric", numeric), ("categorical", categorical)):
            for name in names:
                baseline_counts = counts.get((name, _BASELINE, None), {})
                window_counts = counts.get((name, _WINDOW, period_key), {})
                buckets = sorted(baseline_counts.keys() | window_counts.keys())
                expected = [baseline_counts.get(b, 0) for b in buckets]
                actual = [window_counts.get(b, 0) for b in buckets]
                values = {"psi": psi(expected, actual), "js": js_divergence(expected, actual)}
                if kind == "numeric":
                    values["ks"] = ks.get((name, period_key), math.nan)
                results.extend(
                    DriftResult(
                        column=name,
                        kind=kind,
                        period=ALL if period_key is None else period_key,
                        metric=metric,
                        value=value,
                        baseline_rows=sum(expected),
                        window_rows=sum(actual),
                    )
                    for metric, value in values.items()
                )
    return results
