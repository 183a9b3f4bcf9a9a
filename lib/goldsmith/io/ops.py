"""The engine's own records, in `ops.*` Delta tables (append-only; blind appends never conflict)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructType,
    TimestampType,
)

from goldsmith import faults
from goldsmith.errors import DeltaLogUnsupported
from goldsmith.io import delta_log
from goldsmith.io.lakehouse import Lakehouse, Txn
from goldsmith.io.paths import local_folder

log = logging.getLogger("goldsmith")

SCHEMAS: dict[str, str] = {
    "ingested_files": (
        "source STRING, path STRING, size_bytes BIGINT, modified_ms BIGINT, batch_id STRING, "
        "run_id STRING, ingested_at TIMESTAMP, batch_rows BIGINT, etag STRING"
    ),
    "refined_batches": "silver_table STRING, batch_id STRING, run_id STRING, refined_at TIMESTAMP",
    # A batch's inputs, fixed before its first write (a write-ahead record): a run killed in the middle of the
    # batch is completed by the next run with exactly these inputs; the commits it had made are found by their
    # markers (`Txn`).
    # `inputs` is JSON: the landing files of an ingest batch, the bronze batch ids of a refine batch.
    "batch_plans": (
        "stage STRING, table_name STRING, seq BIGINT, batch_id STRING, inputs STRING, run_id STRING, "
        "planned_at TIMESTAMP"
    ),
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
    # Every statement a client of `goldsmith serve-sql` sent, and every refused login (copied in batches from
    # the server's JSON-lines log, `<root>/_sql/audit.jsonl`).
    "sql_audit": (
        "event STRING, user STRING, client STRING, statement_id STRING, statement STRING, allowed BOOLEAN, "
        "reason STRING, rows BIGINT, duration_ms BIGINT, at TIMESTAMP"
    ),
    "run_log": (
        "run_id STRING, pipeline STRING, stages STRING, status STRING, message STRING, "
        "started_at TIMESTAMP, finished_at TIMESTAMP, duration_seconds DOUBLE"
    ),
}


# An ops table is small and read whole, and grows by a commit of a few rows at a time: no per-file column
# statistics (nothing to skip; ~50 ms less per commit), and a checkpoint every 100 commits instead of every 10
# (a checkpoint is a Spark job). Delta takes `delta.*` writer options as table properties when the first append
# creates the table, and ignores them afterwards.
OPS_TABLE_PROPERTIES = {"delta.dataSkippingNumIndexedCols": "0", "delta.checkpointInterval": "100"}
_DEFAULTS = "spark.databricks.delta.properties.defaults."  # a session's properties for the tables it creates
# Defaults that are only properties of a new table (goldsmith's session turns the change feed off); any other
# default may need a table feature, which a table created without Spark would lack.
_PLAIN_DEFAULTS = frozenset({"enableChangeDataFeed", "checkpointInterval", "logRetentionDuration",
                             "deletedFileRetentionDuration", "dataSkippingNumIndexedCols"})


def now() -> datetime:
    """The current UTC time, as ops records store it."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class _Kept:
    version: int | None  # the table version the rows are complete at (None: unknown, not reused)
    rows: list[dict[str, Any]]


@dataclass
class OpsCache:
    """Bookkeeping rows kept between the runs of one process (`goldsmith watch`), by table path.

    A run reuses a table's rows only while the table is at the version they were read or last appended at
    (its log folder is listed, no Spark job): a commit by anyone else makes the run read the table again."""

    kept: dict[str, _Kept] = field(default_factory=dict)


class OpsLog:
    """Appends and reads the `ops.*` records of one lakehouse.

    The bookkeeping tables (one row per landing file, batch or build: small by construction) are read once
    and kept in memory, extended by this process's own appends, so a stage does not re-read them per table;
    with an `OpsCache`, later runs of the same process do not re-read them either.
    """

    def __init__(self, lakehouse: Lakehouse, shared: OpsCache | None = None) -> None:
        self.lakehouse = lakehouse
        self.spark = lakehouse.spark
        self._cache: dict[str, list[Any]] = {}
        # Across runs only for path tables, whose version is a listing of their log (a catalog's is a job).
        self._shared = shared if not lakehouse.catalog else None
        # A stage's tables run in threads: one append at a time (the first creates the table) and one read.
        self._lock = threading.RLock()

    def append(self, table: str, rows: Sequence[dict[str, Any]], txn: Txn | None = None) -> None:
        """Append rows (dicts keyed by column) to `ops.<table>` in one commit; with `txn`, a commit that the
        table already has (from a killed run) is not made again."""
        if not rows:
            return
        schema = StructType.fromDDL(SCHEMAS[table])
        assert isinstance(schema, StructType)
        with self._lock:
            kept = self._shared.kept.get(self.lakehouse.path("ops", table)) if self._shared else None
            before = kept.version if kept else None
            if not self._append_without_spark(table, rows, schema, txn):
                # mergeSchema: a lakehouse written by an older goldsmith gets the columns added since.
                self.lakehouse.write(rows_frame(self.spark, rows, schema).coalesce(1), "ops", table, mode="append",
                                     metrics=False, options={"mergeSchema": "true", **OPS_TABLE_PROPERTIES}, txn=txn)
            added = [dict(r) for r in rows]
            if table in self._cache:
                self._cache[table].extend(added)
            if kept is not None:
                if self._cache.get(table) is not kept.rows:
                    kept.rows.extend(added)
                # Still complete only if this append is the one commit since the rows were known complete.
                after = self.lakehouse.version("ops", table)
                kept.version = after if before is not None and after == before + 1 else None

    def _append_without_spark(self, table: str, rows: Sequence[dict[str, Any]], schema: StructType,
                              txn: Txn | None) -> bool:
        """Append to an ops table in a local folder, creating it if need be, with `delta_log.append` (a parquet file
        and a commit: no Spark job, no plan); False, with nothing written, when that writer does not take the table
        (the Spark path then writes it: a catalog, an object store, columns to add to the table, a checkpoint due,
        session defaults for new tables that need table features)."""
        path = self.lakehouse.path("ops", table)
        if self.lakehouse.catalog or local_folder(path) is None:
            return False
        if txn is not None and self.lakehouse.find_commit("ops", table, txn) is not None:
            return True  # applied by a run that was killed after it
        complete = [{f.name: _arrowable(row.get(f.name), f.dataType) for f in schema.fields} for row in rows]
        properties = self._new_table_properties
        create = delta_log.NewTable(schema.jsonValue(), properties) if properties is not None else None
        try:
            delta_log.append(path, complete, txn.marker if txn is not None else None, create)
        except DeltaLogUnsupported as why:
            log.debug("ops.%s is appended to by Spark: %s", table, why)
            return False
        self.lakehouse.register("ops", table)
        faults.committed("ops", table)
        return True

    @cached_property
    def _new_table_properties(self) -> dict[str, str] | None:
        """The properties a Spark append would give a new ops table (`OPS_TABLE_PROPERTIES` and the session's
        defaults for new tables), or None when the session's defaults ask for more than properties (a table
        feature, column mapping): such a table is created by Spark. (Read once: appends hold `_lock`.)"""
        defaults = {key.removeprefix(_DEFAULTS): value for key, value in self.spark.conf.getAll.items()
                    if key.startswith(_DEFAULTS)}
        plain = all(key in _PLAIN_DEFAULTS for key in defaults) \
            and defaults.get("enableChangeDataFeed", "false").lower() == "false"  # a change feed is a feature
        return {**{f"delta.{k}": v for k, v in defaults.items()}, **OPS_TABLE_PROPERTIES} if plain else None

    def _rows(self, table: str, *columns: str) -> list[dict[str, Any]]:
        with self._lock:
            if table not in self._cache:
                path = self.lakehouse.path("ops", table)
                version = self.lakehouse.version("ops", table) if self._shared is not None else None
                kept = self._shared.kept.get(path) if self._shared else None
                if kept is not None and kept.version is not None and kept.version == version:
                    self._cache[table] = kept.rows
                    return list(kept.rows)
                # A local folder's small log and files are read without a Spark job (milliseconds, not a job
                # per table per stage); a table in an object store or a catalog, or one the pure reader does
                # not read, is read by Spark.
                found = None if self.lakehouse.catalog else _local_rows(path, columns)
                rows = found if found is not None else self._spark_rows(table, columns)
                self._cache[table] = rows
                if self._shared is not None:
                    # The version listed before the read: a commit during the read only makes the next run read
                    # again.
                    self._shared.kept[path] = _Kept(version, rows)
            return list(self._cache[table])

    def _spark_rows(self, table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        if not self.lakehouse.exists("ops", table):
            return []
        df = self.lakehouse.read("ops", table)
        # A lakehouse written by an older goldsmith may lack a column added since: it reads as None.
        present = [c for c in columns if c in df.columns]
        times = {f.name for f in df.schema.fields if isinstance(f.dataType, TimestampType)}
        # Times as UTC microseconds: a collected timestamp is in the Python process's time zone, while this
        # process's own appends (`now()`) are naive UTC.
        selected = [F.unix_micros(c).alias(c) if c in times else F.col(c) for c in present]
        rows = [r.asDict() for r in df.select(*selected).collect()]
        for row in rows:
            for c in columns:
                row[c] = _utc(row[c]) if c in times and c in row else row.get(c)
        return rows

    def _ingested(self, source: str) -> list[dict[str, Any]]:
        rows = self._rows("ingested_files", "source", "path", "size_bytes", "modified_ms", "batch_id", "batch_rows",
                          "etag")
        return [r for r in rows if r["source"] == source]

    def ingested_files(self, source: str) -> set[tuple[str, int, int, str]]:
        """The identity (`file_identity`) of every file already ingested for `source`."""
        return {file_identity(r["path"], int(r["size_bytes"]), int(r["modified_ms"]), r.get("etag") or "")
                for r in self._ingested(source)}

    def plans(self, stage: str, table_name: str) -> list[dict[str, Any]]:
        """The batch plans of one stage's table, oldest first."""
        rows = self._rows("batch_plans", "stage", "table_name", "seq", "batch_id", "inputs")
        return sorted((r for r in rows if r["stage"] == stage and r["table_name"] == table_name),
                      key=lambda r: int(r["seq"]))

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
        schema = StructType.fromDDL(SCHEMAS[table])
        assert isinstance(schema, StructType)
        rows = [r for r in self._rows(table, *schema.fieldNames()) if r.get(column) == value]
        if not rows:
            return None
        oldest = datetime.min
        return max(rows, key=lambda r: r.get(time_column) or oldest)


def column_names(table: str) -> list[str]:
    """The top-level column names of `ops.<table>` (`SCHEMAS`), read from the DDL without Spark."""
    ddl, names, depth, start = SCHEMAS[table] + ",", [], 0, 0
    for i, char in enumerate(ddl):
        if char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == "," and depth == 0:
            names.append(ddl[start:i].split()[0].strip("`"))
            start = i + 1
    return names


def file_identity(path: str, size: int, modified_ms: int, etag: str = "") -> tuple[str, int, int, str]:
    """What identifies a landing file of a source: its name within the source's folder, its size, its
    modification time and its ETag (object stores; '' on a disk) as the storage reports them. Not its full path:
    the same files reached through another path (a lakehouse moved or mounted elsewhere, a landing path given
    relative to the working folder) are the same files. A file rewritten in place gets a new size, time or ETag,
    and counts as new."""
    return path.rstrip("/").rsplit("/", 1)[-1], size, modified_ms, etag


def _local_rows(path: str, columns: Sequence[str]) -> list[dict[str, Any]] | None:
    """The rows of the ops table at `path` read without Spark (times as naive UTC, like `now()`), [] when there
    is no table, None when the pure-Python reader does not read it (not a local folder, a feature it lacks)."""
    try:
        rows = delta_log.read_rows(path, columns)
    except DeltaLogUnsupported:
        return None
    return [naive_times(row) for row in rows or []]


def naive_times(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its times as naive UTC, as goldsmith stamps them (`now()`) and as a UTC session collects them."""
    for name, value in row.items():
        if isinstance(value, datetime) and value.tzinfo is not None:
            row[name] = value.astimezone(UTC).replace(tzinfo=None)
    return row


def _utc(micros: int | None) -> datetime | None:
    """UTC microseconds since the epoch as a naive UTC datetime (how `now()` stamps ops rows)."""
    return None if micros is None else datetime(1970, 1, 1) + timedelta(microseconds=micros)


def rows_frame(spark: SparkSession, rows: Sequence[dict[str, Any]], schema: StructType) -> DataFrame:
    """`rows` (dicts keyed by column; a missing key is null) as a DataFrame of `schema`, built in the JVM from one
    JSON literal: a handful of calls to it whatever the number of rows, and no Python worker. (A literal column per
    value was ~4 calls per value, 2.6 s of an 11 s run of a small pipeline; `createDataFrame` on Python objects
    starts a Python worker per write.) Times are naive UTC, as goldsmith stamps them (`now()`)."""
    payload = json.dumps([{f.name: _jsonable(row.get(f.name), f.dataType) for f in schema.fields} for row in rows],
                         allow_nan=True)
    # FAILFAST: a value that does not fit its column fails the write instead of becoming a null.
    parsed = F.from_json(F.lit(payload), ArrayType(schema), _JSON_OPTIONS)
    return spark.range(1).select(F.inline(parsed))


_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
_JSON_OPTIONS = {"mode": "FAILFAST", "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS", "timeZone": "UTC"}


def _jsonable(value: Any, data_type: DataType, times_as_text: bool = True) -> Any:
    """`value` as JSON for a column of `data_type` (lists, dicts and rows included); with `times_as_text` False,
    times stay naive UTC datetimes (for pyarrow: `_arrowable`)."""
    if value is None:
        return None
    if isinstance(data_type, TimestampType):
        utc = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
        return utc.strftime(_TIME_FORMAT) if times_as_text else utc
    if isinstance(data_type, LongType):
        return int(value)
    if isinstance(data_type, DoubleType):
        return float(value)
    if isinstance(data_type, BooleanType):
        return bool(value)
    if isinstance(data_type, StringType):
        # As Spark casts a literal to a string: booleans in lower case.
        return ("true" if value else "false") if isinstance(value, bool) else str(value)
    if isinstance(data_type, ArrayType):
        return [_jsonable(v, data_type.elementType, times_as_text) for v in value]
    if isinstance(data_type, MapType):
        return {str(_jsonable(k, data_type.keyType, times_as_text)): _jsonable(v, data_type.valueType, times_as_text)
                for k, v in value.items()}
    if isinstance(data_type, StructType):
        get = value.get if isinstance(value, dict) else (lambda name: getattr(value, name, None))
        return {f.name: _jsonable(get(f.name), f.dataType, times_as_text) for f in data_type.fields}
    raise TypeError(f"ops records have no {data_type.simpleString()} values")


def _arrowable(value: Any, data_type: DataType) -> Any:
    """`value` for pyarrow in a column of `data_type`: as in JSON (`_jsonable`), times as naive UTC datetimes."""
    return _jsonable(value, data_type, times_as_text=False)
