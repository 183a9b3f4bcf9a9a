"""The engine's own records, in `ops.*` Delta tables (append-only; blind appends never conflict)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, MapType, StructType

from goldsmith.io.lakehouse import Lakehouse

SCHEMAS: dict[str, str] = {
    "ingested_files": (
        "source STRING, path STRING, size_bytes BIGINT, modified_ms BIGINT, batch_id STRING, "
        "run_id STRING, ingested_at TIMESTAMP, batch_rows BIGINT"
    ),
    "refined_batches": "silver_table STRING, batch_id STRING, run_id STRING, refined_at TIMESTAMP",
    "quality_metrics": (
        "run_id STRING, pipeline STRING, stage STRING, table_name STRING, batch_ids ARRAY<STRING>, "
        "records_in BIGINT, records_out BIGINT, quarantined BIGINT, duplicates BIGINT, "
        "inserted BIGINT, updated BIGINT, rule_violations MAP<STRING, BIGINT>, status STRING, "
        "duration_seconds DOUBLE, recorded_at TIMESTAMP"
    ),
    "gold_builds": (
        "table_name STRING, run_id STRING, inputs STRING, rows BIGINT, table_version BIGINT, built_at TIMESTAMP, "
        "mode STRING, since TIMESTAMP"
    ),
    "model_promotions": (
        "model_name STRING, alias STRING, action STRING, from_version BIGINT, to_version BIGINT, reason STRING, "
        "actor STRING, mlflow_run_id STRING, run_id STRING, moved_at TIMESTAMP"
    ),
    "scoring_runs": (
        "model_name STRING, model_version BIGINT, input_table STRING, input_version BIGINT, score_window STRING, "
        "output_table STRING, output_version BIGINT, rows BIGINT, run_id STRING, scored_at TIMESTAMP"
    ),
    # One row per column of a profiled table per run (`goldsmith.quality.profile`).
    "profiles": (
        "run_id STRING, pipeline STRING, table_name STRING, table_version BIGINT, column_name STRING, "
        "data_type STRING, rows BIGINT, nulls BIGINT, distinct_approx BIGINT, min_value STRING, max_value STRING, "
        "mean DOUBLE, stddev DOUBLE, quantiles MAP<STRING, DOUBLE>, "
        "top_values ARRAY<STRUCT<value: STRING, count: BIGINT>>, "
        "histogram ARRAY<STRUCT<lower: DOUBLE, upper: DOUBLE, count: BIGINT>>, profiled_at TIMESTAMP"
    ),
    "profile_correlations": (
        "run_id STRING, pipeline STRING, table_name STRING, table_version BIGINT, column_a STRING, column_b STRING, "
        "pearson DOUBLE, rows BIGINT, profiled_at TIMESTAMP"
    ),
    # Bias of the labels (pre_training, on the training split) and of the predictions (post_training, on the
    # test split) for one facet value (the sensitive group d) against the rest (a), per class considered positive.
    "bias_metrics": (
        "run_id STRING, pipeline STRING, model_name STRING, model_version BIGINT, mlflow_run_id STRING, "
        "stage STRING, dataset STRING, facet STRING, facet_value STRING, group_column STRING, label_value STRING, "
        "metric STRING, value DOUBLE, n_a BIGINT, n_d BIGINT, threshold_min DOUBLE, threshold_max DOUBLE, "
        "breached BOOLEAN, computed_at TIMESTAMP"
    ),
    # A model's metric on one slice of the test split (a class, or a value of a chosen column) vs overall.
    "slice_metrics": (
        "run_id STRING, pipeline STRING, model_name STRING, model_version BIGINT, mlflow_run_id STRING, "
        "dataset STRING, slice_column STRING, slice_value STRING, metric STRING, value DOUBLE, overall DOUBLE, "
        "rows BIGINT, flagged BOOLEAN, reason STRING, computed_at TIMESTAMP"
    ),
    # Drift of the scoring window (per period, and `all`) against the training baseline.
    "monitor_results": (
        "run_id STRING, pipeline STRING, model_name STRING, model_version BIGINT, baseline STRING, "
        "score_window STRING, period STRING, kind STRING, column_name STRING, metric STRING, value DOUBLE, "
        "threshold DOUBLE, breached BOOLEAN, baseline_rows BIGINT, window_rows BIGINT, inputs STRING, "
        "checked_at TIMESTAMP"
    ),
    "run_log": (
        "run_id STRING, pipeline STRING, stages STRING, status STRING, message STRING, "
        "started_at TIMESTAMP, finished_at TIMESTAMP, duration_seconds DOUBLE"
    ),
}


LITERAL_ROWS = 16


def now() -> datetime:
    """The current UTC time, as ops records store it."""
    return datetime.now(UTC).replace(tzinfo=None)


class OpsLog:
    """Appends and reads the `ops.*` records of one lakehouse.

    The bookkeeping tables (one row per landing file or batch: small by construction) are read once and
    kept in memory until this process appends to them, so a stage does not re-read them per table.
    """

    def __init__(self, lakehouse: Lakehouse) -> None:
        self.lakehouse = lakehouse
        self.spark = lakehouse.spark
        self._cache: dict[str, list[Any]] = {}
        # A stage's tables run in threads: one append at a time (the first creates the table) and one read.
        self._lock = threading.RLock()

    def append(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows (dicts keyed by column) to `ops.<table>` in one commit."""
        if not rows:
            return
        schema = StructType.fromDDL(SCHEMAS[table])
        assert isinstance(schema, StructType)
        if len(rows) <= LITERAL_ROWS:
            # A few rows become literal columns over a one-row JVM relation: `createDataFrame` on Python objects
            # would start a Python worker per write (0.6 s each on a 2-core machine, measured).
            selects = [
                self.spark.range(1).select(
                    *[_literal(row.get(f.name), f.dataType).alias(f.name) for f in schema.fields]
                )
                for row in rows
            ]
            df = reduce(DataFrame.unionByName, selects)
        else:  # many rows (profiles, metrics): one Python worker beats a plan of hundreds of unions
            df = self.spark.createDataFrame([tuple(row.get(f.name) for f in schema.fields) for row in rows], schema)
        with self._lock:
            # mergeSchema: a lakehouse written by an older goldsmith gets the columns added since.
            self.lakehouse.write(df.coalesce(1), "ops", table, mode="append", metrics=False,
                                 options={"mergeSchema": "true"})
            if table in self._cache:
                self._cache[table].extend(dict(r) for r in rows)

    def _rows(self, table: str, *columns: str) -> list[dict[str, Any]]:
        with self._lock:
            if table not in self._cache:
                rows: list[Any] = []
                if self.lakehouse.exists("ops", table):
                    df = self.lakehouse.read("ops", table)
                    # A lakehouse written by an older goldsmith may lack a column added since: it reads as None.
                    rows = [r.asDict() for r in df.select(*[c for c in columns if c in df.columns]).collect()]
                self._cache[table] = rows
            return list(self._cache[table])

    def _ingested(self, source: str) -> list[dict[str, Any]]:
        rows = self._rows("ingested_files", "source", "path", "size_bytes", "modified_ms", "batch_id", "batch_rows")
        return [r for r in rows if r["source"] == source]

    def ingested_files(self, source: str) -> set[tuple[str, int, int]]:
        """(path, size, modified_ms) of every file already ingested for `source`."""
        return {(r["path"], int(r["size_bytes"]), int(r["modified_ms"])) for r in self._ingested(source)}

    def batches(self, source: str) -> set[str]:
        """Batch ids ingested for `source`."""
        return {r["batch_id"] for r in self._ingested(source)}

    def batch_rows(self, source: str, batch_ids: Sequence[str]) -> int | None:
        """Rows the batches wrote to `bronze.<source>` when they were ingested, or None when a batch has no
        count on record (ingested by an older goldsmith)."""
        counts: dict[str, int | None] = {r["batch_id"]: r.get("batch_rows") for r in self._ingested(source)}
        recorded = [counts.get(b) for b in batch_ids]
        return None if None in recorded else sum(int(n or 0) for n in recorded)

    def refined_batches(self, silver_table: str) -> set[str]:
        """Batch ids already merged into `silver.<silver_table>`."""
        rows = self._rows("refined_batches", "silver_table", "batch_id")
        return {r["batch_id"] for r in rows if r["silver_table"] == silver_table}

    def last_gold_inputs(self, table: str) -> dict[str, Any] | None:
        """The input versions recorded by the latest build of `gold.<table>`, or None."""
        row = self._latest("gold_builds", "table_name", table, "built_at")
        return json.loads(row["inputs"]) if row else None

    def last_scoring(self, model: str) -> dict[str, Any] | None:
        """The latest `ops.scoring_runs` row of `model`, or None."""
        return self._latest("scoring_runs", "model_name", model, "scored_at")

    def _latest(self, table: str, column: str, value: str, time_column: str) -> dict[str, Any] | None:
        """The newest row of `ops.<table>` (by `time_column`) whose `column` is `value`, or None."""
        if not self.lakehouse.exists("ops", table):
            return None
        row = (
            self.lakehouse.read("ops", table).where(F.col(column) == value)
            .orderBy(F.col(time_column).desc()).first()
        )
        return row.asDict() if row else None


def _literal(value: Any, data_type: DataType) -> Column:
    """A typed literal column for a Python value (lists and dicts included)."""
    if value is None:
        return F.lit(None).cast(data_type)
    if isinstance(data_type, ArrayType):
        return F.array(*[_literal(v, data_type.elementType) for v in value]).cast(data_type) \
            if value else F.array().cast(data_type)
    if isinstance(data_type, MapType):
        if not value:
            return F.create_map().cast(data_type)
        parts = []
        for k, v in value.items():
            parts += [_literal(k, data_type.keyType), _literal(v, data_type.valueType)]
        return F.create_map(*parts).cast(data_type)
    if isinstance(data_type, StructType):
        get = value.get if isinstance(value, dict) else (lambda name: getattr(value, name, None))
        return F.struct(*[_literal(get(f.name), f.dataType).alias(f.name) for f in data_type.fields])
    return F.lit(value).cast(data_type)
