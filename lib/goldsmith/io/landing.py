"""Landing files: find the files of a source and read them with their declared schema."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from goldsmith.config.models import SourceConfig
from goldsmith.errors import ConfigError, SchemaMismatch

CORRUPT_COLUMN = "_corrupt_record"

# Defaults a user expects from "a CSV file"; the pipeline's options win.
CSV_DEFAULTS = {"header": "true", "multiLine": "false", "encoding": "UTF-8"}


@dataclass(frozen=True)
class LandingFile:
    """One file in a landing folder, identified by path, size and modification time."""

    path: str
    size: int
    modified_ms: int


def list_files(spark: SparkSession, source: SourceConfig) -> list[LandingFile]:
    """The files of a source: the path itself, or the files in it whose names match `glob`."""
    jvm: Any = spark.sparkContext._jvm
    root = jvm.org.apache.hadoop.fs.Path(source.path)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(root):
        raise ConfigError(f"source path {source.path} does not exist (set it with --set sources.<name>.path=...)")
    status = fs.getFileStatus(root)
    statuses = [status] if status.isFile() else list(fs.listStatus(root))
    files = []
    for st in statuses:
        name = str(st.getPath().getName())
        if st.isFile() and not name.startswith((".", "_")) and fnmatch.fnmatch(name, source.glob):
            files.append(LandingFile(str(st.getPath().toString()), int(st.getLen()), int(st.getModificationTime())))
    return sorted(files, key=lambda f: f.path)


def parse_schema(source_name: str, ddl: str) -> StructType:
    """The source's DDL schema as a StructType, or a `ConfigError` naming the source."""
    try:
        schema = StructType.fromDDL(ddl)
    except Exception as exc:  # pyspark raises several parse error types; all mean a bad DDL string
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"sources.{source_name}.schema: not a valid DDL column list: {first}") from None
    if not isinstance(schema, StructType):
        raise ConfigError(f"sources.{source_name}.schema: expected a column list like 'id INT, name STRING'")
    return schema


def read_source(
    spark: SparkSession, name: str, source: SourceConfig, paths: list[str]
) -> tuple[DataFrame, StructType]:
    """Read `paths` with the declared schema plus `_corrupt_record` (text sources), and `_source_file`.

    Malformed text records are kept, not dropped: the reader fills `_corrupt_record` with the raw
    record when a row has the wrong number of fields or a value that does not parse as its type.
    """
    schema = parse_schema(name, source.schema_ddl)
    reader = spark.read.format(source.format)
    if source.format in ("csv", "json"):
        options = {**(CSV_DEFAULTS if source.format == "csv" else {}), **source.options}
        options["mode"] = "PERMISSIVE"
        options["columnNameOfCorruptRecord"] = CORRUPT_COLUMN
        read_schema = StructType([*schema.fields, StructField(CORRUPT_COLUMN, StringType(), True)])
        reader = reader.options(**options).schema(read_schema)
    else:
        reader = reader.options(**source.options).schema(schema)
    try:
        df = reader.load(paths)
    except Exception as exc:
        raise SchemaMismatch(f"sources.{name}: cannot read {len(paths)} file(s): {str(exc).splitlines()[0]}") from None
    if CORRUPT_COLUMN not in df.columns:
        df = df.withColumn(CORRUPT_COLUMN, F.lit(None).cast("string"))
    return df.withColumn("_source_file", F.col("_metadata.file_path")), schema
