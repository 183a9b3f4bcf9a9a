"""Batch scoring: one HistGradientBoosting model applied to every flight of gold.flight_features the way
goldsmith's score stage applies a Python model (Spark `mapInPandas`, Arrow batches, the model shipped to the
workers once) against a single process calling `model.predict_proba` on the whole table in pandas. The pandas
side is timed from the table already in memory (its load time is reported apart); the Spark side reads it from
Delta and writes the predictions to a Delta table, as scoring does.

    .venv/bin/python scripts/bench_scoring.py ROOT   # prints one JSON line: rows, seconds, rows per second
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from bench_many_models import FEATURES  # the same numeric features (this script's folder is on sys.path)
from pyspark.sql import functions as F

from goldsmith.io.lakehouse import Lakehouse
from goldsmith.session import build_session


def main(root: str) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    spark = build_session("bench-scoring", "local[*]")
    lakehouse = Lakehouse(spark, root)
    table = lakehouse.read("gold", "flight_features").select(
        "flight_id", *[F.col(c).cast("double") for c in FEATURES], F.col("is_delayed").cast("int").alias("label"))
    sample = table.where(F.col("label").isNotNull()).limit(50_000).toPandas()
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(
        sample[FEATURES].to_numpy(np.float64), sample["label"].to_numpy(np.int64))

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            proba = model.predict_proba(batch[FEATURES].to_numpy(np.float64))[:, 1]
            yield pd.DataFrame({"flight_id": batch["flight_id"], "probability": proba})

    out = Path(tempfile.mkdtemp(prefix="bench-scoring-")) / "predictions"
    started = time.perf_counter()
    table.mapInPandas(score, "flight_id string, probability double").write.format("delta").save(str(out))
    spark_seconds = time.perf_counter() - started
    rows = spark.read.format("delta").load(str(out)).count()

    loading = time.perf_counter()
    local = table.toPandas()
    started = time.perf_counter()
    proba = model.predict_proba(local[FEATURES].to_numpy(np.float64))[:, 1]
    local_seconds = time.perf_counter() - started
    load_seconds = started - loading
    spark.stop()
    assert len(proba) == rows
    return {"rows": rows, "spark_seconds": spark_seconds, "spark_rows_per_s": rows / spark_seconds,
            "single_process_seconds": local_seconds, "single_process_rows_per_s": rows / local_seconds,
            "single_process_load_seconds": load_seconds}


if __name__ == "__main__":
    print(json.dumps(main(str(Path(sys.argv[1]).resolve()))))
