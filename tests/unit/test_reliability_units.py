"""The pure parts of the reliability machinery: the lease's fold over its events, batch markers, CSV header
matching and the one-line error messages (no Spark)."""

from __future__ import annotations

import json
import os
import socket
import time

from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from goldsmith.errors import message_line
from goldsmith.io.lakehouse import Txn
from goldsmith.io.landing import header_order, matches_glob
from goldsmith.io.lease import LEASES, fold, held_elsewhere


def event(kind: str, generation: int, run: str, at: int) -> dict:
    return {"event": kind, "generation": generation, "run_id": run, "host": "h", "pid": 1, "event_ms": at}


def test_the_first_acquire_of_a_generation_holds_the_lease() -> None:
    events = [event("acquired", 1, "a", 10), event("acquired", 1, "b", 11), event("heartbeat", 1, "a", 40),
              event("heartbeat", 1, "b", 41)]  # b lost the race: its later events do not count
    holder = fold(events)
    assert holder is not None and (holder.run_id, holder.event, holder.event_ms, holder.acquired_ms) == \
        ("a", "heartbeat", 40, 10)


def test_a_higher_generation_takes_over_and_release_frees() -> None:
    events = [event("acquired", 1, "a", 10), event("acquired", 2, "c", 50), event("heartbeat", 1, "a", 60),
              event("released", 2, "c", 70)]
    holder = fold(events)
    assert holder is not None and (holder.generation, holder.run_id, holder.event) == (2, "c", "released")
    assert holder.free_because(120, 71) == "released"
    assert fold([]) is None


def test_a_silent_holder_on_another_host_expires() -> None:
    holder = fold([event("acquired", 1, "a", 0)])
    assert holder is not None
    assert holder.free_because(120, 60_000) is None
    assert "sent no heartbeat for 121 s" in (holder.free_because(120, 121_000) or "")


def test_markers_name_a_batch_and_its_predecessors() -> None:
    txn = Txn("goldsmith-ingest-flights", 7)
    assert txn.marker == "goldsmith-ingest-flights@7"
    assert txn.earlier("goldsmith-ingest-flights@6") and not txn.earlier("goldsmith-ingest-flights@7")
    assert not txn.earlier("goldsmith-ingest-weather@1") and not txn.earlier(None)


SCHEMA = StructType([StructField("id", IntegerType()), StructField("drug_name", StringType()),
                     StructField("rating", StringType())])


def test_headers_are_matched_by_name() -> None:
    assert header_order("s", "id,drug_name,rating", SCHEMA, {}) == ("id", "drug_name", "rating")
    assert header_order("s", "\ufeff Rating , ID,drug_name", SCHEMA, {}) == ("rating", "id", "drug_name")
    assert header_order("s", "\tdrugName\trating", SCHEMA, {"sep": "\t"}, {"": "id", "drugName": "drug_name"}) == \
        ("id", "drug_name", "rating")
    assert header_order("s", "id,name,rating,extra", SCHEMA, {}) == \
        "the header does not match sources.s.schema: missing drug_name; unexpected name, extra"
    assert header_order("s", "id,id,drug_name,rating", SCHEMA, {}) == \
        "the header does not match sources.s.schema: repeated id"


def test_compressed_names_match_the_glob() -> None:
    assert matches_glob("a.csv", "*.csv") and matches_glob("a.csv.gz", "*.csv") and matches_glob("a.csv.bz2", "*.csv")
    assert not matches_glob("a.csv.zip", "*.csv") and not matches_glob("a.txt", "*.csv")


def test_message_line_skips_blank_lines_and_names_a_udf_error() -> None:
    assert message_line(ValueError("\n\n  first words\nsecond")) == "first words"
    assert message_line(ValueError("")) == "ValueError"
    udf = "An exception was thrown from the Python worker.\nTraceback:\n  File x\nKeyError: 'qty'\n"
    assert message_line(RuntimeError(udf)) == "a Python function failed: KeyError: 'qty'"


def test_a_live_holder_refuses_a_run_before_spark_starts(tmp_path) -> None:
    """The refusal reads the lease's log with plain file reads: a second run exits 4 without starting a JVM."""


    log = tmp_path / LEASES / "flights" / "_delta_log"
    log.mkdir(parents=True)
    alive = {"event": "acquired", "generation": 1, "run_id": "r-1", "host": socket.gethostname(),
             "pid": os.getpid(), "process": "", "event_ms": int(time.time() * 1000)}
    (log / f"{0:020d}.json").write_text(json.dumps({"commitInfo": {"userMetadata": json.dumps(alive)}}) + "\n")
    message = held_elsewhere(str(tmp_path), "flights")
    assert message is not None and "is being written by run r-1" in message and f"pid {os.getpid()}" in message
    assert held_elsewhere(str(tmp_path), "reviews") is None
    gone = {**alive, "event": "released"}
    (log / f"{1:020d}.json").write_text(json.dumps({"commitInfo": {"userMetadata": json.dumps(gone)}}) + "\n")
    assert held_elsewhere(str(tmp_path), "flights") is None


def test_executors_problem_names_the_hosts_and_how_to_ship_goldsmith() -> None:
    from goldsmith.session import executors_problem

    good = ("w1", "0.1.0", "/app/goldsmith.zip/goldsmith/__init__.py", "")
    assert executors_problem([good], "0.1.0") is None
    missing = executors_problem([good, ("w2", "", "", "ModuleNotFoundError: No module named 'goldsmith'")], "0.1.0")
    assert missing is not None and missing.startswith("executors cannot import goldsmith on w2 (ModuleNotFound")
    assert "--py-files" in missing and "\n" not in missing
    older = executors_problem([good, ("w2", "0.0.9", "/opt/site/goldsmith/__init__.py", "")], "0.1.0")
    assert older is not None and "driver runs goldsmith 0.1.0" in older
    assert "0.0.9 on w2 (from /opt/site/goldsmith/__init__.py)" in older and "w1" not in older
