"""horovod on the shared local[2] session: two ranks started from two Spark tasks, gradients averaged by Horovod.

Horovod is built by scripts/horovod/build (scripts/test runs it): without it these tests fail in CI and skip
elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import DataFrame
from tabular import make_spec, sets_for, sklearn_auc, validation_auc

from components import unavailable
from goldsmith.errors import BackendUnavailable, ConfigError, StageFailed
from goldsmith.ml.backends import get_backend
from goldsmith.ml.base import Problem, TrainingSets

try:
    get_backend("horovod")
except BackendUnavailable as missing:
    unavailable(f"horovod is not installed: {missing}", f"CI runs the horovod tests: {missing}")

from goldsmith.ml.backends.horovod import HorovodBackend

PARAMS = {"epochs": 12, "batch_size": 128, "lr": 0.003, "hidden": [32, 16]}


def problem(**trainer: object) -> Problem:
    spec = make_spec(backend="horovod", params=PARAMS, **trainer)
    return Problem(name="m", spec=spec, classes=("0", "1"), class_weights=(1.0, 1.0))


def test_two_ranks_train_on_disjoint_shards(parts: dict[str, DataFrame], frame: pd.DataFrame, tmp_path: Path) -> None:
    # (That the same seed gives the same weights is checked end to end: tests/e2e/test_horovod.py compares the
    # cluster's predictions with the local run's.)
    [candidate] = HorovodBackend().train(problem(), sets_for(parts, tmp_path))
    train_rows = int((frame.part == "train").sum())
    assert candidate.algorithm == "mlp" and candidate.params == PARAMS
    assert candidate.info["train_rows"] == train_rows and candidate.info["num_processes"] == 2
    report = json.loads((tmp_path / "horovod" / "0" / "loss.json").read_text())
    assert report["world_size"] == 2 and min(report["rank_rows"]) > 0
    assert sum(report["rank_rows"]) == train_rows  # each rank read its own files of the snapshot
    assert report["rows_per_step"] == 128  # batch_size is per optimiser step over both ranks
    losses = candidate.info["epochs_loss"]
    assert report["epochs_loss"] == losses and len(losses) == 12 and losses[-1] < losses[0] * 0.9
    auc, reference = validation_auc(candidate.predictor, parts), sklearn_auc(frame)
    assert abs(auc - reference) < 0.03, (auc, reference)  # logistic regression gets ~0.8 on this signal


def test_a_failing_rank_is_one_line_naming_the_rank(parts: dict[str, DataFrame], tmp_path: Path) -> None:
    train = parts["train"].withColumn("_label", parts["train"]["_label"] + 1)  # class index 2 is out of range
    sets = TrainingSets(train, parts["validation"], parts["test"], workdir=str(tmp_path))
    with pytest.raises(StageFailed) as failed:
        HorovodBackend().train(problem(), sets)
    message = str(failed.value)
    assert message.startswith("horovod training failed: IndexError: Target 2 is out of bounds"), message
    assert "(rank0)" in message or "(rank1)" in message
    assert "\n" not in message


def test_more_ranks_than_task_slots_is_refused_before_training(parts: dict[str, DataFrame], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"num_processes 3 needs as many Spark task slots .* has 2"):
        HorovodBackend().train(problem(num_processes=3), sets_for(parts, tmp_path))
    assert not (tmp_path / "horovod").exists()
