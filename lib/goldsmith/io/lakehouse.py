"""The lakehouse: one storage root whose folders are the catalog, or the schemas of a Unity Catalog catalog.

Local and on a cluster, `<root>/<layer>/<table>` holds a Delta table; the layers are databases. Any process
attaches the same root and sees the same tables at their latest committed version, so there is no metastore
that only one JVM may open.

With `storage.catalog` set (Databricks), tables are the catalog's own, named `<catalog>.<prefix><layer>.<table>`
(`storage.schema_prefix`, e.g. `dev_`, keeps a developer's tables apart), written and read by name; the
pipeline's SQL files still say `silver.flights` and are resolved to those names (`resolve_sql`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructField, StructType

from goldsmith import faults
from goldsmith.config.loader import TABLE_REF  # the pattern the loader checks SQL references with
from goldsmith.io.paths import local_folder

log = logging.getLogger(__name__)

LAYERS = ("bronze", "silver", "gold", "ops")
_REGISTER_LOCK = threading.Lock()  # tables of one stage run in threads (goldsmith.jobs.parallel)
ROOT_CONF = "goldsmith.lakehouse.root"
# Silver and gold tables record their row changes, so that an incremental gold build can find what changed.
CHANGE_FEED = "delta.enableChangeDataFeed"


@dataclass(frozen=True)
class Txn:
    """The identity of one batch's writes: `app_id` names the stream of batches (`goldsmith-ingest-flights`),
    `version` the batch, growing from one batch to the next. Each commit of the batch carries it in its
    `commitInfo.userMetadata` (`<app_id>@<version>`): the bookkeeping is written in the same commit as the data,
    so a write the table already committed (a run killed after it) is found in the log and not made again.

    (Delta's own `txnAppId`/`txnVersion` do the same, but each such write first rebuilds the table's
    transaction state in a Spark job: +0.55 s per write measured here, against milliseconds to read the
    newest commit files. One writer per pipeline is guaranteed by the lease, `goldsmith.io.lease`, so the
    check needs no atomicity of its own.)"""

    app_id: str
    version: int

    @property
    def marker(self) -> str:
        return f"{self.app_id}@{self.version}"

    def earlier(self, marker: str | None) -> bool:
        """Whether `marker` names an earlier batch of the same stream (the search for this one can stop)."""
        app, _, version = (marker or "").rpartition("@")
        return app == self.app_id and version.isdigit() and int(version) < self.version


# Where a MERGE (which takes no writer options) gets its commit's userMetadata.
_USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
# How many of a table's newest commits are searched for a batch's marker.
_MARKER_SEARCH = 200


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _string_literal(text: str) -> str:
    """A SQL string literal (DDL takes no parameters): backslashes and quotes escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Lakehouse:
    """Table names, paths and the catalog of one storage root."""

    spark: SparkSession
    root: str
    catalog: str | None = None
    schema_prefix: str = ""
    _registered: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root = self._absolute(self.root.rstrip("/"))
        # The session catalog is per application: when it last pointed at another root (a notebook or a
        # test suite opening two lakehouses), forget those names first. Only the names: the tables are
        # external, so DROP TABLE leaves their data. (Never DROP DATABASE: the in-memory catalog deletes a
        # database's folder with it.)
        previous = self.spark.conf.get(ROOT_CONF, None)
        if previous and previous != self.root and not self.catalog:
            for layer in LAYERS:
                if self.spark.catalog.databaseExists(layer):
                    # SHOW TABLES, not catalog.listTables: that one loads each table, and fails on a table whose
                    # folder is gone (a lakehouse moved away).
                    for row in self.spark.sql(f"SHOW TABLES IN {_quote(layer)}").collect():
                        if not row["isTemporary"]:
                            self.spark.sql(f"DROP TABLE IF EXISTS {_quote(layer)}.{_quote(row['tableName'])}")
        self.spark.conf.set(ROOT_CONF, self.root)

    def _absolute(self, root: str) -> str:
        jvm: Any = self.spark.sparkContext._jvm
        hadoop_path = jvm.org.apache.hadoop.fs.Path(root)
        fs = hadoop_path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())
        return str(fs.makeQualified(hadoop_path).toString())

    def path(self, layer: str, table: str) -> str:
        """Storage path of `layer.table` (local and cluster storage; a catalog keeps its tables' paths)."""
        return f"{self.root}/{layer}/{table}"

    def qualified(self, layer: str, table: str) -> str:
        """The table's SQL name: `layer`.`table`, or `catalog`.`<prefix>layer`.`table` in a catalog."""
        if self.catalog:
            return f"{_quote(self.catalog)}.{_quote(self.schema_prefix + layer)}.{_quote(table)}"
        return f"{_quote(layer)}.{_quote(table)}"

    def location(self, layer: str, table: str) -> str:
        """Where a person finds the table: its path, or its catalog name."""
        return self.qualified(layer, table).replace("`", "") if self.catalog else self.path(layer, table)

    def resolve_sql(self, sql_text: str) -> str:
        """A pipeline SQL text with its `layer.table` references named as this lakehouse names them (and,
        outside a catalog, the existing ones registered: a run registers only the tables it reads by name)."""
        if not self.catalog:
            for layer, table in {(m.group(1).lower(), m.group(2)) for m in TABLE_REF.finditer(sql_text)}:
                if f"{layer}.{table}" not in self._registered and self.exists(layer, table):
                    self.register(layer, table)
            return sql_text
        return TABLE_REF.sub(lambda m: self.qualified(m.group(1).lower(), m.group(2)), sql_text)

    def exists(self, layer: str, table: str) -> bool:
        """Whether the Delta table exists (at its path, or in the catalog)."""
        if self.catalog:
            return bool(self.spark.catalog.tableExists(self.qualified(layer, table)))
        return bool(DeltaTable.isDeltaTable(self.spark, self.path(layer, table)))

    def attach(self) -> list[str]:
        """Register every Delta table under the root in this session's catalog; return their names.

        In a catalog, the layers' schemas are created if missing; the catalog itself holds the tables."""
        if self.catalog:
            for layer in LAYERS:
                schema = f"{_quote(self.catalog)}.{_quote(self.schema_prefix + layer)}"
                self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            return []
        names = []
        for layer in LAYERS:
            for table in self._list_tables(layer):
                try:
                    self.register(layer, table)
                except AnalysisException as exc:
                    # Another process is creating this table right now: its log has no commit yet.
                    if exc.getCondition() != "DELTA_CREATE_EXTERNAL_TABLE_WITHOUT_TXN_LOG":
                        raise
                    log.debug("skipping %s.%s: no commit yet", layer, table)
                    continue
                names.append(f"{layer}.{table}")
        return names

    def _list_tables(self, layer: str) -> list[str]:
        folder = local_folder(f"{self.root}/{layer}")
        if folder is not None:  # a local disk: listed here, not by a call into the JVM per table (a server's
            # refresh every second: 4.0 -> 0.4 CPU-s a minute on the flights lakehouse)
            try:
                return sorted(entry.name for entry in os.scandir(folder)
                              if entry.is_dir() and os.path.isdir(os.path.join(entry.path, "_delta_log")))
            except FileNotFoundError:
                return []
        jvm: Any = self.spark.sparkContext._jvm
        layer_path = jvm.org.apache.hadoop.fs.Path(f"{self.root}/{layer}")
        fs = layer_path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())
        if not fs.exists(layer_path):
            return []
        tables = []
        for status in fs.listStatus(layer_path):
            if status.isDirectory():
                child = status.getPath()
                if fs.exists(jvm.org.apache.hadoop.fs.Path(child, "_delta_log")):
                    tables.append(str(child.getName()))
        return sorted(tables)

    def register(self, layer: str, table: str) -> None:
        """Make `layer.table` resolvable in SQL (idempotent, cheap after the first call)."""
        key = f"{layer}.{table}"
        if self.catalog or key in self._registered:
            return
        with _REGISTER_LOCK:
            self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {_quote(layer)}")
            self.spark.sql(
                f"CREATE TABLE IF NOT EXISTS {self.qualified(layer, table)} USING DELTA "
                f"LOCATION {_string_literal(self.path(layer, table))}"
            )
            self._registered.add(key)

    def read(self, layer: str, table: str, version: int | None = None) -> DataFrame:
        """The table's latest version, or the given Delta version (time travel)."""
        if self.catalog:
            name = self.qualified(layer, table)
            if version is None:
                return self.spark.read.table(name)
            return self.spark.sql(f"SELECT * FROM {name} VERSION AS OF {int(version)}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(layer, table))

    def version(self, layer: str, table: str) -> int | None:
        """The table's latest Delta version, or None when it does not exist."""
        if self.catalog:
            row = self._last_history_row(layer, table)
            return int(row["version"]) if row else None
        files = _commit_files(self.spark, self.path(layer, table))
        return files[0][0] if files else None

    def delta_table(self, layer: str, table: str) -> DeltaTable:
        """The `DeltaTable` handle for MERGE and history."""
        if self.catalog:
            return DeltaTable.forName(self.spark, self.qualified(layer, table))
        return DeltaTable.forPath(self.spark, self.path(layer, table))

    def write(
        self,
        df: DataFrame,
        layer: str,
        table: str,
        mode: str = "append",
        options: dict[str, str] | None = None,
        metrics: bool = True,
        txn: Txn | None = None,
    ) -> dict[str, str]:
        """Write `df` to `layer.table` as Delta, register it, and return the commit's operation metrics
        (Delta's own count of the rows written), or {} when `metrics` is False.

        With `txn`, a write that the table already committed (its marker is in the log) is not made again: the
        metrics are those of that earlier commit, with `"skipped": "true"` added."""
        writer = df.write.format("delta").mode(mode)
        if mode == "overwrite" and "replaceWhere" not in (options or {}):
            writer = writer.option("overwriteSchema", "true")
        if txn is not None:
            done = self.find_commit(layer, table, txn)
            if done is not None:  # applied by a run that was killed after it
                return {**done, "skipped": "true"}
            writer = writer.option("userMetadata", txn.marker)
        for key, value in (options or {}).items():
            writer = writer.option(key, value)
        before = self.version(layer, table) if txn is not None else None
        if self.catalog:
            writer.saveAsTable(self.qualified(layer, table))
        else:
            writer.save(self.path(layer, table))
            self.register(layer, table)
        faults.committed(layer, table)
        if txn is None:
            return self.last_commit_metrics(layer, table) if metrics else {}
        if self.catalog:
            made = self.version(layer, table) != before
            return self.last_commit_metrics(layer, table) if made else {}
        version, info = next(log_commits(self.spark, self.path(layer, table)), (None, {}))
        if version == before:
            return {}  # nothing to write made no commit: no other commit's counts
        return {str(k): str(v) for k, v in (info.get("operationMetrics") or {}).items()}

    @contextmanager
    def marked(self, txn: Txn) -> Iterator[None]:
        """Within the block, this session's commits (a MERGE's) carry `txn`'s marker."""
        self.spark.conf.set(_USER_METADATA_CONF, txn.marker)
        try:
            yield
        finally:
            self.spark.conf.unset(_USER_METADATA_CONF)

    def find_commit(self, layer: str, table: str, txn: Txn) -> dict[str, str] | None:
        """The operation metrics of the commit of `layer.table` that carries `txn`'s marker, or None when the
        table has no such commit (searched from the newest commit back to an earlier batch of the same stream)."""
        if self.catalog:
            if not self.exists(layer, table):
                return None
            rows = self.delta_table(layer, table).history(_MARKER_SEARCH).select(
                "userMetadata", "operationMetrics").collect()
            infos: Iterator[dict[str, Any]] = (
                {"userMetadata": r["userMetadata"], "operationMetrics": r["operationMetrics"]} for r in rows)
        else:
            infos = (info for _, info in log_commits(self.spark, self.path(layer, table)))
        for index, info in enumerate(infos):
            marker = info.get("userMetadata")
            if marker == txn.marker:
                return {str(k): str(v) for k, v in (info.get("operationMetrics") or {}).items()}
            if txn.earlier(marker) or index >= _MARKER_SEARCH:
                return None
        return None

    def create_empty(self, layer: str, table: str, schema: StructType) -> None:
        """Create `layer.table` with no rows (every column nullable), unless it exists: one metadata commit, no
        Spark job (an empty DataFrame write plans and runs its whole input's query for nothing)."""
        if self.catalog:  # the table builder's name parser takes at most two parts (schema.table)
            columns = ", ".join(f"{_quote(f.name)} {f.dataType.simpleString()}" for f in schema.fields)
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS {self.qualified(layer, table)} ({columns}) USING DELTA")
            return
        nullable = StructType([StructField(f.name, f.dataType, True, f.metadata) for f in schema.fields])
        DeltaTable.createIfNotExists(self.spark).addColumns(nullable).location(self.path(layer, table)).execute()
        self.register(layer, table)
        faults.committed(layer, table)

    def undo_commit(self, layer: str, table: str, previous_version: int | None) -> None:
        """Take back a commit whose rows failed a check: restore `previous_version`, or remove a table that
        did not exist before (its name and, outside a catalog, its folder)."""
        if previous_version is not None:
            self.delta_table(layer, table).restoreToVersion(previous_version)
            log.warning("%s.%s restored to version %d", layer, table, previous_version)
            return
        # In a catalog this drops the table with its data; outside one only the name (the table is external).
        self.spark.sql(f"DROP TABLE IF EXISTS {self.qualified(layer, table)}")
        if not self.catalog:
            self._registered.discard(f"{layer}.{table}")
            jvm: Any = self.spark.sparkContext._jvm
            path = jvm.org.apache.hadoop.fs.Path(self.path(layer, table))
            path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)
        log.warning("%s.%s removed (it did not exist before this build)", layer, table)

    def changes(self, layer: str, table: str, after_version: int, to_version: int) -> DataFrame:
        """Delta's change feed of the table: rows inserted, updated (both images) or deleted in the versions
        after `after_version` up to `to_version`; raises when the table did not record changes then."""
        reader = (
            self.spark.read.format("delta").option("readChangeFeed", "true")
            .option("startingVersion", after_version + 1).option("endingVersion", to_version)
        )
        return reader.table(self.qualified(layer, table)) if self.catalog else reader.load(self.path(layer, table))

    def enable_change_feed(self, layer: str, table: str) -> bool:
        """Turn on Delta's change feed of an existing table; True if it was off."""
        name = self.qualified(layer, table) if self.catalog else f"delta.{_quote(self.path(layer, table))}"
        properties = self.spark.sql(f"SHOW TBLPROPERTIES {name}").collect()
        if any(r["key"] == CHANGE_FEED and r["value"] == "true" for r in properties):
            return False
        self.spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({CHANGE_FEED} = true)")
        return True

    def last_commit_metrics(self, layer: str, table: str) -> dict[str, str]:
        """`operationMetrics` of the table's latest commit (row counts written, as Delta recorded them)."""
        if self.catalog:
            row = self._last_history_row(layer, table)
            return dict(row["operationMetrics"] or {}) if row else {}
        for _, info in log_commits(self.spark, self.path(layer, table)):
            return {str(k): str(v) for k, v in (info.get("operationMetrics") or {}).items()}
        return {}

    def _last_history_row(self, layer: str, table: str) -> Any:
        """A catalog table's newest `DESCRIBE HISTORY` row (the catalog keeps the commits), or None."""
        if not self.exists(layer, table):
            return None
        return self.delta_table(layer, table).history(1).select("version", "operationMetrics").first()


def _commit_files(spark: SparkSession, table_path: str) -> list[tuple[int, Any]]:
    """(version, Hadoop path) of a path table's commit files in `_delta_log`, newest first ([] without a log).

    Read from the log itself: `DeltaTable.history` runs a Spark job per call (0.3-1.5 s each on 2 cores,
    18 calls in a flights ETL), a listing of the log folder takes milliseconds. A path table's commits are
    files named by version (a catalog keeps its own: there `history` is used)."""
    jvm: Any = spark.sparkContext._jvm
    log_path = jvm.org.apache.hadoop.fs.Path(f"{table_path}/_delta_log")
    fs = log_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(log_path):
        return []
    commits = []
    for status in fs.listStatus(log_path):
        name = str(status.getPath().getName())
        if name.endswith(".json") and name[:-5].isdigit():
            commits.append((int(name[:-5]), status.getPath()))
    return sorted(commits, key=lambda c: c[0], reverse=True)


def log_commits(spark: SparkSession, table_path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(version, commitInfo) of a path table's commits, newest first, read lazily from `_delta_log` (a listing
    and one small file per commit: milliseconds, no Spark job). Nothing when the table has no log."""
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for version, path in _commit_files(spark, table_path):
        stream = path.getFileSystem(conf).open(path)
        try:
            text = str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()
        info: dict[str, Any] = {}
        for line in text.splitlines():
            if line.startswith('{"commitInfo"'):
                info = json.loads(line)["commitInfo"]
                break
        yield version, info
