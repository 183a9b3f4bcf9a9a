"""Run a pipeline's stages in one Spark application, with a run log and progress a person can follow."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Literal

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from goldsmith import faults
from goldsmith.config.models import PipelineConfig
from goldsmith.errors import (
    ConfigError,
    GoldsmithError,
    LeaseHeld,
    StageFailed,
    StorageUnavailable,
    message_line,
    storage_failure,
)
from goldsmith.io import object_store
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.io.lease import RunLease, held_elsewhere
from goldsmith.io.ops import OpsCache, now
from goldsmith.jobs import features, ingest, monitor, profile, refine, score, train
from goldsmith.jobs.context import RunContext, TableResult, Timer, log
from goldsmith.session import build_session, check_executors
from goldsmith.transforms.text import register_sql_functions
from goldsmith.validate import check_backends, check_sql

# How a run ended in `ops.run_log`: every stage done, a data failure (a `GoldsmithError`, or Spark rejecting a
# stage's data), or a bug.
RunStatus = Literal["ok", "failed", "error"]

STAGES: dict[str, Callable[[RunContext], list[TableResult]]] = {
    "ingest": ingest.run,
    "refine": refine.run,
    "features": features.run,
    "profile": profile.run,
    "train": train.run,
    "score": score.run,
    "monitor": monitor.run,
}


def parse_stages(value: str | Sequence[str] | None) -> list[str]:
    """`ingest,refine` -> ['ingest', 'refine'] in pipeline order; None -> every stage."""
    if value is None:
        return list(STAGES)
    names = [s.strip() for s in (value.split(",") if isinstance(value, str) else value) if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown or not names:
        found = unknown[0] if unknown else "(none)"
        raise ConfigError(f"--stages: unknown stage {found}; choose from {', '.join(STAGES)}")
    return [s for s in STAGES if s in names]


def new_run_id() -> str:
    """Sortable, unique: `20261121T203501Z-1a2b3c`."""
    return now().strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def session_for(config: PipelineConfig) -> SparkSession:
    """The Spark application for a run of this pipeline; on a cluster, its executors checked once
    (`check_executors`), not again by every run `goldsmith watch` makes in it."""
    paths = [config.storage.root, *(source.path for source in config.sources.values())]
    object_store.check_credentials(paths, config.spark.conf)
    object_store.warn_without_log_store(paths)
    spark = build_session(f"goldsmith-{config.name}", config.spark.master, config.spark.conf)
    check_executors(spark)
    return spark


def open_lakehouse(spark: SparkSession, config: PipelineConfig, attach: bool = True) -> Lakehouse:
    """The pipeline's lakehouse; with `attach`, every existing table registered for SQL at once (a run
    registers the tables it writes, and those its SQL reads, as it goes: ~0.3 s per table saved at start)."""
    register_sql_functions(spark)
    lakehouse = Lakehouse(spark, config.storage.root, config.storage.catalog, config.storage.schema_prefix)
    if attach or lakehouse.catalog:
        lakehouse.attach()
    return lakehouse


def run_pipeline(
    config: PipelineConfig, stages: Sequence[str] | None = None, spark: SparkSession | None = None,
    ops_cache: OpsCache | None = None, wait: float | None = 0.0,
) -> RunContext:
    """Run `stages` (default: all) of the pipeline; every stage checks its record accounting.

    `ops_cache`: the bookkeeping rows a previous run of this process read or wrote (`goldsmith watch`),
    reused while their tables are unchanged. `wait`: seconds to wait for another run of the pipeline on the
    same storage root to finish (0: refuse at once with `LeaseHeld`; None: as long as it takes).

    Raises:
        GoldsmithError: a data failure (expectation, accounting, key) after it is written to `ops.run_log`.
    """
    chosen = parse_stages(stages)
    if "train" in chosen:
        check_backends(config)  # a backend that is not installed stops the run before Spark starts
    if spark is None and wait == 0 and not config.storage.catalog:
        held = held_elsewhere(config.storage.root, config.name)  # refused at once, before Spark starts
        if held:
            raise LeaseHeld(held)
    spark = spark or session_for(config)
    lakehouse = open_lakehouse(spark, config, attach=False)
    ctx = RunContext(spark=spark, config=config, lakehouse=lakehouse, run_id=new_run_id(), ops_cache=ops_cache)
    log.info("run %s of pipeline %s: stages %s, storage %s", ctx.run_id, config.name, ", ".join(chosen), lakehouse.root)
    check_sql(spark, config, chosen)  # a typo in a SQL file stops the run before any stage
    lease = RunLease(lakehouse, config.name, ctx.run_id)
    lease.acquire(wait)
    try:
        _run_stages(ctx, chosen, lease)
    finally:
        lease.release()
    return ctx


def _record_quietly(record: Callable[[], object], what: str) -> None:
    """Record after a failure; when that fails too (the storage is gone), say so in one line and go on, so that
    the run's own failure is the one raised."""
    try:
        record()
    except Exception as exc:
        log.warning("could not record %s: %s", what, storage_failure(exc) or message_line(exc))
        log.debug("recording %s failed", what, exc_info=True)


def _run_stages(ctx: RunContext, chosen: list[str], lease: RunLease) -> None:
    config = ctx.config
    status: RunStatus = "ok"
    message = ""
    finished = False  # every stage ran to its end
    with Timer() as total:
        try:
            for stage in chosen:
                lease.check()
                faults.reached(f"stage:{stage}")
                log.info("[%s]", stage)
                with Timer() as timer:
                    for result in STAGES[stage](ctx):  # skipped tables too, for the caller
                        if all(result is not kept for kept in ctx.results):
                            ctx.results.append(result)
                log.info("[%s] done in %.1f s", stage, timer.seconds)
            finished = True
        except GoldsmithError as exc:
            status, message = "failed", str(exc)
            raise
        except (PySparkException, Py4JJavaError) as exc:
            failed = storage_failure(exc)
            if failed is not None:
                status, message = "failed", f"[{stage}] storage {ctx.lakehouse.root} failed: {failed}"
                log.debug("stage %s failed", stage, exc_info=True)
                raise StorageUnavailable(f"stage {stage} failed: storage {ctx.lakehouse.root} failed: {failed}") \
                    from exc
            if not isinstance(exc, PySparkException):
                status, message = "error", f"{type(exc).__name__}: {message_line(exc)}"
                raise
            # Spark's own errors here are data or schema problems (an ANSI cast of a bad value, a column
            # added to a source): one line with Spark's error class; the stack trace at debug level.
            first = message_line(exc)
            status, message = "failed", f"[{stage}] {first}"
            log.debug("stage %s failed", stage, exc_info=True)
            raise StageFailed(f"stage {stage} failed: {first}") from exc
        except Exception as exc:
            status, message = "error", f"{type(exc).__name__}: {message_line(exc)}"
            raise
        finally:
            # The stages' table results in one commit with the run's end, not one per stage (a commit is ~0.1-0.2 s
            # on a small table); after a failure, quietly: the failure is what matters.
            if finished:
                ctx.flush()
            else:
                _record_quietly(ctx.flush, "the stages' table results")
            # A run that found nothing to do changes no table, its own log included: re-running is a no-op.
            if ctx.changed or status != "ok":
                row = {
                    "run_id": ctx.run_id, "pipeline": config.name, "stages": ",".join(chosen), "status": status,
                    "message": message[:2000], "started_at": ctx.started_at, "finished_at": now(),
                    "duration_seconds": round(time.perf_counter() - total.start, 3),
                }
                if status == "ok":
                    ctx.ops.append("run_log", [row])
                else:  # a failed run's own error is what the user must see, not a second one of its log
                    _record_quietly(lambda: ctx.ops.append("run_log", [row]), "ops.run_log")
    if not ctx.changed:
        log.info("run %s: nothing new, no table changed (%.1f s)", ctx.run_id, total.seconds)
    else:
        log.info("run %s finished in %.1f s", ctx.run_id, total.seconds)
