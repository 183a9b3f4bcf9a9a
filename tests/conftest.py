"""Shared by every test layer: where the repository is, goldsmith built as the wheel a cluster receives, and the
one SparkSession of the test process (the Spark tier's tests run in it; the end-to-end tier reads what its
subprocesses wrote through it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

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
        },
    )
    register_sql_functions(session)
    yield session
    session.stop()
