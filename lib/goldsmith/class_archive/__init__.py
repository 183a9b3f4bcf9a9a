"""A class-data archive for the local Spark JVM: the classes a goldsmith run loads, mapped instead of loaded.

A new local JVM spends seconds loading and verifying Spark's classes before the first query (measured on the
2-core machine: 8 s to a SparkSession and 3.5 s more to a first job). Java 13+ can record the classes a
program loaded into a file at exit (`-XX:ArchiveClassesAtExit`, dynamic CDS) and map that file into later
JVMs (`-XX:SharedArchiveFile`): ~4.5 s to a session and ~1.5 s to a first job.

Set-up records it once per virtualenv and Java (`python -m goldsmith.class_archive PIPELINE`, from
`scripts/setup.sh`, see `__main__`) by running the pipeline's ETL on a small slice of the flights example;
`build_session` adds it to the JVM it starts when it exists. This module is the session factory's half: where the
archive is and the options that map it. It imports nothing above `goldsmith.jvm`; the recording, which runs a
pipeline, is the package's `__main__`. The JVM checks the archive itself (same JDK build, same class
path: the same jar paths, sizes and times) and ignores one that does not match (`-Xshare:auto`), so a stale
file costs nothing but the speed-up. The class path is the virtualenv's pyspark jars, so the archive lives in
that virtualenv and its name says which Java and which jars it was recorded with: a second clone (its own
virtualenv) records its own instead of finding one that its JVM would silently refuse.
`GOLDSMITH_CLASS_ARCHIVE=0` turns it off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

from goldsmith.jvm import DELTA_VERSION, cache_dir, spark_jars_dir

# The JVM's own reports on the archive (one it cannot use, classes it skips recording) stay out of the output.
LOG_OFF = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
QUIET = ("-Xshare:auto", *LOG_OFF)


def _java() -> str:
    """The `java` PySpark launches: $JAVA_HOME/bin/java, else the one on PATH (resolved)."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java") or ""
    return os.path.realpath(java) if java else ""


def _spark_jars() -> Path:
    """The folder of jars on the local Spark JVM's class path, resolved (the JVM checks real paths)."""
    return Path(os.path.realpath(spark_jars_dir()))


def _in_virtualenv() -> bool:
    return sys.prefix != sys.base_prefix


def archive_dir() -> Path:
    """The virtualenv's own folder for archives; outside a virtualenv, goldsmith's cache."""
    if _in_virtualenv():
        return Path(sys.prefix) / "goldsmith-cds"
    return cache_dir() / "cds"


def archive_path() -> Path:
    """The archive of this Java and these Spark jars (it may not exist)."""
    jars = _spark_jars()
    # The folder's time changes when a jar is added, removed or replaced (a reinstall), as the JVM's check would.
    stamp = jars.stat().st_mtime_ns if jars.is_dir() else 0
    identity = f"{_java()}|{jars}@{stamp}|pyspark {version('pyspark')}|delta {DELTA_VERSION}"
    return archive_dir() / f"spark-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.jsa"


def java_options() -> list[str]:
    """The JVM options that map the archive, or [] when there is none (or it is turned off)."""
    if os.environ.get("GOLDSMITH_CLASS_ARCHIVE", "1") == "0":
        return []
    archive = archive_path()
    return [f"-XX:SharedArchiveFile={archive}", *QUIET] if archive.is_file() else []


def remove_stale(archive: Path) -> list[Path]:
    """In a virtualenv only one class path is ever used, so its earlier archives (~200 MB each, from an
    earlier Java or pyspark) are stale: remove them. The shared cache's may be other clones' and stay."""
    if not _in_virtualenv():
        return []
    stale = [path for path in archive.parent.glob("spark-*.jsa") if path != archive]
    for path in stale:
        path.unlink()
    return stale


def main(argv: list[str]) -> int:
    """`python -m goldsmith.class_archive --path`: print the archive's path (it may not exist). The recording form
    (`PIPELINE.yml`) is the package's `__main__`; here it is a usage error."""
    if argv[:1] == ["--path"]:
        print(archive_path())
        return 0
    print("usage: python -m goldsmith.class_archive PIPELINE.yml | --path", file=sys.stderr)
    return 2
