"""One writer per pipeline and storage root: a lease kept in the lakehouse itself, as a Delta table.

`ops.run_leases` is an append-only log of lease events. Each holder has a *generation*: a run takes the lease by
appending an `acquired` row for generation g+1 with Delta's idempotent-write identifiers (`txnAppId` =
`goldsmith-lease-<pipeline>`, `txnVersion` = g+1). Two runs that race for the same generation cannot both
commit it: the second is refused by Delta's conflict check (`ConcurrentTransactionException`: both read the
application's transaction version) or, if it starts after the first committed, skipped as an already-applied
write. Each run then reads the log back and holds the lease only if the newest row is its own. This needs
nothing but Delta's own commit protocol, so it holds on any storage Delta writes to with mutual exclusion of
commit files (a local disk, HDFS, ABFS, GCS; on S3 the LogStore decides: see the README's Reliability section).

While a run holds the lease it appends a `heartbeat` row every quarter of the lease's time to live, and a
`released` row when it ends. A lease is free when its newest row is `released`, when its last heartbeat is older
than the time to live (`GOLDSMITH_LEASE_TTL`, default 120 s), or at once when its holder ran on this host and
its process is gone (a killed run). Taking over a lease is logged. Readers (`goldsmith sql`, the SQL server,
reports) never look at it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.errors import PySparkException
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from goldsmith.errors import DeltaLogUnsupported, LeaseHeld, LeaseLost, message_line
from goldsmith.io import delta_log
from goldsmith.io.lakehouse import Lakehouse

log = logging.getLogger("goldsmith")

TABLE = "run_leases"
SCHEMA = (
    "pipeline STRING, generation BIGINT, event STRING, run_id STRING, host STRING, pid BIGINT, process STRING, "
    "acquired_ms BIGINT, event_ms BIGINT, at TIMESTAMP"
)
DEFAULT_TTL_SECONDS = 120.0
POLL_SECONDS = 2.0


def ttl_seconds() -> float:
    """The lease's time to live: a holder whose heartbeat is older is presumed dead."""
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
    """The newest row of a pipeline's lease log."""

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
        if self.host == socket.gethostname() and not process_alive(self.pid, self.process):
            return f"{self.describe()} is gone (its process no longer runs)"
        age = (now_ms - self.event_ms) / 1000
        if age > ttl:
            return f"{self.describe()} sent no heartbeat for {age:.0f} s (time to live {ttl:.0f} s)"
        return None


class RunLease:
    """The writer lease of one pipeline on one storage root, held by this process while a run writes."""

    def __init__(self, lakehouse: Lakehouse, pipeline: str, run_id: str) -> None:
        self.lakehouse = lakehouse
        self.spark = lakehouse.spark
        self.pipeline = pipeline
        self.run_id = run_id
        self.ttl = ttl_seconds()
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.generation: int | None = None
        self._acquired_ms = 0
        self._stop = threading.Event()
        self._lost: str | None = None
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    # -- reading -----------------------------------------------------------------------------------------------
    def holder(self) -> Holder | None:
        """The newest row of this pipeline's lease log, or None when it never had one."""
        rows = self._rows()
        if not rows:
            return None
        row = max(rows, key=lambda r: (r["generation"], r["event_ms"]))
        return Holder(int(row["generation"]), row["event"], row["run_id"], row["host"], int(row["pid"]),
                      row["process"] or "", int(row["acquired_ms"]), int(row["event_ms"]))

    def _rows(self) -> list[dict[str, Any]]:
        """This pipeline's lease rows: read from the Delta log without a Spark job where the root is a local
        folder (a run reads them three times), else with Spark."""
        columns = ["pipeline", "generation", "event", "run_id", "host", "pid", "process", "acquired_ms", "event_ms"]
        path = self.lakehouse.path("ops", TABLE)
        if not self.lakehouse.catalog:
            try:
                rows = delta_log.read_rows(path, columns)
                return [r for r in rows or [] if r["pipeline"] == self.pipeline]
            except DeltaLogUnsupported:
                pass
        if not self.lakehouse.exists("ops", TABLE):
            return []
        df = self.lakehouse.read("ops", TABLE).where(F.col("pipeline") == self.pipeline)
        top = df.orderBy(F.col("generation").desc(), F.col("event_ms").desc()).limit(1).select(*columns)
        return [r.asDict() for r in top.collect()]

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
            message = (
                f"pipeline {self.pipeline} on {self.lakehouse.root} is being written by {current.describe()}; "
                "one writer at a time: wait for it, or pass --wait [SECONDS]"
            )
            if deadline is not None and time.monotonic() >= deadline:
                raise LeaseHeld(message)
            if not announced:
                log.info("lease: waiting: %s", message.split("; ")[0])
                announced = True
            time.sleep(POLL_SECONDS)

    def _try_take(self, generation: int) -> bool:
        self._acquired_ms = _now_ms()
        try:
            self._append("acquired", generation, txn=True)
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
                self._append("released", self.generation)
            except Exception:  # the lease then expires by its time to live
                log.warning("lease: could not release the lease of pipeline %s", self.pipeline, exc_info=True)
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
                if current is not None and current.generation != self.generation:
                    self._lost = (
                        f"the writer lease of pipeline {self.pipeline} was taken over by {current.describe()} "
                        f"(this run's heartbeat stalled for more than {self.ttl:.0f} s); this run stops"
                    )
                    log.error("lease: %s", self._lost)
                    return
                assert self.generation is not None
                self._append("heartbeat", self.generation)
            except Exception:  # a missed heartbeat is retried at the next beat
                log.debug("lease: heartbeat failed", exc_info=True)

    def _append(self, event: str, generation: int, txn: bool = False) -> None:
        now_ms = _now_ms()
        values: dict[str, Any] = {
            "pipeline": self.pipeline, "generation": generation, "event": event, "run_id": self.run_id,
            "host": self.host, "pid": self.pid, "process": process_token(self.pid),
            "acquired_ms": self._acquired_ms, "event_ms": now_ms,
            "at": datetime.fromtimestamp(now_ms / 1000, UTC).replace(tzinfo=None),
        }
        schema = StructType.fromDDL(SCHEMA)
        assert isinstance(schema, StructType)
        # Literal columns over a one-row JVM relation: no Python worker for a one-row write.
        df = self.spark.range(1).select(*[F.lit(values[f.name]).cast(f.dataType).alias(f.name) for f in schema])
        options = {"txnAppId": f"goldsmith-lease-{self.pipeline}", "txnVersion": str(generation)} if txn else {}
        with self._write_lock:
            self.lakehouse.write(df, "ops", TABLE, mode="append", options=options, metrics=False)


def lost_race(exc: Exception) -> bool:
    """Whether a failed Delta commit lost to a concurrent one (two writers creating or appending at once)."""
    text = f"{type(exc).__name__} {exc}"
    return any(mark in text for mark in (
        "ConcurrentTransaction", "ConcurrentAppend", "ConcurrentWrite", "MetadataChanged", "ProtocolChanged",
        "DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED", "DELTA_CONCURRENT",
    ))


def _now_ms() -> int:
    return int(time.time() * 1000)
