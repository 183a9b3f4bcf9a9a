"""A run stopped at any commit, then run again, leaves every table as one uninterrupted run does.

The stop is simulated in process (`goldsmith.faults.simulate`: the commits made so far stay, nothing after the
point runs); one test kills a real `goldsmith run` with SIGKILL at a fault point instead. Tables are compared by
content checksums that leave out what names a run (run and batch ids, timestamps): `goldsmith.io.checksums`.

The lakehouse after a first batch (a.csv) is built once; each test copies it, lands a second batch (b.csv), stops
a run at its point, runs again, and compares with the reference: the copy run once without a stop.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from items_pipeline import Items
from pyspark.sql import SparkSession

from goldsmith import faults
from goldsmith.config import load_pipeline
from goldsmith.config.models import PipelineConfig
from goldsmith.io.checksums import lakehouse_checksums
from goldsmith.jobs.pipeline import run_pipeline

STAGES = ["ingest", "refine"]  # the stages with batches (a gold build is a full overwrite or replaceWhere)
# Batch 1: three good rows, one malformed (3 fields), one dropped by qty_not_negative.
FIRST = "1,apple,3,2024-01-01T00:00:00Z\n2,pear,5,2024-01-01T00:00:00Z\n3,fig,NA,2024-01-01T00:00:00Z\n" \
        "9,broken,2024-01-01T00:00:00Z\n4,kiwi,-1,2024-01-01T00:00:00Z\n"
# Batch 2: item 1 updated, item 5 new, one malformed, one dropped.
SECOND = "1,apple,7,2024-02-01T00:00:00Z\n5,plum,2,2024-02-01T00:00:00Z\nnot-a-number,x,1,2024-02-01T00:00:00Z\n" \
         "6,lime,-4,2024-02-01T00:00:00Z\n"


def checksums(spark: SparkSession, lake: Path) -> dict[str, Any]:
    return lakehouse_checksums(spark, str(lake))


class Scenario:
    """The items pipeline's landing folder (a.csv, b.csv) and the lakehouse after batch 1."""

    def __init__(self, tmp: Path) -> None:
        self.items = Items(tmp)
        self.tmp = tmp
        self.first_sums: dict[str, Any] = {}  # after batch 1
        self.reference: dict[str, Any] = {}  # after batch 2, run without a stop

    def config(self, lake: Path) -> PipelineConfig:
        return load_pipeline(self.tmp / "mini.yml", [f"storage.root={lake}"])

    def after_first(self, name: str) -> Path:
        """A copy of the lakehouse after batch 1."""
        lake = self.tmp / name
        shutil.copytree(self.tmp / "first", lake)
        return lake


@pytest.fixture(scope="module")
def scenario(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    scene = Scenario(tmp_path_factory.mktemp("crash"))
    scene.items.write()
    scene.items.land("a.csv", FIRST)
    run_pipeline(scene.config(scene.tmp / "first"), STAGES, spark)
    scene.first_sums = checksums(spark, scene.tmp / "first")
    scene.items.land("b.csv", SECOND)
    reference = scene.after_first("reference")
    run_pipeline(scene.config(reference), STAGES, spark)
    scene.reference = checksums(spark, reference)
    return scene


def test_reference_counts_come_from_the_data(scenario: Scenario) -> None:
    """The reference itself, counted by hand from FIRST and SECOND."""
    sums = scenario.reference
    assert sums["bronze.items"][0] == 4 + 3  # good-looking rows of both files
    assert sums["bronze.items_quarantine"][0] == 1 + 1  # the malformed row of each
    assert sums["silver.items"][0] == 4  # items 1, 2, 3 and 5 (kiwi and lime dropped, item 1 updated)
    assert sums["silver.items_quarantine"][0] == 2  # kiwi and lime
    assert sums["ops.ingested_files"][0] == 2
    assert sums["ops.refined_batches"] == (2, 2)


# The commits of the second batch's run after which the old code repeated or lost a batch.
POINTS = [
    "commit:bronze.items",  # rows committed, quarantine and bookkeeping not
    "commit:bronze.items_quarantine",  # data committed, bookkeeping not
    "commit:silver.items_quarantine",  # dropped rows committed, MERGE not
    "commit:silver.items",  # MERGE committed, bookkeeping not
]


@pytest.mark.parametrize("point", POINTS)
def test_a_run_stopped_at_a_commit_then_run_again_equals_one_run(
    spark: SparkSession, scenario: Scenario, point: str
) -> None:
    lake = scenario.after_first(point.replace(":", "_").replace("#", "_"))
    name, _, nth = point.partition("#")
    with faults.simulate(name, int(nth or 1)), pytest.raises(faults.SimulatedCrash):
        run_pipeline(scenario.config(lake), STAGES, spark)
    run_pipeline(scenario.config(lake), STAGES, spark)
    assert checksums(spark, lake) == scenario.reference


def test_a_first_run_stopped_after_creating_silver_converges(spark: SparkSession, scenario: Scenario) -> None:
    """The first batch creates silver in one pass (no MERGE): stopped right after, the next run completes it."""
    lake = scenario.tmp / "first_stopped"
    landing = scenario.tmp / "landing_first"
    shutil.copytree(scenario.tmp / "landing", landing)
    (landing / "items" / "b.csv").unlink()
    for f in (landing / "items").iterdir():  # the same modification times as the original a.csv
        shutil.copystat(scenario.tmp / "landing" / "items" / f.name, f)
    config = load_pipeline(scenario.tmp / "mini.yml", [f"storage.root={lake}",
                                                       f"sources.items.path={landing / 'items'}"])
    with faults.simulate("commit:silver.items"), pytest.raises(faults.SimulatedCrash):
        run_pipeline(config, STAGES, spark)
    run_pipeline(config, STAGES, spark)
    assert checksums(spark, lake) == scenario.first_sums


def test_a_run_killed_by_sigkill_is_taken_over_and_completed(spark: SparkSession, scenario: Scenario) -> None:
    """A real `goldsmith run`, JVM included, killed by SIGKILL right after the bronze commit: its lease is taken
    over at once (its process is gone) and the next run converges to the reference."""
    lake = scenario.after_first("sigkill")
    # The JIT's first tier only: less CPU for a JVM that lives seconds (goldsmith.session.JAVA_OPTIONS).
    env = {**os.environ, faults.ENV: "commit:bronze.items", "GOLDSMITH_LEASE_TTL": "600",
           "GOLDSMITH_JAVA_OPTIONS": "-XX:TieredStopAtLevel=1"}
    done = subprocess.run(
        [sys.executable, "-m", "goldsmith.cli", "run", str(scenario.tmp / "mini.yml"), "--stages", "ingest",
         "--set", f"storage.root={lake}"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode == -9, done.stderr[-2000:]
    assert "fault point commit:bronze.items" in done.stderr
    bronze = spark.read.format("delta").load(str(lake / "bronze/items"))
    assert bronze.count() == 4 + 3  # batch 2's rows were committed before the kill
    run_pipeline(scenario.config(lake), STAGES, spark)
    assert checksums(spark, lake) == scenario.reference

