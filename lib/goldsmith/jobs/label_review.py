"""Label review: rows whose given label is likely wrong, for a person to relabel.

After a model is trained, its winning algorithm is cross-validated on every labelled row (out-of-fold
probabilities: no row is predicted by a model that saw it), and confident learning flags the rows whose
label disagrees confidently with the prediction (`goldsmith.ml.label_issues`). They are written, most likely
wrong first, to `gold.<model>_label_review` with the record's key, features, the given and the suggested label.
"""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from goldsmith.config.models import ModelSpec
from goldsmith.io.ops import now
from goldsmith.jobs.context import RunContext, log
from goldsmith.ml.base import LABEL, PROBA, Problem
from goldsmith.ml.label_issues import find_label_issues, out_of_fold
from goldsmith.timing import Timer


def review_table(name: str) -> str:
    return f"{name}_label_review"


def review_labels(ctx: RunContext, name: str, spec: ModelSpec, problem: Problem, source: DataFrame,
                  frame: DataFrame, outcome: object, workdir: str) -> int:
    """Write `gold.<name>_label_review`; return the number of rows flagged."""
    config = spec.label_issues
    assert config is not None
    algorithm = getattr(outcome, "algorithm", "") or spec.trainer.candidates()[0][0]
    params = getattr(outcome, "params", {}) or spec.trainer.candidates()[0][1]
    with Timer() as watch:
        oof = out_of_fold(problem, frame, folds=config.folds, workdir=workdir, algorithm=algorithm, params=params)
        oof = oof.persist(StorageLevel.MEMORY_AND_DISK)  # read twice: thresholds, then the flags
        issues = find_label_issues(oof, n_classes=problem.n_classes)
        classes = F.array(*[F.lit(c) for c in problem.classes])
        flagged = issues.select(
            *spec.keys,
            F.element_at(classes, F.col(LABEL) + 1).alias("given_label"),
            F.element_at(classes, F.col("_suggested") + 1).alias("suggested_label"),
            F.col("_given_probability").alias("given_probability"),
            F.col("_suggested_probability").alias("suggested_probability"),
            F.col("_margin").alias("margin"),
            F.col("_rank").cast("int").alias("review_rank"),
            F.map_from_arrays(classes, F.col(PROBA)).alias("class_probabilities"),
        )
        shown = [c for c in spec.features.all if c in source.columns and c not in spec.keys]
        # Both sides descend from `source`: aliases keep their columns apart in the join.
        record = source.select(*spec.keys, *shown).alias("r")
        condition = [F.col(f"f.`{k}`").eqNullSafe(F.col(f"r.`{k}`")) for k in spec.keys]
        review = (
            flagged.alias("f").join(record, condition, "left")
            .select(*[F.col(f"f.`{c}`") for c in flagged.columns], *[F.col(f"r.`{c}`") for c in shown])
            .withColumns({
                "model_version": F.lit(getattr(outcome, "version", None)).cast("bigint"),
                "review_run_id": F.lit(ctx.run_id), "flagged_at": F.lit(now()).cast("timestamp"),
            })
            .orderBy("review_rank")
        )
        try:
            metrics = ctx.lakehouse.write(review.coalesce(1), "gold", review_table(name), mode="overwrite")
        finally:
            oof.unpersist()
    rows = int(metrics.get("numOutputRows", 0))
    log.info("  model %s: %d of the labelled rows flagged for label review (%d-fold out-of-fold %s, %.1f s) -> "
             "gold.%s", name, rows, config.folds, algorithm, watch.seconds, review_table(name))
    return rows
