"""`write_report` with an unreadable `ops.model_promotions`: the models section shows the error, the rest renders."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from goldsmith.config.models import PipelineConfig
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.report import collect, write_report


def config(root: Path) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "odd", "storage": {"root": str(root)},
        "sources": {"flights": {"format": "csv", "path": "/landing/flights", "schema": "id INT"}},
        "gold": {"features": {"sql": "unused.sql"}},
        "models": {"delay": {
            "table": "gold.features", "label": "y", "keys": ["id"], "task": "binary",
            "features": {"numeric": ["dep_delay"]}, "split": {"method": "random"},
            "trainer": {"backend": "spark-ml", "algorithm": "logistic_regression"},
        }},
    })


def test_an_unreadable_promotions_table_costs_only_the_models_section(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    calls: list[str] = []
    real = collect._collect_models

    def counted(*args: Any) -> list[collect.ModelReport]:
        calls.append("models")
        return real(*args)

    # A counter around the real reader (not a stand-in): the registry and ops tables are read once per report.
    monkeypatch.setattr(collect, "_collect_models", counted)
    lakehouse = Lakehouse(spark, str(tmp_path / "odd"))
    lakehouse.write(spark.range(1), "ops", "model_promotions")  # no `moved_at`: the models section cannot sort it

    page = write_report(spark, lakehouse, config(tmp_path / "odd"), tmp_path / "odd.html").read_text("utf-8")

    models = re.search(r'<section id="models">(.*?)</section>', page, re.S)
    assert models and 'class="section-error"' in models.group(1) and "moved_at" in models.group(1)
    assert page.count('class="section-error"') == 1
    assert calls == ["models"]
