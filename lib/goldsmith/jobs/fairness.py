"""Bias and slices of a newly trained model: computed in the train stage, logged to its MLflow run, written to
`ops.bias_metrics` / `ops.slice_metrics`; bias gates keep a model that breaches them from becoming champion."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from goldsmith.config.models import ModelSpec
from goldsmith.errors import ConfigError
from goldsmith.io.ops import now
from goldsmith.jobs.context import RunContext, log
from goldsmith.ml.base import LABEL, PRED, Problem
from goldsmith.ml.slices import SliceResult
from goldsmith.quality.bias import BiasResult, bias_metrics, check_bias_gates

LABEL_TEXT = "_label_text"
PRED_TEXT = "_pred_text"
_MLFLOW_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :/]")


@dataclass
class Fairness:
    """Bias of the training labels and of the test predictions, with the gate breaches."""

    pre: list[BiasResult]
    post: list[BiasResult]
    limits: dict[str, tuple[float | None, float | None]]
    breaches: list[str] = field(default_factory=list)

    def breached(self, result: BiasResult) -> bool:
        low, high = self.limits.get(result.metric, (None, None)) if result.stage == "post_training" else (None, None)
        if math.isnan(result.value):
            return False
        return (low is not None and result.value < low) or (high is not None and result.value > high)


def _class_text(column: str, problem: Problem) -> Any:
    return F.element_at(F.array(*[F.lit(c) for c in problem.classes]), F.col(column) + 1)


def assess_bias(spec: ModelSpec, problem: Problem, train_rows: DataFrame, scored_test: DataFrame) -> Fairness:
    """Pre-training bias on the training split's labels, post-training bias on the test split's predictions."""
    config = spec.bias
    assert config is not None
    if config.favorable is not None and config.favorable not in problem.classes:
        raise ConfigError(f"bias.favorable {config.favorable!r} is not a class of {spec.label} "
                          f"({', '.join(problem.classes)})")
    if problem.n_classes == 2:
        positive = [config.favorable or problem.classes[1]]
    else:
        positive = list(problem.classes)
    common: dict[str, Any] = {
        "facet": config.facet, "label": LABEL_TEXT, "positive_values": positive,
        "sensitive": list(config.sensitive) or None, "group": config.group, "max_facet_values": config.max_facet_values,
    }
    pre = bias_metrics(train_rows.withColumn(LABEL_TEXT, _class_text(LABEL, problem)), prediction=None, **common)
    scored = scored_test.withColumns({LABEL_TEXT: _class_text(LABEL, problem), PRED_TEXT: _class_text(PRED, problem)})
    post = [r for r in bias_metrics(scored, prediction=PRED_TEXT, **common) if r.stage == "post_training"]
    limits = {metric: limit.bounds() for metric, limit in config.gates.items()}
    fairness = Fairness(pre, post, limits)
    fairness.breaches = check_bias_gates(post, limits)
    shown = [r for r in post if r.metric in ("dppl", "di")][:6]
    if shown:
        log.info("  bias on %s (test predictions): %s", config.facet,
                 ", ".join(f"{r.metric} {r.facet_value}/{r.label_value} {r.value:.3f}" for r in shown))
    for breach in fairness.breaches:
        log.warning("  %s", breach)
    return fairness


def _metric_name(*parts: str) -> str:
    return _MLFLOW_UNSAFE.sub("_", "/".join(parts))[:250]


def log_bias(fairness: Fairness) -> None:
    """Every bias value as an MLflow metric of the active run, and the full table as `bias_metrics.json`."""
    import mlflow

    metrics = {
        _metric_name("bias", r.stage, r.metric, f"{r.facet}:{r.facet_value}", r.label_value): r.value
        for r in [*fairness.pre, *fairness.post] if not math.isnan(r.value) and not math.isinf(r.value)
    }
    items = list(metrics.items())
    for start in range(0, len(items), 900):  # MLflow takes at most 1,000 metrics per call
        mlflow.log_metrics(dict(items[start:start + 900]))
    mlflow.log_dict({"limits": fairness.limits, "breaches": fairness.breaches,
                     "results": [_result_dict(r, fairness) for r in [*fairness.pre, *fairness.post]]},
                    "bias_metrics.json")


def _result_dict(result: BiasResult, fairness: Fairness) -> dict[str, Any]:
    return {"stage": result.stage, "facet": result.facet, "facet_value": result.facet_value,
            "label_value": result.label_value, "metric": result.metric,
            "value": None if math.isnan(result.value) else result.value, "n_a": result.n_a, "n_d": result.n_d,
            "breached": fairness.breached(result)}


def bias_rows(ctx: RunContext, name: str, version: int, mlflow_run_id: str, fairness: Fairness) -> list[dict[str, Any]]:
    """`ops.bias_metrics` rows of a registered version."""
    config = ctx.config.models[name].bias
    assert config is not None
    at = now()
    rows = []
    for result in [*fairness.pre, *fairness.post]:
        low, high = fairness.limits.get(result.metric, (None, None)) if result.stage == "post_training" \
            else (None, None)
        rows.append({
            "run_id": ctx.run_id, "pipeline": ctx.config.name, "model_name": name, "model_version": version,
            "mlflow_run_id": mlflow_run_id, "stage": result.stage,
            "dataset": "train" if result.stage == "pre_training" else "test", "facet": result.facet,
            "facet_value": result.facet_value, "group_column": config.group, "label_value": result.label_value,
            "metric": result.metric, "value": None if math.isnan(result.value) else float(result.value),
            "n_a": result.n_a, "n_d": result.n_d, "threshold_min": low, "threshold_max": high,
            "breached": fairness.breached(result), "computed_at": at,
        })
    return rows


def log_slices(slices: list[SliceResult]) -> None:
    """Flagged slices as MLflow metrics, the whole report as `slice_metrics.json`."""
    import mlflow

    mlflow.log_metric("slices_flagged", sum(r.flagged for r in slices))
    mlflow.log_dict({"slices": [
        {"column": r.slice_column, "value": r.slice_value, "metric": r.metric,
         "score": None if math.isnan(r.value) else r.value, "overall": None if math.isnan(r.overall) else r.overall,
         "rows": r.rows, "flagged": r.flagged, "reason": r.reason} for r in slices
    ]}, "slice_metrics.json")


def slice_rows(ctx: RunContext, name: str, version: int, mlflow_run_id: str,
               slices: list[SliceResult]) -> list[dict[str, Any]]:
    """`ops.slice_metrics` rows of a registered version."""
    at = now()
    return [{
        "run_id": ctx.run_id, "pipeline": ctx.config.name, "model_name": name, "model_version": version,
        "mlflow_run_id": mlflow_run_id, "dataset": "test", "slice_column": r.slice_column,
        "slice_value": r.slice_value, "metric": r.metric, "value": None if math.isnan(r.value) else float(r.value),
        "overall": None if math.isnan(r.overall) else float(r.overall), "rows": r.rows, "flagged": r.flagged,
        "reason": r.reason, "computed_at": at,
    } for r in slices]
