"""Label review (`models.<name>.label_issues`): records whose given label is likely wrong, found by confident
learning (Northcutt et al., 2021), for a person to relabel.

Three steps: `out_of_fold` predicts every row's class probabilities with a model that never saw the row (k-fold,
trained by the spec's own backend, with the winning algorithm of the training run), `find_label_issues` compares
each row's probabilities with per-class thresholds (the model's average confidence in a class over the rows
labelled with it) to flag rows whose confidently predicted class is not their label, and `label_review` lays the
flagged rows out for the reviewer: the record's key and features, the given and the suggested label, most likely
wrong first. The train stage writes that to `gold.<model>_label_review` (`review_table`).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from goldsmith.config.models import ModelSpec
from goldsmith.ml.base import LABEL, PROBA, Problem, TrainingSets
from goldsmith.timing import Timer

log = logging.getLogger(__name__)

FOLD = "_fold"
SUGGESTED = "_suggested"
GIVEN_PROBABILITY = "_given_probability"
SUGGESTED_PROBABILITY = "_suggested_probability"
MARGIN = "_margin"
RANK = "_rank"
_BEST = "_best"
_THRESHOLD = "_threshold_{}"


def fold_index(keys: list[str], folds: int, seed: int) -> Column:
    """A row's fold, 0..folds-1, from a seeded hash of its keys: stable across runs and partitionings.

    Salted, so that the folds do not line up with the random train/validation/test split (same keys, same seed).
    """
    hashed = F.xxhash64(F.lit("out_of_fold"), F.lit(seed), *[F.col(k) for k in keys])
    return F.pmod(hashed, F.lit(folds)).cast("int")


def single_candidate(spec: ModelSpec, algorithm: str, params: dict[str, Any]) -> ModelSpec:
    """`spec` with a trainer that trains exactly one candidate: `algorithm` with `params`, no search.

    Validated again, so an algorithm the backend does not have is reported as for a pipeline file.
    """
    trainer = {**spec.trainer.model_dump(), "algorithm": algorithm, "params": dict(params), "search": {}}
    return ModelSpec.model_validate({**spec.model_dump(), "trainer": trainer})


def out_of_fold(
    problem: Problem, frame: DataFrame, *, folds: int, workdir: str, algorithm: str, params: dict[str, Any]
) -> DataFrame:
    """`frame` plus `_proba` predicted by a model that never saw the row.

    `frame` holds the keys, the features with normalised types, `_label` and `_weight` (as training prepares
    them). Rows go to `folds` folds by a hash of the keys seeded with `problem.seed`; for each fold, one model of
    `algorithm`/`params` is trained by the spec's backend on the other folds (the held-out fold serves as its
    validation and test set) and predicts the held-out fold. The backend's `trainings_at_once` folds train at a
    time (spark-ml: three; the backends that fill every core themselves: one). Every input row appears once in
    the result.

    `frame` is read a few times per fold: persist it first if it is expensive to compute. The result is lazy (each
    action predicts every fold again): persist it before `find_label_issues`, which reads it twice. Each fold's
    backend scratch data goes to `<workdir>/fold_<k>`, which the caller removes. Classification only.

    Raises:
        ValueError: a regression problem, fewer than two folds, or an algorithm/params the backend rejects.
    """
    from goldsmith.ml.backends import get_backend

    if not problem.is_classifier:
        raise ValueError(f"out_of_fold: model {problem.name} is a regression; label issues need a classifier")
    if folds < 2:
        raise ValueError(f"out_of_fold: folds must be at least 2, got {folds}")
    one = replace(problem, spec=single_candidate(problem.spec, algorithm, params))
    backend = get_backend(one.spec.trainer.backend)
    columns = frame.columns
    assigned = frame.select("*", fold_index(problem.spec.keys, folds, problem.seed).alias(FOLD))

    def train_fold(fold: int) -> DataFrame:
        held_out = assigned.where(F.col(FOLD) == fold).drop(FOLD)
        sets = TrainingSets(
            train=assigned.where(F.col(FOLD) != fold).drop(FOLD),
            validation=held_out,
            test=held_out,
            workdir=f"{workdir.rstrip('/')}/fold_{fold}",
        )
        with Timer() as watch:
            candidates = backend.train(one, sets)
        if len(candidates) != 1:
            raise RuntimeError(f"{backend.name} trained {len(candidates)} candidates for a one-candidate trainer")
        winner = candidates[0]
        metric = winner.validation_metrics.get(one.spec.metric)
        log.info("  out-of-fold %d/%d: %s trained in %.1f s%s", fold + 1, folds, winner.label, watch.seconds,
                 f", held-out {one.spec.metric} {metric:.4f}" if metric is not None else "")
        return winner.predictor.transform(held_out).select(*columns, PROBA)

    at_once = min(backend.trainings_at_once, folds)
    if at_once <= 1:
        predicted = [train_fold(fold) for fold in range(folds)]
    else:
        with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="goldsmith-fold") as pool:
            predicted = list(pool.map(train_fold, range(folds)))
    return reduce(DataFrame.unionByName, predicted)


def _best_class(n_classes: int) -> Column:
    """Among the classes whose probability reaches their threshold, the most probable (null when none does).

    A struct (p, is_given, tie, j) compared field by field: on equal probability the given class wins (a tie is
    no evidence against the label), then the lowest index. `array_max` skips the nulls of classes below threshold.
    """
    proba, label = F.col(PROBA), F.col(LABEL)
    return F.array_max(F.array(*[
        F.when(
            proba[j] >= F.col(_THRESHOLD.format(j)),
            F.struct(proba[j].alias("p"), (label == j).alias("is_given"), F.lit(-j).alias("tie"),
                     F.lit(j).alias("j")),
        )
        for j in range(n_classes)
    ]))


def find_label_issues(oof: DataFrame, *, n_classes: int) -> DataFrame:
    """The rows of `oof` (with `_label` and out-of-fold `_proba`) whose label is likely wrong, most likely first.

    Confident learning: the threshold of class j is the mean of p_j over the rows labelled j. A row labelled i is
    an issue when the most probable class among those with p_j >= t_j (i included) is some j != i. Adds
    `_suggested` (j), `_given_probability` (p_i), `_suggested_probability` (p_j), `_margin` (p_j - p_i; negative
    when p_i is higher but below its own threshold) and `_rank` (1 = largest margin; ties broken by the other
    columns). Rows with a null label or null probabilities are never issues and do not move the thresholds; a
    class no row is labelled with is never suggested.

    The ranking is a window over all issues (one partition): fine for the few rows that are issues.
    """
    if n_classes < 2:
        raise ValueError(f"find_label_issues: n_classes must be at least 2, got {n_classes}")
    proba, label = F.col(PROBA), F.col(LABEL)
    thresholds = oof.agg(*[
        F.avg(F.when(label == j, proba[j])).alias(_THRESHOLD.format(j)) for j in range(n_classes)
    ])
    best = F.col(_BEST)
    issues = (
        oof.crossJoin(F.broadcast(thresholds))
        .select(*[F.col(c) for c in oof.columns], _best_class(n_classes).alias(_BEST))
        .where(best["j"] != label)
    )
    given = proba[label]
    tie_breaks = [F.col(f.name) for f in oof.schema.fields if f.name != PROBA and not isinstance(f.dataType, MapType)]
    order = Window.orderBy((best["p"] - given).desc(), *tie_breaks)
    return issues.select(
        *[F.col(c) for c in oof.columns],
        best["j"].cast("int").alias(SUGGESTED),
        given.alias(GIVEN_PROBABILITY),
        best["p"].alias(SUGGESTED_PROBABILITY),
        (best["p"] - given).alias(MARGIN),
        F.row_number().over(order).alias(RANK),
    ).orderBy(RANK)


def review_table(name: str) -> str:
    """The gold table a model's label review is written to."""
    return f"{name}_label_review"


def label_review(
    issues: DataFrame, source: DataFrame, problem: Problem, *, version: int | None, run_id: str, flagged_at: datetime,
) -> DataFrame:
    """The rows of `gold.<model>_label_review`: the label issues (`find_label_issues` of rows descending from
    `source`) with the record's keys and features from `source`, the given and suggested labels as class names,
    their probabilities and margin, and the model version and run that flagged them, in review order."""
    spec = problem.spec
    classes = F.array(*[F.lit(c) for c in problem.classes])
    flagged = issues.select(
        *spec.keys,
        F.element_at(classes, F.col(LABEL) + 1).alias("given_label"),
        F.element_at(classes, F.col(SUGGESTED) + 1).alias("suggested_label"),
        F.col(GIVEN_PROBABILITY).alias("given_probability"),
        F.col(SUGGESTED_PROBABILITY).alias("suggested_probability"),
        F.col(MARGIN).alias("margin"),
        F.col(RANK).cast("int").alias("review_rank"),
        F.map_from_arrays(classes, F.col(PROBA)).alias("class_probabilities"),
    )
    shown = [c for c in spec.features.all if c in source.columns and c not in spec.keys]
    # Both sides descend from `source`: aliases keep their columns apart in the join.
    record = source.select(*spec.keys, *shown).alias("r")
    condition = [F.col(f"f.`{k}`").eqNullSafe(F.col(f"r.`{k}`")) for k in spec.keys]
    return (
        flagged.alias("f").join(record, condition, "left")
        .select(*[F.col(f"f.`{c}`") for c in flagged.columns], *[F.col(f"r.`{c}`") for c in shown])
        .withColumns({
            "model_version": F.lit(version).cast("bigint"),
            "review_run_id": F.lit(run_id), "flagged_at": F.lit(flagged_at).cast("timestamp"),
        })
        .orderBy("review_rank")
    )
