"""The Spark tier's shared fixtures. Tests run in the session-scoped `spark` fixture of tests/conftest.py
(local[2], two shuffle partitions, UI off, Delta on); what several modules build is built once here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from handmade_flights import ETL, Handmade, write_landing
from items_pipeline import Items
from pyspark.sql import DataFrame, SparkSession
from tabular import binary_frame

from goldsmith.config import load_pipeline
from goldsmith.jobs.pipeline import run_pipeline


@pytest.fixture(scope="session")
def handmade(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory, repo: Path) -> Handmade:
    tmp = tmp_path_factory.mktemp("handmade")
    landing, lake = tmp / "landing", tmp / "lake"
    write_landing(landing)
    run_pipeline(load_pipeline(repo / "conf/pipelines/flights.yml",
                               [f"storage.root={lake}", f"vars.landing={landing}"]), ETL, spark)
    rows = spark.read.format("delta").load(str(lake / "gold" / "flight_features")).collect()
    return Handmade(landing, lake, {r["flight_id"]: r.asDict() for r in rows})


@pytest.fixture
def items(tmp_path: Path) -> Items:
    """The small items pipeline (items_pipeline.py) under the test's folder, not written yet."""
    return Items(tmp_path)


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    """The torch backends' tabular problem (tabular.py), as pandas."""
    return binary_frame()


@pytest.fixture(scope="session")
def parts(spark: SparkSession, frame: pd.DataFrame) -> dict[str, DataFrame]:
    columns = ["id", "x1", "x2", "c", "r", "_label", "_weight"]
    df = spark.createDataFrame(frame[[*columns, "part"]].astype({"c": object}).replace({np.nan: None}))
    return {p: df.where(df.part == p).select(*columns).cache() for p in ("train", "validation", "test")}
