"""train: split a gold table, train candidates with a backend, pick the best on validation, report it once on the
test set, log everything to MLflow, register it, and promote it through the gates.

Around the training run it measures the winner's bias (`models.*.bias`, `goldsmith.quality.bias`) and slices
(`models.*.slices`, `goldsmith.ml.slices`) on the test split, and writes the label review (`models.*.label_issues`,
`goldsmith.ml.label_issues`); this module logs them to MLflow and records them in `ops.*`."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from typing import Any, Literal

from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from goldsmith import faults
from goldsmith.config.models import ModelSpec
from goldsmith.errors import ConfigError, RegistryError, SchemaMismatch, StageFailed, message_line
from goldsmith.io.ops import now
from goldsmith.io.tables import TableRef
from goldsmith.jobs.context import RunContext, TableResult, log
from goldsmith.ml.base import LABEL, PRED, PROBA, WEIGHT, Candidate, Problem, TrainingSets, feature_columns
from goldsmith.ml.label_issues import find_label_issues, label_review, out_of_fold, review_table
from goldsmith.ml.loading import check_features, load_predictor, problem_tags
from goldsmith.ml.prepare import SPLIT, label_columns, with_split
from goldsmith.ml.registry import CHALLENGER, CHAMPION, Registry, check_gates, recorded_test_metrics
from goldsmith.ml.slices import SliceResult, slice_records, slice_report
from goldsmith.ml.tracking import Tracking, experiment_id, local_path, open_registry, tracking_for
from goldsmith.quality.bias import Fairness, assess_bias, bias_records, result_record
from goldsmith.timing import Timer

MAX_CLASSES = 200
_MLFLOW_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :/]")

# What training did to a model: the new version became champion, stayed challenger (gates failed), or the
# model was not retrained (its table and spec are those of a registered version).
TrainStatus = Literal["champion", "challenger", "skipped"]
# Set on a version once its gates decided (champion or challenger): a version without it is not reused.
GATED_TAG = "goldsmith.gated"


@dataclass
class TrainOutcome:
    """What training one model did, for the run summary."""

    name: str
    status: TrainStatus
    version: int | None = None
    backend: str = ""
    winner: str = ""
    test_metrics: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    mlflow_run_id: str = ""
    tracking: Tracking | None = None
    rows: dict[str, int] = field(default_factory=dict)
    algorithm: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    bias_breaches: list[str] = field(default_factory=list)
    flagged_slices: list[str] = field(default_factory=list)
    label_issues: int | None = None


def run(ctx: RunContext) -> list[TableResult]:
    """Train every model of the pipeline whose input table or spec changed since its last registered version."""
    results = []
    for name, spec in ctx.config.models.items():
        with Timer() as watch:
            outcome = train_model(ctx, name, spec)
        ctx.models.append(outcome)
        result = TableResult(stage="train", table=f"model {name}", status="skipped" if outcome.status == "skipped"
                             else "ok", detail=outcome.status, seconds=watch.seconds)
        result.records_in = sum(outcome.rows.values())
        results.append(result)
    return results


def fingerprint(spec: ModelSpec, table_version: int | None) -> str:
    """Identifies what a version was trained from: the spec and the input table's Delta version."""
    text = json.dumps({"spec": spec.model_dump(mode="json"), "table_version": table_version}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_model(ctx: RunContext, name: str, spec: ModelSpec) -> TrainOutcome:
    ref = TableRef.parse(spec.table)
    if not ctx.lakehouse.exists(ref.layer, ref.table):
        raise StageFailed(f"model {name}: {spec.table} does not exist yet; run the stages that build it first")
    table_version = ctx.lakehouse.version(ref.layer, ref.table)
    registry = open_registry(ctx.lakehouse.root, ctx.ops, ctx.config.storage.tracking_uri, ctx.run_id)
    # where the experiment keeps its artifacts (the registry's MLflow is pointed at the same place)
    tracking = tracking_for(ctx.lakehouse.root, ctx.config.storage.tracking_uri)
    fp = fingerprint(spec, table_version)
    for mv in _versions_or_empty(registry, name):
        tags = mv.tags or {}
        if tags.get("goldsmith.fingerprint") != fp:
            continue
        if GATED_TAG not in tags:  # registered by a run killed before its gates decided: never a candidate
            log.warning("  model %s: version %s was registered by a run that did not finish and never went "
                        "through the gates; it is left without alias, training again", name, mv.version)
            continue
        log.info("  model %s: %s v%s and the spec are unchanged since version %s, not retrained",
                 name, spec.table, table_version, mv.version)
        return TrainOutcome(name, "skipped", int(mv.version), tracking=tracking)

    source = ctx.lakehouse.read(ref.layer, ref.table)
    _check_columns(source, spec, name)
    problem, labelled = _problem(ctx, name, spec, source)
    prepared = with_split(labelled.withColumns(label_columns(problem)), spec)
    needed: list[Column | str] = [*spec.keys, *feature_columns(spec.features), LABEL, WEIGHT, SPLIT]
    group = spec.trainer.group_by
    if group and group not in spec.features.all:
        needed.append(F.col(group))
    prepared = prepared.where(F.col(SPLIT).isNotNull())
    modelling = prepared.select(*needed).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = {r[SPLIT]: int(r["count"]) for r in modelling.groupBy(SPLIT).count().collect()}
        rows = {s: counts.get(s, 0) for s in ("train", "validation", "test")}
        empty = [s for s, n in rows.items() if n == 0]
        if empty:
            raise StageFailed(f"model {name}: the {' and '.join(empty)} split is empty ({rows}); check models.{name}."
                              "split and where")
        log.info("  model %s: %s rows train / %s validation / %s test from %s v%s", name, f"{rows['train']:,}",
                 f"{rows['validation']:,}", f"{rows['test']:,}", spec.table, table_version)
        sets = TrainingSets(
            train=modelling.where(F.col(SPLIT) == "train").drop(SPLIT),
            validation=modelling.where(F.col(SPLIT) == "validation").drop(SPLIT),
            test=modelling.where(F.col(SPLIT) == "test").drop(SPLIT),
            workdir=f"{ctx.lakehouse.root}/_tmp/train/{ctx.run_id}/{name}",
        )
        full = {s: prepared.where(F.col(SPLIT) == s) for s in ("train", "test")}
        outcome = _train_and_register(ctx, name, spec, problem, sets, full, registry, tracking, fp, table_version)
        outcome.rows = rows
        if spec.label_issues is not None:
            outcome.label_issues = _review_labels(ctx, problem, source, modelling.drop(SPLIT), outcome,
                                                  f"{sets.workdir}/label_issues")
        return outcome
    finally:
        modelling.unpersist()
        folder = local_path(f"{ctx.lakehouse.root}/_tmp/train/{ctx.run_id}")
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _versions_or_empty(registry: Registry, name: str) -> list[Any]:
    try:
        return registry.versions(name)
    except RegistryError:
        return []


def _check_columns(df: DataFrame, spec: ModelSpec, name: str) -> None:
    columns = set(df.columns)
    wanted = [("label", spec.label), *[("keys", k) for k in spec.keys]]
    if spec.split.method == "time" and spec.split.column:
        wanted.append(("split.column", spec.split.column))
    if spec.trainer.group_by:
        wanted.append(("trainer.group_by", spec.trainer.group_by))
    if spec.bias is not None:
        wanted.append(("bias.facet", spec.bias.facet))
        if spec.bias.group:
            wanted.append(("bias.group", spec.bias.group))
    if spec.slices is not None:
        wanted += [("slices.columns", c) for c in spec.slices.columns]
    for key, column in wanted:
        if column not in columns:
            raise SchemaMismatch(f"models.{name}.{key}: {spec.table} has no column {column!r}")
    check_features(df, spec.features, spec.table)


def _problem(ctx: RunContext, name: str, spec: ModelSpec, source: DataFrame) -> tuple[Problem, DataFrame]:
    """The labelled rows, and the classes (with balancing weights) found in them."""
    labelled = source.where(F.col(spec.label).isNotNull())
    if spec.where:
        try:
            labelled = labelled.where(F.expr(spec.where))
            labelled.schema  # noqa: B018  (analyse now: a bad predicate is a config error)
        except AnalysisException as exc:
            raise ConfigError(f"models.{name}.where: {message_line(exc)}") from None
    label_type = source.schema[spec.label].dataType.simpleString()
    if spec.task == "regression":
        if not isinstance(source.schema[spec.label].dataType, NumericType):
            raise SchemaMismatch(f"models.{name}.label: {spec.label} is {label_type}, a regression needs a number")
        return Problem(name, spec, (), label_type, (), spec.split.seed), labelled
    found = (
        labelled.groupBy(F.col(spec.label).alias("value")).count()
        .orderBy("value").limit(MAX_CLASSES + 1).collect()
    )
    if len(found) > MAX_CLASSES:
        raise SchemaMismatch(f"models.{name}: {spec.label} has more than {MAX_CLASSES} classes; is it a regression?")
    values = [(_as_label(r["value"]), int(r["count"])) for r in found]
    if spec.task == "binary":
        if len(values) != 2:
            raise SchemaMismatch(
                f"models.{name}: a binary label needs exactly 2 values, {spec.label} has {len(values)}: "
                f"{', '.join(v for v, _ in values[:10])}"
            )
        positive = spec.positive_class if spec.positive_class is not None else values[1][0]
        if positive not in {v for v, _ in values}:
            raise ConfigError(f"models.{name}.positive_class {positive!r} is not a value of {spec.label}")
        values.sort(key=lambda vc: vc[0] == positive)
    elif len(values) < 2:
        raise SchemaMismatch(f"models.{name}: {spec.label} has a single class; nothing to learn")
    total = sum(c for _, c in values)
    balanced = spec.trainer.class_weight == "balanced"
    weights = tuple(total / (len(values) * c) if balanced else 1.0 for _, c in values)
    log.info("  model %s: classes %s", name, ", ".join(f"{v} ({c:,})" for v, c in values))
    return Problem(name, spec, tuple(v for v, _ in values), label_type, weights, spec.split.seed), labelled


def _as_label(value: Any) -> str:
    """A label value as the string Spark casts it to (`true`, `1`, `positive`)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _rank_key(metrics: dict[str, float], spec: ModelSpec) -> float:
    value = metrics.get(spec.metric, float("nan"))
    if value is None or math.isnan(value):
        return float("-inf")
    return value if spec.higher_is_better else -value


def _train_and_register(
    ctx: RunContext, name: str, spec: ModelSpec, problem: Problem, sets: TrainingSets, full: dict[str, DataFrame],
    registry: Registry, tracking: Tracking, fp: str, table_version: int | None,
) -> TrainOutcome:
    import mlflow

    from goldsmith.ml.backends import get_backend
    from goldsmith.ml.metrics import evaluate_spark

    backend = get_backend(spec.trainer.backend)
    experiment = experiment_id(registry.client, tracking, ctx.config.name)
    with mlflow.start_run(experiment_id=experiment, run_name=f"{name}-{ctx.run_id}") as parent:
        mlflow.set_tags({"goldsmith.run_id": ctx.run_id, "goldsmith.pipeline": ctx.config.name,
                         "goldsmith.model": name, "goldsmith.backend": spec.trainer.backend})
        mlflow.log_params(_flat_params(spec))
        _log_inputs(ctx, spec, table_version, fp)
        with Timer() as watch:
            candidates = backend.train(problem, sets)
        log.info("  model %s: %d candidate(s) trained with %s in %.1f s", name, len(candidates), backend.name,
                 watch.seconds)
        mlflow.log_metric("train_seconds", watch.seconds)
        for candidate in candidates:
            if not candidate.validation_metrics:
                candidate.validation_metrics = evaluate_spark(candidate.predictor.transform(sets.validation),
                                                              problem).metrics
        ranked = sorted(candidates, key=lambda c: _rank_key(c.validation_metrics, spec), reverse=True)
        _log_children(parent.info.run_id, experiment, ranked, spec)
        _log_leaderboard(name, ranked, spec)
        winner = ranked[0]
        mlflow.log_params({"winner": winner.label[:500]})
        evaluations = {}
        # The test rows with every column of the table (facets, slice columns), predicted once for the
        # metrics, bias and slices.
        scored_test = winner.predictor.transform(full["test"]).persist(StorageLevel.MEMORY_AND_DISK)
        for split_name, frame in (("train", sets.train), ("val", sets.validation), ("test", scored_test)):
            evaluation = evaluate_spark(frame if split_name == "test" else winner.predictor.transform(frame), problem)
            evaluations[split_name] = evaluation
            mlflow.log_metrics({f"{split_name}_{k}": v for k, v in evaluation.metrics.items() if _finite(v)})
        _log_plots(evaluations["test"])
        fairness = assess_bias(spec, problem, full["train"], scored_test) if spec.bias is not None else None
        slices = (
            slice_report(scored_test, problem, spec.slices, spec.slices.metric or spec.metric,
                         evaluations["test"].metrics.get(spec.slices.metric or spec.metric, float("nan")),
                         evaluations["test"].counts)
            if spec.slices is not None else []
        )
        scored_test.unpersist()
        if fairness is not None:
            _log_bias(fairness)
        if slices:
            _log_slices(slices)
        signature, example = _signature(winner, sets)
        info = winner.predictor.log_model("model", signature, example)
        test_metrics = {k: v for k, v in evaluations["test"].metrics.items() if _finite(v)}
        tags = {
            **problem_tags(problem), "goldsmith.fingerprint": fp, "goldsmith.flavor": winner.predictor.flavor,
            "goldsmith.backend": spec.trainer.backend, "goldsmith.algorithm": winner.label[:500],
            "goldsmith.test_metrics": json.dumps(test_metrics), "goldsmith.gates": spec.gates.model_dump_json(),
            "goldsmith.primary_metric": spec.metric, "goldsmith.higher_is_better": str(spec.higher_is_better),
            "goldsmith.table": spec.table, "goldsmith.table_version": str(table_version),
        }
        with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints two lines of its own; goldsmith logs one
            version = int(mlflow.register_model(info.model_uri, name, tags=tags).version)
        run_id = parent.info.run_id
    log.info("  model %s: registered version %d (%s); test %s", name, version, winner.label,
             ", ".join(f"{k} {test_metrics[k]:.4f}" for k in _headline(spec) if k in test_metrics))
    extra_failures: list[str] = []
    outcome = TrainOutcome(name, "challenger", version, spec.trainer.backend, winner.label, test_metrics, [], run_id,
                           tracking, algorithm=winner.algorithm, params=dict(winner.params))
    registered = {"run_id": ctx.run_id, "pipeline": ctx.config.name, "model_name": name, "model_version": version,
                  "mlflow_run_id": run_id, "computed_at": now()}
    if fairness is not None:
        outcome.bias_breaches = extra_failures = fairness.breaches
        group = spec.bias.group if spec.bias is not None else None
        ctx.ops.append("bias_metrics", [{**registered, **row} for row in bias_records(fairness, group)])
    if slices:
        ctx.ops.append("slice_metrics", [{**registered, **row} for row in slice_records(slices)])
        outcome.flagged_slices = [f"{r.slice_column}={r.slice_value}: {r.reason}" for r in slices if r.flagged]
        for line in outcome.flagged_slices:
            log.warning("  model %s: slice %s", name, line)
    faults.reached(f"registered:{name}")
    outcome.status, outcome.reasons = _promote(ctx, name, spec, problem, registry, version, test_metrics,
                                               full["test"], run_id, extra_failures)
    # Last: a version without this tag was registered by a run that stopped before its gates decided.
    registry.client.set_model_version_tag(name, str(version), GATED_TAG, outcome.status)
    return outcome


def _headline(spec: ModelSpec) -> list[str]:
    return {"binary": ["roc_auc", "accuracy", "f1"], "multiclass": ["macro_f1", "accuracy"],
            "regression": ["rmse", "mae", "r2"]}[spec.task]


def _finite(value: float) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def _flat_params(spec: ModelSpec) -> dict[str, str]:
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = json.dumps(value) if not isinstance(value, str) else value

    walk("", spec.model_dump(mode="json", exclude={"score"}))
    return {k[:250]: v[:6000] for k, v in flat.items()}


def _log_inputs(ctx: RunContext, spec: ModelSpec, table_version: int | None, fp: str) -> None:
    """The input table with its Delta version, once per split context."""
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.spark_dataset import SparkDataset

    ref = TableRef.parse(spec.table)
    path = ctx.lakehouse.location(ref.layer, ref.table)
    frame = ctx.lakehouse.read(ref.layer, ref.table).limit(0)
    source = DeltaDatasetSource(delta_table_name=path, delta_table_version=table_version) \
        if ctx.lakehouse.catalog else DeltaDatasetSource(path=path, delta_table_version=table_version)
    for context in ("training", "validation", "test"):
        dataset = SparkDataset(df=frame, source=source, targets=spec.label, name=f"{spec.table}@v{table_version}",
                               digest=fp[:8])
        mlflow.log_input(dataset, context=context)
    mlflow.log_params({"input.table": spec.table, "input.delta_version": str(table_version), "input.path": path})


def _log_children(parent_id: str, experiment: str, ranked: list[Candidate], spec: ModelSpec) -> None:
    """A child run per candidate (when there are several) and per group model."""
    import mlflow

    for rank, candidate in enumerate(ranked, 1):
        if len(ranked) > 1:
            with mlflow.start_run(experiment_id=experiment, run_name=candidate.label[:200], nested=True,
                                  parent_run_id=parent_id):
                mlflow.set_tags({"goldsmith.kind": "candidate", "goldsmith.rank": str(rank)})
                params = {k: str(v) for k, v in candidate.params.items()}
                mlflow.log_params({"algorithm": candidate.algorithm, **params})
                mlflow.log_metrics({f"val_{k}": v for k, v in candidate.validation_metrics.items() if _finite(v)})
                mlflow.log_metric("train_seconds", candidate.train_seconds)
        for child in candidate.children:
            with mlflow.start_run(experiment_id=experiment, run_name=child.name[:200], nested=True,
                                  parent_run_id=parent_id):
                mlflow.set_tags({"goldsmith.kind": "group"})
                mlflow.log_params({k: str(v) for k, v in child.params.items()})
                mlflow.log_metrics({f"val_{k}": v for k, v in child.metrics.items() if _finite(v)})
                mlflow.log_metric("train_rows", child.rows)


def _log_leaderboard(name: str, ranked: list[Candidate], spec: ModelSpec) -> None:
    import mlflow

    rows = [{"rank": i, "candidate": c.label, **{f"val_{k}": v for k, v in c.validation_metrics.items()},
             "train_seconds": round(c.train_seconds, 2)} for i, c in enumerate(ranked, 1)]
    mlflow.log_dict({"primary_metric": spec.metric, "candidates": rows}, "leaderboard.json")
    if len(ranked) > 1:
        log.info("  model %s leaderboard (validation %s):", name, spec.metric)
        keys = {k for c in ranked for k in c.params}
        varying = sorted(k for k in keys if len({repr(c.params.get(k)) for c in ranked}) > 1)
        for rank, candidate in enumerate(ranked, 1):
            value = candidate.validation_metrics.get(spec.metric)
            shown = f"{value:.4f}" if isinstance(value, float) else "n/a"
            label = candidate.algorithm + "[" + ",".join(f"{k}={candidate.params.get(k)}" for k in varying
                                                         if k in candidate.params) + "]"
            log.info("    %2d. %-60s %s  (%.1f s)", rank, label[:60], shown, candidate.train_seconds)


def _log_plots(evaluation: Any) -> None:
    import mlflow

    from goldsmith.ml.metrics import figures, per_class_report

    for file_name, figure in figures(evaluation).items():
        mlflow.log_figure(figure, f"plots/test_{file_name}")
        figure.clear()
    if evaluation.counts is not None:
        mlflow.log_dict({"per_class": per_class_report(evaluation.counts, evaluation.classes)},
                        "test_per_class_report.json")


def _metric_name(*parts: str) -> str:
    return _MLFLOW_UNSAFE.sub("_", "/".join(parts))[:250]


def _log_bias(fairness: Fairness) -> None:
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
                     "results": [result_record(r, fairness) for r in [*fairness.pre, *fairness.post]]},
                    "bias_metrics.json")


def _log_slices(slices: list[SliceResult]) -> None:
    """Flagged slices as MLflow metrics, the whole report as `slice_metrics.json`."""
    import mlflow

    mlflow.log_metric("slices_flagged", sum(r.flagged for r in slices))
    mlflow.log_dict({"slices": [
        {"column": r.slice_column, "value": r.slice_value, "metric": r.metric,
         "score": None if math.isnan(r.value) else r.value, "overall": None if math.isnan(r.overall) else r.overall,
         "rows": r.rows, "flagged": r.flagged, "reason": r.reason} for r in slices
    ]}, "slice_metrics.json")


def _review_labels(ctx: RunContext, problem: Problem, source: DataFrame, frame: DataFrame, outcome: TrainOutcome,
                   workdir: str) -> int:
    """Write `gold.<model>_label_review` from out-of-fold predictions of the winning algorithm over `frame` (the
    modelling rows); return the number of rows flagged."""
    name, spec = problem.name, problem.spec
    config = spec.label_issues
    assert config is not None
    algorithm = outcome.algorithm or spec.trainer.candidates()[0][0]
    params = outcome.params or spec.trainer.candidates()[0][1]
    with Timer() as watch:
        oof = out_of_fold(problem, frame, folds=config.folds, workdir=workdir, algorithm=algorithm, params=params)
        oof = oof.persist(StorageLevel.MEMORY_AND_DISK)  # read twice: thresholds, then the flags
        issues = find_label_issues(oof, n_classes=problem.n_classes)
        review = label_review(issues, source, problem, version=outcome.version, run_id=ctx.run_id, flagged_at=now())
        try:
            metrics = ctx.lakehouse.write(review.coalesce(1), "gold", review_table(name), mode="overwrite")
        finally:
            oof.unpersist()
    rows = int(metrics.get("numOutputRows", 0))
    log.info("  model %s: %d of the labelled rows flagged for label review (%d-fold out-of-fold %s, %.1f s) -> "
             "gold.%s", name, rows, config.folds, algorithm, watch.seconds, review_table(name))
    return rows


def _signature(winner: Candidate, sets: TrainingSets) -> tuple[Any, Any]:
    """Input and output schema from five validation rows, predicted by the winner itself."""
    import pandas as pd
    from mlflow.models import infer_signature

    problem = winner.predictor.problem
    names = problem.features.all
    sample = sets.validation.select(*names).limit(5)
    example = sample.toPandas()
    predicted: Any = winner.predictor.transform(sample).select(PRED, *([PROBA] if problem.is_classifier else []))
    predicted = predicted.toPandas()
    if problem.is_classifier:
        output = pd.DataFrame({"prediction": [problem.classes[i] for i in predicted[PRED]]})
        for i, cls in enumerate(problem.classes):
            output[f"probability_{cls}"] = [float(p[i]) for p in predicted[PROBA]]
    else:
        output = pd.DataFrame({"prediction": predicted[PRED].astype("float64")})
    return infer_signature(example, output), example


def _promote(
    ctx: RunContext, name: str, spec: ModelSpec, problem: Problem, registry: Registry, version: int,
    test_metrics: dict[str, float], full_test: DataFrame, run_id: str, extra_failures: list[str],
) -> tuple[TrainStatus, list[str]]:
    """challenger always; champion when the gates pass (the champion re-scored on today's test set)."""
    from goldsmith.ml.metrics import evaluate_spark

    registry.move(name, CHALLENGER, version, "promote", "newly trained", run_id)
    champion = registry.alias(name, CHAMPION)
    champion_value = None
    if champion is not None:
        try:
            predictor = load_predictor(registry.client, name, champion, spec)
            check_features(full_test, predictor.problem.features, spec.table)
            # full_test has the label columns of today's classes already (it is a slice of `prepared`)
            champion_value = evaluate_spark(predictor.transform(full_test), problem).metrics.get(spec.metric)
            log.info("  model %s: champion v%d on the same test set: %s %.4f", name, champion, spec.metric,
                     champion_value)
        except SchemaMismatch as exc:
            log.warning("  model %s: champion v%d cannot score today's table (%s); comparing with its recorded "
                        "test metric", name, champion, exc)
            champion_value = recorded_test_metrics(registry.version(name, champion)).get(spec.metric)
    failures = check_gates(spec.gates.model_dump(), test_metrics, spec.metric, spec.higher_is_better, champion_value)
    failures += extra_failures
    if failures:
        reason = "; ".join(failures)
        registry.record(name, CHAMPION, "blocked", champion, version, reason, run_id)
        log.warning("  model %s: v%d stays challenger, gates failed: %s", name, version, reason)
        return "challenger", failures
    why = "passed gates" + (f"; {spec.metric} {test_metrics.get(spec.metric, float('nan')):.4f} vs champion "
                            f"{champion_value:.4f}" if champion_value is not None else "; first champion")
    registry.move(name, CHAMPION, version, "promote", why, run_id)
    return "champion", []
