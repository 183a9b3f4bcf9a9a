"""The profile, bias, slices, monitor and label-issue sections of a pipeline: validated before Spark starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from goldsmith.config.loader import load_pipeline
from goldsmith.config.models import BIAS_POST_TRAINING, BIAS_PRE_TRAINING, BiasLimit, ModelSpec, PipelineConfig
from goldsmith.errors import ConfigError
from goldsmith.quality.bias import POST_TRAINING, PRE_TRAINING

REPO = Path(__file__).parents[2]


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "table": "gold.t", "label": "y", "keys": ["id"], "task": "binary",
        "features": {"numeric": ["x"], "categorical": ["c"]},
        "split": {"method": "random"},
        "trainer": {"backend": "spark-ml", "algorithm": "logistic_regression"},
    }
    base.update(changes)
    return base


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ValueError) as info:
        ModelSpec.model_validate(data)
    return str(info.value)


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
