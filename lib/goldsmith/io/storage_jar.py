"""goldsmith's Java storage classes, compiled once by set-up into one jar among Spark's own jars (so every JVM of
the virtualenv loads them: a run, `goldsmith sql`, the SQL server, spark-submit, a local cluster's workers).

- `ConditionalS3LogStore`: Delta commits on s3a:// that exclude each other across processes
  (`goldsmith.io.object_store`).
- `LocalFileSystem` / `LocalFs`: Hadoop's local file system without a process per file. Without Hadoop's native
  library (pyspark ships none) the JVM forks `chmod` for each file it creates and `readlink` twice per Delta
  commit: 25 processes for a one-row append. The pair does the same in the JVM (java.nio). Measured on 2 cores,
  warm JVM: 331 -> 232 ms per one-row Delta append; the flights pipeline on 11,226 flights, 61.3-61.9 s ->
  56.7-57.4 s.

`python -m goldsmith.io.storage_jar --install` (set-up) compiles the sources (javac, once per source hash) and
copies the jar among Spark's jars. Without it (no JDK at set-up) sessions keep Hadoop's and Delta's defaults.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

JAR = "goldsmith-storage.jar"  # in Spark's jars folder
_FORMER = ("goldsmith-s3-log-store.jar",)  # what earlier set-ups installed: the same classes, fewer of them
_RESOURCES = Path(__file__).resolve().parents[1] / "resources"
_SOURCES = ("ConditionalS3LogStore.java", "LocalFileSystem.java", "LocalFs.java")

S3_LOG_STORE = "goldsmith.storage.ConditionalS3LogStore"
# Hadoop's local file system in goldsmith's fork-free version: for a JVM that runs its own tasks (local mode);
# a cluster's executors may lack the jar.
LOCAL_FS = {
    "spark.hadoop.fs.file.impl": "goldsmith.storage.LocalFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "goldsmith.storage.LocalFs",
}


def storage_jar() -> Path:
    """Where set-up puts the jar: Spark's own jars folder. Under spark-submit pyspark is imported from an
    archive: its `SPARK_HOME` names the folder then."""
    from goldsmith.jvm import spark_jars_dir

    installed = spark_jars_dir() / JAR
    home = os.environ.get("SPARK_HOME")
    if not installed.is_file() and home and (Path(home) / "jars" / JAR).is_file():
        return Path(home) / "jars" / JAR
    return installed


def installed() -> bool:
    return storage_jar().is_file()


def install() -> Path:
    """Compile the classes (once per source) and copy the jar among Spark's jars, unless it is there; remove the
    jar of an earlier set-up that held some of the same classes."""
    from goldsmith.jvm import compiled_jar

    built = compiled_jar("goldsmith-storage", [_RESOURCES / name for name in _SOURCES], "goldsmith's storage classes")
    target = storage_jar()
    if not target.exists() or target.read_bytes() != built.read_bytes():
        partial = target.with_suffix(f".{os.getpid()}.part")
        shutil.copyfile(built, partial)
        partial.replace(target)
    for name in _FORMER:
        (target.parent / name).unlink(missing_ok=True)
    return target


def main(argv: list[str]) -> int:
    """`python -m goldsmith.io.storage_jar --install`."""
    if argv != ["--install"]:
        print("usage: python -m goldsmith.io.storage_jar --install", file=sys.stderr)
        return 2
    print(install())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
