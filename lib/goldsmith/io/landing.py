"""Landing files: find the files of a source and read them with their declared schema."""

from __future__ import annotations

import csv
import fnmatch
import logging
from dataclasses import dataclass
from typing import Any

from py4j.java_gateway import is_instance_of
from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from goldsmith.config.models import SourceConfig
from goldsmith.errors import ConfigError, SchemaMismatch, message_line

log = logging.getLogger("goldsmith")

CORRUPT_COLUMN = "_corrupt_record"

# Compressed files Spark reads by their extension (Hadoop's codecs that need no native library): a source's glob
# `*.csv` also takes `x.csv.gz`. Other archive formats are reported, never skipped without a word.
READABLE_COMPRESSION = (".gz", ".bz2", ".deflate", ".lz4", ".snappy")
UNREADABLE_COMPRESSION = (".zip", ".zst", ".xz", ".7z", ".tar", ".tgz", ".rar")

# Defaults a user expects from "a CSV file"; the pipeline's options win.
CSV_DEFAULTS = {"header": "true", "multiLine": "false", "encoding": "UTF-8"}


@dataclass(frozen=True)
class LandingFile:
    """One file in a landing folder, identified by path, size, modification time and, on an object store, the
    ETag the store reports (a hash of the content: a file rewritten in place within the same second, with the
    same size, still differs)."""

    path: str
    size: int
    modified_ms: int
    etag: str = ""


def list_files(spark: SparkSession, source: SourceConfig, report: bool = False) -> list[LandingFile]:
    """The files of a source: the path itself, or the files in it whose names match `glob` (with or without a
    compression extension Spark reads). With `report`, files that are not taken are named in the log."""
    jvm: Any = spark.sparkContext._jvm
    root = jvm.org.apache.hadoop.fs.Path(source.path)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    # One listing of the folder (a LIST request per 1,000 keys on an object store), no request per file; a path
    # that is a file lists as itself.
    try:
        statuses = list(fs.listStatus(root))
    except Py4JJavaError as exc:
        if exc.java_exception.getClass().getName() != "java.io.FileNotFoundException":
            raise
        raise ConfigError(f"source path {source.path} does not exist (set it with --set sources.<name>.path=...)") \
            from None
    # An object store's statuses carry the object's ETag (Hadoop's EtagSource); a disk's do not.
    gateway = spark.sparkContext._gateway
    etags = bool(statuses) and is_instance_of(gateway, statuses[0], "org.apache.hadoop.fs.EtagSource")
    files, unreadable, unmatched = [], [], []
    for st in statuses:
        name = str(st.getPath().getName())
        if not st.isFile() or name.startswith((".", "_")):
            continue
        if matches_glob(name, source.glob):
            files.append(LandingFile(str(st.getPath().toString()), int(st.getLen()), int(st.getModificationTime()),
                                     str(st.getEtag() or "") if etags else ""))
        elif any(name.endswith(ext) and fnmatch.fnmatch(name[: -len(ext)], source.glob)
                 for ext in UNREADABLE_COMPRESSION):
            unreadable.append(name)
        else:
            unmatched.append(name)
    if report and unreadable:
        log.warning("  %s: %d file(s) compressed in a format Spark does not read, not ingested (decompress them, or "
                    "use gzip/bzip2): %s", source.path, len(unreadable), ", ".join(sorted(unreadable)[:5]))
    if report and unmatched:
        log.info("  %s: %d file(s) do not match glob %r and are not read: %s", source.path, len(unmatched),
                 source.glob, ", ".join(sorted(unmatched)[:5]) + (" ..." if len(unmatched) > 5 else ""))
    return sorted(files, key=lambda f: f.path)


# Below this many files a source's files are loaded by path: a folder's listing would cost more than it saves.
FOLDER_READ_FILES = 8


def _folder_of(spark: SparkSession, path: str, paths: list[str]) -> str | None:
    """The source's folder, qualified, when `paths` are files directly in it (as `list_files` lists them) and
    there are enough of them to read the folder instead; else None."""
    if len(paths) < FOLDER_READ_FILES:
        return None
    jvm: Any = spark.sparkContext._jvm
    root = jvm.org.apache.hadoop.fs.Path(path)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    folder = str(fs.makeQualified(root).toString()).rstrip("/")
    if any(p.rsplit("/", 1)[0] != folder for p in paths):
        return None  # a source whose path is a file, or paths from elsewhere
    return folder


def matches_glob(name: str, glob: str) -> bool:
    """`name` matches `glob`, itself or once a compression extension Spark reads is taken off."""
    return fnmatch.fnmatch(name, glob) or any(
        name.endswith(ext) and fnmatch.fnmatch(name[: -len(ext)], glob) for ext in READABLE_COMPRESSION
    )


@dataclass(frozen=True)
class FirstLine:
    """The start of a landing file as its reader sees it (decompressed by its extension)."""

    text: str | None  # the first line, None for an empty file
    binary: str = ""  # what the bytes look like when they are not text ("gzip-compressed data"), else ""


def first_line(spark: SparkSession, path: str, encoding: str = "UTF-8", limit: int = 1 << 20) -> FirstLine:
    """The first line of a file (at most `limit` characters), decompressed as Spark would by its extension."""
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(hadoop_path)
    raw = hadoop_path.getFileSystem(conf).open(hadoop_path)
    try:
        stream = jvm.java.io.BufferedInputStream(codec.createInputStream(raw) if codec is not None else raw)
        stream.mark(8)
        magic = [stream.read() for _ in range(4)]
        stream.reset()
        if codec is None and magic[:2] == [0x1F, 0x8B]:
            return FirstLine(None, "gzip-compressed data in a file whose name does not end in .gz")
        if codec is None and magic == [0x50, 0x4B, 0x03, 0x04]:
            return FirstLine(None, "a zip archive, not a text file")
        if magic[0] == -1:
            return FirstLine(None)
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, encoding))
        chars = jvm.java.nio.CharBuffer.allocate(min(limit, 1 << 16))
        count = reader.read(chars)
        head = "" if count <= 0 else str(chars.flip().toString())
    finally:
        raw.close()
    text = head.split("\n", 1)[0].rstrip("\r")
    if "\x00" in text:
        return FirstLine(None, "binary data (NUL bytes), not a text file")
    return FirstLine(text)


def header_order(source_name: str, header: str, schema: StructType, options: dict[str, str],
                 renamed: dict[str, str] | None = None) -> tuple[str, ...] | str:
    """The declared columns in the order a CSV header lists them, or the reason the header does not fit the
    declared schema (names compared without case, after `renamed`: header cell -> declared column; a byte-order
    mark and surrounding spaces ignored)."""
    delimiter = options.get("sep", options.get("delimiter", ","))
    quote = options.get("quote", '"') or '"'
    try:
        names = next(csv.reader([header.lstrip("\ufeff")], delimiter=delimiter[:1] or ",", quotechar=quote[:1]))
    except (csv.Error, StopIteration):
        names = []
    aliases = {k.strip().lower(): v for k, v in (renamed or {}).items()}
    found = [aliases.get(n.strip().lower(), n.strip()) for n in names]
    declared = {f.name.lower(): f.name for f in schema.fields}
    lowered = [n.lower() for n in found]
    missing = [declared[n] for n in declared if n not in lowered]
    unexpected = [n for n in found if n.lower() not in declared]
    repeated = sorted({n for n in found if lowered.count(n.lower()) > 1})
    if missing or unexpected or repeated:
        parts = ([f"missing {_names(missing)}"] if missing else []) + \
            ([f"unexpected {_names(unexpected)}"] if unexpected else []) + \
            ([f"repeated {_names(repeated)}"] if repeated else [])
        return f"the header does not match sources.{source_name}.schema: {'; '.join(parts)}"
    return tuple(declared[n] for n in lowered)


def _names(names: list[str], most: int = 5) -> str:
    shown = ", ".join(n[:40] for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def parse_schema(source_name: str, ddl: str) -> StructType:
    """The source's DDL schema as a StructType, or a `ConfigError` naming the source."""
    try:
        schema = StructType.fromDDL(ddl)
    except Exception as exc:  # pyspark raises several parse error types; all mean a bad DDL string
        first = message_line(exc)
        raise ConfigError(f"sources.{source_name}.schema: not a valid DDL column list: {first}") from None
    if not isinstance(schema, StructType):
        raise ConfigError(f"sources.{source_name}.schema: expected a column list like 'id INT, name STRING'")
    return schema


def read_source(
    spark: SparkSession, name: str, source: SourceConfig, paths: list[str], order: tuple[str, ...] | None = None
) -> tuple[DataFrame, StructType]:
    """Read `paths` with the declared schema plus `_corrupt_record` (text sources), and `_source_file`.

    Malformed text records are kept, not dropped: the reader fills `_corrupt_record` with the raw
    record when a row has the wrong number of fields or a value that does not parse as its type.
    `order`: the order the files' CSV header lists the declared columns in (they are read by name, and returned
    in the declared order).
    """
    schema = parse_schema(name, source.schema_ddl)
    by_name = {f.name: f for f in schema.fields}
    file_schema = StructType([by_name[n] for n in order]) if order else schema
    reader = spark.read.format(source.format)
    if source.format in ("csv", "json"):
        options = {**(CSV_DEFAULTS if source.format == "csv" else {}), **source.options}
        options["mode"] = "PERMISSIVE"
        options["columnNameOfCorruptRecord"] = CORRUPT_COLUMN
        read_schema = StructType([*file_schema.fields, StructField(CORRUPT_COLUMN, StringType(), True)])
        reader = reader.options(**options).schema(read_schema)
    else:
        reader = reader.options(**source.options).schema(file_schema)
    folder = _folder_of(spark, source.path, paths)
    try:
        if folder is None:
            df = reader.load(paths)
        else:
            # The folder with its files pruned to `paths` by their metadata: one listing, where loading the paths
            # one by one checks each (on an object store 2 HEAD and 1 LIST requests per file: 31.7 s against
            # 1.7 s for 5,000 small files on the local store, scripts/bench_listing.py). Recursive lookup keeps
            # Spark from reading subfolder names as partitions; their files are pruned like any other.
            jvm: Any = spark.sparkContext._jvm
            uris = {str(jvm.org.apache.hadoop.fs.Path(p).toUri().toString()) for p in paths}
            df = reader.option("recursiveFileLookup", "true").load(folder) \
                .where(F.col("_metadata.file_path").isin(sorted(uris)))
    except Exception as exc:
        raise SchemaMismatch(f"sources.{name}: cannot read {len(paths)} file(s): {message_line(exc)}") from None
    if CORRUPT_COLUMN not in df.columns:
        df = df.withColumn(CORRUPT_COLUMN, F.lit(None).cast("string"))
    df = df.select(*schema.fieldNames(), CORRUPT_COLUMN)
    return df.withColumn("_source_file", F.col("_metadata.file_path")), schema

