"""How a table's rows become a model's rows: the split each row belongs to, and the label as the model sees it.

Training (`goldsmith.jobs.train`) and the drift monitor's baseline (`goldsmith.jobs.monitor`) use the same two
functions, so the monitor's baseline is exactly the rows the champion was trained on.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from goldsmith.config.models import ModelSpec
from goldsmith.ml.base import LABEL, WEIGHT, Problem

SPLIT = "_split"


def label_columns(problem: Problem) -> dict[str, Column]:
    """`_label` (the class index for a classifier, the value as a double for a regression) and `_weight` (the
    class's balancing weight, 1.0 for a regression), to add with `withColumns`."""
    label = F.col(problem.spec.label)
    if not problem.is_classifier:
        return {LABEL: label.cast("double"), WEIGHT: F.lit(1.0)}
    index = F.create_map(*[x for i, c in enumerate(problem.classes) for x in (F.lit(c), F.lit(i))])
    weight = F.create_map(*[x for i, w in enumerate(problem.class_weights) for x in (F.lit(i), F.lit(w))])
    label_index = index[label.cast("string")]
    return {LABEL: label_index, WEIGHT: weight[label_index]}


def with_split(df: DataFrame, spec: ModelSpec) -> DataFrame:
    """Add `_split` (`train`, `validation`, `test`, or null after a time split's `until`): by time ranges of
    `split.column`, or by a seeded hash of the keys (stable across runs and partitionings)."""
    split = spec.split
    if split.method == "time":
        assert split.column is not None
        at = F.col(split.column)
        last = F.when(at < F.lit(split.until), "test") if split.until else F.when(at.isNotNull(), "test")
        return df.withColumn(
            SPLIT,
            F.when(at < F.lit(split.validation_from), "train").when(at < F.lit(split.test_from), "validation")
            .otherwise(last),
        )
    share = (F.abs(F.xxhash64(*[F.col(k) for k in spec.keys], F.lit(split.seed))) % 1_000_000) / 1_000_000.0
    f_train, f_valid, _ = split.fractions
    return df.withColumn(
        SPLIT, F.when(share < f_train, "train").when(share < f_train + f_valid, "validation").otherwise("test")
    )
