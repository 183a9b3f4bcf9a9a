"""monitor: compare what the champion scored (the scoring window) with what it was trained on (the baseline).

The baseline is the training split of the model's input table at the Delta version the champion was trained on
(time travel), predicted by the champion. The window is every row of `gold.<model>_predictions` scored by the
champion, joined with the input table for its features and, once they arrive, its labels. Results, per period of
the window (`monitor.period`) and for the whole window (`all`), go to `ops.monitor_results`:

- feature drift: PSI and JS per feature, KS per numeric feature (`goldsmith.monitor.drift`);
- prediction drift: the positive-class probability (binary), the predicted class (multiclass) or value;
- label drift: the labels that have arrived in the window against the training labels;
- performance: the primary metric on the labelled window rows against the champion's test value.

A value above its threshold (or a metric worse than the test value by more than `performance_drop`) is a
violation, except in periods with fewer than `min_rows` rows (`goldsmith.monitor.breaches`). On a violation the
stage fails (`on_breach: fail`, exit code 3) or tags the champion version `goldsmith.retrain_requested`
(`on_breach: flag`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from goldsmith.config.models import ModelSpec, MonitorConfig
from goldsmith.errors import DriftDetected
from goldsmith.io.ops import now
from goldsmith.io.tables import TableRef
from goldsmith.jobs.context import RunContext, TableResult, log
from goldsmith.ml.base import LABEL, PRED, PROBA, Predictor, Problem
from goldsmith.ml.loading import load_predictor
from goldsmith.ml.metrics import (
    classification_metrics,
    grouped_classification_counts,
    grouped_regression_sums,
    regression_metrics,
)
from goldsmith.ml.prepare import SPLIT, label_columns, with_split
from goldsmith.ml.registry import CHAMPION, Registry, recorded_test_metrics, version_tags
from goldsmith.ml.tracking import open_registry
from goldsmith.monitor.breaches import (
    Check,
    CheckKind,
    MonitorRun,
    drift_checks,
    performance_checks,
    violations,
)
from goldsmith.monitor.drift import DriftResult, drift_metrics

PERIOD = "_period"
PREDICTION = "prediction"
RETRAIN_TAG = "goldsmith.retrain_requested"

# What monitoring one model found: no violation, a violation, or nothing checked (no scored champion, or the same
# inputs as the last check, whose violations are reported again).
MonitorStatus = Literal["ok", "breached", "skipped"]


@dataclass
class MonitorOutcome:
    """What monitoring one model did, for the run summary."""

    name: str
    version: int
    status: MonitorStatus
    checks: int = 0
    breaches: list[str] = field(default_factory=list)
    action: str = ""


@dataclass(frozen=True)
class Champion:
    """The scored champion of one model and what its check reads: the training table at the version the champion
    was trained on (`baseline_version`), the scoring input (`window`) and its predictions (`output`). `inputs` is
    their fingerprint (JSON): the same inputs as the last check mean nothing new to check."""

    version: int
    model_version: Any  # MLflow's ModelVersion
    baseline_version: int | None
    window: TableRef
    output: TableRef
    inputs: str


def run(ctx: RunContext) -> list[TableResult]:
    """Monitor every model with a `monitor` section and a scored champion."""
    results = []
    failures = []
    for name, spec in ctx.config.models.items():
        if spec.monitor is None:
            continue
        result, outcome = monitor_model(ctx, name, spec)
        results.append(result)
        if outcome is not None:
            ctx.models.append(outcome)
            if outcome.breaches and spec.monitor.on_breach == "fail":
                failures.append(f"model {name} v{outcome.version}: {len(outcome.breaches)} violation(s): "
                                + "; ".join(outcome.breaches[:5]) + ("; ..." if len(outcome.breaches) > 5 else ""))
    if failures:  # the stage's results are recorded as the run ends (`goldsmith.jobs.pipeline`)
        raise DriftDetected("drift monitor: " + " | ".join(failures))
    return results


def _period(config: MonitorConfig) -> Any:
    period = config.period
    if period is None:
        return None
    return F.date_trunc(period.unit, F.col(period.column).cast("timestamp")).cast("date").cast("string")


def _last_check(ctx: RunContext, name: str) -> dict[str, Any] | None:
    if not ctx.lakehouse.exists("ops", "monitor_results"):
        return None
    latest = (
        ctx.lakehouse.read("ops", "monitor_results").where(F.col("model_name") == name)
        .orderBy(F.col("checked_at").desc()).select("run_id", "inputs").first()
    )
    if latest is None:
        return None
    breaches = [
        f"{r['kind']} {r['column_name']} {r['metric']} {r['value']:.3f} > {r['threshold']:.3f} ({r['period']})"
        for r in ctx.lakehouse.read("ops", "monitor_results")
        .where((F.col("run_id") == latest["run_id"]) & (F.col("model_name") == name) & F.col("breached")).collect()
    ]
    return {"inputs": latest["inputs"], "run_id": latest["run_id"], "breaches": breaches}


def monitor_model(ctx: RunContext, name: str, spec: ModelSpec) -> tuple[TableResult, MonitorOutcome | None]:
    """Check the champion of one model: its baseline and window, their drift and realised metric, the violations
    (`goldsmith.monitor.breaches`), recorded in `ops.monitor_results`."""
    config = spec.monitor
    assert config is not None
    result = TableResult(stage="monitor", table=f"model {name}")
    registry = open_registry(ctx.lakehouse.root, ctx.ops, ctx.config.storage.tracking_uri, ctx.run_id)
    champion = scored_champion(ctx, registry, name, spec, config)
    if champion is None:
        result.status, result.detail = "skipped", "no champion scored yet"
        log.info("  model %s: no scored champion yet, nothing to monitor", name)
        return result, None
    version = champion.version
    last = _last_check(ctx, name)
    if last is not None and last["inputs"] == champion.inputs:
        result.status, result.detail = "skipped", f"v{version} already checked on the same data"
        log.info("  model %s: champion v%d already checked on the same data (run %s)", name, version, last["run_id"])
        status: MonitorStatus = "breached" if last["breaches"] else "skipped"
        return result, MonitorOutcome(name, version, status, 0, last["breaches"], "already checked")

    predictor = load_predictor(registry.client, name, version, spec)
    baseline, window = baseline_and_window(ctx, spec, config, champion)
    found, performance = measure(predictor, spec, config, baseline, window)
    checks = [
        *drift_checks(found, {str(k): v for k, v in config.thresholds.items()}, config.min_rows, spec.label),
        *performance_checks(performance, spec.metric, recorded_test_metrics(champion.model_version).get(spec.metric),
                            config.performance_drop, config.min_rows),
    ]
    outcome = record_checks(ctx, registry, name, spec, champion, checks)
    result.records_in = result.records_out = outcome.checks
    result.detail = f"{len(outcome.breaches)} violation(s)"
    ctx.record(result)
    return result, outcome


def scored_champion(
    ctx: RunContext, registry: Registry, name: str, spec: ModelSpec, config: MonitorConfig,
) -> Champion | None:
    """The model's champion and the inputs of its check, or None when there is no champion or nothing scored."""
    version = registry.alias(name, CHAMPION)
    output = TableRef.parse(spec.output_table(name))
    if version is None or not ctx.lakehouse.exists(output.layer, output.table):
        return None
    mv = registry.version(name, version)
    tags = version_tags(mv)
    window = TableRef.parse(spec.score.table or spec.table)
    baseline_version = int(tags["goldsmith.table_version"]) if tags.get("goldsmith.table_version", "None") != "None" \
        else None
    inputs = json.dumps({
        "champion": version, "baseline": f"{spec.table}@v{baseline_version}",
        "window_table": f"{window}@v{ctx.lakehouse.version(window.layer, window.table)}",
        "predictions": f"{output}@v{ctx.lakehouse.version(output.layer, output.table)}",
        "config": config.model_dump(mode="json"),
    }, sort_keys=True)
    return Champion(version, mv, baseline_version, window, output, inputs)


def baseline_and_window(
    ctx: RunContext, spec: ModelSpec, config: MonitorConfig, champion: Champion,
) -> tuple[DataFrame, DataFrame]:
    """The baseline (the training split of the training table at the champion's version) and the window (the rows
    the champion scored, with today's features and labels, and `_period` when the monitor has a period)."""
    train = TableRef.parse(spec.table)
    source = ctx.lakehouse.read(train.layer, train.table, champion.baseline_version)
    labelled = source.where(F.col(spec.label).isNotNull())
    if spec.where:
        labelled = labelled.where(F.expr(spec.where))
    baseline = with_split(labelled, spec).where(F.col(SPLIT) == "train")
    # The rows the champion scored, with today's features and labels (predicted again below: the same model on
    # the same features gives the same probabilities, and the baseline is predicted the same way).
    output = champion.output
    scored = (ctx.lakehouse.read(output.layer, output.table).where(F.col("model_version") == champion.version)
              .select(*spec.keys))
    window = ctx.lakehouse.read(champion.window.layer, champion.window.table).join(scored, [*spec.keys], "inner")
    period = _period(config)
    if period is not None:
        window = window.withColumn(PERIOD, period)
    return baseline, window


def measure(
    predictor: Predictor, spec: ModelSpec, config: MonitorConfig, baseline: DataFrame, window: DataFrame,
) -> tuple[list[tuple[CheckKind, DriftResult]], dict[str, tuple[float, int]]]:
    """Both sides predicted by the champion: the drift of the features, the prediction and (once labels arrive)
    the label, and the realised primary metric per period ({period: (value, labelled rows)})."""
    problem = predictor.problem
    names = config.features or [f for f in spec.features.all if f not in spec.features.text]
    numeric = [f for f in names if f in spec.features.numeric]
    categorical = [f for f in names if f in spec.features.categorical]
    prediction_kind = _prediction_kind(problem)
    typed = {f: F.col(f).cast("double") for f in numeric} | {f: F.col(f).cast("string") for f in categorical}
    # the label as a class index, for the realised metric (the champion's classes: no class weights needed)
    extra = {PREDICTION: _prediction_value(problem), LABEL: label_columns(problem)[LABEL]}
    base_pred = predictor.transform(baseline).withColumns(extra).withColumns(typed)
    base_pred = base_pred.persist(StorageLevel.MEMORY_AND_DISK)
    win_pred = predictor.transform(window).withColumns(extra).withColumns(typed)
    win_pred = win_pred.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        period_name = PERIOD if config.period is not None else None
        found: list[tuple[CheckKind, DriftResult]] = []
        drift = drift_metrics(
            base_pred, win_pred, numeric=[*numeric, *([PREDICTION] if prediction_kind == "numeric" else [])],
            categorical=[*categorical, *([PREDICTION] if prediction_kind == "categorical" else [])],
            period=period_name, bins=config.bins,
        )
        found += [("prediction" if r.column == PREDICTION else "feature", r) for r in drift]
        label_kind = "numeric" if not problem.is_classifier else "categorical"
        base_labels = base_pred.withColumn("label", F.col(spec.label).cast("double" if label_kind == "numeric"
                                                                              else "string"))
        win_labelled = win_pred.where(F.col(spec.label).isNotNull())
        win_labels = win_labelled.withColumn("label", F.col(spec.label).cast("double" if label_kind == "numeric"
                                                                              else "string"))
        labelled_rows = win_labelled.count()
        if labelled_rows:
            found += [("label", r) for r in drift_metrics(
                base_labels, win_labels, numeric=["label"] if label_kind == "numeric" else [],
                categorical=["label"] if label_kind == "categorical" else [], period=period_name, bins=config.bins,
            )]
        performance = _performance(win_labelled, problem, spec, period_name) if labelled_rows else {}
    finally:
        base_pred.unpersist()
        win_pred.unpersist()
    return found, performance


def record_checks(
    ctx: RunContext, registry: Registry, name: str, spec: ModelSpec, champion: Champion, checks: list[Check],
) -> MonitorOutcome:
    """Append the checks to `ops.monitor_results`, log them, and act on violations (`on_breach: flag` tags the
    champion version for retraining; `fail` is raised by `run` once every model is checked)."""
    config = spec.monitor
    assert config is not None
    version = champion.version
    monitor_run = MonitorRun(
        run_id=ctx.run_id, pipeline=ctx.config.name, model_name=name, model_version=version,
        baseline=f"{spec.table}@v{champion.baseline_version} train split",
        score_window=spec.score.where or "(all rows)", inputs=champion.inputs, checked_at=now(),
    )
    rows = [monitor_run.row(check) for check in checks]
    breaches = violations(checks)
    ctx.ops.append("monitor_results", rows)
    _log_summary(name, version, rows, breaches)
    outcome = MonitorOutcome(name, version, "breached" if breaches else "ok", len(rows), breaches)
    if breaches and config.on_breach == "flag":
        registry.client.set_model_version_tag(name, str(version), RETRAIN_TAG, json.dumps(
            {"run_id": ctx.run_id, "violations": breaches[:20]}))
        outcome.action = f"champion v{version} tagged {RETRAIN_TAG}"
        log.warning("  model %s: champion v%d flagged for retraining (%d violations)", name, version, len(breaches))
    elif breaches:
        outcome.action = "stage failed"
    return outcome


def _prediction_kind(problem: Problem) -> str:
    """Binary probabilities and regression values drift as numbers, multiclass predictions as categories."""
    return "categorical" if problem.is_classifier and problem.n_classes > 2 else "numeric"


def _prediction_value(problem: Problem) -> Any:
    """The value whose drift is measured: P(positive) for binary, the predicted class for multiclass."""
    if not problem.is_classifier:
        return F.col(PRED).cast("double")
    if problem.n_classes == 2:
        return F.element_at(F.col(PROBA), 2)
    return F.element_at(F.array(*[F.lit(c) for c in problem.classes]), F.col(PRED) + 1)


def _performance(labelled: DataFrame, problem: Problem, spec: ModelSpec,
                 period: str | None) -> dict[str, tuple[float, int]]:
    """The primary metric on the labelled window, per period and for `all`."""
    groups = [F.col(period)] if period else []
    found: dict[str, tuple[float, int]] = {}
    if problem.is_classifier:
        per = grouped_classification_counts(labelled, problem.n_classes, groups)
        total = None
        for key, counts in per.items():
            metrics = classification_metrics(counts, problem.classes, problem.task)
            if period:
                found[str(key[0])] = (metrics.get(spec.metric, math.nan), counts.n)
            total = counts if total is None else total.merge(counts)
        if total is not None:
            found["all"] = (classification_metrics(total, problem.classes, problem.task).get(spec.metric, math.nan),
                            total.n)
    else:
        sums_per = grouped_regression_sums(labelled, groups)
        total_sums = None
        for key, sums in sums_per.items():
            if period:
                found[str(key[0])] = (regression_metrics(sums).get(spec.metric, math.nan), sums.n)
            total_sums = sums if total_sums is None else total_sums.merge(sums)
        if total_sums is not None:
            found["all"] = (regression_metrics(total_sums).get(spec.metric, math.nan), total_sums.n)
    return found


def _log_summary(name: str, version: int, rows: list[dict[str, Any]], breaches: list[str]) -> None:
    whole = [r for r in rows if r["period"] == "all"]
    psi = sorted((r for r in whole if r["metric"] == "psi" and r["value"] is not None), key=lambda r: -r["value"])
    top = ", ".join(f"{r['column_name']} {r['value']:.3f}" for r in psi[:5])
    log.info("  model %s: champion v%d monitored, %d checks, %d violation(s); highest PSI (whole window): %s",
             name, version, len(rows), len(breaches), top or "n/a")
    for r in whole:
        if r["kind"] == "performance":
            log.info("  model %s: %s on the labelled window %.4f (threshold %s, %s rows)", name, r["metric"],
                     r["value"] if r["value"] is not None else float("nan"),
                     f"{r['threshold']:.4f}" if r["threshold"] is not None else "none", r["window_rows"])
    for line in breaches[:10]:
        log.warning("  model %s: violation: %s", name, line)
