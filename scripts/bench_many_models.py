"""Many models: one HistGradientBoosting model per destination airport on the flights features, fitted the way
goldsmith's sklearn-udf `group_by` backend fits them (Spark `applyInPandas`, one fit per task, one thread
each) against the loop a user would write (the same fits one after another in one process, with sklearn's
own threads, and again with one thread per fit). Both fit the same rows with the same parameters; the report
compares wall times. The Spark fits run twice in one application: the first pays for the Python workers (start,
import scikit-learn: ~4 s on 2 cores), the second is what every later fit of the application (the next candidate,
the next training run of a long-lived session) costs.

    .venv/bin/python scripts/bench_many_models.py ROOT   # ROOT: a lakehouse with gold.flight_features
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from goldsmith.io.lakehouse import Lakehouse
from goldsmith.session import build_session

FEATURES = ["sched_dep_hour", "sched_dep_weekday", "distance_miles", "plane_age_years", "temp_f", "dewpoint_f",
            "humidity_pct", "wind_speed_mph", "precip_inches", "visibility_miles", "route_delay_rate",
            "carrier_delay_rate"]
GROUP, LABEL = "dest", "is_delayed"
MIN_ROWS = 200
PARAMS = {"learning_rate": 0.1, "max_leaf_nodes": 15, "max_iter": 100, "random_state": 0}


def fit_group(pdf: pd.DataFrame, threads: int | None) -> dict[str, object]:
    """One model on one group's rows; `threads=None` leaves sklearn its own thread count."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        model = HistGradientBoostingClassifier(**PARAMS).fit(pdf[FEATURES].to_numpy(np.float64),
                                                             pdf[LABEL].to_numpy(np.int64))
    return {"group": str(pdf[GROUP].iloc[0]), "rows": len(pdf), "iterations": int(model.n_iter_)}


def main(root: str) -> dict[str, object]:
    spark = build_session("bench-many-models", "local[*]")
    lakehouse = Lakehouse(spark, root)
    lakehouse.attach()
    data = (lakehouse.read("gold", "flight_features").where(F.col(LABEL).isNotNull())
            .select(GROUP, *[F.col(c).cast("double") for c in FEATURES], F.col(LABEL).cast("int").alias(LABEL)))
    sizes = data.groupBy(GROUP).count().where(F.col("count") >= MIN_ROWS)
    data = data.join(sizes.select(GROUP), GROUP, how="inner").cache()
    groups = sizes.count()
    rows = data.count()

    def fit(pdf: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame([fit_group(pdf, threads=1)])

    partitions = int(spark.conf.get("spark.sql.shuffle.partitions") or "8")
    spark_runs: list[float] = []
    for _ in range(2):  # first in a new application (Python workers start, import scikit-learn), then again
        started = time.perf_counter()
        spark_rows = (data.repartition(partitions, GROUP).groupBy(GROUP)
                      .applyInPandas(fit, "group string, rows long, iterations int").collect())
        spark_runs.append(time.perf_counter() - started)
    spark_first_seconds, spark_seconds = spark_runs

    local = data.toPandas()  # the loop's input, collected outside its timing (a loop needs it in memory)
    spark.stop()
    loop_seconds: dict[int | None, float] = {}
    for threads in (None, 1):  # sklearn's own threads (what a user gets), then one thread per fit as on Spark
        started = time.perf_counter()
        loop_rows = [fit_group(part, threads=threads) for _, part in local.groupby(GROUP, sort=True)]
        loop_seconds[threads] = time.perf_counter() - started
        assert sorted((str(r["group"]), int(r["rows"])) for r in loop_rows) == \
            sorted((str(r["group"]), int(r["rows"])) for r in spark_rows), "the two paths fitted different groups"
    return {"groups": groups, "rows": rows, "spark_first_seconds": spark_first_seconds, "spark_seconds": spark_seconds,
            "loop_seconds": loop_seconds[None], "loop_one_thread_seconds": loop_seconds[1],
            "speedup": loop_seconds[None] / spark_seconds, "speedup_first": loop_seconds[None] / spark_first_seconds,
            "speedup_one_thread": loop_seconds[1] / spark_seconds}


if __name__ == "__main__":
    print(json.dumps(main(str(Path(sys.argv[1]).resolve()))))
