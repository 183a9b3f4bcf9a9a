"""The model section of a pipeline: validation, search grids, the horovod backend's check, promotion gates, and the
profile / bias / slices / monitor / label-issue sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from goldsmith.config.loader import load_pipeline
from goldsmith.config.models import (
    BIAS_POST_TRAINING,
    BIAS_PRE_TRAINING,
    BiasLimit,
    ModelSpec,
    PipelineConfig,
    TrainerConfig,
)
from goldsmith.errors import BackendUnavailable, ConfigError
from goldsmith.ml.registry import check_gates
from goldsmith.quality.bias import POST_TRAINING, PRE_TRAINING

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


def test_horovod_trains_the_mlp_and_names_what_to_install_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from goldsmith.ml import backends
    from goldsmith.validate import check_backends

    horovod = spec(trainer={"backend": "horovod", "algorithm": "mlp", "num_processes": 2})
    assert ModelSpec.model_validate(horovod).trainer.backend == "horovod"
    assert "horovod has no binary algorithm 'gbt' (choose from mlp)" in error_of(
        spec(trainer={"backend": "horovod", "algorithm": "gbt"}))
    assert "horovod trains on numeric and categorical" in error_of(
        spec(trainer={"backend": "horovod", "algorithm": "mlp"}, features={"numeric": ["x"], "text": ["t"]}))
    config = load_pipeline(REPO / "conf/pipelines/flights.yml", [
        "models.flight_delay.trainer={backend: horovod, algorithm: mlp}"])
    # Where Horovod's PyTorch extension is not installed, validation (and a run's first step) says what to install.
    real = backends.find_spec
    monkeypatch.setattr(backends, "find_spec", lambda name: None if name.startswith("horovod") else real(name))
    with pytest.raises(BackendUnavailable) as missing:
        check_backends(config)
    message = str(missing.value)
    assert "goldsmith[horovod]" in message and "scripts/horovod/build" in message and "\n" not in message


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


# --- profile, bias, slices, monitor and label-issue sections ---


def test_config_names_the_metrics_the_bias_module_computes() -> None:
    assert BIAS_PRE_TRAINING == PRE_TRAINING and BIAS_POST_TRAINING == POST_TRAINING


def test_bias_gates_are_post_training_metrics_with_bounds() -> None:
    dpl_gate = {"facet": "c", "gates": {"dpl": {"max": 1}}}
    assert "'dpl' is not a post-training bias metric" in error_of(spec(bias=dpl_gate))
    assert "give min, max or max_abs" in error_of(spec(bias={"facet": "c", "gates": {"di": {}}}))
    assert "max_abs replaces min and max" in error_of(spec(bias={"facet": "c", "gates": {"dppl": {"min": 0,
                                                                                                    "max_abs": 1}}}))
    assert BiasLimit(max_abs=0.1).bounds() == (-0.1, 0.1)
    assert BiasLimit(min=0.8, max=1.25).bounds() == (0.8, 1.25)
    assert BiasLimit(min=0.8).bounds() == (0.8, None)


def test_sections_that_need_classes_refuse_regression() -> None:
    regression = {"task": "regression", "trainer": {"backend": "spark-ml", "algorithm": "linear_regression"}}
    assert "bias metrics need classes" in error_of(spec(**regression, bias={"facet": "c"}))
    assert "label_issues needs classes" in error_of(spec(**regression, label_issues={"folds": 3}))


def test_slices_and_monitor_check_their_names() -> None:
    assert "slices.metric 'rmse' is not a binary metric" in error_of(spec(slices={"columns": ["c"], "metric": "rmse"}))
    assert "monitor.features: z are not features" in error_of(spec(monitor={"features": ["x", "z"]}))
    assert "unit" in error_of(spec(monitor={"period": {"column": "d", "unit": "fortnight"}}))
    assert "'psi2'" in error_of(spec(monitor={"thresholds": {"psi2": 0.1}}))
    defaults = ModelSpec.model_validate(spec(monitor={})).monitor
    assert defaults is not None and defaults.on_breach == "fail" and defaults.thresholds["psi"] == 0.25


def test_profile_tables_must_be_built_by_the_pipeline(tmp_path: Path) -> None:
    base: dict[str, Any] = {"name": "p", "gold": {"t": {"sql": "t.sql"}}}
    assert PipelineConfig.model_validate(base).profiled_tables() == ["gold.t"]
    with pytest.raises(ValueError, match=r"profile.tables: silver.nope is not a table this pipeline builds"):
        PipelineConfig.model_validate({**base, "profile": {"tables": ["silver.nope"]}})
    with pytest.raises(ValueError, match=r"gold\.m_label_review, which is also a gold table"):
        PipelineConfig.model_validate({
            "name": "p", "gold": {"t": {"sql": "t.sql"}, "m_label_review": {"sql": "r.sql"}},
            "models": {"m": spec(label_issues={})},
        })


def test_bad_section_in_a_file_is_one_line_exit_2(tmp_path: Path) -> None:
    text = (REPO / "conf/pipelines/flights.yml").read_text().replace("facet: origin", "facet: Origin!")
    (tmp_path / "sql").symlink_to(REPO / "conf/pipelines/sql")
    (tmp_path / "flights.yml").write_text(text)
    with pytest.raises(ConfigError, match=r"bias\.facet 'Origin!' must be lowercase") as info:
        load_pipeline(tmp_path / "flights.yml")
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_the_shipped_pipelines_judge_their_models() -> None:
    flights = load_pipeline(REPO / "conf/pipelines/flights.yml").models["flight_delay"]
    reviews = load_pipeline(REPO / "conf/pipelines/reviews.yml").models["review_sentiment"]
    assert flights.bias is not None and flights.bias.facet == "origin" and "di" in flights.bias.gates
    assert flights.monitor is not None and flights.monitor.period is not None
    assert reviews.bias is not None and reviews.bias.facet == "condition"
    assert reviews.label_issues is not None and reviews.label_issues.folds == 5
