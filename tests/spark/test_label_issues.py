"""Label issues: out-of-fold probabilities from a backend, then confident learning over them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import SparkSession

from goldsmith.config.models import ModelSpec
from goldsmith.ml.base import PROBA, Problem
from goldsmith.ml.label_issues import find_label_issues, out_of_fold

OOF_SCHEMA = "id LONG, _label INT, _proba ARRAY<DOUBLE>"


def test_thresholds_and_flags_worked_by_hand(spark: SparkSession) -> None:
    """t0 = (.90+.70+.10+.00)/4 = .425, t1 = (.80+.90+.50+.02)/4 = .555, t2 = (.60+.20+.45)/3 = .4167.

    Row 3: only p1 .75 >= t1 -> 1. Row 6: p1 .50 < t1, p2 .45 >= t2 -> 2 (margin -.05: not a bigger
    probability, but a confident one). Row 7: p0 and p2 both reach theirs, p0 is larger -> 0. Row 9: nothing
    reaches its threshold. Row 10: p2 .45 reaches t2 but p0 .55 >= t0 is larger -> 0. Row 11: p2 .70 -> 2.
    Rows 12 (null label) and 13 (null probabilities) move no threshold and are never issues.
    """
    rows = [
        (1, 0, [0.90, 0.05, 0.05]),
        (2, 0, [0.70, 0.20, 0.10]),
        (3, 0, [0.10, 0.75, 0.15]),
        (4, 1, [0.10, 0.80, 0.10]),
        (5, 1, [0.05, 0.90, 0.05]),
        (6, 1, [0.05, 0.50, 0.45]),
        (7, 1, [0.50, 0.02, 0.48]),
        (8, 2, [0.20, 0.20, 0.60]),
        (9, 2, [0.30, 0.50, 0.20]),
        (10, 2, [0.55, 0.00, 0.45]),
        (11, 0, [0.00, 0.30, 0.70]),
        (12, None, [0.00, 0.00, 1.00]),
        (13, 1, None),
    ]
    oof = spark.createDataFrame(rows, OOF_SCHEMA)

    issues = find_label_issues(oof, n_classes=3)

    proba = {r[0]: r[2] for r in rows}
    expected = spark.createDataFrame(
        [
            (11, 0, proba[11], 2, 0.00, 0.70, 0.70, 1),
            (3, 0, proba[3], 1, 0.10, 0.75, 0.65, 2),
            (7, 1, proba[7], 0, 0.02, 0.50, 0.48, 3),
            (10, 2, proba[10], 0, 0.45, 0.55, 0.10, 4),
            (6, 1, proba[6], 2, 0.50, 0.45, -0.05, 5),
        ],
        f"{OOF_SCHEMA}, _suggested INT, _given_probability DOUBLE, _suggested_probability DOUBLE, _margin DOUBLE, "
        "_rank INT",
    )
    assert_approx_df_equality(issues, expected, 1e-9, ignore_nullable=True)


def test_empty_input_has_no_issues(spark: SparkSession) -> None:
    issues = find_label_issues(spark.createDataFrame([], OOF_SCHEMA), n_classes=2)
    assert issues.count() == 0
    assert issues.columns[-5:] == ["_suggested", "_given_probability", "_suggested_probability", "_margin", "_rank"]


def spec(task: str, trainer: dict[str, Any]) -> ModelSpec:
    return ModelSpec.model_validate({
        "table": "gold.t",
        "label": "y",
        "keys": ["id"],
        "features": {"numeric": ["x1", "x2", "x3"]},
        "task": task,
        "split": {"method": "random"},
        "trainer": {"class_weight": "none", **trainer},
    })


def noisy_blobs(n: int = 1200, flip_share: float = 0.05) -> tuple[pd.DataFrame, np.ndarray]:
    """Three Gaussian blobs (unit spread) 6 apart in (x1, x2), x3 pure noise; a seeded 5% of labels moved to
    another class. Returns the frame (with the noisy `_label`) and the ids of the flipped rows."""
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, size=n)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [3.0, 5.2]])
    xy = centres[truth] + rng.normal(size=(n, 2))
    flipped = rng.choice(n, size=int(n * flip_share), replace=False)
    label = truth.copy()
    label[flipped] = (truth[flipped] + rng.integers(1, 3, size=len(flipped))) % 3
    pdf = pd.DataFrame({
        "id": np.arange(n, dtype=np.int64), "x1": xy[:, 0], "x2": xy[:, 1], "x3": rng.normal(size=n),
        "_label": label.astype("int32"), "_weight": 1.0,
    })
    return pdf, np.sort(flipped)


@pytest.mark.parametrize("backend", ["sklearn-udf", "spark-ml"])
def test_flipped_labels_are_found_out_of_fold(
    spark: SparkSession, tmp_path: Path, backend: str
) -> None:
    """Measured, logistic_regression, 3 folds, both backends: 50 issues, all flipped: recall 50/60 = 0.833,
    precision 50/50 = 1.000. The ten missed flips sit between blobs or just under their class's threshold
    (about 0.87: the mean confidence, pulled down by the flipped rows themselves)."""
    algorithm = "logistic_regression"
    pdf, flipped = noisy_blobs()
    frame = spark.createDataFrame(pdf, "id LONG, x1 DOUBLE, x2 DOUBLE, x3 DOUBLE, _label INT, _weight DOUBLE")
    # A search grid in the spec: out_of_fold trains the one candidate it is given instead.
    trainer = {"backend": backend, "search": {algorithm: {}, "random_forest": {}}}
    problem = Problem(name="m", spec=spec("multiclass", trainer), classes=("a", "b", "c"),
                      class_weights=(1.0, 1.0, 1.0))
    params: dict[str, Any] = {}

    started = time.perf_counter()
    oof = out_of_fold(problem, frame, folds=3, workdir=str(tmp_path), algorithm=algorithm, params=params).cache()
    predicted: pd.DataFrame = oof.toPandas()
    issues: pd.DataFrame = find_label_issues(oof, n_classes=3).toPandas()
    seconds = time.perf_counter() - started

    assert len(predicted) == len(pdf)
    assert sorted(predicted["id"]) == list(pdf["id"])
    np.testing.assert_allclose(np.vstack(predicted[PROBA]).sum(axis=1), 1.0)
    found = set(issues["id"])
    hits = len(found & set(flipped))
    recall, precision = hits / len(flipped), hits / max(len(found), 1)
    print(f"{backend} {algorithm}: {len(found)} issues, recall {recall:.3f}, precision {precision:.3f}, "
          f"{seconds:.1f} s")
    assert list(issues["_rank"]) == list(range(1, len(issues) + 1))
    assert (np.diff(issues["_margin"]) <= 0).all()
    assert recall >= 0.8
    assert precision >= 0.9
    oof.unpersist()


def test_regression_is_refused(spark: SparkSession, tmp_path: Path) -> None:
    problem = Problem(name="m", spec=spec("regression", {"backend": "sklearn-udf", "algorithm": "ridge"}))
    frame = spark.createDataFrame([(1, 0.0, 0.0, 0.0, 1.0, 1.0)], "id LONG, x1 DOUBLE, x2 DOUBLE, x3 DOUBLE, "
                                  "_label DOUBLE, _weight DOUBLE")
    with pytest.raises(ValueError, match="regression"):
        out_of_fold(problem, frame, folds=3, workdir=str(tmp_path), algorithm="ridge", params={})
