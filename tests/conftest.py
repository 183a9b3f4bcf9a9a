"""Shared by every test layer: where the repository is, goldsmith built as the wheel a cluster receives, and the
one SparkSession of the test process (the Spark tier's tests run in it; the end-to-end tier reads what its
subprocesses wrote through it)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import servers
from servers import ObjectStore

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (conf/, spark_jobs/, ...)."""
    return REPO


@pytest.fixture(scope="session")
def goldsmith_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """goldsmith's wheel, built offline from a copy of the sources (the bundle's artifact, `--py-files`)."""
    return servers.goldsmith_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One SparkSession for every test: local[2,2] (two cores; a failed task is retried once, as on a cluster:
    tests/spark/test_task_retry.py), two shuffle partitions, UI off, Delta on, tuned for tiny tables. The
    commands the end-to-end tier runs as subprocesses keep goldsmith's own defaults."""
    from goldsmith.session import build_session, driver_java_options
    from goldsmith.transforms.text import register_sql_functions

    session = build_session(
        "goldsmith-tests",
        "local[2,2]",
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
            # The tests' tables are a few thousand rows and the suite runs hundreds of queries, most of them
            # several times (the same pipelines again): planning, not data, is the cost. Without adaptive
            # execution a query is planned once (not again per shuffle stage), without whole-stage codegen its
            # operators are not fused into a Java class compiled per query, and the generated classes that
            # remain are kept for the queries that come back. Measured on
            # tests/spark/test_pipeline_stages.py: 135.8 s -> 124.2 s, the JVM's CPU 193 s -> 168 s.
            "spark.sql.adaptive.enabled": "false",
            "spark.sql.codegen.wholeStage": "false",
            "spark.sql.codegen.cache.maxEntries": "5000",
            # Nor is Java source generated for each task's projections (the flight recorder found 13 % of the
            # JVM's samples there, most of it writing source the cache then already had): expressions are
            # interpreted, which on a few thousand rows costs less. Measured: test_quality_stages +
            # test_incremental_gold 145.4 s -> 130.7 s; test_pipeline_stages, test_crash_recovery, test_lease and
            # test_delta_log_spark 148.2 s -> 138.6 s.
            "spark.sql.codegen.factoryMode": "NO_CODEGEN",
            # The JIT's optimising tier (C2) compiles a method after three times the calls and loops it would by
            # default: the suite runs much of Spark's code a few hundred times, not millions, and compiling it
            # all twice (C1, then C2) was 40 % of the JVM's CPU on test_pipeline_stages. Measured (one sitting,
            # JVM CPU / wall): test_pipeline_stages 129.6 s / 91.7 s -> 118.8 s / 91.1 s; test_quality_stages,
            # test_incremental_gold and test_train_score 218.6 s / 163.2 s -> 198.8 s / 165.8 s. (Ten times: the
            # JIT's CPU halves again, but the wall time grows 4-13 %; the first tier only: 6 % more CPU, 30 %
            # more wall time.)
            "spark.driver.extraJavaOptions": " ".join([
                *driver_java_options(), "-XX:Tier4InvocationThreshold=15000", "-XX:Tier4MinInvocationThreshold=1800",
                "-XX:Tier4CompileThreshold=45000", "-XX:Tier4BackEdgeThreshold=120000"]),
        },
    )
    register_sql_functions(session)
    yield session
    session.stop()


# The Spark tier's object store, started (and its first volumes allocated) in a thread of its own as soon as the
# tests are collected, while the first tests run: ~10 s of waiting taken off the test that first uses it.
_STORE: list[Future[ObjectStore]] = []


def _ready_store(factory: pytest.TempPathFactory) -> ObjectStore:
    store = servers.start_object_store(factory.mktemp("objectstore"), "goldsmith-tests")
    try:
        servers.warm_object_store(store)
    except BaseException:
        store.stop()
        raise
    return store


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the object store early when a selected test uses it."""
    if session.config.option.collectonly:
        return
    if any("object_store" in getattr(item, "fixturenames", ()) for item in session.items):
        pool = ThreadPoolExecutor(1, thread_name_prefix="object-store")
        _STORE.append(pool.submit(_ready_store, session.config._tmp_path_factory))  # type: ignore[attr-defined]
        pool.shutdown(wait=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A store started early that no fixture stopped (a session stopped before its tests) is stopped here."""
    while _STORE:
        future = _STORE.pop()
        if not future.cancel() and future.exception() is None:
            future.result().stop()


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """SeaweedFS started once for the session (`servers.start_object_store`; early, by `pytest_collection_finish`,
    when the session was collected), stopped by its PID at the end."""
    store = _STORE.pop().result() if _STORE else _ready_store(tmp_path_factory)
    try:
        yield store
    finally:
        stopped = store.stop()
        assert stopped.returncode == 0, stopped.stderr
