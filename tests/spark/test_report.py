"""`write_report` on a small lakehouse with every ops table and a registered champion, checked in headless Chromium;
and on an empty lakehouse, where every section says what to run."""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure
from pyspark.sql import SparkSession

from goldsmith.config.models import PipelineConfig
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.io.ops import OpsLog
from goldsmith.ml.tracking import activate, experiment_id, tracking_for
from goldsmith.report import RenderCheck, check_render, write_report

MLFLOW_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
SECTION_IDS = ["lineage", "profiles", "models", "bias", "slices", "drift"]
T0 = datetime(2024, 5, 1, 8, 0, 0)
EVIL = "<script>alert('x')</script>"

SILVER_ROWS = [(1, "AA", 5.0), (2, "UA", 42.0), (3, "DL", -3.0), (4, None, None)]
SILVER_QUARANTINE = [("bad carrier", "5,ZZ,1"), ("bad delay", "6,AA,x"), ("bad delay", "7,UA,?")]
BRONZE_QUARANTINE = [("too few fields", "8"), ("too few fields", "9")]


def config(root: Path) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "toy_report", "description": "A toy pipeline for the report test",
        "storage": {"root": str(root)},
        "sources": {"flights": {"format": "csv", "path": "/landing/flights", "schema": "id INT, carrier STRING"}},
        "silver": {"flights": {"source": "flights", "sql": "unused.sql", "keys": ["id"]}},
        "gold": {"features": {"sql": "unused.sql"}},
        "models": {"delay": {
            "table": "gold.features", "label": "y", "keys": ["id"], "task": "binary",
            "features": {"numeric": ["dep_delay"], "categorical": ["carrier"]},
            "split": {"method": "random"},
            "trainer": {"backend": "spark-ml", "algorithm": "logistic_regression"},
        }},
    })


def write_tables(spark: SparkSession, lakehouse: Lakehouse) -> None:
    bronze = spark.createDataFrame([(i, c) for i, c, _ in SILVER_ROWS], "id INT, carrier STRING")
    lakehouse.write(bronze, "bronze", "flights")
    quarantine = "reason STRING, raw_record STRING"
    lakehouse.write(spark.createDataFrame(BRONZE_QUARANTINE, quarantine), "bronze", "flights_quarantine")
    silver = spark.createDataFrame(SILVER_ROWS, "id INT, carrier STRING, dep_delay DOUBLE")
    lakehouse.write(silver, "silver", "flights")
    lakehouse.write(spark.createDataFrame(SILVER_QUARANTINE, quarantine), "silver", "flights_quarantine")
    lakehouse.write(silver.where("id <= 3"), "gold", "features")
    predictions = spark.createDataFrame([(1, True), (2, False)], "id INT, prediction BOOLEAN")
    lakehouse.write(predictions, "gold", "delay_predictions")


def quality(stage: str, table: str, records: tuple[int, int, int, int], at: datetime, status: str = "ok"
            ) -> dict[str, Any]:
    records_in, out, quarantined, duplicates = records
    return {"run_id": f"run-{at:%H%M}", "pipeline": "toy_report", "stage": stage, "table_name": table,
            "batch_ids": ["b1"], "records_in": records_in, "records_out": out, "quarantined": quarantined,
            "duplicates": duplicates, "inserted": out, "updated": 0, "rule_violations": {"known_carrier": quarantined},
            "status": status, "duration_seconds": 1.5, "recorded_at": at}


def profile_rows(run_id: str, at: datetime, delay_mean: float) -> list[dict[str, Any]]:
    base = {"run_id": run_id, "pipeline": "toy_report", "table_name": "silver.flights", "table_version": 0,
            "rows": 4, "profiled_at": at}
    return [
        {**base, "column_name": "id", "data_type": "int", "nulls": 0, "distinct_approx": 4, "min_value": "1",
         "max_value": "4", "mean": 2.5, "stddev": 1.29, "quantiles": {"p50": 2.0},
         "histogram": [{"lower": 1.0, "upper": 2.5, "count": 2}, {"lower": 2.5, "upper": 4.0, "count": 2}]},
        {**base, "column_name": "dep_delay", "data_type": "double", "nulls": 1, "distinct_approx": 3,
         "min_value": "-3.0", "max_value": "42.0", "mean": delay_mean, "stddev": 24.0, "quantiles": {"p50": 5.0},
         "histogram": [{"lower": -3.0, "upper": 19.5, "count": 2}, {"lower": 19.5, "upper": 42.0, "count": 1}]},
        {**base, "column_name": "carrier", "data_type": "string", "nulls": 1, "distinct_approx": 3,
         "top_values": [{"value": "AA", "count": 1}, {"value": "UA", "count": 1}, {"value": "DL", "count": 1}]},
    ]


def bias_row(run_id: str, at: datetime, stage: str, value_of: str, metric: str, value: float, breached: bool
             ) -> dict[str, Any]:
    return {"run_id": run_id, "pipeline": "toy_report", "model_name": "delay", "model_version": 1,
            "mlflow_run_id": "m", "stage": stage, "dataset": "test", "facet": "carrier", "facet_value": value_of,
            "group_column": None, "label_value": "1", "metric": metric, "value": value, "n_a": 3, "n_d": 1,
            "threshold_min": -0.3, "threshold_max": 0.3, "breached": breached, "computed_at": at}


def slice_row(value_of: str, value: float, flagged: bool, reason: str | None) -> dict[str, Any]:
    return {"run_id": "run-s", "pipeline": "toy_report", "model_name": "delay", "model_version": 1,
            "mlflow_run_id": "m", "dataset": "test", "slice_column": "carrier", "slice_value": value_of,
            "metric": "accuracy", "value": value, "overall": 0.75, "rows": 40, "flagged": flagged,
            "reason": reason, "computed_at": T0}


def monitor_row(kind: str, column: str, period: str, value: float, breached: bool, run_id: str = "run-m"
                ) -> dict[str, Any]:
    return {"run_id": run_id, "pipeline": "toy_report", "model_name": "delay", "model_version": 1,
            "baseline": "train split", "score_window": "d >= '2013-04-16'", "period": period, "kind": kind,
            "column_name": column, "metric": "psi", "value": value, "threshold": 0.2, "breached": breached,
            "baseline_rows": 1000, "window_rows": 200, "inputs": "{}",
            "checked_at": T0 + (timedelta(hours=1) if run_id == "run-m" else timedelta())}


def write_ops(lakehouse: Lakehouse) -> None:
    ops = OpsLog(lakehouse)
    later = T0 + timedelta(hours=1)
    ops.append("quality_metrics", [
        quality("ingest", "bronze.flights", (6, 4, 2, 0), T0),
        quality("refine", "silver.flights", (8, 4, 3, 1), T0),
        # a later run that had nothing new must not hide the numbers above
        quality("refine", "silver.flights", (0, 0, 0, 0), later, status="skipped"),
        quality("features", "gold.features", (3, 3, 0, 0), T0),
        quality("train", "model delay", (3, 3, 0, 0), T0),
        quality("score", "gold.delay_predictions", (2, 2, 0, 0), T0),
    ])
    ops.append("gold_builds", [{"table_name": "features", "run_id": "run-0800", "rows": 3, "table_version": 0,
                                "inputs": json.dumps({"tables": {"silver.flights": 0}}), "built_at": T0}])
    ops.append("model_promotions", [
        {"model_name": "delay", "alias": "champion", "action": "promote", "from_version": None, "to_version": 1,
         "reason": f"passed the gates {EVIL}", "actor": "ci@host", "mlflow_run_id": "m", "run_id": "run-0800",
         "moved_at": T0},
    ])
    ops.append("scoring_runs", [{"model_name": "delay", "model_version": 1, "input_table": "gold.features",
                                 "input_version": 0, "score_window": "(all rows)",
                                 "output_table": "gold.delay_predictions", "output_version": 0, "rows": 2,
                                 "run_id": "run-0800", "scored_at": T0}])
    ops.append("run_log", [
        {"run_id": "run-old", "pipeline": "toy_report", "stages": "ingest", "status": "failed", "message": "boom",
         "started_at": T0 - timedelta(days=1), "finished_at": T0 - timedelta(days=1), "duration_seconds": 1.0},
        {"run_id": "run-latest-42", "pipeline": "toy_report", "stages": "ingest,refine,features,train,score",
         "status": "ok", "message": "", "started_at": T0, "finished_at": later, "duration_seconds": 3600.0},
    ])
    ops.append("profiles", profile_rows("p-old", T0 - timedelta(days=1), 99.5) + profile_rows("p-new", T0, 14.67))
    ops.append("profile_correlations", [{"run_id": "p-new", "pipeline": "toy_report", "table_name": "silver.flights",
                                         "table_version": 0, "column_a": "id", "column_b": "dep_delay",
                                         "pearson": -0.31, "rows": 3, "profiled_at": T0}])
    ops.append("bias_metrics", [
        bias_row("b-old", T0 - timedelta(days=1), "pre_training", "UA", "DPL", 0.99, True),
        bias_row("b-new", T0, "pre_training", "UA", "DPL", 0.42, True),
        bias_row("b-new", T0, "pre_training", "AA", "DPL", -0.05, False),
        bias_row("b-new", T0, "post_training", "UA", "DI", 0.12, False),
        bias_row("b-new", T0, "post_training", "AA", "DI", 0.08, False),
    ])
    ops.append("slice_metrics", [
        slice_row("AA", 0.81, False, None),
        slice_row("UA", 0.52, True, "accuracy 0.52 is 0.23 below overall 0.75"),
        slice_row("DL", 0.77, False, None),
    ])
    ops.append("monitor_results", [
        monitor_row("feature", "dep_delay", "2013-04", 0.05, False),
        monitor_row("feature", "dep_delay", "2013-05", 0.41, True),
        monitor_row("feature", "dep_delay", "all", 0.23, True),
        monitor_row("feature", "carrier", "2013-04", 0.02, False),
        monitor_row("feature", "carrier", "2013-05", 0.03, False),
        monitor_row("prediction", "prediction", "all", 0.11, False),
        monitor_row("label", "y", "all", 0.07, False),
        monitor_row("feature", "carrier", "all", 0.97, True, run_id="m-old"),
    ])


def register_champion(lakehouse: Lakehouse) -> None:
    tracking = tracking_for(lakehouse.root)
    client = activate(tracking)
    run = client.create_run(experiment_id(client, tracking, "toy_report"), run_name="delay-test")
    run_id = run.info.run_id
    for key, value in {"test_roc_auc": 0.8123, "test_accuracy": 0.75, "val_roc_auc": 0.8, "train_seconds": 2.0}.items():
        client.log_metric(run_id, key, value)
    for name in ("roc_curve", "pr_curve", "confusion_matrix", "per_class_report"):
        figure = Figure(figsize=(4, 3))
        figure.add_subplot().plot([0, 0.3, 1], [0, 0.8, 1])
        figure.suptitle(name)
        client.log_figure(run_id, figure, f"plots/test_{name}.png")
    client.log_dict(run_id, {"primary_metric": "roc_auc", "candidates": [
        {"rank": 1, "candidate": "logistic_regression[regParam=0.1]", "val_roc_auc": 0.8, "train_seconds": 1.2},
        {"rank": 2, "candidate": "gbt[maxDepth=3]", "val_roc_auc": 0.7712, "train_seconds": 3.4},
    ]}, "leaderboard.json")
    client.set_terminated(run_id)
    client.create_registered_model("delay")
    version = client.create_model_version(
        "delay", source=f"{run.info.artifact_uri}/model", run_id=run_id,
        tags={"goldsmith.algorithm": "logistic_regression[regParam=0.1]", "goldsmith.backend": "spark-ml"},
    )
    client.set_registered_model_alias("delay", "champion", version.version)


def section_text(dom: str, section_id: str) -> str:
    """The visible text of one `<section>` of a dumped DOM, whitespace collapsed."""
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', dom, re.S)
    assert match, f"no section {section_id}"
    text = re.sub(r"<[^>]+>", " ", match.group(1).replace("<wbr>", ""))
    return " ".join(html.unescape(text).split())


def artifacts_dir(tmp: Path) -> Path:
    folder = os.environ.get("GOLDSMITH_ARTIFACTS")
    return Path(folder) if folder else tmp


@dataclass
class Built:
    report: Path
    check: RenderCheck


@pytest.fixture(scope="module")
def built(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Built:
    # `mlflow.set_tracking_uri` / `set_registry_uri` export these variables, so an earlier test's lakehouse would
    # win over this one's in `tracking_for` and `activate`.
    saved = {name: os.environ.pop(name, None) for name in MLFLOW_VARIABLES}
    try:
        tmp = tmp_path_factory.mktemp("report")
        lakehouse = Lakehouse(spark, str(tmp / "lake"))
        write_tables(spark, lakehouse)
        write_ops(lakehouse)
        register_champion(lakehouse)
        report = write_report(spark, lakehouse, config(tmp / "lake"), tmp / "out" / "report.html")
        check = check_render(report, artifacts_dir(tmp) / "goldsmith-report.png")
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
    return Built(report, check)


def test_report_renders_every_section_offline(built: Built) -> None:
    check, page = built.check, built.report.read_text(encoding="utf-8")
    assert check.rendered and check.console_errors == []
    assert check.sections == SECTION_IDS
    # 4 training plots, 2 profile charts + a heatmap, a bias chart, a slice chart, a PSI heatmap
    assert (check.images, check.broken_images) == (10, 0)
    assert 'class="section-error"' not in page
    # self-contained: every src/href is inline data or an in-page anchor
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert "http://" not in page and "https://" not in page and "@import" not in page and "url(" not in page
    assert 10_000 < built.report.stat().st_size < 3_000_000
    # values from the lakehouse are escaped, never markup
    assert EVIL not in page and html.escape(EVIL, quote=True) in page


def test_screenshot_is_a_real_png(built: Built) -> None:
    shot = built.check.screenshot
    assert shot is not None and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000


def test_header_shows_pipeline_root_and_latest_run(built: Built) -> None:
    header = re.search(r"<header>(.*?)</header>", built.check.dom, re.S)
    assert header
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", header.group(1))).split())
    assert "toy_report" in text and "run-latest-42" in text and "boom" not in text
    assert str(built.report.parent.parent / "lake") in text
    assert all(f'href="#{s}"' in header.group(1) for s in SECTION_IDS)


def test_lineage_counts_and_quarantine(built: Built) -> None:
    text = section_text(built.check.dom, "lineage")
    assert f"bronze.flights_quarantine {len(BRONZE_QUARANTINE)} rows quarantined" in text
    assert f"silver.flights_quarantine {len(SILVER_QUARANTINE)} rows quarantined" in text
    assert f"silver.flights {len(SILVER_ROWS)} rows in 8 · out 4 · dup 1" in text  # not the later skipped run
    assert "gold.features 3 rows" in text and "← silver.flights" in text
    assert "gold.delay_predictions 2 rows" in text and "champion v1" in text
    assert built.check.dom.count("node quarantine has-rows") == 2


def test_profiles_show_the_latest_run(built: Built) -> None:
    text = section_text(built.check.dom, "profiles")
    assert "silver.flights" in text and "p-new" in text and "p-old" not in text
    nulls_pct = 100 * sum(1 for r in SILVER_ROWS if r[2] is None) / len(SILVER_ROWS)
    assert f"dep_delay double {nulls_pct:g} 3 -3.0 42.0 14.67 24 5" in text
    assert "99.5" not in text


def test_models_show_champion_metrics_plots_and_history(built: Built) -> None:
    text = section_text(built.check.dom, "models")
    assert "delay champion v1" in text and "logistic_regression[regParam=0.1]" in text
    assert "roc_auc 0.8123" in text and "accuracy 0.75" in text
    assert "2 gbt[maxDepth=3] 0.7712 3.4" in text
    assert "promote none → v1 passed the gates" in text
    assert "gold.delay_predictions v0" in text
    assert built.check.dom.count('class="plot"') == 4


def test_bias_highlights_the_breach_of_the_latest_run(built: Built) -> None:
    text = section_text(built.check.dom, "bias")
    assert "1 of 4 metrics outside their allowed range" in text
    assert "pre_training carrier UA 1 DPL 0.42 -0.3 … 0.3" in text
    assert "0.99" not in text
    assert '<td class="num bad">0.42</td>' in built.check.dom


def test_slices_list_flagged_first(built: Built) -> None:
    text = section_text(built.check.dom, "slices")
    flagged = "carrier UA accuracy 0.52 0.75 -0.23 40 accuracy 0.52 is 0.23 below overall 0.75"
    assert "1 of 3 slices flagged" in text and flagged in text
    assert text.index("Flagged slices") < text.index("carrier AA")


def test_drift_lists_prediction_and_label_first_then_breaches(built: Built) -> None:
    text = section_text(built.check.dom, "drift")
    assert "2 of 7 checks breached" in text and "0.97" not in text
    rows = re.findall(r"(prediction|label|feature) (\S+) psi ([\d.]+) 0.2 (\S+)", text)
    assert rows == [("prediction", "prediction", "0.11", "all"), ("label", "y", "0.07", "all"),
                    ("feature", "dep_delay", "0.41", "2013-05"), ("feature", "dep_delay", "0.23", "all")]


def test_an_empty_lakehouse_says_what_to_run(spark: SparkSession, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MLFLOW_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    lakehouse = Lakehouse(spark, str(tmp_path / "empty"))
    report = write_report(spark, lakehouse, config(tmp_path / "empty"), tmp_path / "empty.html")
    check = check_render(report)
    assert check.rendered and check.sections == SECTION_IDS
    assert (check.images, check.broken_images, check.console_errors) == (0, 0, [])
    for section, command in (("profiles", "--stages profile"), ("bias", "--stages monitor"),
                             ("slices", "--stages monitor"), ("drift", "--stages monitor")):
        text = section_text(check.dom, section)
        assert "not computed yet" in text and command in text
    assert "not trained yet" in section_text(check.dom, "models")
    assert "not built yet" in section_text(check.dom, "lineage")
    assert not (tmp_path / "empty" / "_mlflow").exists()  # a report creates no tracking database


def test_an_unreadable_ops_table_costs_only_its_section(spark: SparkSession, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MLFLOW_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    lakehouse = Lakehouse(spark, str(tmp_path / "odd"))
    lakehouse.write(spark.range(1), "ops", "slice_metrics")  # not the slice_metrics schema
    page = write_report(spark, lakehouse, config(tmp_path / "odd"), tmp_path / "odd.html").read_text("utf-8")
    slices = re.search(r'<section id="slices">(.*?)</section>', page, re.S)
    assert slices and 'class="section-error"' in slices.group(1)
    assert "SchemaMismatch" in slices.group(1) and "model_name" in slices.group(1)
    assert page.count('class="section-error"') == 1 and page.count("not computed yet") >= 3
