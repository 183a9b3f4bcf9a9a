"""Shared by every test layer: where the repository is, goldsmith built as the wheel a cluster receives, and the
one SparkSession of the test process (the Spark tier's tests run in it; the end-to-end tier reads what its
subprocesses wrote through it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from components import unavailable

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
    # From a copy: an in-tree build leaves build/lib behind, whose stale modules end up in later wheels
    # (a deleted module would still "exist in the wheel"), and two builds at once share it.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "lib", src / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--wheel-dir", str(out), str(src)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert done.returncode == 0, f"pip wheel failed (setuptools and wheel come with scripts/setup.sh):\n" \
                                 f"{done.stderr[-3000:]}"
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One SparkSession for every test: local[2,2] (two cores; a failed task is retried once, as on a cluster:
    tests/spark/test_task_retry.py), two shuffle partitions, UI off, Delta on, tuned for tiny tables. The
    commands the end-to-end tier runs as subprocesses keep goldsmith's own defaults."""
    from goldsmith.session import build_session
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
        },
    )
    register_sql_functions(session)
    yield session
    session.stop()


@dataclass(frozen=True)
class ObjectStore:
    """The local S3-protocol store of the session (scripts/objectstore: SeaweedFS on loopback)."""

    env: dict[str, str]  # the AWS_* variables a goldsmith process reads
    bucket: str
    state: Path  # its folder: data, pid, log

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """SeaweedFS started once for the session by `scripts/objectstore start` (free loopback ports, a key made
    for it), stopped by its PID at the end. Without its binary (scripts/seaweedfs/build needs Go): a failure in
    CI, a skip elsewhere."""
    state = tmp_path_factory.mktemp("objectstore")
    env = {**os.environ, "GOLDSMITH_OBJECTSTORE_DIR": str(state)}
    started = subprocess.run(["bash", str(REPO / "scripts" / "objectstore"), "start", "--bucket", "goldsmith-tests"],
                             env=env, capture_output=True, text=True, check=False, timeout=300)
    if started.returncode != 0 and "scripts/seaweedfs/build needs Go" in started.stderr:
        unavailable("no SeaweedFS binary (scripts/seaweedfs/build needs Go)",
                    "no SeaweedFS binary: scripts/test builds it with scripts/seaweedfs/build (needs Go)")
    assert started.returncode == 0, started.stderr[-3000:]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
                   if line.startswith("export "))
    try:
        yield ObjectStore(exports, "goldsmith-tests", state)
    finally:
        stopped = subprocess.run(["bash", str(REPO / "scripts" / "objectstore"), "stop", "--now"], env=env,
                                 capture_output=True, text=True, check=False, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
