"""A class-data archive for the local Spark JVM: the classes a goldsmith run loads, mapped instead of loaded.

A new local JVM spends seconds loading and verifying Spark's classes before the first query (measured on the
2-core machine: 8 s to a SparkSession and 3.5 s more to a first job). Java 13+ can record the classes a
program loaded into a file at exit (`-XX:ArchiveClassesAtExit`, dynamic CDS) and map that file into later
JVMs (`-XX:SharedArchiveFile`): ~4.5 s to a session and ~1.5 s to a first job.

Set-up records it once per Java and Spark (`python -m goldsmith.class_archive PIPELINE`, from
`scripts/setup.sh`) by running the pipeline's ETL on a small slice of the flights example; `build_session`
adds it to the JVM it starts when it exists. The JVM checks the archive itself (same JDK build, same class
path) and ignores one that does not match (`-Xshare:auto`), so a stale file costs nothing but the speed-up.
`GOLDSMITH_CLASS_ARCHIVE=0` turns it off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

# The JVM's own reports on the archive (one it cannot use, classes it skips recording) stay out of the output.
LOG_OFF = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
QUIET = ("-Xshare:auto", *LOG_OFF)


def _java() -> str:
    """The `java` PySpark launches: $JAVA_HOME/bin/java, else the one on PATH (resolved)."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java") or ""
    return os.path.realpath(java) if java else ""


def archive_path() -> Path:
    """The archive of this Java and this pyspark + Delta, in goldsmith's cache (it may not exist)."""
    from goldsmith.session import DELTA_VERSION, cache_dir

    key = hashlib.sha256(f"{_java()}|pyspark {version('pyspark')}|delta {DELTA_VERSION}".encode()).hexdigest()
    return cache_dir() / "cds" / f"spark-{key[:16]}.jsa"


def java_options() -> list[str]:
    """The JVM options that map the archive, or [] when there is none (or it is turned off)."""
    if os.environ.get("GOLDSMITH_CLASS_ARCHIVE", "1") == "0":
        return []
    archive = archive_path()
    return [f"-XX:SharedArchiveFile={archive}", *QUIET] if archive.is_file() else []


def record(pipeline: Path, limit: int = 300) -> Path:
    """Run the pipeline's ingest, refine and features on `limit` example flights in a JVM that writes the
    classes it loaded to the archive at exit; return the archive."""
    from goldsmith.config import load_pipeline
    from goldsmith.examples import write_flights_landing
    from goldsmith.jobs.pipeline import run_pipeline
    from goldsmith.session import build_session, log4j_option

    archive = archive_path()
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    options = " ".join([log4j_option(), f"-XX:ArchiveClassesAtExit={partial}", *LOG_OFF])
    with tempfile.TemporaryDirectory(prefix="goldsmith-cds-") as work:
        landing = Path(work) / "landing"
        write_flights_landing(landing, limit=limit)
        config = load_pipeline(pipeline, [f"storage.root={Path(work) / 'lake'}", f"vars.landing={landing}"])
        spark = build_session("goldsmith-class-archive", "local[2]",
                              {**config.spark.conf, "spark.driver.extraJavaOptions": options})
        jvm_process = spark.sparkContext._gateway.proc  # type: ignore[union-attr]
        run_pipeline(config, ["ingest", "refine", "features"], spark)
        spark.stop()
        # The JVM writes the archive as it exits, which it does when its input closes.
        jvm_process.stdin.close()
        jvm_process.wait(timeout=600)
    if not partial.is_file():
        raise RuntimeError(f"the JVM wrote no class archive at {partial}")
    partial.replace(archive)
    return archive


def main(argv: list[str]) -> int:
    if argv[:1] == ["--path"]:
        print(archive_path())
        return 0
    if len(argv) != 1:
        print("usage: python -m goldsmith.class_archive PIPELINE.yml | --path", file=sys.stderr)
        return 2
    archive = archive_path()
    if archive.is_file():
        return 0
    print(f"goldsmith set-up: recording the JVM class archive {archive} (once per Java and Spark)", flush=True)
    record(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
