"""The SparkSession factory: Delta enabled, small-machine defaults, offline Delta jars (`goldsmith.jvm`), the
class archive mapped (`goldsmith.class_archive`), object-store settings from the environment
(`goldsmith.io.object_store`), the fork-free local file system (`goldsmith.io.storage_jar`). It imports nothing above
those four."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import SparkSession

from goldsmith import __version__, class_archive
from goldsmith.errors import ExecutorsMismatch
from goldsmith.io import object_store, storage_jar
from goldsmith.jvm import delta_jars, log4j_option

log = logging.getLogger(__name__)

# Settings for a 2-8 core machine; a cluster overlay or `spark.conf` in the pipeline replaces any of them.
SMALL_MACHINE_DEFAULTS: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # The catalog is the storage folder itself (see goldsmith.io.lakehouse): no metastore that only one
    # JVM may open, so a SQL server or a notebook can read the tables while a pipeline writes them.
    "spark.sql.catalogImplementation": "in-memory",
    # Only names live in the session catalog (the tables are external, under the storage root); keep the
    # warehouse folder Spark creates for its databases out of the working directory.
    "spark.sql.warehouse.dir": os.path.join(tempfile.gettempdir(), "goldsmith-warehouse"),
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.default.parallelism": "4",
    # Split files in 8 MB pieces: a 31 MB CSV is then 4 tasks on 2 cores instead of 1 task (default 128 MB).
    "spark.sql.files.maxPartitionBytes": "8m",
    # Delta rebuilds table state with this many partitions (default 50: ~50 tiny tasks per table read).
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "false",
    # A stage runs its tables side by side (goldsmith.jobs.parallel), each in its own pool.
    "spark.scheduler.mode": "FAIR",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "4g",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Delta's SQL parser drops `spark.sql(query, args=...)` parameters on Spark 4.1 (delta-io/delta#7640,
    # SPARK-59672): bind them after parsing instead, as Spark 4.0 did.
    "spark.sql.legacy.parameterSubstitution.constantsOnly": "true",
}


# More options for the driver JVM goldsmith starts (local mode), e.g. `-XX:TieredStopAtLevel=1`: the JIT's first
# tier only. On a small input that is less work for the JVM (the flights pipeline on 11,226 flights: 102 s of CPU
# instead of 134-140 s, 61 s instead of 64-66 s, measured on 2 cores); on the whole year (336,776 flights) the
# full JIT is faster (131 s against 148 s), hence not the default. The end-to-end tests set it for their runs.
JAVA_OPTIONS = "GOLDSMITH_JAVA_OPTIONS"

# The garbage collector of a local batch run's JVM: the parallel one. A batch run wants throughput, not G1's short
# pauses (Java 17's default): measured on 2 cores, the flights pipeline on the whole year (336,776 flights) took
# 135.5 s and 253 s of CPU with it against 145.0 s and 272 s with G1, on 11,226 flights 59.6-63.0 s against
# 64.5-67.6 s. A long-lived server (`goldsmith serve-sql`, `batch=False`) keeps G1; GOLDSMITH_JAVA_OPTIONS naming
# a collector wins.
BATCH_GC = "-XX:+UseParallelGC"
_COLLECTOR = re.compile(r"-XX:\+Use\w+GC")


def driver_java_options(batch: bool = True) -> list[str]:
    """The options of the local JVM `build_session` starts: log settings, the class archive, the batch collector
    (`BATCH_GC`, unless `batch` is False or the user's options choose one), then GOLDSMITH_JAVA_OPTIONS."""
    user = os.environ.get(JAVA_OPTIONS, "").split()
    collector = [BATCH_GC] if batch and not any(_COLLECTOR.fullmatch(option) for option in user) else []
    return [log4j_option(), *class_archive.java_options(), *collector, *user]


def build_session(
    app_name: str = "goldsmith",
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    jars: Sequence[str] = (),
    batch: bool = True,
) -> SparkSession:
    """Return the active SparkSession, or build one with Delta and small-machine defaults.

    Under `spark-submit` the launcher's master and `--conf` values win; `master` and `conf` fill the rest.
    Args:
        app_name: shown in the Spark UI and logs.
        master: e.g. `local[*]`; ignored when `spark-submit` set one.
        conf: extra settings over `SMALL_MACHINE_DEFAULTS`.
        jars: more jars for a JVM goldsmith starts (with `spark-submit`, pass them with `--jars`).
        batch: False for a long-lived server: its local JVM keeps Java's default collector (`BATCH_GC`).
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = {**SMALL_MACHINE_DEFAULTS, **(conf or {})}
    # s3a:// paths: endpoint, region and credentials from the AWS environment variables, unless `conf` sets them.
    settings.update(object_store.spark_settings(settings))
    builder = SparkSession.builder.appName(app_name)
    submitted = "spark.master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "") or _launched_by_spark_submit()
    if not submitted:
        # Python workers must run this interpreter (the virtualenv's), not whatever `python3` is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if _same_interpreter(os.environ["PYSPARK_PYTHON"]):
            # goldsmith is importable where the workers run: its daemon saves ~120 ms per Python task.
            settings.setdefault("spark.python.daemon.module", "goldsmith.spark_daemon")
        builder = builder.master(master or "local[*]")
        if (master or "local[*]").startswith("local"):
            # A local application serves nobody else: its driver, block manager and UI listen on loopback only
            # (an overlay's spark.conf, or SPARK_LOCAL_IP, says otherwise).
            settings.setdefault("spark.driver.bindAddress", "127.0.0.1")
            settings.setdefault("spark.driver.host", "127.0.0.1")
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            # Its tasks run in this JVM, which has goldsmith's storage jar when set-up installed it: local files
            # without a forked `chmod` per file and `readlink` per commit (goldsmith.io.storage_jar).
            if storage_jar.installed():
                for key, value in storage_jar.LOCAL_FS.items():
                    settings.setdefault(key, value)
        all_jars = [*delta_jars(), *jars]
        if all_jars:
            settings["spark.jars"] = ",".join(all_jars)
        # With the class archive set-up recorded (goldsmith.class_archive), the JVM maps Spark's classes;
        # GOLDSMITH_JAVA_OPTIONS adds options of the user's (`JAVA_OPTIONS` above).
        settings.setdefault("spark.driver.extraJavaOptions", " ".join(driver_java_options(batch)))
    for key, value in settings.items():
        builder = builder.config(key, value)
    log.info("starting Spark (%s)", "spark-submit" if submitted else master or "local[*]")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("GOLDSMITH_SPARK_LOG_LEVEL", "ERROR"))
    return spark


def _same_interpreter(python: str) -> bool:
    """True when `python` (a path or a name on PATH) is the interpreter running goldsmith (a virtualenv's
    `bin/python` counts as its own: it resolves to the base interpreter but sees other packages)."""
    import shutil

    found = shutil.which(python)
    return found is not None and os.path.abspath(found) == os.path.abspath(sys.executable)


def _launched_by_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands Python the gateway port through this variable.
    return "PYSPARK_GATEWAY_PORT" in os.environ


# Run on the executors, pickled by value (it is compiled into a namespace that is no importable module), so that
# it reports an executor without goldsmith instead of failing to unpickle there.
_PROBE = """
def probe(_):
    import socket
    try:
        import goldsmith
    except ImportError as exc:
        yield (socket.gethostname(), "", "", type(exc).__name__ + ": " + str(exc))
        return
    yield (socket.gethostname(), goldsmith.__version__, goldsmith.__file__, "")
"""


def executor_goldsmith(spark: SparkSession) -> list[tuple[str, str, str, str]]:
    """What the executors import as goldsmith: (host, version, file, import error) from one task per core."""
    namespace: dict[str, Any] = {"__name__": "goldsmith_executor_probe"}
    exec(compile(_PROBE, "<goldsmith executor probe>", "exec"), namespace)
    tasks = max(1, spark.sparkContext.defaultParallelism)
    found: list[tuple[str, str, str, str]] = (
        spark.sparkContext.parallelize(range(tasks), tasks).mapPartitions(namespace["probe"]).collect()
    )
    return sorted(set(found))


def executors_problem(found: Sequence[tuple[str, str, str, str]], driver_version: str = __version__) -> str | None:
    """Why the executors cannot run this goldsmith (one line), or None when every one imports this version."""
    ship = "ship goldsmith with the job (`spark-submit --py-files goldsmith.zip`, its wheel under a .zip name) " \
           "or install the same version on the workers"
    missing = sorted({f"{host} ({error})" for host, _, _, error in found if error})
    if missing:
        return f"executors cannot import goldsmith on {', '.join(missing)}: {ship}"
    other = sorted({f"{version} on {host} (from {file})" for host, version, file, _ in found
                    if version != driver_version})
    if other:
        return f"the driver runs goldsmith {driver_version} but the executors run {', '.join(other)}: {ship}"
    return None


def check_executors(spark: SparkSession) -> None:
    """On a cluster, check that the executors import the goldsmith the driver runs, and log where from (a
    stale copy on the workers otherwise fails, or computes differently, in the middle of a stage). Local
    mode runs the driver's own interpreter: nothing to check.

    Raises:
        ExecutorsMismatch: an executor cannot import goldsmith, or imports another version.
    """
    if (spark.sparkContext.master or "local").startswith("local"):
        return
    found = executor_goldsmith(spark)
    problem = executors_problem(found)
    if problem:
        raise ExecutorsMismatch(problem)
    log.info("executors import goldsmith %s from %s", __version__, ", ".join(sorted({f for _, _, f, _ in found})))
