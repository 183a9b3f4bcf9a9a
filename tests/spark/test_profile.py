"""Table profiles: every statistic checked against plain Python / numpy over the same inline rows."""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

from goldsmith.io.lakehouse import Lakehouse
from goldsmith.io.ops import SCHEMAS, OpsLog, now
from goldsmith.quality.profile import TableProfile, profile_frame

NAN = float("nan")
LONG = "z" * 150
# qty ties 10, 9 and 3 (count 2): numeric order puts 3 first, string order would put "10" first.
QTY = [10, 9, 10, 9, 3, None, 3, 1, 2, 5, None, 7]
PRICE = [2.5, 1.0, NAN, 3.5, None, 7.25, 0.5, 2.0, 4.0, 6.0, 1.5, 3.0]
FARE = ["1.50", "2.25", None, "1.50", "9.99", "3.00", "2.25", "4.10", "1.50", None, "7.00", "5.05"]
CARRIER = ["UA", "AA", "DL", "AA", "UA", None, "B6", "DL", "AA", LONG, "UA", LONG]
DELAYED = [True, False, True, None, True, False, True, True, False, None, True, False]
DAY = [date(2024, 1, d) if d else None for d in (3, 1, 3, 2, None, 3, 1, 2, 3, 4, 1, 3)]
CONST = [7, 7, None, 7, 7, 7, 7, 7, 7, 7, 7, 7]
TAGS = [["a"], None, [], ["b", "c"], ["a"], None, ["x"], [], ["y"], ["z"], None, ["q"]]
SCHEMA = (
    "qty INT, price DOUBLE, fare DECIMAL(6,2), carrier STRING, is_delayed BOOLEAN, flight_date DATE, "
    "const INT, empty INT, tags ARRAY<STRING>"
)
COLUMNS: dict[str, list[Any]] = {
    "qty": QTY, "price": PRICE, "fare": [Decimal(f) if f else None for f in FARE], "carrier": CARRIER,
    "is_delayed": DELAYED, "flight_date": DAY, "const": CONST, "empty": [None] * len(QTY), "tags": TAGS,
}
TOP_K = 4
BINS = 4
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}


@pytest.fixture(scope="module")
def profile(spark: SparkSession) -> TableProfile:
    rows = list(zip(*COLUMNS.values(), strict=True))
    return profile_frame(spark.createDataFrame(rows, SCHEMA), top_k=TOP_K, bins=BINS)


def present(values: list[Any]) -> list[Any]:
    """Non-null, non-NaN values: what the profile counts as present."""
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def column(profile: TableProfile, name: str) -> dict[str, Any]:
    return next(c for c in profile.columns if c["column_name"] == name)


def expected_top(values: list[Any], shown: Any = str) -> list[dict[str, Any]]:
    counts = Counter(present(values))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_K]
    return [{"value": shown(v), "count": n} for v, n in ranked]


def test_one_dict_per_column_with_the_ops_schema_keys(profile: TableProfile) -> None:
    caller_keys = {"run_id", "pipeline", "table_name", "table_version", "profiled_at"}
    schema = StructType.fromDDL(SCHEMAS["profiles"])
    assert isinstance(schema, StructType)
    profile_keys = set(schema.fieldNames()) - caller_keys
    assert profile_keys == {
        "column_name", "data_type", "rows", "nulls", "distinct_approx", "min_value", "max_value", "mean", "stddev",
        "quantiles", "top_values", "histogram",
    }
    assert profile.rows == len(QTY)
    assert [c["column_name"] for c in profile.columns] == list(COLUMNS)
    assert all(set(c) == profile_keys for c in profile.columns)
    assert [c["data_type"] for c in profile.columns] == [
        "int", "double", "decimal(6,2)", "string", "boolean", "date", "int", "int", "array<string>"
    ]
    for pair in profile.correlations:
        assert set(pair) == {"column_a", "column_b", "pearson", "rows"}


@pytest.mark.parametrize("name", ["qty", "price", "fare"])
def test_numeric_statistics(profile: TableProfile, name: str) -> None:
    values = present(COLUMNS[name])
    floats = [float(v) for v in values]
    found = column(profile, name)
    assert found["rows"] == len(QTY)
    assert found["nulls"] == len(QTY) - len(values)
    assert found["distinct_approx"] == len(set(values))
    assert (found["min_value"], found["max_value"]) == (str(min(values)), str(max(values)))
    assert found["mean"] == pytest.approx(statistics.fmean(floats))
    assert found["stddev"] == pytest.approx(statistics.stdev(floats))
    # percentile_approx on a few rows is exact and returns an element: numpy's inverted-CDF quantile.
    assert found["quantiles"] == {
        key: pytest.approx(float(np.quantile(floats, q, method="inverted_cdf"))) for key, q in QUANTILES.items()
    }


@pytest.mark.parametrize("name", ["qty", "price", "fare"])
def test_histogram_matches_numpy(profile: TableProfile, name: str) -> None:
    floats = [float(v) for v in present(COLUMNS[name])]
    counts, edges = np.histogram(floats, bins=BINS, range=(min(floats), max(floats)))
    histogram = column(profile, name)["histogram"]
    assert [b["count"] for b in histogram] == counts.tolist()
    assert sum(b["count"] for b in histogram) == len(floats)
    assert [b["lower"] for b in histogram] == pytest.approx(edges[:-1].tolist())
    assert [b["upper"] for b in histogram] == pytest.approx(edges[1:].tolist())


def test_all_equal_values_make_one_bin(profile: TableProfile) -> None:
    found = column(profile, "const")
    assert found["histogram"] == [{"lower": 7.0, "upper": 7.0, "count": 11}]
    assert found["stddev"] == 0.0


def test_top_values_of_low_cardinality_numbers_rank_ties_by_numeric_value(profile: TableProfile) -> None:
    assert column(profile, "qty")["top_values"] == expected_top(QTY)
    assert [t["value"] for t in column(profile, "qty")["top_values"]][:3] == ["3", "9", "10"]
    assert column(profile, "price")["top_values"] == expected_top(PRICE)  # NaN is not a value


def test_string_column(profile: TableProfile) -> None:
    values = present(CARRIER)
    found = column(profile, "carrier")
    assert found["nulls"] == 1
    assert found["distinct_approx"] == len(set(values))
    assert (found["min_value"], found["max_value"]) == (min(values), max(values)[:100])
    assert found["mean"] == pytest.approx(statistics.fmean(len(v) for v in values))  # mean length in characters
    assert found["stddev"] is None and found["quantiles"] is None and found["histogram"] is None
    assert found["top_values"] == expected_top(CARRIER, lambda v: v[:100])
    assert found["top_values"][:2] == [{"value": "AA", "count": 3}, {"value": "UA", "count": 3}]
    assert found["top_values"][3] == {"value": "z" * 100, "count": 2}  # long values are shown cut


def test_boolean_and_date_columns(profile: TableProfile) -> None:
    flags = column(profile, "is_delayed")
    assert (flags["nulls"], flags["distinct_approx"], flags["min_value"], flags["max_value"]) == (2, 2, "false", "true")
    assert flags["top_values"] == expected_top(DELAYED, lambda v: str(v).lower())
    days = column(profile, "flight_date")
    assert (days["nulls"], days["distinct_approx"]) == (1, len(set(present(DAY))))
    assert (days["min_value"], days["max_value"]) == (str(min(present(DAY))), str(max(present(DAY))))
    assert days["top_values"] == expected_top(DAY, lambda v: v.isoformat())
    for found in (flags, days):
        assert found["mean"] is None and found["quantiles"] is None and found["histogram"] is None


def test_all_null_and_complex_columns_have_counts_only(profile: TableProfile) -> None:
    empty = column(profile, "empty")
    assert (empty["rows"], empty["nulls"], empty["distinct_approx"]) == (len(QTY), len(QTY), 0)
    assert empty["min_value"] is None and empty["mean"] is None and empty["quantiles"] is None
    assert empty["histogram"] is None and empty["top_values"] == []
    tags = column(profile, "tags")
    assert (tags["rows"], tags["nulls"]) == (len(QTY), TAGS.count(None))
    assert all(tags[k] is None for k in ("distinct_approx", "min_value", "mean", "top_values", "histogram"))


def test_correlations_over_pairwise_complete_rows(profile: TableProfile) -> None:
    numeric = ["qty", "price", "fare", "const", "empty"]
    assert [(p["column_a"], p["column_b"]) for p in profile.correlations] == [
        (a, b) for i, a in enumerate(numeric) for b in numeric[i + 1:]
    ]
    by_pair = {(p["column_a"], p["column_b"]): p for p in profile.correlations}
    for a, b in [("qty", "price"), ("qty", "fare"), ("price", "fare")]:
        both = [(x, y) for x, y in zip(COLUMNS[a], COLUMNS[b], strict=True) if present([x]) and present([y])]
        xs, ys = np.array(both, dtype=float).T
        assert by_pair[a, b]["rows"] == len(both)
        assert by_pair[a, b]["pearson"] == pytest.approx(float(np.corrcoef(xs, ys)[0, 1]))
    assert by_pair["qty", "const"]["pearson"] is None  # a constant column has no correlation
    assert by_pair["qty", "empty"] == {"column_a": "qty", "column_b": "empty", "pearson": None, "rows": 0}


def test_empty_frame(spark: SparkSession) -> None:
    found = profile_frame(spark.createDataFrame([], "a INT, b DOUBLE, s STRING"))
    assert found.rows == 0
    for c in found.columns:
        assert (c["rows"], c["nulls"], c["distinct_approx"]) == (0, 0, 0)
        assert all(c[k] is None for k in ("min_value", "max_value", "mean", "stddev", "quantiles", "histogram"))
        assert c["top_values"] is None
    assert found.correlations == [{"column_a": "a", "column_b": "b", "pearson": None, "rows": 0}]


def test_columns_beyond_max_columns_are_skipped_with_a_warning(
    spark: SparkSession, caplog: pytest.LogCaptureFixture
) -> None:
    df = spark.createDataFrame([(1, 2.0, "x"), (2, 3.0, None)], "a INT, b DOUBLE, s STRING")
    with caplog.at_level(logging.WARNING, logger="goldsmith"):
        found = profile_frame(df, max_columns=2, correlation_columns=0)
    assert [c["column_name"] for c in found.columns] == ["a", "b"]
    assert found.correlations == []
    assert "s" in caplog.text and "max_columns=2" in caplog.text


def test_a_profile_runs_six_spark_jobs(spark: SparkSession) -> None:
    # Statistics (2 jobs), correlations (1), top values and histograms (3): with two numeric columns every pass runs.
    df = spark.createDataFrame([(1, 2.0, "x"), (2, 3.5, "y"), (None, 1.0, "x")], "a INT, b DOUBLE, s STRING")
    sc = spark.sparkContext
    sc.setJobGroup("profile-jobs", "count the jobs of one profile")
    try:
        found = profile_frame(df)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    assert found.correlations[0]["pearson"] is not None
    assert len(sc.statusTracker().getJobIdsForGroup("profile-jobs")) <= 6


def test_rows_fit_the_ops_tables(spark: SparkSession, profile: TableProfile, tmp_path: Path) -> None:
    lakehouse = Lakehouse(spark, str(tmp_path))
    ops = OpsLog(lakehouse)
    caller = {"pipeline": "flights", "table_name": "silver.flights", "table_version": 3, "profiled_at": now()}
    # OpsLog writes more than 16 rows through createDataFrame (type-checked) and fewer as literals: try both.
    runs = [{**c, **caller, "run_id": run} for run in ("r1", "r2") for c in profile.columns]
    ops.append("profiles", runs)
    assert len(profile.correlations) <= 16
    ops.append("profile_correlations", [{**p, **caller, "run_id": "r1"} for p in profile.correlations])
    assert set(lakehouse.attach()) == {"ops.profiles", "ops.profile_correlations"}

    written = spark.table("ops.profiles").collect()
    assert len(written) == len(runs)
    for row in written:
        stored = row.asDict(recursive=True)
        assert {k: stored[k] for k in profile.columns[0]} == column(profile, stored["column_name"])
    pairs = [r.asDict() for r in spark.table("ops.profile_correlations").collect()]
    assert sorted((p["column_a"], p["column_b"], p["pearson"], p["rows"]) for p in pairs) == sorted(
        (p["column_a"], p["column_b"], p["pearson"], p["rows"]) for p in profile.correlations
    )
