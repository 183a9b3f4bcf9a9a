"""What every stage needs: the session, the config, the lakehouse and the run's identity."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pyspark.sql import Observation, SparkSession

from goldsmith.config.models import PipelineConfig
from goldsmith.errors import AccountingError
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.io.ops import OpsCache, OpsLog, now
from goldsmith.timing import Timer

__all__ = ["RunContext", "TableResult", "TableStatus", "Timer", "log", "observed"]

log = logging.getLogger("goldsmith")

# What a stage did to a table: wrote it, had nothing to do, or rejected its rows (the run then fails).
TableStatus = Literal["ok", "skipped", "failed"]


def observed(observation: Observation) -> dict[str, int] | None:
    """The observation's metrics, or None where the write path did not report them (a catalog table's
    `saveAsTable` runs the query in a command of its own): the caller counts in a second pass then."""
    try:
        return observation.get or None
    except Exception:  # pyspark raises an assertion from the JVM for an observation that saw no query
        return None


@dataclass
class TableResult:
    """What a stage did to one table: the record accounting that is checked and reported."""

    stage: str
    table: str
    records_in: int = 0
    records_out: int = 0
    quarantined: int = 0
    duplicates: int = 0
    inserted: int = 0
    updated: int = 0
    rule_violations: dict[str, int] = field(default_factory=dict)
    status: TableStatus = "ok"
    detail: str = ""
    batch_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter, repr=False)

    def absorb(self, other: TableResult) -> None:
        """Add another batch's counts of the same table (a run that completes a killed run's batch, then its own)."""
        for attr in ("records_in", "records_out", "quarantined", "duplicates", "inserted", "updated"):
            setattr(self, attr, getattr(self, attr) + getattr(other, attr))
        for rule, count in other.rule_violations.items():
            self.rule_violations[rule] = self.rule_violations.get(rule, 0) + count
        self.batch_ids += other.batch_ids
        if other.detail:
            self.detail = f"{self.detail}; {other.detail}" if self.detail else other.detail

    def check_accounting(self) -> None:
        """Records in must equal out + quarantined + duplicates; raise `AccountingError` otherwise."""
        accounted = self.records_out + self.quarantined + self.duplicates
        if self.records_in != accounted:
            raise AccountingError(
                f"{self.table}: {self.records_in} records in but {self.records_out} out + {self.quarantined} "
                f"quarantined + {self.duplicates} duplicates = {accounted}; this is a goldsmith bug, please report it"
            )


@dataclass
class RunContext:
    """One pipeline run inside one Spark application."""

    spark: SparkSession
    config: PipelineConfig
    lakehouse: Lakehouse
    run_id: str
    started_at: datetime = field(default_factory=now)
    results: list[TableResult] = field(default_factory=list)
    ops: OpsLog = field(init=False)
    models: list[Any] = field(default_factory=list)  # TrainOutcome / ScoreOutcome of the model stages
    _pending: list[dict[str, Any]] = field(default_factory=list, repr=False)
    ops_cache: OpsCache | None = field(default=None, repr=False)  # bookkeeping kept across runs (watch)

    def __post_init__(self) -> None:
        self.ops = OpsLog(self.lakehouse, self.ops_cache)

    @property
    def changed(self) -> bool:
        """Whether any stage of this run wrote a table (skipped tables change nothing)."""
        return any(r.status != "skipped" for r in self.results)

    def record(self, result: TableResult) -> None:
        """Keep a table result for `ops.quality_metrics` (written by `flush`, once per run, as it ends)."""
        result.seconds = result.seconds or time.perf_counter() - result.started
        self.results.append(result)
        self._pending.append({
            "run_id": self.run_id, "pipeline": self.config.name, "stage": result.stage,
            "table_name": result.table, "batch_ids": result.batch_ids, "records_in": result.records_in,
            "records_out": result.records_out, "quarantined": result.quarantined,
            "duplicates": result.duplicates, "inserted": result.inserted, "updated": result.updated,
            "rule_violations": result.rule_violations, "status": result.status,
            "duration_seconds": round(result.seconds, 3), "recorded_at": now(),
        })

    def flush(self) -> None:
        """Append the recorded table results to `ops.quality_metrics` in one commit."""
        pending, self._pending = self._pending, []
        self.ops.append("quality_metrics", pending)

