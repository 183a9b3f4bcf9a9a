"""The SparkSession factory: Delta enabled, small-machine defaults, offline Delta jars (`goldsmith.jvm`), the
class archive mapped (`goldsmith.class_archive`). It imports nothing above those two."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence

from pyspark.sql import SparkSession

from goldsmith import class_archive
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


def build_session(
    app_name: str = "goldsmith",
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    jars: Sequence[str] = (),
) -> SparkSession:
    """Return the active SparkSession, or build one with Delta and small-machine defaults.

    Under `spark-submit` the launcher's master and `--conf` values win; `master` and `conf` fill the rest.
    Args:
        app_name: shown in the Spark UI and logs.
        master: e.g. `local[*]`; ignored when `spark-submit` set one.
        conf: extra settings over `SMALL_MACHINE_DEFAULTS`.
        jars: more jars for a JVM goldsmith starts (with `spark-submit`, pass them with `--jars`).
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = {**SMALL_MACHINE_DEFAULTS, **(conf or {})}
    builder = SparkSession.builder.appName(app_name)
    submitted = "spark.master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "") or _launched_by_spark_submit()
    if not submitted:
        # Python workers must run this interpreter (the virtualenv's), not whatever `python3` is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if _same_interpreter(os.environ["PYSPARK_PYTHON"]):
            # goldsmith is importable where the workers run: its daemon saves ~120 ms per Python task.
            settings.setdefault("spark.python.daemon.module", "goldsmith.spark_daemon")
        builder = builder.master(master or "local[*]")
        all_jars = [*delta_jars(), *jars]
        if all_jars:
            settings["spark.jars"] = ",".join(all_jars)
        # With the class archive set-up recorded (goldsmith.class_archive), the JVM maps Spark's classes.
        settings.setdefault("spark.driver.extraJavaOptions", " ".join([log4j_option(), *class_archive.java_options()]))
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
