"""The model section of a pipeline: validation, search grids, the horovod refusal, and promotion gates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from goldsmith.config.loader import load_pipeline
from goldsmith.config.models import ModelSpec, TrainerConfig
from goldsmith.errors import ConfigError
from goldsmith.ml.registry import check_gates

REPO = Path(__file__).parents[2]


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "table": "gold.t", "label": "y", "keys": ["id"], "task": "binary",
        "features": {"numeric": ["x"], "categorical": ["c"]},
        "split": {"method": "time", "column": "d", "validation_from": "2013-09-01", "test_from": "2013-11-01"},
        "trainer": {"backend": "spark-ml", "algorithm": "logistic_regression"},
    }
    base.update(changes)
    return base


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ValueError) as info:
        ModelSpec.model_validate(data)
    return str(info.value)


def test_the_shipped_pipelines_define_their_models() -> None:
    flights = load_pipeline(REPO / "conf/pipelines/flights.yml")
    reviews = load_pipeline(REPO / "conf/pipelines/reviews.yml")
    delay = flights.models["flight_delay"]
    assert (delay.task, delay.metric, delay.output_table("flight_delay")) == (
        "binary", "roc_auc", "gold.flight_delay_predictions")
    sentiment = reviews.models["review_sentiment"]
    assert sentiment.metric == "macro_f1" and sentiment.features.text == ["review_text"]
    assert len(sentiment.trainer.candidates()) == 3


def test_horovod_is_refused_with_the_reason_and_the_alternative(tmp_path: Path) -> None:
    message = error_of(spec(trainer={"backend": "horovod", "algorithm": "mlp"}))
    assert "Horovod 0.28.1" in message and "PyTorch >= 2.1" in message and "torch-distributor" in message
    with pytest.raises(ConfigError, match="torch-distributor"):
        load_pipeline(REPO / "conf/pipelines/flights.yml", ["models.flight_delay.trainer.backend=horovod"])


def test_search_grid_expands_to_every_combination() -> None:
    trainer = TrainerConfig.model_validate({
        "backend": "sklearn-udf", "algorithm": "hist_gradient_boosting", "params": {"max_iter": 50},
        "search": {"logistic_regression": {"C": [0.1, 1.0]},
                   "hist_gradient_boosting": {"learning_rate": [0.05, 0.1], "max_depth": [3, None]}},
    })
    candidates = trainer.candidates()
    assert len(candidates) == 2 + 4
    assert ("logistic_regression", {"C": 0.1}) in candidates
    # the base params belong to the base algorithm's candidates only
    assert ("hist_gradient_boosting", {"max_iter": 50, "learning_rate": 0.05, "max_depth": None}) in candidates


@pytest.mark.parametrize(("changes", "needle"), [
    ({"primary_metric": "rmse"}, "not a binary metric"),
    ({"gates": {"min_metrics": {"macro_f1": 0.5}}}, "not a binary metric"),
    ({"trainer": {"backend": "spark-ml", "algorithm": "hist_gradient_boosting"}}, "no binary algorithm"),
    ({"trainer": {"backend": "spark-ml", "algorithm": "gbt", "group_by": "c"}}, "sklearn-udf mode"),
    ({"trainer": {"backend": "spark-ml"}}, "name an algorithm"),
    ({"features": {"numeric": ["x", "x"]}}, "listed twice"),
    ({"features": {}}, "at least one feature"),
    ({"label": "x"}, "also a feature"),
    ({"table": "bronze.t"}, "silver.<table> or gold.<table>"),
    ({"split": {"method": "time", "column": "d", "validation_from": "2013-11-01", "test_from": "2013-09-01"}},
     "validation_from < test_from"),
    ({"split": {"method": "time", "column": "d"}}, "needs validation_from, test_from"),
    ({"split": {"method": "random", "fractions": [0.5, 0.5, 0.5]}}, "summing to 1"),
    ({"task": "multiclass", "trainer": {"backend": "spark-ml", "algorithm": "gbt"}}, "no multiclass algorithm"),
    ({"features": {"text": ["t"]}, "trainer": {"backend": "torch-distributor", "algorithm": "mlp"}}, "text needs"),
])
def test_bad_model_specs_are_named(changes: dict[str, Any], needle: str) -> None:
    assert needle in error_of(spec(**changes))


def test_a_model_must_read_a_table_the_pipeline_builds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gold\.nope is not a table this pipeline builds"):
        load_pipeline(REPO / "conf/pipelines/flights.yml", ["models.flight_delay.table=gold.nope"])
    with pytest.raises(ConfigError, match="must be a new gold"):
        load_pipeline(REPO / "conf/pipelines/flights.yml", ["models.flight_delay.score.output=gold.flight_features"])


def test_trainer_params_take_dotted_keys_from_the_command_line() -> None:
    config = load_pipeline(REPO / "conf/pipelines/flights.yml", ["models.flight_delay.trainer.params.maxIter=3"])
    assert config.models["flight_delay"].trainer.params["maxIter"] == 3


GATES = {"min_metrics": {"roc_auc": 0.6}, "max_metrics": {"log_loss": 0.7}, "min_improvement": 0.01}


@pytest.mark.parametrize(("metrics", "champion", "failures"), [
    ({"roc_auc": 0.70, "log_loss": 0.5}, None, 0),
    ({"roc_auc": 0.70, "log_loss": 0.5}, 0.68, 0),
    ({"roc_auc": 0.70, "log_loss": 0.5}, 0.695, 1),  # better, but not by the margin
    ({"roc_auc": 0.55, "log_loss": 0.8}, None, 2),
    ({"log_loss": 0.5}, None, 1),  # a gated metric that is missing fails
])
def test_gates(metrics: dict[str, float], champion: float | None, failures: int) -> None:
    assert len(check_gates(GATES, metrics, "roc_auc", True, champion)) == failures


def test_gates_on_a_lower_is_better_metric() -> None:
    assert check_gates({"min_improvement": 0.5}, {"rmse": 9.0}, "rmse", False, 10.0) == []
    assert check_gates({"min_improvement": 0.5}, {"rmse": 9.8}, "rmse", False, 10.0)
