"""Bias metrics on Spark: the one-aggregation path equals the pure path, and real bias shows up."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

import pytest
from pyspark.sql import DataFrame, SparkSession

from goldsmith.errors import SchemaMismatch
from goldsmith.quality.bias import BiasResult, CountRow, bias_metrics, check_bias_gates, metrics_from_counts

SCHEMA = "origin STRING, carrier STRING, is_delayed BOOLEAN, predicted BOOLEAN"
ROWS = [
    ("EWR", "UA", True, True), ("EWR", "UA", False, True), ("EWR", "B6", False, False), ("EWR", "B6", True, False),
    ("EWR", "UA", False, False), ("JFK", "UA", True, True), ("JFK", "B6", True, True), ("JFK", "B6", False, True),
    ("JFK", "UA", False, False), ("LGA", "UA", True, False), ("LGA", "B6", True, True), ("LGA", None, False, False),
    (None, "UA", True, True), ("JFK", "B6", None, True), ("LGA", "UA", False, None),
]


def as_string(value: object) -> str | None:
    """What Spark's cast to string gives for these columns."""
    return None if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def counts_of(rows: Sequence[tuple[object, ...]], *, group: bool, prediction: bool) -> list[CountRow]:
    seen = Counter(
        (as_string(f), as_string(g) if group else None, as_string(y), as_string(p) if prediction else None)
        for f, g, y, p in rows
        if y is not None
    )
    return [(*key, n) for key, n in seen.items()]


def same(left: list[BiasResult], right: list[BiasResult]) -> bool:
    def key(r: BiasResult) -> tuple[object, ...]:
        return (r.stage, r.facet_value, r.label_value, r.metric, r.n_a, r.n_d)

    if sorted(map(key, left)) != sorted(map(key, right)):
        return False
    values = {key(r): r.value for r in right}
    return all(
        (math.isnan(r.value) and math.isnan(values[key(r)])) or r.value == pytest.approx(values[key(r)]) for r in left
    )


@pytest.fixture(scope="module")
def flights_df(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(ROWS, SCHEMA)


def test_spark_path_equals_pure_path(flights_df: DataFrame) -> None:
    got = bias_metrics(flights_df, facet="origin", label="is_delayed", prediction="predicted",
                       positive_values=["true", "false"], group="carrier")
    expected = metrics_from_counts(counts_of(ROWS, group=True, prediction=True), facet="origin",
                                   positive_values=["true", "false"], post_training=True)
    assert len(got) == 3 * 2 * (8 + 11)  # three origins, two classes, all metrics
    assert same(got, expected)
    # the null-label row is ignored, the null-prediction row only leaves the post-training counts
    ewr = {(r.stage, r.n_a, r.n_d) for r in got if r.facet_value == "EWR"}
    assert ewr == {("pre_training", 9, 5), ("post_training", 8, 5)}


def test_spark_path_without_prediction_or_group(flights_df: DataFrame) -> None:
    got = bias_metrics(flights_df, facet="origin", label="is_delayed", prediction=None, positive_values=["true"],
                       sensitive=["EWR", "LGA"])
    expected = metrics_from_counts(counts_of(ROWS, group=False, prediction=False), facet="origin",
                                   positive_values=["true"], sensitive=["EWR", "LGA"])
    assert {r.stage for r in got} == {"pre_training"}
    assert {r.facet_value for r in got} == {"EWR,LGA"}
    assert same(got, expected)


def synthetic_df(spark: SparkSession, rate_ewr: float, rate_other: float, seed: int) -> DataFrame:
    """2000 flights; the model predicts 'on time' (the favourable class) at a rate that depends on the origin."""
    rng = random.Random(seed)
    rows = []
    for _ in range(2000):
        origin = rng.choice(["EWR", "JFK", "LGA"])
        on_time = rng.random() < 0.5
        predicted = rng.random() < (rate_ewr if origin == "EWR" else rate_other)
        rows.append((origin, on_time, predicted))
    return spark.createDataFrame(rows, "origin STRING, on_time BOOLEAN, predicted BOOLEAN")


def test_biased_predictions_break_the_gates_and_unbiased_do_not(spark: SparkSession) -> None:
    limits: dict[str, tuple[float | None, float | None]] = {"dppl": (-0.1, 0.1), "di": (0.8, 1.25)}

    def run(df: DataFrame) -> tuple[dict[str, float], list[str]]:
        results = bias_metrics(df, facet="origin", label="on_time", prediction="predicted", positive_values=["true"],
                               sensitive=["EWR"])
        return {r.metric: r.value for r in results}, check_bias_gates(results, limits)

    biased, biased_breaches = run(synthetic_df(spark, rate_ewr=0.3, rate_other=0.7, seed=11))
    assert biased["dppl"] > 0.3  # about 0.7 - 0.3 = 0.4
    assert biased["di"] < 0.6  # about 0.3 / 0.7 = 0.43
    assert [m.split()[1] for m in biased_breaches] == ["dppl", "di"]

    fair, fair_breaches = run(synthetic_df(spark, rate_ewr=0.5, rate_other=0.5, seed=11))
    assert abs(fair["dppl"]) < 0.08
    assert 0.85 < fair["di"] < 1.15
    assert fair_breaches == []


def test_a_high_cardinality_facet_needs_sensitive(spark: SparkSession) -> None:
    df = spark.range(1001).selectExpr("id AS tail_number", "id % 2 = 0 AS on_time")
    with pytest.raises(SchemaMismatch, match=r"tail_number.*1001 distinct values.*sensitive="):
        bias_metrics(df, facet="tail_number", label="on_time", prediction=None, positive_values=["true"])
    results = bias_metrics(df, facet="tail_number", label="on_time", prediction=None, positive_values=["true"],
                           sensitive=["8"])
    assert {(r.n_a, r.n_d) for r in results} == {(1000, 1)}


def test_a_missing_column_is_a_clear_error(flights_df: DataFrame) -> None:
    with pytest.raises(SchemaMismatch, match=r"\['dest'\] not found"):
        bias_metrics(flights_df, facet="dest", label="is_delayed", prediction=None, positive_values=["true"])
