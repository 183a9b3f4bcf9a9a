"""The know-your-data-and-model stages on seeded data: profile, bias gates, slices, drift monitor.

The data: y ~ Bernoulli(sigmoid(2 x1 + bias[g])) for groups x and y, pure noise (p = 0.5) for group z; x2 is
noise. With bias[y] = -2.5 the model (which sees g) predicts far fewer positives for group y, so its disparate
impact against the others is far below the four-fifths rule; with bias[y] = 0 it is close to 1. Group z is a slice
the model cannot do better than chance on. The scoring window can have x1 shifted by +1.5 standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyspark.sql import SparkSession

from goldsmith.config.models import PipelineConfig
from goldsmith.errors import DriftDetected
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.jobs.monitor import RETRAIN_TAG, MonitorOutcome
from goldsmith.jobs.pipeline import run_pipeline
from goldsmith.jobs.train import TrainOutcome
from goldsmith.ml.registry import CHAMPION, Registry
from goldsmith.ml.tracking import activate, tracking_for

START = date(2013, 1, 1)
EXAMPLES = "id INT, d DATE, x1 DOUBLE, x2 DOUBLE, g STRING, y BOOLEAN"
WINDOW = date(2013, 4, 16)


def make_rows(y_bias: float, shift: float = 0.0, n: int = 3600, seed: int = 5) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        d = START + timedelta(days=i * 135 // n)
        x1 = rng.normal() + (shift if d >= WINDOW else 0.0)
        x2 = rng.normal()
        g = "xyz"[i % 3]
        logit = 2 * x1 + (y_bias if g == "y" else 0.0)
        p = 0.5 if g == "z" else 1 / (1 + np.exp(-logit))
        rows.append((i, d, float(x1), float(x2), g, bool(rng.random() < p)))
    return rows


def config(root: Path, **model: Any) -> PipelineConfig:
    spec: dict[str, Any] = {
        "table": "gold.examples", "label": "y", "keys": ["id"], "task": "binary",
        "features": {"numeric": ["x1", "x2"], "categorical": ["g"]},
        "split": {"method": "time", "column": "d", "validation_from": "2013-03-01", "test_from": "2013-04-01",
                  "until": "2013-04-16"},
        "trainer": {"backend": "spark-ml", "algorithm": "logistic_regression", "params": {"maxIter": 50}},
        "gates": {"min_metrics": {"roc_auc": 0.6}},
        "score": {"where": "d >= '2013-04-16'"},
        "bias": {"facet": "g", "sensitive": ["y"], "favorable": "true", "gates": {"di": {"min": 0.8, "max": 1.25}}},
        "slices": {"columns": ["g"], "margin": 0.1, "min_rows": 50},
        "monitor": {"period": {"column": "d", "unit": "week"}, "on_breach": "fail", "min_rows": 300},
    }
    spec.update(model)
    return PipelineConfig.model_validate({
        "name": "quality", "storage": {"root": str(root)}, "gold": {"examples": {"sql": "unused.sql"}},
        "models": {"m": spec},
    })


def lakehouse_with(spark: SparkSession, root: Path, rows: list[tuple[Any, ...]]) -> Path:
    df = spark.createDataFrame(rows, EXAMPLES)
    Lakehouse(spark, str(root)).write(df, "gold", "examples", mode="overwrite")
    return root


def trained(ctx: Any) -> TrainOutcome:
    return next(m for m in ctx.models if isinstance(m, TrainOutcome))


def ops_rows(spark: SparkSession, root: Path, table: str) -> list[dict[str, Any]]:
    return [r.asDict() for r in spark.read.format("delta").load(f"{root}/ops/{table}").collect()]


def test_biased_model_is_kept_from_champion(spark: SparkSession, tmp_path: Path) -> None:
    root = lakehouse_with(spark, tmp_path / "lake", make_rows(y_bias=-2.5))
    ctx = run_pipeline(config(root), ["train"], spark)
    outcome = trained(ctx)
    assert outcome.status == "challenger"
    assert any(r.startswith("bias: di") and "g=y" in r for r in outcome.reasons), outcome.reasons
    rows = ops_rows(spark, root, "bias_metrics")
    di = [r for r in rows if r["metric"] == "di"]
    assert len(di) == 1 and di[0]["breached"] and di[0]["value"] < 0.8 and di[0]["threshold_min"] == 0.8
    # pre-training bias of the labels in the training split: group y has fewer positive labels
    dpl = next(r for r in rows if r["metric"] == "dpl")
    assert dpl["stage"] == "pre_training" and dpl["dataset"] == "train" and dpl["value"] > 0.2
    assert {r["stage"] for r in rows} == {"pre_training", "post_training"}
    moves = {(r["alias"], r["action"]) for r in ops_rows(spark, root, "model_promotions")}
    assert moves == {("challenger", "promote"), ("champion", "blocked")}


@dataclass(frozen=True)
class Fair:
    """One lakehouse for the fair model's tests, in this order: trained on the fair data (the same training rows
    whatever the window's shift: the shift starts after the training split ends), then its window scored and
    monitored unshifted, then the window replaced by a shifted one, scored and monitored again."""

    root: Path
    trained: TrainOutcome


@pytest.fixture(scope="module")
def fair(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Fair:
    root = lakehouse_with(spark, tmp_path_factory.mktemp("fair") / "lake", make_rows(y_bias=0.0))
    return Fair(root, trained(run_pipeline(config(root), ["train"], spark)))


@pytest.fixture(scope="module")
def unshifted(spark: SparkSession, fair: Fair) -> MonitorOutcome:
    ctx = run_pipeline(config(fair.root), ["score", "monitor"], spark)
    return next(m for m in ctx.models if isinstance(m, MonitorOutcome))


def test_fair_model_becomes_champion_and_weak_slice_is_flagged(spark: SparkSession, fair: Fair) -> None:
    root, outcome = fair.root, fair.trained
    assert outcome.status == "champion", outcome.reasons
    di = next(r for r in ops_rows(spark, root, "bias_metrics") if r["metric"] == "di")
    assert 0.8 <= di["value"] <= 1.25 and not di["breached"]
    slices = {(r["slice_column"], r["slice_value"], r["metric"]): r for r in ops_rows(spark, root, "slice_metrics")}
    z = slices[("g", "z", "roc_auc")]
    assert z["flagged"] and z["value"] < z["overall"] - 0.1, z
    assert not slices[("g", "x", "roc_auc")]["flagged"]
    assert ("(class)", "true", "f1") in slices
    assert any(line.startswith("g=z") for line in outcome.flagged_slices)


def test_unshifted_window_passes_the_monitor(unshifted: MonitorOutcome) -> None:
    assert unshifted.status == "ok", unshifted.breaches


def test_profile_stage_describes_tables_once_per_version(spark: SparkSession, tmp_path: Path) -> None:
    rows = make_rows(y_bias=0.0, n=600)
    root = lakehouse_with(spark, tmp_path / "lake", rows)
    first = run_pipeline(config(root), ["profile"], spark)
    assert first.changed
    profiles = {r["column_name"]: r for r in ops_rows(spark, root, "profiles")}
    assert set(profiles) == {"id", "d", "x1", "x2", "g", "y"}
    x1 = [r[2] for r in rows]
    assert profiles["x1"]["rows"] == 600 and abs(profiles["x1"]["mean"] - float(np.mean(x1))) < 1e-9
    assert profiles["x1"]["table_name"] == "gold.examples" and profiles["x1"]["table_version"] == 0
    again = run_pipeline(config(root), ["profile"], spark)
    assert not again.changed and len(ops_rows(spark, root, "profiles")) == 6


@pytest.mark.usefixtures("unshifted")  # after the unshifted window's monitor, which this replaces
def test_shifted_feature_trips_the_monitor(spark: SparkSession, fair: Fair) -> None:
    root = fair.root
    earlier = {r["run_id"] for r in ops_rows(spark, root, "monitor_results")}  # the unshifted window's
    Lakehouse(spark, str(root)).write(spark.createDataFrame(make_rows(y_bias=0.0, shift=1.5), EXAMPLES), "gold",
                                      "examples", mode="overwrite")
    run_pipeline(config(root), ["score"], spark)
    with pytest.raises(DriftDetected, match="feature x1 psi"):
        run_pipeline(config(root), ["monitor"], spark)
    results = [r for r in ops_rows(spark, root, "monitor_results") if r["run_id"] not in earlier]
    whole = {(r["kind"], r["column_name"], r["metric"]): r for r in results if r["period"] == "all"}
    assert whole[("feature", "x1", "psi")]["breached"] and whole[("feature", "x1", "ks")]["value"] > 0.3
    assert not whole[("feature", "x2", "psi")]["breached"] and whole[("feature", "x2", "psi")]["value"] < 0.1
    assert whole[("prediction", "prediction", "psi")]["value"] > 0.1  # a shifted x1 moves the probabilities
    assert ("performance", "roc_auc", "roc_auc") in whole  # the window's labels have arrived
    weeks = {r["period"] for r in results} - {"all"}
    assert weeks and all(w >= "2013-04-15" for w in weeks)
    # the same inputs again: not recomputed, and still a failure
    with pytest.raises(DriftDetected):
        run_pipeline(config(root), ["monitor"], spark)
    assert len([r for r in ops_rows(spark, root, "monitor_results") if r["run_id"] not in earlier]) == len(results)

    # on_breach: flag tags the champion for retraining instead of failing
    flagged = config(root, monitor={"period": {"column": "d", "unit": "week"}, "on_breach": "flag", "min_rows": 300})
    ctx = run_pipeline(flagged, ["monitor"], spark)
    outcome = next(m for m in ctx.models if isinstance(m, MonitorOutcome))
    assert outcome.status == "breached" and RETRAIN_TAG in outcome.action
    registry = Registry(activate(tracking_for(str(root))), ctx.ops)
    version = registry.alias("m", CHAMPION)
    assert version is not None and RETRAIN_TAG in (registry.version("m", version).tags or {})


def test_label_review_lists_the_rows_whose_label_looks_wrong(spark: SparkSession, tmp_path: Path) -> None:
    # A clean signal (y = x1 > 0 for groups x and y) with 30 labels flipped: they should top the review.
    rows = [(i, d, x1, x2, g, (x1 > 0) if g != "z" else y) for i, d, x1, x2, g, y in make_rows(0.0, n=1800)]
    flipped = {i for i, _, _, _, g, _ in rows if g != "z" and i % 40 == 1}
    rows = [(i, d, x1, x2, g, (not y) if i in flipped else y) for i, d, x1, x2, g, y in rows]
    root = lakehouse_with(spark, tmp_path / "lake", rows)
    outcome = trained(run_pipeline(config(root, bias=None, slices=None, label_issues={"folds": 3}), ["train"], spark))
    review = spark.read.format("delta").load(f"{root}/gold/m_label_review").collect()
    assert outcome.label_issues == len(review) > 0
    assert all(r["given_label"] != r["suggested_label"] for r in review)
    assert [r["review_rank"] for r in sorted(review, key=lambda r: r["review_rank"])] == list(range(1, len(review) + 1))
    assert {"x1", "x2", "g", "class_probabilities", "model_version"} <= set(review[0].asDict())
    # A flip close to the boundary (|x1| small) is not confidently wrong; one far from it must be found.
    confident = {i for i, _, x1, _, _, _ in rows if i in flipped and abs(x1) > 1.0}
    found = {r["id"] for r in review}
    assert len(confident & found) >= 0.8 * len(confident), (len(confident & found), len(confident))
    assert len(flipped & found) >= 0.8 * len(found & {i for i, _, _, _, g, _ in rows if g != "z"})
