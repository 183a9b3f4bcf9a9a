"""One writer per pipeline and storage root: a lease kept in the lakehouse itself, in a Delta table's log.

`<root>/_goldsmith/leases/<pipeline>` is a Delta table without rows whose commits are the lease's events. An event
is a metadata-only commit (`ALTER TABLE ... SET TBLPROPERTIES`, ~0.1 s, no Spark job) whose
`commitInfo.userMetadata` holds the event as JSON: `acquired`, `heartbeat` or `released`, the lease's
*generation*, and the holder (run id, host, pid, since when). Reading the lease is reading the newest commit
files (milliseconds).

Two runs that want the lease both read generation g and commit `acquired` for g+1. Delta refuses the second of
two concurrent metadata commits (`MetadataChangedException`), and of two that follow each other the first one in
the log holds the lease: every reader folds the log the same way, so the second run reads that it lost. This
needs nothing but Delta's commit protocol, so it holds on any storage whose LogStore creates a commit file
exclusively (a local disk, HDFS, ABFS, GCS; on S3 only with a LogStore that does).

While a run holds the lease it commits a `heartbeat` every quarter of the time to live, and `released` when it
ends. A lease is free when its last event is `released`, when its last event is older than the time to live
(`GOLDSMITH_LEASE_TTL`, default 120 s), or at once when its holder ran on this host and its process is gone (a
killed run). Taking over a lease is logged. Readers (`goldsmith sql`, the SQL server, reports) never look at it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from delta.tables import DeltaTable
from pyspark.errors import PySparkException

from goldsmith.errors import LeaseHeld, LeaseLost, message_line, storage_failure
from goldsmith.io import delta_log
from goldsmith.io.lakehouse import Lakehouse, log_commits
from goldsmith.io.paths import local_folder

log = logging.getLogger("goldsmith")

LEASES = "_goldsmith/leases"
DEFAULT_TTL_SECONDS = 120.0
POLL_SECONDS = 0.5  # a look at the lease is a listing and a small file: milliseconds
_USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
# The lease's events since the last `acquired` are read back; a run's heartbeats for a day fit in far fewer.
_MOST_EVENTS = 5000
# Runs of this process that ended but could not commit `released` (the storage failed): this process knows they
# are over, so its next run (`goldsmith watch`, a notebook) takes their lease at once instead of after its TTL.
_ENDED_RUNS: set[str] = set()


def ttl_seconds() -> float:
    """The lease's time to live: a holder whose last event is older is presumed dead."""
    try:
        return max(1.0, float(os.environ.get("GOLDSMITH_LEASE_TTL", DEFAULT_TTL_SECONDS)))
    except ValueError:
        return DEFAULT_TTL_SECONDS


def process_token(pid: int) -> str:
    """What identifies a live process beyond its pid (pids are reused): its start time in clock ticks since
    boot on Linux, '' where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_alive(pid: int, token: str) -> bool:
    """Whether the process `pid` that had start token `token` still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process with that pid: alive as far as we can tell
    return not token or process_token(pid) in ("", token)


@dataclass(frozen=True)
class Holder:
    """Who holds a pipeline's lease: the run that first committed its generation, and its last event."""

    generation: int
    event: str
    run_id: str
    host: str
    pid: int
    process: str
    acquired_ms: int
    event_ms: int

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.acquired_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"run {self.run_id} (host {self.host}, pid {self.pid}, since {since})"

    def free_because(self, ttl: float, now_ms: int) -> str | None:
        """Why this lease can be taken, or None while its holder is alive."""
        if self.event == "released":
            return "released"
        if self.run_id in _ENDED_RUNS:
            return f"{self.describe()} ended in this process without releasing it (the storage failed)"
        if self.host == socket.gethostname() and not process_alive(self.pid, self.process):
            return f"{self.describe()} is gone (its process no longer runs)"
        age = (now_ms - self.event_ms) / 1000
        if age > ttl:
            return f"{self.describe()} sent no heartbeat for {age:.0f} s (time to live {ttl:.0f} s)"
        return None


def fold(events: list[dict[str, Any]]) -> Holder | None:
    """The holder from a lease's events in log order: the first `acquired` of the highest generation; its
    last event after that. An `acquired` that comes later for a generation already taken lost the race."""
    holder: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    for event in events:
        generation = int(event.get("generation", 0))
        if event.get("event") == "acquired":
            if holder is None or generation > int(holder["generation"]):
                holder, last = event, event
        elif holder is not None and (generation, event.get("run_id")) == (int(holder["generation"]),
                                                                           holder["run_id"]):
            last = event
    if holder is None or last is None:
        return None
    return Holder(int(holder["generation"]), str(last["event"]), str(holder["run_id"]), str(holder["host"]),
                  int(holder["pid"]), str(holder.get("process", "")), int(holder["event_ms"]), int(last["event_ms"]))


def read_holder(commits: Iterator[tuple[int, dict[str, Any]]]) -> Holder | None:
    """The holder from a lease table's commits (newest first, as `log_commits` yields them)."""
    events: list[dict[str, Any]] = []
    for _, info in commits:
        try:
            event = json.loads(info.get("userMetadata") or "{}")
        except ValueError:
            continue
        if not isinstance(event, dict) or "event" not in event:
            continue
        events.append(event)
        # Newest first: enough once an `acquired` of a generation below the newest one is passed.
        if event["event"] == "acquired" and int(event["generation"]) < max(int(e["generation"]) for e in events):
            break
        if len(events) >= _MOST_EVENTS:
            break
    return fold(list(reversed(events)))


def held_elsewhere(root: str, pipeline: str) -> str | None:
    """Before a run starts Spark: the refusal message when a live run holds the pipeline's lease on a local
    root, else None (free, not local, or unreadable: the run then takes the lease as usual)."""
    folder = local_folder(root.rstrip("/"))
    if folder is None:
        return None
    current = read_holder(delta_log.commit_infos(os.path.join(folder, LEASES, pipeline)))
    if current is None or current.free_because(ttl_seconds(), _now_ms()) is not None:
        return None
    return refusal(pipeline, f"file:{folder}", current)


def refusal(pipeline: str, root: str, current: Holder) -> str:
    return (f"pipeline {pipeline} on {root} is being written by {current.describe()}; "
            "one writer at a time: wait for it, or pass --wait [SECONDS]")


class RunLease:
    """The writer lease of one pipeline on one storage root, held by this process while a run writes."""

    def __init__(self, lakehouse: Lakehouse, pipeline: str, run_id: str) -> None:
        self.lakehouse = lakehouse
        self.path = f"{lakehouse.root}/{LEASES}/{pipeline}"
        self.pipeline = pipeline
        self.run_id = run_id
        self.ttl = ttl_seconds()
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.generation: int | None = None
        self._acquired_ms = 0
        self._session: Any = None  # a session of its own: its commits' userMetadata is its setting
        self._stop = threading.Event()
        self._lost: str | None = None
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    # -- reading -----------------------------------------------------------------------------------------------
    def holder(self) -> Holder | None:
        """Who holds the lease now (None: nobody ever did)."""
        return read_holder(log_commits(self.lakehouse.spark, self.path))

    # -- taking and giving back --------------------------------------------------------------------------------
    def acquire(self, wait_seconds: float | None = 0.0) -> None:
        """Take the lease, or raise `LeaseHeld` naming its holder. `wait_seconds`: how long to wait for it
        (0: not at all; None: as long as it takes)."""
        deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
        announced = False
        while True:
            current = self.holder()
            reason = "free" if current is None else current.free_because(self.ttl, _now_ms())
            if reason is not None:
                generation = (current.generation if current else 0) + 1
                if self._try_take(generation):
                    if current is not None and current.event != "released":
                        log.warning("lease: took over the lease of pipeline %s: %s", self.pipeline, reason)
                    log.info("lease: run %s holds the writer lease of pipeline %s (generation %d)", self.run_id,
                             self.pipeline, generation)
                    self._start_heartbeat()
                    return
                continue  # another run took that generation first: look again
            assert current is not None
            message = refusal(self.pipeline, self.lakehouse.root, current)
            if deadline is not None and time.monotonic() >= deadline:
                raise LeaseHeld(message)
            if not announced:
                log.info("lease: waiting: %s", message.split("; ")[0])
                announced = True
            time.sleep(POLL_SECONDS)

    def _try_take(self, generation: int) -> bool:
        self._acquired_ms = _now_ms()
        try:
            self._commit("acquired", generation)
        except PySparkException as exc:
            if not lost_race(exc):
                raise
            log.debug("lease: generation %d went to another run: %s", generation, message_line(exc))
            return False
        newest = self.holder()
        if newest is None or newest.generation != generation or newest.run_id != self.run_id:
            return False
        self.generation = generation
        return True

    def release(self) -> None:
        """Give the lease back (the end of a run, failed or not)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.generation is not None and self._lost is None:
            try:
                self._commit("released", self.generation)
            except Exception as exc:  # the lease then expires by its time to live (or this process's next run)
                _ENDED_RUNS.add(self.run_id)
                log.warning("lease: could not release the lease of pipeline %s (it expires in %.0f s): %s",
                            self.pipeline, self.ttl, storage_failure(exc) or message_line(exc))
                log.debug("lease: release failed", exc_info=True)
        self.generation = None

    def check(self) -> None:
        """Raise `LeaseLost` when another run took the lease over (this one's heartbeat stalled)."""
        if self._lost:
            raise LeaseLost(self._lost)

    # -- heartbeat ---------------------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="goldsmith-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                current = self.holder()
                if current is not None and (current.generation, current.run_id) != (self.generation, self.run_id):
                    self._lost = (
                        f"the writer lease of pipeline {self.pipeline} was taken over by {current.describe()} "
                        f"(this run's heartbeat stalled for more than {self.ttl:.0f} s); this run stops"
                    )
                    log.error("lease: %s", self._lost)
                    return
                assert self.generation is not None
                self._commit("heartbeat", self.generation)
            except Exception:  # a missed heartbeat is retried at the next beat
                log.debug("lease: heartbeat failed", exc_info=True)

    def _commit(self, event: str, generation: int, at_ms: int | None = None) -> None:
        """One metadata-only commit carrying the event (the table is created by the first one). `at_ms`: the
        event's time (tests date an event in the past)."""
        now_ms = at_ms if at_ms is not None else _now_ms()
        values = {
            "event": event, "generation": generation, "pipeline": self.pipeline, "run_id": self.run_id,
            "host": self.host, "pid": self.pid, "process": process_token(self.pid),
            "acquired_ms": self._acquired_ms, "event_ms": now_ms,
        }
        with self._write_lock:
            if self._session is None:
                self._session = self.lakehouse.spark.newSession()
                # The lease table's own properties, given to it as it is created (the only table this session
                # creates): few checkpoints of its many small commits, a week of its history kept.
                self._session.conf.set(_DEFAULTS + "checkpointInterval", "100")
                self._session.conf.set(_DEFAULTS + "logRetentionDuration", "interval 7 days")
            spark = self._session
            if not DeltaTable.isDeltaTable(spark, self.path):
                # Created by an empty append, not CREATE TABLE: a contender that created the folder (its
                # _delta_log) but has not committed version 0 yet, or was killed in between, leaves a location
                # CREATE TABLE refuses as "not empty and not a Delta table"; an append commits version 0 there,
                # and of two racing appends one loses with a conflict (`lost_race`).
                spark.createDataFrame([], "event string").write.format("delta").mode("append").save(self.path)
            spark.conf.set(_USER_METADATA_CONF, json.dumps(values))
            try:
                spark.sql(f"ALTER TABLE delta.`{self.path}` SET TBLPROPERTIES "
                          f"('goldsmith.lease.event' = '{generation}:{event}:{now_ms}')")
            finally:
                spark.conf.unset(_USER_METADATA_CONF)


_DEFAULTS = "spark.databricks.delta.properties.defaults."  # a session's properties for the tables it creates


def lost_race(exc: Exception) -> bool:
    """Whether a failed Delta commit lost to a concurrent one (two writers creating or changing the table)."""
    text = f"{type(exc).__name__} {exc}"
    return any(mark in text for mark in (
        "ConcurrentTransaction", "ConcurrentAppend", "ConcurrentWrite", "MetadataChanged", "ProtocolChanged",
        "DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED", "DELTA_CONCURRENT", "FileAlreadyExists",
        "DELTA_TABLE_ALREADY_EXISTS",
    ))


def _now_ms() -> int:
    return int(time.time() * 1000)
