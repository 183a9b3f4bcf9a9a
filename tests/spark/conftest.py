"""One SparkSession for every Spark test: local[2], two shuffle partitions, UI off, Delta on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from goldsmith.session import build_session
from goldsmith.transforms.text import register_sql_functions


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = build_session(
        "goldsmith-tests",
        "local[2]",
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
        },
    )
    register_sql_functions(session)
    yield session
    session.stop()
