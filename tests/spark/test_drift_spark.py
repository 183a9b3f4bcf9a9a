"""Drift metrics on Spark against scipy, numpy and hand-worked buckets."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from goldsmith.errors import SchemaMismatch
from goldsmith.monitor.drift import PSI_FLOOR, DriftResult, drift_metrics


def frame(spark: SparkSession, schema: str, *columns: Iterable[Any]) -> DataFrame:
    """A DataFrame from equal-length columns; NaN floats become null."""

    def cell(v: Any) -> Any:
        if isinstance(v, float | np.floating):
            return None if math.isnan(v) else float(v)
        return v

    return spark.createDataFrame([tuple(cell(v) for v in row) for row in zip(*columns, strict=True)], schema)


def by_key(results: list[DriftResult]) -> dict[tuple[str, str, str], DriftResult]:
    keyed = {(r.column, r.period, r.metric): r for r in results}
    assert len(keyed) == len(results)
    return keyed


def numpy_psi(b: np.ndarray, a: np.ndarray) -> float:
    bp, ap = np.maximum(b / b.sum(), PSI_FLOOR), np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((ap - bp) * np.log(ap / bp)))


def numpy_bin_counts(baseline: np.ndarray, window: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts per quantile bin (edge j = the ceil(n*j/bins)-th smallest baseline value), nulls last."""
    values = np.sort(baseline[~np.isnan(baseline)])
    n = len(values)
    edges = np.unique([values[-(-n * j // bins) - 1] for j in range(1, bins)])

    def counts(x: np.ndarray) -> np.ndarray:
        present = x[~np.isnan(x)]
        binned = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
        return np.append(binned, np.isnan(x).sum())

    return counts(baseline), counts(window)


def test_two_bins_and_ks_by_hand(spark: SparkSession) -> None:
    baseline_df = frame(spark, "x DOUBLE", [1.0, 2.0, 3.0, 4.0, None])
    window_df = frame(spark, "x DOUBLE", [2.0, 3.0, 4.0, 5.0])
    got = by_key(drift_metrics(baseline_df, window_df, numeric=["x"], categorical=[], bins=2))
    # edge = median = 2 (the smallest x with F(x) >= 1/2); bins (-inf, 2], (2, inf), null
    # baseline [2, 2, 1] / 5, window [1, 3, 0] / 4 (2.0 itself falls in the first bin)
    by_hand = (0.25 - 0.4) * math.log(0.25 / 0.4) + (0.75 - 0.4) * math.log(0.75 / 0.4)
    by_hand += (PSI_FLOOR - 0.2) * math.log(PSI_FLOOR / 0.2)  # the window has no null: floored
    assert got["x", "all", "psi"].value == pytest.approx(by_hand, rel=1e-12)
    # F_baseline - F_window at 1, 2, 3, 4: 0.25, 0.25, 0.25, 0.25; then 1 - 1 = 0
    assert got["x", "all", "ks"].value == pytest.approx(0.25)
    assert (got["x", "all", "ks"].baseline_rows, got["x", "all", "ks"].window_rows) == (5, 4)


def test_matches_scipy_and_numpy_with_ties_and_nulls(spark: SparkSession) -> None:
    rng = np.random.default_rng(11)
    base_x = rng.integers(0, 25, 600).astype(float)  # many ties
    base_y = np.round(rng.normal(0, 1, 600), 1)
    win_x = rng.integers(3, 30, 400).astype(float)
    win_y = np.round(rng.normal(0.3, 1.2, 400), 1)
    base_x[:7] = np.nan
    win_y[:40] = np.nan
    week = np.where(np.arange(400) % 3 == 0, "2024-01-01", "2024-01-08")
    baseline_df = frame(spark, "x DOUBLE, y DOUBLE", base_x, base_y)
    window_df = frame(spark, "x INT, y DOUBLE, week STRING", [None if math.isnan(v) else int(v) for v in win_x],
                      win_y, week)
    got = by_key(drift_metrics(baseline_df, window_df, numeric=["x", "y"], categorical=[], period="week", bins=8))

    assert {k[1] for k in got} == {"all", "2024-01-01", "2024-01-08"}
    for name, base, win in (("x", base_x, win_x), ("y", base_y, win_y)):
        for period, mask in (("all", week == week), ("2024-01-01", week == "2024-01-01"),
                             ("2024-01-08", week == "2024-01-08")):
            part = win[mask]
            expected_ks = ks_2samp(base[~np.isnan(base)], part[~np.isnan(part)]).statistic
            assert got[name, period, "ks"].value == pytest.approx(expected_ks, abs=1e-12)
            b_counts, a_counts = numpy_bin_counts(base, part, bins=8)
            assert got[name, period, "psi"].value == pytest.approx(numpy_psi(b_counts, a_counts), rel=1e-9)
            assert got[name, period, "js"].value == pytest.approx(jensenshannon(b_counts, a_counts) ** 2, rel=1e-9)
            assert (got[name, period, "psi"].baseline_rows, got[name, period, "psi"].window_rows) == (600, mask.sum())


def test_shift_and_resample(spark: SparkSession) -> None:
    rng = np.random.default_rng(5)
    baseline_df = frame(spark, "shifted DOUBLE, steady DOUBLE", rng.normal(0, 1, 1000), rng.normal(0, 1, 1000))
    window_df = frame(spark, "shifted DOUBLE, steady DOUBLE", rng.normal(1, 1, 1000), rng.normal(0, 1, 1000))
    got = by_key(drift_metrics(baseline_df, window_df, numeric=["shifted", "steady"], categorical=[]))
    assert got["shifted", "all", "psi"].value > 0.2
    assert got["shifted", "all", "ks"].value > 0.1
    assert got["steady", "all", "psi"].value < 0.05
    assert got["steady", "all", "ks"].value < 0.1


def test_categorical_mix_change_and_other_bucket(spark: SparkSession) -> None:
    base_mix = ["a"] * 500 + ["b"] * 300 + ["c"] * 200
    win_mix = ["a"] * 200 + ["b"] * 300 + ["c"] * 500
    baseline_df = frame(spark, "mix STRING, steady STRING", base_mix, base_mix)
    window_df = frame(spark, "mix STRING, steady STRING", win_mix, base_mix[::-1])
    got = by_key(drift_metrics(baseline_df, window_df, numeric=[], categorical=["mix", "steady"]))
    assert got["mix", "all", "js"].value > 0.05  # by hand: 0.5 ln(0.5/0.35) + 0.2 ln(0.2/0.35) = 0.066
    assert got["mix", "all", "psi"].value > 0.2
    assert got["steady", "all", "js"].value == pytest.approx(0.0, abs=1e-12)
    assert ("mix", "all", "ks") not in got

    # max_categories=2 keeps a and b (b beats c on the tie by value); c and d are "(other)"
    baseline_df = frame(spark, "c STRING", ["a"] * 4 + ["c"] * 3 + ["b"] * 3 + [None])
    window_df = frame(spark, "c STRING", ["a"] + ["b"] * 2 + ["c"] * 4 + ["d"] + [None] * 2)
    got = by_key(drift_metrics(baseline_df, window_df, numeric=[], categorical=["c"], max_categories=2))
    b_counts, a_counts = np.array([4, 3, 3, 1]), np.array([1, 2, 5, 2])  # a, b, (other), (null)
    assert got["c", "all", "psi"].value == pytest.approx(numpy_psi(b_counts, a_counts), rel=1e-12)
    assert got["c", "all", "js"].value == pytest.approx(jensenshannon(b_counts, a_counts) ** 2, rel=1e-9)


def test_only_the_shifted_period_is_flagged(spark: SparkSession) -> None:
    rng = np.random.default_rng(8)
    baseline_df = frame(spark, "x DOUBLE", rng.normal(0, 1, 1000))
    x = np.concatenate([rng.normal(0, 1, 750), rng.normal(1, 1, 750)])
    week = ["2024-01-01"] * 750 + ["2024-01-08"] * 750
    window_df = frame(spark, "x DOUBLE, week DATE", x, [np.datetime64(w).item() for w in week])
    got = by_key(drift_metrics(baseline_df, window_df, numeric=["x"], categorical=[], period="week"))
    assert got["x", "2024-01-01", "psi"].value < 0.05
    assert got["x", "2024-01-08", "psi"].value > 0.2
    assert got["x", "2024-01-08", "ks"].value > 0.1
    assert [got["x", p, "psi"].window_rows for p in ("all", "2024-01-01", "2024-01-08")] == [1500, 750, 750]


def test_nulls_in_the_window_move_psi(spark: SparkSession) -> None:
    rng = np.random.default_rng(9)
    base = rng.normal(0, 1, 1000)
    win = rng.normal(0, 1, 1000)
    with_nulls = win.copy()
    with_nulls[rng.random(1000) < 0.3] = np.nan
    baseline_df = frame(spark, "x DOUBLE", base)
    window_df = frame(spark, "clean DOUBLE, x DOUBLE", win, with_nulls)
    got = by_key(drift_metrics(baseline_df, window_df.drop("x").withColumnRenamed("clean", "x"), numeric=["x"],
                               categorical=[]))
    got_nulls = by_key(drift_metrics(baseline_df, window_df.drop("clean"), numeric=["x"], categorical=[]))
    assert got["x", "all", "psi"].value < 0.05
    assert got_nulls["x", "all", "psi"].value > 0.2
    # KS only sees values: the nulls leave it where scipy puts it
    assert got_nulls["x", "all", "ks"].value == pytest.approx(ks_2samp(base, with_nulls[~np.isnan(with_nulls)])
                                                              .statistic, abs=1e-12)


def test_one_action_for_all_columns(spark: SparkSession) -> None:
    rng = np.random.default_rng(2)
    df = frame(spark, "a DOUBLE, b DOUBLE, c STRING, d STRING, week STRING", rng.normal(0, 1, 50),
               rng.normal(0, 1, 50), ["x", "y"] * 25, [None, "z"] * 25, ["w1"] * 25 + ["w2"] * 25)
    sc = spark.sparkContext
    sc.setJobGroup("drift-jobs", "count drift jobs")
    try:
        results = drift_metrics(df, df, numeric=["a", "b"], categorical=["c", "d"], period="week")
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]  # null clears it
    # one collect; adaptive execution runs each shuffle stage as its own job, whatever the number of columns
    assert len(sc.statusTracker().getJobIdsForGroup("drift-jobs")) <= 3
    assert len(results) == 3 * (2 * 3 + 2 * 2)
    assert all(r.value == pytest.approx(0.0, abs=1e-12) for r in results if r.period == "all")


def test_empty_window_and_bad_input(spark: SparkSession) -> None:
    baseline_df = frame(spark, "x DOUBLE, c STRING, s STRING", [1.0, 2.0, None], ["a", None, "b"], ["1", "2", "3"])
    empty_df = baseline_df.limit(0)
    got = by_key(drift_metrics(baseline_df, empty_df, numeric=["x"], categorical=["c"], period="s"))
    assert set(got) == {("x", "all", "psi"), ("x", "all", "js"), ("x", "all", "ks"), ("c", "all", "psi"),
                        ("c", "all", "js")}
    assert all(math.isnan(r.value) and (r.baseline_rows, r.window_rows) == (3, 0) for r in got.values())

    with pytest.raises(SchemaMismatch, match="no column"):
        drift_metrics(baseline_df, baseline_df.drop("c"), numeric=["x"], categorical=["c"])
    with pytest.raises(SchemaMismatch, match="not numeric"):
        drift_metrics(baseline_df, baseline_df, numeric=["s"], categorical=[])
    with pytest.raises(SchemaMismatch, match="period"):
        drift_metrics(baseline_df, baseline_df, numeric=["x"], categorical=[], period="week")
