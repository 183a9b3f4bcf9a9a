"""One writer per pipeline and storage root: the lease in `ops.run_leases` (goldsmith.io.lease)."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from items_pipeline import GOOD, Items
from pyspark.sql import SparkSession

from goldsmith.errors import LeaseHeld, LeaseLost
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.io.lease import Holder, RunLease
from goldsmith.io.paths import local_folder
from goldsmith.jobs.pipeline import run_pipeline


def lease(spark: SparkSession, root: Path, run_id: str, pipeline: str = "mini") -> RunLease:
    return RunLease(Lakehouse(spark, str(root)), pipeline, run_id)


def forge(spark: SparkSession, root: Path, run_id: str, host: str, pid: int, age_seconds: float,
          generation: int = 1) -> None:
    """A lease event as another process would have left it, `age_seconds` ago."""
    fake = lease(spark, root, run_id)
    fake.host, fake.pid = host, pid
    at = int(time.time() * 1000 - age_seconds * 1000)
    fake._acquired_ms = at
    fake._commit("acquired", generation, at_ms=at)


def test_a_run_is_refused_while_another_holds_the_lease(spark: SparkSession, tmp_path: Path) -> None:
    items = Items(tmp_path)
    config = items.write()
    items.land("a.csv", GOOD)
    holder = lease(spark, items.lake, "20261206T000000Z-holder")
    holder.acquire()
    try:
        with pytest.raises(LeaseHeld) as refused:
            run_pipeline(config, ["ingest"], spark)
        assert refused.value.exit_code == 4
        message = str(refused.value)
        assert "20261206T000000Z-holder" in message and socket.gethostname() in message
        assert f"pid {os.getpid()}" in message and "--wait" in message
        assert not (items.lake / "bronze" / "items").exists()  # refused before any write
    finally:
        holder.release()
    ctx = run_pipeline(config, ["ingest"], spark)  # released: the next run goes ahead
    assert [r.records_out for r in ctx.results] == [3]


def test_waiting_for_a_lease_that_is_released(spark: SparkSession, tmp_path: Path) -> None:
    holder = lease(spark, tmp_path, "first")
    holder.acquire()
    second = lease(spark, tmp_path, "second")
    timer = threading.Timer(1.0, holder.release)
    timer.start()
    second.acquire(wait_seconds=120)  # returns once the first is released
    timer.join()
    assert second.holder() is not None and second.holder().run_id == "second"  # type: ignore[union-attr]
    second.release()
    with pytest.raises(LeaseHeld):  # a bounded wait that runs out
        other = lease(spark, tmp_path, "third")
        holder2 = lease(spark, tmp_path, "fourth")
        holder2.acquire()
        try:
            other.acquire(wait_seconds=0.5)
        finally:
            holder2.release()


def test_the_lease_of_a_killed_process_is_taken_over_at_once(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    forge(spark, tmp_path, "killed-run", socket.gethostname(), gone.pid, age_seconds=0)
    taker = lease(spark, tmp_path, "next-run")
    with caplog.at_level(logging.INFO, logger="goldsmith"):
        taker.acquire()
    try:
        assert "took over the lease of pipeline mini: run killed-run" in caplog.text
        assert "is gone" in caplog.text
        assert taker.generation == 2
    finally:
        taker.release()


def test_a_lease_on_another_host_expires_by_its_heartbeat(spark: SparkSession, tmp_path: Path) -> None:
    forge(spark, tmp_path, "remote-fresh", "another-host", 4242, age_seconds=5)
    with pytest.raises(LeaseHeld, match=re.escape("remote-fresh (host another-host, pid 4242")):
        lease(spark, tmp_path, "mine").acquire()
    forge(spark, tmp_path, "remote-stale", "another-host", 4243, age_seconds=10_000, generation=2)
    taker = lease(spark, tmp_path, "mine")
    taker.acquire()
    assert taker.generation == 3
    taker.release()


def test_two_runs_racing_for_a_fresh_root_get_one_lease(spark: SparkSession, tmp_path: Path) -> None:
    """Both read "free" and commit the same generation: Delta lets exactly one commit stand."""
    outcomes: dict[str, str] = {}
    start = threading.Barrier(2)

    def take(run_id: str) -> None:
        contender = lease(spark.newSession(), tmp_path, run_id)
        start.wait()
        try:
            contender.acquire()
            outcomes[run_id] = "held"
        except LeaseHeld:
            outcomes[run_id] = "refused"

    threads = [threading.Thread(target=take, args=(f"racer-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["held", "refused"], outcomes
    winner = next(r for r, o in outcomes.items() if o == "held")
    holder = lease(spark, tmp_path, "reader").holder()
    assert holder is not None and holder.run_id == winner and holder.generation == 1


def test_a_lease_folder_a_creator_left_without_a_commit_is_taken(spark: SparkSession, tmp_path: Path) -> None:
    """A contender that made the lease table's folder and log folder but had not committed its first version (still
    running, or killed right then): a run still takes the lease (CREATE TABLE refused such a location as "not
    empty and not a Delta table", seen under load in the race above)."""
    taker = lease(spark, tmp_path, "after-a-crash")
    (Path(str(local_folder(taker.path))) / "_delta_log").mkdir(parents=True)
    taker.acquire()
    holder = lease(spark, tmp_path, "reader").holder()
    assert holder is not None and holder.run_id == "after-a-crash" and holder.generation == 1
    (detail,) = spark.sql(f"describe detail delta.`{taker.path}`").collect()
    assert {k: detail["properties"].get(k) for k in ("delta.checkpointInterval", "delta.logRetentionDuration")} == {
        "delta.checkpointInterval": "100", "delta.logRetentionDuration": "interval 7 days"}
    taker.release()


def test_heartbeats_keep_a_lease_and_a_taken_over_lease_stops_its_run(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOLDSMITH_LEASE_TTL", "2")  # a heartbeat every 0.5 s
    holder = lease(spark, tmp_path, "beating")
    holder.acquire()
    first = holder.holder()
    threading.Event().wait(2.5)
    later = holder.holder()
    assert first is not None and later is not None and later.event == "heartbeat"
    assert later.event_ms > first.event_ms and later.generation == first.generation
    # Someone takes the lease (as if this run had stalled past its time to live).
    forge(spark, tmp_path, "usurper", "another-host", 1, age_seconds=0, generation=first.generation + 1)
    threading.Event().wait(1.5)
    with pytest.raises(LeaseLost, match="taken over by run usurper"):
        holder.check()
    holder.release()
    newest = holder.holder()
    assert isinstance(newest, Holder) and newest.run_id == "usurper"  # no release row over the usurper's
