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
violation, except in periods with fewer than `min_rows` rows. On a violation the stage fails (`on_breach: fail`,
exit code 3) or tags the champion version `goldsmith.retrain_requested` (`on_breach: flag`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from goldsmith.config.models import LOWER_IS_BETTER, ModelSpec, MonitorConfig
from goldsmith.errors import GoldsmithError
from goldsmith.io.ops import now
from goldsmith.jobs.context import RunContext, TableResult, log
from goldsmith.ml.base import LABEL, PRED, PROBA, Problem
from goldsmith.ml.loading import load_predictor
from goldsmith.ml.metrics import (
    classification_metrics,
    grouped_classification_counts,
    grouped_regression_sums,
    regression_metrics,
)
from goldsmith.ml.registry import CHAMPION, Registry, recorded_test_metrics, version_tags
from goldsmith.ml.tracking import activate, tracking_for
from goldsmith.monitor.drift import DriftResult, drift_metrics

PERIOD = "_period"
PREDICTION = "prediction"
RETRAIN_TAG = "goldsmith.retrain_requested"


class DriftDetected(GoldsmithError):
    """The monitor found a violation and the model's monitor says `on_breach: fail`."""

    exit_code = 3


@dataclass
class MonitorOutcome:
    """What monitoring one model found, for the run summary."""

    name: str
    version: int
    status: str  # ok | breached | skipped
    checks: int = 0
    breaches: list[str] = field(default_factory=list)
    action: str = ""


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
    if failures:
        ctx.flush()
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
    config = spec.monitor
    assert config is not None
    result = TableResult(stage="monitor", table=f"model {name}")
    client = activate(tracking_for(ctx.lakehouse.root, ctx.config.storage.tracking_uri))
    registry = Registry(client, ctx.ops, ctx.run_id)
    version = registry.alias(name, CHAMPION)
    output = spec.output_table(name)
    out_layer, out_table = output.split(".", 1)
    if version is None or not ctx.lakehouse.exists(out_layer, out_table):
        result.status, result.detail = "skipped", "no champion scored yet"
        log.info("  model %s: no scored champion yet, nothing to monitor", name)
        return result, None
    mv = registry.version(name, version)
    tags = version_tags(mv)
    layer, table = (spec.score.table or spec.table).split(".", 1)
    train_layer, train_table = spec.table.split(".", 1)
    baseline_version = int(tags["goldsmith.table_version"]) if tags.get("goldsmith.table_version", "None") != "None" \
        else None
    inputs = json.dumps({
        "champion": version, "baseline": f"{spec.table}@v{baseline_version}",
        "window_table": f"{layer}.{table}@v{ctx.lakehouse.version(layer, table)}",
        "predictions": f"{output}@v{ctx.lakehouse.version(out_layer, out_table)}",
        "config": config.model_dump(mode="json"),
    }, sort_keys=True)
    last = _last_check(ctx, name)
    if last is not None and last["inputs"] == inputs:
        result.status, result.detail = "skipped", f"v{version} already checked on the same data"
        log.info("  model %s: champion v%d already checked on the same data (run %s)", name, version, last["run_id"])
        status = "breached" if last["breaches"] else "skipped"
        return result, MonitorOutcome(name, version, status, 0, last["breaches"], "already checked")

    predictor = load_predictor(client, name, version, spec)
    problem = predictor.problem
    from goldsmith.jobs.train import label_columns, with_split

    source = ctx.lakehouse.read(train_layer, train_table, baseline_version)
    labelled = source.where(F.col(spec.label).isNotNull())
    if spec.where:
        labelled = labelled.where(F.expr(spec.where))
    baseline = with_split(labelled, spec).where(F.col("_split") == "train")
    # The rows the champion scored, with today's features and labels (predicted again below: the same model on
    # the same features gives the same probabilities, and the baseline is predicted the same way).
    scored = ctx.lakehouse.read(out_layer, out_table).where(F.col("model_version") == version).select(*spec.keys)
    window = ctx.lakehouse.read(layer, table).join(scored, [*spec.keys], "inner")
    period = _period(config)
    if period is not None:
        window = window.withColumn(PERIOD, period)

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
        period_name = PERIOD if period is not None else None
        found: list[tuple[str, DriftResult]] = []
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

    champion_test = recorded_test_metrics(mv).get(spec.metric)
    at = now()
    rows = []
    breaches = []
    window_text = spec.score.where or "(all rows)"
    baseline_text = f"{spec.table}@v{baseline_version} train split"
    for kind, r in found:
        threshold = config.thresholds.get(r.metric)  # type: ignore[call-overload]
        breached = bool(threshold is not None and not math.isnan(r.value) and r.value > threshold
                        and r.window_rows >= config.min_rows)
        column = spec.label if kind == "label" else r.column
        rows.append(_row(ctx, name, version, baseline_text, window_text, r.period, kind, column, r.metric, r.value,
                         threshold, breached, r.baseline_rows, r.window_rows, inputs, at))
        if breached:
            breaches.append(f"{kind} {column} {r.metric} {r.value:.3f} > {threshold:.3f} ({r.period})")
    for period_value, (value, n) in sorted(performance.items()):
        threshold = None
        breached = False
        if champion_test is not None and config.performance_drop is not None:
            lower = spec.metric in LOWER_IS_BETTER
            threshold = champion_test + config.performance_drop if lower else champion_test - config.performance_drop
            breached = bool(not math.isnan(value) and n >= config.min_rows
                            and (value > threshold if lower else value < threshold))
        rows.append(_row(ctx, name, version, baseline_text, window_text, period_value, "performance", spec.metric,
                         spec.metric, value, threshold, breached, None, n, inputs, at))
        if breached:
            breaches.append(f"performance {spec.metric} {value:.3f} vs test {champion_test:.3f} "
                            f"(drop > {config.performance_drop}) ({period_value})")
    ctx.ops.append("monitor_results", rows)
    result.records_in = result.records_out = len(rows)
    result.detail = f"{len(breaches)} violation(s)"
    _log_summary(name, version, rows, breaches)
    outcome = MonitorOutcome(name, version, "breached" if breaches else "ok", len(rows), breaches)
    if breaches and config.on_breach == "flag":
        client.set_model_version_tag(name, str(version), RETRAIN_TAG, json.dumps(
            {"run_id": ctx.run_id, "violations": breaches[:20]}))
        outcome.action = f"champion v{version} tagged {RETRAIN_TAG}"
        log.warning("  model %s: champion v%d flagged for retraining (%d violations)", name, version, len(breaches))
    elif breaches:
        outcome.action = "stage failed"
    ctx.record(result)
    return result, outcome


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


def _row(ctx: RunContext, name: str, version: int, baseline: str, window: str, period: str, kind: str, column: str,
         metric: str, value: float, threshold: float | None, breached: bool, baseline_rows: int | None,
         window_rows: int | None, inputs: str, at: Any) -> dict[str, Any]:
    return {
        "run_id": ctx.run_id, "pipeline": ctx.config.name, "model_name": name, "model_version": version,
        "baseline": baseline, "score_window": window, "period": period, "kind": kind, "column_name": column,
        "metric": metric, "value": None if value is None or math.isnan(value) else float(value),
        "threshold": threshold, "breached": breached, "baseline_rows": baseline_rows, "window_rows": window_rows,
        "inputs": inputs, "checked_at": at,
    }


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
