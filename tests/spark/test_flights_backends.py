"""The Spark and scikit-learn backends on the real flights features (the first 12,000 flights of 2013, random split).
The torch backends train the same features with the shipped time split in tests/e2e/test_horovod.py (torch-
distributor and horovod, compared, registered and scoring December).

The trivial baseline is ROC AUC 0.5; each backend must beat it by the margin below on the test holdout. The
signal in these features is weak (the full-year models reach about 0.68), so the margin is modest but real:
a model that ignored the features, or scrambled labels and rows, would score 0.5 +- 0.02 on 1,800 test rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from goldsmith.config import load_pipeline
from goldsmith.examples import write_landing
from goldsmith.jobs.pipeline import run_pipeline
from goldsmith.jobs.train import TrainOutcome
from goldsmith.ml.registry import Registry
from goldsmith.ml.tracking import activate, tracking_for

REPO = Path(__file__).parents[2]
MARGIN = 0.08
FLIGHTS = 12_000


@pytest.fixture(scope="module")
def root(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flights") / "lake"
    write_landing("flights", root / "landing", FLIGHTS)
    config = load_pipeline(REPO / "conf/pipelines/flights.yml", [f"storage.root={root}"])
    run_pipeline(config, ["ingest", "refine", "features"], spark)
    return root


def train(spark: SparkSession, root: Path, trainer: str) -> TrainOutcome:
    config = load_pipeline(REPO / "conf/pipelines/flights.yml", [
        f"storage.root={root}", "models.flight_delay.split={method: random, seed: 11}",
        f"models.flight_delay.trainer={trainer}", "models.flight_delay.gates.min_improvement=-1",
    ])
    ctx = run_pipeline(config, ["train"], spark)
    return next(m for m in ctx.models if isinstance(m, TrainOutcome))


@pytest.mark.parametrize("trainer", [
    "{backend: spark-ml, algorithm: logistic_regression, params: {maxIter: 30}}",
    "{backend: sklearn-udf, search: {logistic_regression: {C: [0.1, 1.0]}, hist_gradient_boosting: {max_iter: [50]}}}",
    "{backend: sklearn-udf, algorithm: hist_gradient_boosting, group_by: origin, params: {max_iter: 50}}",
], ids=["spark-ml", "sklearn-udf-candidates", "sklearn-udf-per-group"])
def test_backend_trains_on_flight_features(spark: SparkSession, root: Path, trainer: str) -> None:
    outcome = train(spark, root, trainer)
    assert outcome.status in ("champion", "challenger") and outcome.version is not None
    assert outcome.rows["train"] > 7_000 and outcome.rows["test"] > 1_500
    assert outcome.test_metrics["roc_auc"] >= 0.5 + MARGIN, outcome.test_metrics

    import mlflow

    registry = Registry(activate(tracking_for(f"file:{root}")), None)  # type: ignore[arg-type]
    version = registry.version("flight_delay", outcome.version)
    children = mlflow.search_runs(
        experiment_names=["flights"], filter_string=f"tags.mlflow.parentRunId = '{version.run_id}'",
        output_format="list",
    )
    kinds: dict[str, Any] = {}
    for run in children:
        kinds.setdefault(run.data.tags.get("goldsmith.kind"), []).append(run.info.run_name)
    if "search" in trainer:
        assert len(kinds["candidate"]) == 3  # a child run per candidate, with its validation metrics
    elif "group_by" in trainer:
        assert sorted(kinds["group"]) == ["origin=EWR", "origin=JFK", "origin=LGA"]
    else:
        assert not kinds
    parent = mlflow.get_run(version.run_id)
    assert {"train_roc_auc", "val_roc_auc", "test_roc_auc", "test_accuracy"} <= set(parent.data.metrics)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(version.run_id, "plots")}
    assert {"plots/test_roc_curve.png", "plots/test_pr_curve.png", "plots/test_confusion_matrix.png"} <= artifacts
    inputs = parent.inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} == {"gold.flight_features@v0"}
