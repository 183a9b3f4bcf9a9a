"""score: apply `models:/<name>@champion` to the scoring window and MERGE the predictions into
`gold.<name>_predictions` on the model's keys, so re-scoring a window replaces its rows, never duplicates them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from goldsmith import faults
from goldsmith.config.models import ModelSpec
from goldsmith.errors import ConfigError, NoChampion, message_line
from goldsmith.io.ops import now
from goldsmith.io.tables import TableRef
from goldsmith.jobs.context import RunContext, TableResult, log
from goldsmith.ml.base import PRED, PROBA, Predictor
from goldsmith.ml.loading import check_features, load_predictor
from goldsmith.ml.registry import CHAMPION
from goldsmith.ml.tracking import open_registry


@dataclass
class ScoreOutcome:
    """What scoring one model did, for the run summary."""

    name: str
    output: str
    version: int
    rows: int
    status: Literal["scored"]


def run(ctx: RunContext) -> list[TableResult]:
    """Score the window of every model that has a champion and a scoring window."""
    results = []
    for name, spec in ctx.config.models.items():
        results.append(score_model(ctx, name, spec))
    return results


def scoring_input(ctx: RunContext, name: str, spec: ModelSpec) -> tuple[str, DataFrame]:
    """The scoring window: `score.table` (default: the training table) filtered by `score.where`."""
    ref = spec.score.table or spec.table
    table = TableRef.parse(ref)
    if not ctx.lakehouse.exists(table.layer, table.table):
        raise NoChampion(f"model {name}: the scoring input {ref} does not exist yet")
    df = ctx.lakehouse.read(table.layer, table.table)
    if spec.score.where:
        try:
            df = df.where(F.expr(spec.score.where))
            df.schema  # noqa: B018  (analyse now: a bad window is a config error)
        except AnalysisException as exc:
            raise ConfigError(f"models.{name}.score.where: {message_line(exc)}") from None
    return ref, df


def predictions_frame(predictor: Predictor, df: DataFrame, spec: ModelSpec, version: int, run_id: str,
                      scoring_run: str) -> DataFrame:
    """Keys, prediction (in the label's type), class probabilities, the model version and run, `scored_at`."""
    problem = predictor.problem
    scored = predictor.transform(df)
    if problem.is_classifier:
        classes = F.array(*[F.lit(c) for c in problem.classes])
        label_type = problem.label_type
        prediction = F.element_at(classes, F.col(PRED) + 1)
        extra = [
            (prediction.cast(label_type) if label_type != "string" else prediction).alias("prediction"),
            F.map_from_arrays(classes, F.col(PROBA)).alias("class_probabilities"),
        ]
        if problem.n_classes == 2:
            extra.insert(1, F.element_at(F.col(PROBA), 2).alias("probability"))
    else:
        extra = [F.col(PRED).alias("prediction")]
    return scored.select(
        *spec.keys, *extra, F.lit(version).cast("bigint").alias("model_version"),
        F.lit(run_id).alias("model_run_id"), F.lit(scoring_run).alias("scoring_run_id"),
        F.lit(now()).cast("timestamp").alias("scored_at"),
    )


def score_model(ctx: RunContext, name: str, spec: ModelSpec) -> TableResult:
    output = spec.output_table(name)
    out = TableRef.parse(output)
    result = TableResult(stage="score", table=output)
    registry = open_registry(ctx.lakehouse.root, ctx.ops, ctx.config.storage.tracking_uri, ctx.run_id)
    version = registry.alias(name, CHAMPION)
    if version is None:
        raise NoChampion(
            f"model {name} has no champion: train it (`--stages train`) until it passes its gates, or promote a "
            f"version by hand with `goldsmith models promote {name} <version>`"
        )
    ref, window = scoring_input(ctx, name, spec)
    scored = TableRef.parse(ref)
    input_version = ctx.lakehouse.version(scored.layer, scored.table)
    window_text = spec.score.where or "(all rows)"
    last = ctx.ops.last_scoring(name)
    if (
        last is not None and ctx.lakehouse.exists(out.layer, out.table)
        and (last["model_version"], last["input_table"], last["input_version"], last["score_window"])
        == (version, ref, input_version, window_text)
        and last["output_version"] == ctx.lakehouse.version(out.layer, out.table)
    ):
        result.status, result.detail = "skipped", f"v{version} already scored {ref} v{input_version}"
        log.info("  %-34s %s", output, result.detail)
        return result
    mv = registry.version(name, version)
    predictor = load_predictor(registry.client, name, version, spec)
    check_features(window, predictor.problem.features, f"scoring input {ref}")
    missing_keys = [k for k in spec.keys if k not in window.columns]
    if missing_keys:
        raise ConfigError(f"models.{name}.keys: scoring input {ref} has no column {missing_keys[0]!r}")
    frame = predictions_frame(predictor, window, spec, version, mv.run_id, ctx.run_id)
    if ctx.lakehouse.exists(out.layer, out.table):
        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.keys)
        (
            ctx.lakehouse.delta_table(out.layer, out.table).alias("t").merge(frame.alias("s"), condition)
            .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
        )
        faults.committed(out.layer, out.table)
        metrics = ctx.lakehouse.last_commit_metrics(out.layer, out.table)
        rows = int(metrics.get("numSourceRows", 0))
        result.inserted = int(metrics.get("numTargetRowsInserted", 0))
        result.updated = int(metrics.get("numTargetRowsUpdated", 0))
    else:
        metrics = ctx.lakehouse.write(frame, out.layer, out.table, mode="overwrite")
        rows = result.inserted = int(metrics.get("numOutputRows", 0))
    result.records_in = result.records_out = rows
    ctx.ops.append("scoring_runs", [{
        "model_name": name, "model_version": version, "input_table": ref, "input_version": input_version,
        "score_window": window_text, "output_table": output,
        "output_version": ctx.lakehouse.version(out.layer, out.table), "rows": rows, "run_id": ctx.run_id,
        "scored_at": now(),
    }])
    ctx.record(result)
    ctx.models.append(ScoreOutcome(name, output, version, rows, "scored"))
    log.info("  %-34s %9s rows scored by %s v%d (%d new, %d replaced)", output, f"{rows:,}", name, version,
             result.inserted, result.updated)
    return result
