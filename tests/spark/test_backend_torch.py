"""torch-distributor on the shared local[2] session: DDP with 2 processes, local mode and barrier mode."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame
from tabular import make_spec, sets_for, sklearn_auc, validation_auc

from goldsmith.errors import ConfigError, StageFailed
from goldsmith.ml.backends.torch_ddp import TorchDistributorBackend
from goldsmith.ml.base import Problem, TrainingSets
from goldsmith.ml.encoding import TabularEncoder


def test_encoder_fits_from_spark_aggregates(parts: dict[str, DataFrame], frame: pd.DataFrame) -> None:
    from goldsmith.config.models import FeatureSet

    train = frame[frame.part == "train"]
    encoder = TabularEncoder.fit_spark(
        parts["train"], FeatureSet(numeric=["x1", "x2"], categorical=["c"]), max_categories=2
    )
    np.testing.assert_allclose(encoder.means, [train.x1.mean(), train.x2.mean()], rtol=1e-9)
    np.testing.assert_allclose(encoder.stds, [train.x1.std(ddof=0), train.x2.std(ddof=0)], rtol=1e-9)
    assert encoder.levels == (tuple(train.c.value_counts().index[:2]),) == (("a", "b"),)
    assert encoder.width == 2 + 3


def test_unknown_param_is_rejected_before_spark(parts: dict[str, DataFrame], tmp_path: Path) -> None:
    problem = Problem(name="m", spec=make_spec(params={"epochs": 1, "learnin_rate": 0.1}), classes=("0", "1"))
    with pytest.raises(ConfigError, match="'learnin_rate'"):
        TorchDistributorBackend().train(problem, sets_for(parts, tmp_path))
    assert not (tmp_path / "torch").exists()


def test_barrier_mode_needs_a_task_slot_per_process(parts: dict[str, DataFrame], tmp_path: Path) -> None:
    spec = make_spec(params={"epochs": 1}, num_processes=3, local_mode=False)  # the session is local[2]
    with pytest.raises(ConfigError, match="needs as many Spark task slots, the cluster has 2"):
        TorchDistributorBackend().train(Problem(name="m", spec=spec, classes=("0", "1")), sets_for(parts, tmp_path))
    assert not (tmp_path / "torch").exists()


def test_local_mode_trains_on_both_ranks(
    parts: dict[str, DataFrame], frame: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = {"epochs": 20, "batch_size": 128, "lr": 0.003, "hidden": [32, 16]}
    problem = Problem(name="m", spec=make_spec(params=params), classes=("0", "1"), class_weights=(1.0, 1.0))
    started = time.perf_counter()
    [candidate] = TorchDistributorBackend().train(problem, sets_for(parts, tmp_path))
    print(f"local mode: {time.perf_counter() - started:.1f} s")  # shown with -s

    train_rows = int((frame.part == "train").sum())
    assert candidate.algorithm == "mlp" and candidate.params == params
    assert candidate.info["train_rows"] == train_rows
    assert candidate.info["num_processes"] == 2 and candidate.info["local_mode"] is True
    losses = candidate.info["epochs_loss"]
    assert len(losses) == 20 and losses[-1] < losses[0] * 0.9

    report = json.loads((tmp_path / "torch" / "0" / "loss.json").read_text())
    assert report["world_size"] == 2
    assert len(report["rank_rows"]) == 2 and min(report["rank_rows"]) > 0
    assert sum(report["rank_rows"]) == train_rows  # each rank read its own, disjoint shard
    assert report["epochs_loss"] == losses

    auc, reference = validation_auc(candidate.predictor, parts), sklearn_auc(frame)
    assert auc > 0.5 + 0.2, auc  # the signal is strong: logistic regression gets ~0.8
    assert abs(auc - reference) < 0.03, (auc, reference)
    shown = capsys.readouterr()
    assert "OMP_NUM_THREADS" not in shown.out + shown.err  # torchrun's banner is kept off the console


def test_barrier_mode_trains_a_regression_grid_on_a_sample(parts: dict[str, DataFrame], tmp_path: Path) -> None:
    # barrier mode (2 Spark tasks, one torchrun each), both candidates of the grid in one run
    params = {"epochs": 15, "batch_size": 128, "lr": 0.01}
    spec = make_spec(
        "regression", params=params, search={"mlp": {"hidden": ["16", "8,8"]}}, max_train_rows=1000, local_mode=False
    )
    regression = {k: df.withColumn("_label", df["r"]) for k, df in parts.items()}
    started = time.perf_counter()
    candidates = TorchDistributorBackend().train(Problem(name="m", spec=spec), sets_for(regression, tmp_path))
    print(f"barrier mode, 2 candidates: {time.perf_counter() - started:.1f} s")  # shown with -s
    assert [c.params for c in candidates] == [{**params, "hidden": "16"}, {**params, "hidden": "8,8"}]
    for i, candidate in enumerate(candidates):
        assert candidate.info["local_mode"] is False and len(candidate.info["epochs_loss"]) == 15
        assert candidate.info["train_rows"] == 1000  # a seeded sample of the ~2,800 training rows
        report = json.loads((tmp_path / "torch" / str(i) / "loss.json").read_text())
        assert report["world_size"] == 2 and min(report["rank_rows"]) > 0
        rows = candidate.predictor.transform(regression["validation"]).select("r", "_pred").collect()
        truth, pred = np.array([r["r"] for r in rows]), np.array([r["_pred"] for r in rows])
        rmse = float(np.sqrt(np.mean((truth - pred) ** 2)))
        assert rmse < 0.4 * truth.std(), (rmse, truth.std())  # the noise is 2.0, the target's spread ~10.5
        assert abs(pred.mean() - truth.mean()) < 1.0  # predictions are on the label's scale


def test_a_failing_rank_raises_stage_failed_with_its_error(parts: dict[str, DataFrame], tmp_path: Path) -> None:
    # _label holds 0/1, but a problem with one class index out of range makes cross-entropy fail in the ranks
    spec = make_spec(params={"epochs": 1})
    problem = Problem(name="m", spec=spec, classes=("0", "1"))
    train = parts["train"].selectExpr("*").withColumn("_label", parts["train"]["_label"] + 1)
    sets = TrainingSets(train, parts["validation"], parts["test"], workdir=str(tmp_path))
    with pytest.raises(StageFailed, match=r"IndexError: Target 2 is out of bounds"):
        TorchDistributorBackend().train(problem, sets)
