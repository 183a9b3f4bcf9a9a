"""Evaluation on Spark gives the same statistics as the numpy path."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import SparkSession

from goldsmith.config.models import ModelSpec
from goldsmith.ml.base import Problem
from goldsmith.ml.metrics import (
    classification_counts_numpy,
    classification_counts_spark,
    evaluate_numpy,
    evaluate_spark,
    regression_sums_numpy,
    regression_sums_spark,
)

SCHEMA = "_label INT, _pred INT, _proba ARRAY<DOUBLE>"


def problem(task: str, classes: tuple[str, ...] = ()) -> Problem:
    algorithm = "linear_regression" if task == "regression" else "logistic_regression"
    spec = ModelSpec.model_validate({
        "table": "gold.t", "label": "y", "keys": ["id"], "features": {"numeric": ["x"]}, "task": task,
        "split": {"method": "random"}, "trainer": {"backend": "spark-ml", "algorithm": algorithm},
    })
    return Problem(name="m", spec=spec, classes=classes)


def random_proba(rng: np.random.Generator, y: np.ndarray, k: int) -> np.ndarray:
    logits = rng.normal(0, 1, (len(y), k))
    logits[np.arange(len(y)), y] += 1.0
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_binary_counts_match_numpy(spark: SparkSession) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    proba = random_proba(rng, y, 2)
    proba[:3] = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]  # bucket edges and a probability of 0 for the true class
    y[:3] = [1, 1, 0]
    pred = (proba[:, 1] >= 0.5).astype(int)
    df = spark.createDataFrame([(int(a), int(b), [float(v) for v in p]) for a, b, p in zip(y, pred, proba,
                                                                                             strict=True)], SCHEMA)
    got = classification_counts_spark(df, 2)
    expected = classification_counts_numpy(y, proba, pred, 2)
    assert got.n == expected.n == 2000
    np.testing.assert_array_equal(got.confusion, expected.confusion)
    assert got.pos_hist is not None and expected.pos_hist is not None
    np.testing.assert_array_equal(got.pos_hist, expected.pos_hist)
    assert got.log_loss_sum == pytest.approx(expected.log_loss_sum, abs=1e-9)

    binary = problem("binary", ("0", "1"))
    spark_metrics = evaluate_spark(df, binary).metrics
    numpy_metrics = evaluate_numpy(binary, y, proba).metrics
    assert spark_metrics == pytest.approx(numpy_metrics, abs=1e-9)


def test_multiclass_counts_match_numpy(spark: SparkSession) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 1500)
    proba = random_proba(rng, y, 4)
    pred = proba.argmax(axis=1)
    df = spark.createDataFrame([(int(a), int(b), [float(v) for v in p]) for a, b, p in zip(y, pred, proba,
                                                                                             strict=True)], SCHEMA)
    got = classification_counts_spark(df, 4)
    expected = classification_counts_numpy(y, proba, pred, 4)
    assert got.n == expected.n
    np.testing.assert_array_equal(got.confusion, expected.confusion)
    assert got.pos_hist is None
    assert got.log_loss_sum == pytest.approx(expected.log_loss_sum, abs=1e-9)

    multiclass = problem("multiclass", ("a", "b", "c", "d"))
    assert evaluate_spark(df, multiclass).metrics == pytest.approx(evaluate_numpy(multiclass, y, proba).metrics,
                                                                   abs=1e-9)


def test_out_of_range_label_is_rejected(spark: SparkSession) -> None:
    df = spark.createDataFrame([(0, 0, [0.9, 0.1]), (2, 1, [0.2, 0.8])], SCHEMA)
    with pytest.raises(ValueError, match="not a class index"):
        classification_counts_spark(df, 2)


def test_regression_sums_match_numpy(spark: SparkSession) -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(10, 4, 1000)
    pred = y + rng.normal(0, 1, 1000)
    df = spark.createDataFrame([(float(a), float(b)) for a, b in zip(y, pred, strict=True)],
                               "_label DOUBLE, _pred DOUBLE")
    got = regression_sums_spark(df)
    expected = regression_sums_numpy(y, pred)
    assert got.n == expected.n
    for name in ("sse", "sae", "sum_y", "sum_y2"):
        assert getattr(got, name) == pytest.approx(getattr(expected, name), rel=1e-12)
    regression = problem("regression")
    assert evaluate_spark(df, regression).metrics == pytest.approx(evaluate_numpy(regression, y, pred).metrics,
                                                                   rel=1e-9)
