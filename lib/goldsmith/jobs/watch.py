"""watch: one warm Spark application that runs a pipeline again whenever its inputs change.

A `goldsmith run` pays for a new JVM every time: the process start, then the first Delta read and commit of a
cold JVM (class loading, Scala reflection for Delta's encoders, Janino compiling its first plans). On a 2-core
machine that is ~40 s of a 1% incremental run at SF10 that does ~35 s of work (docs/BENCHMARKS.md). `watch`
pays it once: it runs the pipeline at start, then polls the landing folders, the pipeline file and its SQL, and
runs again in the same application whenever one of them changed and then held still for one poll (a file
still being copied in is not ingested half-written).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence

from pyspark.sql import SparkSession

from goldsmith.config.models import PipelineConfig
from goldsmith.errors import GoldsmithError, LeaseHeld
from goldsmith.io.landing import list_files
from goldsmith.io.ops import OpsCache
from goldsmith.jobs.pipeline import run_pipeline, session_for

log = logging.getLogger("goldsmith")


def input_signature(spark: SparkSession, config: PipelineConfig) -> str:
    """A digest of what can change under a watcher: every source's landing files (path, size, modification
    time), the pipeline's settings after overlays and overrides, and the text of its SQL files."""
    digest = hashlib.sha256(config.model_dump_json().encode())
    for sql in [*(t.sql for t in config.silver.values()), *(t.sql for t in config.gold.values())]:
        path = config.sql_path(sql)
        digest.update(f"\0{path}\0".encode() + (path.read_bytes() if path.is_file() else b"(missing)"))
    for name, source in sorted(config.sources.items()):
        for f in list_files(spark, source):
            digest.update(f"\0{name}\0{f.path}\0{f.size}\0{f.modified_ms}\0{f.etag}".encode())
    return digest.hexdigest()


def watch(
    load: Callable[[], PipelineConfig],
    stages: Sequence[str] | None,
    interval: float = 10.0,
    max_runs: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    wait: float | None = 0.0,
) -> int:
    """Run the pipeline now, then again after each change, in one Spark application; return the exit code
    of the last run (0 when it succeeded).

    Args:
        load: reads the pipeline file (again before every poll: an edit takes effect at the next run).
        stages: the stages of every run (None: all).
        interval: seconds between polls.
        max_runs: stop after this many runs (None: until interrupted).
        sleep: waits between polls.
        wait: how long each run waits for another writer of the pipeline (`run_pipeline`). A run refused
            because another one writes is tried again at the next poll; the first one ends the watch (exit 4).

    A run that fails (a user error: bad SQL, a failed expectation) is reported and the watcher waits for the
    next change; the first load of the pipeline file must succeed.
    """
    config = load()
    spark = session_for(config)
    spark_settings = config.spark
    ops_cache = OpsCache()  # the ops tables' rows, not re-read by a run while nobody else wrote them
    log.info(
        "watching pipeline %s: a run now, then one whenever its landing files, settings or SQL change "
        "(polled every %g s; Ctrl-C stops)", config.name, interval,
    )
    last_run: str | None = None  # the signature the last run started from
    pending: str | None = None  # a change seen at the last poll, run once it holds still
    reported = ""  # the last problem reported between runs (each reported once)
    warned_spark = False
    runs, exit_code = 0, 0
    while max_runs is None or runs < max_runs:
        try:
            config = load()
            signature = input_signature(spark, config)
        except GoldsmithError as exc:
            if str(exc) != reported:
                log.error("goldsmith: error: %s (waiting for a change)", exc)
                reported = str(exc)
            sleep(interval)
            continue
        if signature == last_run or (last_run is not None and signature != pending):
            pending = signature if signature != last_run else None
            sleep(interval)
            continue
        if config.spark != spark_settings and not warned_spark:
            log.warning("the pipeline's spark settings changed: they take effect when watch is restarted")
            warned_spark = True
        last_run, pending, reported, runs = signature, None, "", runs + 1
        try:
            run_pipeline(config, stages, spark=spark, ops_cache=ops_cache, wait=wait)
            exit_code = 0
        except LeaseHeld as exc:
            if runs == 1:
                raise
            log.warning("goldsmith: %s (trying again at the next poll)", exc)
            last_run, runs = None, runs - 1
            sleep(interval)
            continue
        except GoldsmithError as exc:
            log.error("goldsmith: error: %s", exc)
            exit_code = exc.exit_code
        if max_runs is None or runs < max_runs:
            log.info("watch: %d run(s) so far; waiting for new landing files or a changed pipeline", runs)
    return exit_code
