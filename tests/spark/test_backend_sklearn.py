"""The sklearn-udf backend: scikit-learn candidates and per-group models trained on Spark workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from sklearn.metrics import roc_auc_score

from goldsmith.config.models import ModelSpec
from goldsmith.errors import ConfigError, StageFailed
from goldsmith.ml.backends.sklearn_udf import PerGroupModel, SklearnUdfBackend
from goldsmith.ml.base import PRED, PROBA, Problem, TrainingSets
from goldsmith.ml.pandas_predictor import PyfuncPredictor

SCHEMA = "id LONG, x1 DOUBLE, x2 DOUBLE, c STRING, note STRING, _label {label}, _weight DOUBLE"


def spec(task: str, trainer: dict[str, Any], text: bool = True) -> ModelSpec:
    return ModelSpec.model_validate({
        "table": "gold.t",
        "label": "y",
        "keys": ["id"],
        "features": {"numeric": ["x1", "x2"], "categorical": ["c"], "text": ["note"] if text else []},
        "task": task,
        "split": {"method": "random"},
        "trainer": {"backend": "sklearn-udf", "class_weight": "none", **trainer},
    })


def split(spark: SparkSession, pdf: pd.DataFrame, workdir: Path, label_type: str = "INT") -> TrainingSets:
    """60 / 20 / 20, seeded."""
    u = np.random.default_rng(1).random(len(pdf))
    schema = SCHEMA.format(label=label_type)
    parts = [pdf[u < 0.6], pdf[(u >= 0.6) & (u < 0.8)], pdf[u >= 0.8]]
    train, validation, test = (spark.createDataFrame(p, schema) for p in parts)
    return TrainingSets(train, validation, test, workdir=str(workdir))


def frame(rng: np.random.Generator, n: int, groups: list[str], label: np.ndarray | None = None) -> pd.DataFrame:
    x2 = rng.normal(size=n)
    x2[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "x1": rng.normal(size=n),
        "x2": x2,
        "c": groups,
        "note": None,
        "_label": label,
        "_weight": 1.0,
    })


def binary_data(n: int = 2000) -> pd.DataFrame:
    """Bayes AUC about 0.9: logit = 2 x1 - 1.5 x2 + effect(c) + 1.5 [note mentions a storm]."""
    rng = np.random.default_rng(0)
    groups = rng.choice(np.array(["p", "q", "r", None], dtype=object), size=n, p=[0.3, 0.3, 0.3, 0.1])
    pdf = frame(rng, n, list(groups))
    storm = rng.random(n) < 0.3
    pdf["note"] = np.where(storm, "storm and wind", rng.choice(["clear sky", "light breeze", None], size=n))
    effect = pdf["c"].map({"p": -1.0, "q": 0.0, "r": 1.0}).fillna(0.0).to_numpy()
    logit = 2 * pdf["x1"] - 1.5 * pdf["x2"].fillna(0.0) + effect + 1.5 * storm
    pdf["_label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int32")
    return pdf


def collected(predictor: Any, df: DataFrame) -> pd.DataFrame:
    return predictor.transform(df).select("id", "_label", PRED, PROBA).toPandas().sort_values("id")


def auc(result: pd.DataFrame) -> float:
    return float(roc_auc_score(result["_label"], np.vstack(result[PROBA])[:, 1]))


def test_candidate_search_trains_every_candidate_on_the_workers(spark: SparkSession, tmp_path: Path) -> None:
    trainer = {"search": {"logistic_regression": {"C": [0.1, 1.0]}, "hist_gradient_boosting": {"max_iter": [50]}}}
    problem = Problem(name="m", spec=spec("binary", trainer), classes=("0", "1"), class_weights=(1.0, 1.0))
    sets = split(spark, binary_data(), tmp_path)

    candidates = SklearnUdfBackend().train(problem, sets)

    assert [c.label for c in candidates] == [
        "logistic_regression[C=0.1]", "logistic_regression[C=1.0]", "hist_gradient_boosting[max_iter=50]"
    ]
    train_rows, validation_rows = sets.train.count(), sets.validation.count()
    for candidate in candidates:
        assert candidate.info == {"train_rows": train_rows, "validation_rows": validation_rows}
        assert candidate.train_seconds > 0
        assert isinstance(candidate.predictor, PyfuncPredictor)
    assert (tmp_path / "sklearn" / "train").is_dir() and (tmp_path / "sklearn" / "validation").is_dir()
    best = max(candidates, key=lambda c: c.validation_metrics["roc_auc"])
    # A trivial model scores 0.5; the true (Bayes) AUC of this data is about 0.9.
    assert best.validation_metrics["roc_auc"] >= 0.8

    result = collected(best.predictor, sets.validation)
    assert len(result) == validation_rows
    assert result[PRED].notna().all()
    assert auc(result) == pytest.approx(best.validation_metrics["roc_auc"], abs=1e-3)
    assert ((np.vstack(result[PROBA])[:, 1] >= 0.5).astype(int) == result[PRED]).all()


def group_data(n: int = 3000) -> pd.DataFrame:
    """The x1 effect is +3 in group A and -3 in group B: one linear model of both cannot use x1."""
    rng = np.random.default_rng(2)
    groups = ["A"] * ((n - 20) // 2) + ["B"] * (n - 20 - (n - 20) // 2) + ["T"] * 20
    pdf = frame(rng, n, groups)
    sign = np.where(pdf["c"] == "B", -1.0, 1.0)
    logit = 3 * sign * pdf["x1"] + 0.5 * pdf["x2"].fillna(0.0)
    pdf["_label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int32")
    return pdf


def test_one_model_per_group_beats_one_global_model(spark: SparkSession, tmp_path: Path) -> None:
    sets = split(spark, group_data(), tmp_path)
    binary: dict[str, Any] = {"classes": ("0", "1"), "class_weights": (1.0, 1.0)}
    single = Problem(name="m", spec=spec("binary", {"algorithm": "logistic_regression"}, text=False), **binary)
    per_group = Problem(
        name="m",
        spec=spec("binary", {"algorithm": "logistic_regression", "group_by": "c", "min_group_rows": 50}, text=False),
        **binary,
    )

    [global_candidate] = SklearnUdfBackend().train(single, sets)
    [candidate] = SklearnUdfBackend().train(per_group, sets)

    global_auc = auc(collected(global_candidate.predictor, sets.validation))
    group_auc = auc(collected(candidate.predictor, sets.validation))
    assert group_auc >= global_auc + 0.15, (group_auc, global_auc)
    assert candidate.validation_metrics == {}
    assert sorted(child.name for child in candidate.children) == ["c=A", "c=B"]
    for child in candidate.children:
        assert child.metrics["roc_auc"] >= 0.85
        assert child.params == {}
        assert 800 <= child.rows <= 1000
    assert candidate.info["group_models"] == 2
    assert candidate.info["groups_on_fallback"] == 1
    assert candidate.info["train_rows"] == sets.train.count()
    assert candidate.info["fallback_metrics"]["roc_auc"] == pytest.approx(global_auc, abs=0.05)

    assert isinstance(candidate.predictor, PyfuncPredictor)
    model = candidate.predictor.model
    assert isinstance(model, PerGroupModel)
    features = ["x1", "x2", "c"]
    tiny = group_data()[lambda d: d["c"] == "T"][features]
    np.testing.assert_allclose(model.predict_proba(tiny), model.fallback.predict_proba(tiny))
    restored = cloudpickle.loads(cloudpickle.dumps(model))
    np.testing.assert_allclose(restored.predict_proba(tiny), model.predict_proba(tiny))

    unseen = spark.createDataFrame(
        [(1, 0.5, -0.2, "Z", None, 0, 1.0), (2, -1.0, None, None, None, 1, 1.0)], SCHEMA.format(label="INT")
    )
    result = collected(candidate.predictor, unseen)
    assert result[PRED].notna().all()
    expected = model.fallback.predict_proba(
        pd.DataFrame({"x1": [0.5, -1.0], "x2": [-0.2, np.nan], "c": ["Z", None]}, dtype=object)
        .astype({"x1": "float64", "x2": "float64"})
    )
    np.testing.assert_allclose(np.vstack(result[PROBA]), expected)


def test_multiclass_random_forest(spark: SparkSession, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 1500
    pdf = frame(rng, n, list(rng.choice(["p", "q"], size=n)))
    scores = np.column_stack([pdf["x1"], pdf["x2"].fillna(0.0), -pdf["x1"] - pdf["x2"].fillna(0.0)])
    label = (scores + rng.normal(scale=0.5, size=scores.shape)).argmax(axis=1).astype("int32")
    pdf["_label"] = label
    pdf["note"] = np.where(rng.random(n) < 0.5, np.array(["alpha", "beta", "gamma"])[label], None)
    trainer = {"algorithm": "random_forest", "params": {"n_estimators": 50, "min_samples_leaf": 3}}
    problem = Problem(name="m", spec=spec("multiclass", trainer), classes=("a", "b", "c"))
    sets = split(spark, pdf, tmp_path)

    [candidate] = SklearnUdfBackend().train(problem, sets)

    assert candidate.validation_metrics["macro_f1"] >= 0.75
    result = collected(candidate.predictor, sets.validation)
    proba = np.vstack(result[PROBA])
    assert proba.shape == (len(result), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == result[PRED]).all()


def test_regression_ridge_on_a_sample(spark: SparkSession, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 1500
    pdf = frame(rng, n, list(rng.choice(["p", "q", "r"], size=n)))
    effect = pdf["c"].map({"p": -2.0, "q": 0.0, "r": 2.0})
    pdf["_label"] = 2 * pdf["x1"] - pdf["x2"].fillna(0.0) + effect + rng.normal(scale=0.5, size=n)
    trainer = {"algorithm": "ridge", "params": {"alpha": 1.0}, "max_train_rows": 500}
    problem = Problem(name="m", spec=spec("regression", trainer, text=False))
    sets = split(spark, pdf, tmp_path, label_type="DOUBLE")
    sets.workdir = tmp_path.as_uri()  # file:///...: the workers read the snapshot with pyarrow

    [candidate] = SklearnUdfBackend().train(problem, sets)

    assert 300 <= candidate.info["train_rows"] <= 500 < sets.train.count()
    assert (tmp_path / "sklearn" / "train").is_dir()
    assert candidate.validation_metrics["r2"] >= 0.85
    assert candidate.validation_metrics["rmse"] < 0.8
    result = candidate.predictor.transform(sets.validation).select("_label", PRED).toPandas()
    rmse = float(np.sqrt(((result["_label"] - result[PRED]) ** 2).mean()))
    assert rmse == pytest.approx(candidate.validation_metrics["rmse"], rel=1e-6)


def binary_problem(trainer: dict[str, Any]) -> Problem:
    return Problem(name="m", spec=spec("binary", trainer), classes=("0", "1"), class_weights=(1.0, 1.0))


def test_an_unknown_parameter_is_a_config_error(spark: SparkSession, tmp_path: Path) -> None:
    sets = split(spark, binary_data(200), tmp_path)
    problem = binary_problem({"algorithm": "random_forest", "params": {"n_trees": 10}})
    with pytest.raises(ConfigError, match=r"random_forest.*'n_trees'"):
        SklearnUdfBackend().train(problem, sets)
    assert not (tmp_path / "sklearn").exists()


def test_a_group_column_that_is_not_a_feature_is_a_config_error() -> None:
    # Rows are routed to their group's model by a feature: the spec says so before any data is read.
    for column in ("origin", "id"):
        with pytest.raises(ValueError, match=f"group_by '{column}' must also be a feature"):
            binary_problem({"algorithm": "logistic_regression", "group_by": column})


def test_a_candidate_that_fails_on_a_worker_fails_the_stage(spark: SparkSession, tmp_path: Path) -> None:
    sets = split(spark, binary_data(200), tmp_path)
    problem = binary_problem({"algorithm": "logistic_regression", "params": {"C": -1.0}})
    with pytest.raises(StageFailed, match=r"candidate 1/1 logistic_regression\[C=-1.0\].*C"):
        SklearnUdfBackend().train(problem, sets)

