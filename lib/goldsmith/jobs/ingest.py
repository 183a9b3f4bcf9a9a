"""ingest: new landing files -> `bronze.<source>`, malformed records -> `bronze.<source>_quarantine`.

Exactly once, across crashes: a batch's files are fixed in `ops.batch_plans` before its first write, and every
commit of the batch (bronze, quarantine, `ops.ingested_files`) is marked with its identity
(`goldsmith-ingest-<source>@<plan number>`, `goldsmith.io.lakehouse.Txn`). A run killed anywhere in a batch leaves
a plan without its `ops.ingested_files` rows; the next run completes that plan first, with the same files, batch
id and `_ingested_at`, and does not repeat the commits the killed run had already made.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from goldsmith.config.models import SourceConfig
from goldsmith.io.lakehouse import Txn
from goldsmith.io.landing import (
    CSV_DEFAULTS,
    LandingFile,
    first_line,
    header_order,
    list_files,
    parse_schema,
    read_source,
)
from goldsmith.io.ops import file_identity, now
from goldsmith.jobs.context import RunContext, TableResult, Timer, log, observed
from goldsmith.jobs.parallel import for_each_table
from goldsmith.transforms.lineage import LINEAGE_COLUMNS, with_lineage
from goldsmith.transforms.quarantine import file_quarantine, to_bronze_quarantine
from goldsmith.transforms.records import with_malformed_flag

# How many landing files' headers are read at once.
HEADER_READERS = 8


def run(ctx: RunContext) -> list[TableResult]:
    """Ingest every source's new files, sources side by side; a file already ingested (same name, size and
    modification time) is skipped."""
    # A session per source: observed metrics (below) give a session a member that Java cannot serialise, and
    # Spark ML's models capture their training session in their closures (Spark 4.1).
    return for_each_table(ctx, list(ctx.config.sources.items()), ingest_logged, "ingest", "bronze",
                          own_session=True)


def ingest_logged(ctx: RunContext, name: str, source: SourceConfig) -> TableResult:
    with Timer() as timer:
        result = ingest_source(ctx, name, source)
    result.seconds = timer.seconds
    if result.status != "skipped":
        ctx.record(result)
        log.info(
            "  bronze.%-24s %9s rows  %7s quarantined  (%s, %.1f s)",
            name, f"{result.records_out:,}", f"{result.quarantined:,}", result.detail, timer.seconds,
        )
    else:
        log.info("  bronze.%-24s %s", name, result.detail)
    return result


@dataclass(frozen=True)
class Plan:
    """One ingest batch: its files, fixed before anything is written."""

    seq: int
    batch_id: str
    files: tuple[LandingFile, ...]
    planned_at: datetime


@dataclass
class Split:
    """A batch's files by how they are read: CSV files grouped by their header's column order, and the files
    that are rejected whole (a header that does not fit the schema, data that is not text), with the reason."""

    readable: dict[tuple[str, ...] | None, list[str]] = field(default_factory=dict)
    rejected: list[tuple[str, str, str | None]] = field(default_factory=list)  # (path, reason, header line)
    empty: list[str] = field(default_factory=list)


def ingest_source(ctx: RunContext, name: str, source: SourceConfig) -> TableResult:
    """Complete a batch a killed run left unfinished, then ingest the source's new files as one batch."""
    results = [run_batch(ctx, name, source, plan, redo=True) for plan in unfinished_plans(ctx, name)]
    files = list_files(ctx.spark, source, report=True)
    seen = ctx.ops.ingested_files(name)
    new = [f for f in files if file_identity(f.path, f.size, f.modified_ms, f.etag) not in seen]
    if new:
        results.append(run_batch(ctx, name, source, new_plan(ctx, name, new), redo=False))
    if not results:
        detail = f"no new files ({len(files)} already ingested)" if files else f"no files in {source.path}"
        return TableResult("ingest", f"bronze.{name}", status="skipped", detail=detail)
    for extra in results[1:]:
        results[0].absorb(extra)
    return results[0]


def _txn(name: str, seq: int) -> Txn:
    return Txn(f"goldsmith-ingest-{name}", seq)


def unfinished_plans(ctx: RunContext, name: str) -> list[Plan]:
    """Plans of this source whose batch has no `ops.ingested_files` rows: a run was killed in them."""
    done = ctx.ops.batches(name)
    plans = []
    for row in ctx.ops.plans("ingest", f"bronze.{name}"):
        if row["batch_id"] in done:
            continue
        inputs = json.loads(row["inputs"])
        files = tuple(LandingFile(f["path"], int(f["size"]), int(f["modified_ms"]), f.get("etag", ""))
                      for f in inputs["files"])
        plans.append(Plan(int(row["seq"]), row["batch_id"], files, datetime.fromisoformat(inputs["planned_at"])))
    return plans


def new_plan(ctx: RunContext, name: str, files: list[LandingFile]) -> Plan:
    """Fix a new batch's files in `ops.batch_plans` (one commit) before any of its writes."""
    previous = ctx.ops.plans("ingest", f"bronze.{name}")
    seq = max((int(r["seq"]) for r in previous), default=0) + 1
    plan = Plan(seq, f"{ctx.run_id}-{name}", tuple(files), ctx.started_at)
    inputs = {
        "files": [{"path": f.path, "size": f.size, "modified_ms": f.modified_ms, "etag": f.etag} for f in files],
        "planned_at": plan.planned_at.isoformat(),
    }
    ctx.ops.append("batch_plans", [{
        "stage": "ingest", "table_name": f"bronze.{name}", "seq": seq, "batch_id": plan.batch_id,
        "inputs": json.dumps(inputs), "run_id": ctx.run_id, "planned_at": now(),
    }])
    return plan


def split_files(ctx: RunContext, name: str, source: SourceConfig, schema: StructType, paths: list[str]) -> Split:
    """Group CSV files by their header (checked against the declared schema by name) and set aside files that
    cannot be read as the source's format; other formats are read as they are."""
    split = Split()
    options = {**CSV_DEFAULTS, **source.options}
    if source.format != "csv" or str(options.get("header", "true")).lower() != "true":
        split.readable[None] = list(paths)
        return split
    declared = tuple(schema.fieldNames())
    encoding = options.get("encoding", "UTF-8")
    # Each header is a file open and a first read: on an object store two requests of a few milliseconds, so many
    # files are read a few at a time (5,000 files: see scripts/bench_listing.py).
    with ThreadPoolExecutor(max_workers=max(1, min(HEADER_READERS, len(paths)))) as pool:
        starts = list(pool.map(lambda path: first_line(ctx.spark, path, encoding), paths))
    for path, start in zip(paths, starts, strict=True):
        if start.binary:
            split.rejected.append((path, f"the file holds {start.binary}", None))
            continue
        if start.text is None:
            split.empty.append(path)
            continue
        order = header_order(name, start.text, schema, options, source.header_names)
        if isinstance(order, str):
            split.rejected.append((path, order, start.text))
            continue
        split.readable.setdefault(None if order == declared else order, []).append(path)
    return split


def run_batch(ctx: RunContext, name: str, source: SourceConfig, plan: Plan, redo: bool) -> TableResult:
    """Read one batch's files into bronze and its quarantine; check that no record was lost; record the files."""
    txn = _txn(name, plan.seq)
    files = list(plan.files)
    if redo:
        log.info("  bronze.%-24s completing batch %s of a run that did not finish (%d file(s))",
                 name, plan.batch_id, len(files))
        current = {f.path: f for f in list_files(ctx.spark, source)}
        gone = [f for f in files if current.get(f.path) != f]
        if gone:  # the batch's data may be committed already: it is recorded as planned either way
            log.warning("  bronze.%s: %d file(s) of batch %s changed or went away since it was planned; those are "
                        "read only if the killed run had not committed them", name, len(gone), plan.batch_id)
            files = [f for f in files if f not in gone]
    schema = parse_schema(name, source.schema_ddl)
    split = split_files(ctx, name, source, schema, [f.path for f in files])
    frames = [read_source(ctx.spark, name, source, paths, order)[0] for order, paths in split.readable.items()]
    marked_df = None
    for frame in frames:
        marked = frame.transform(with_lineage, plan.batch_id, plan.planned_at).transform(with_malformed_flag, schema)
        marked_df = marked if marked_df is None else marked_df.unionByName(marked)

    counts = {"records": 0, "malformed": 0}
    written: dict[str, str] = {}
    quarantine_frames: list[DataFrame] = []
    rejection = Observation(f"ingest-rejected-{plan.batch_id}")
    if split.rejected:
        rejected_df = file_quarantine(ctx.spark, split.rejected, plan.batch_id, plan.planned_at, ctx.run_id, name)
        quarantine_frames.append(rejected_df.observe(rejection, F.count(F.lit(1)).alias("rows")))
    if marked_df is not None:
        # One pass over the files: the good records are written while the same scan counts every record and the
        # malformed ones (Spark's observed metrics). Only a batch with malformed records is read a second time,
        # for its quarantine rows; the count check below holds the two passes to the same total.
        # The hash reads every column: a count that read fewer would not parse, and not see, a record whose bad
        # field is in a column it skips (Spark prunes the columns a CSV scan parses).
        tally = [F.count(F.lit(1)).alias("records"), F.sum(F.col("_is_malformed").cast("long")).alias("malformed"),
                 F.max(F.xxhash64(*schema.fieldNames())).alias("_every_column")]
        observation = Observation(f"ingest-{plan.batch_id}")
        good_df = marked_df.observe(observation, *tally).where(~F.col("_is_malformed")).select(
            *schema.fieldNames(), *LINEAGE_COLUMNS
        )
        written = ctx.lakehouse.write(good_df, "bronze", name, txn=txn)
        # A write Delta skipped (its batch was committed by a killed run) ran no query: count in a second pass.
        ran = not written.get("skipped")
        counts = (observed(observation) if ran else None) or marked_df.agg(*tally).first().asDict()  # type: ignore[union-attr]
        if counts["malformed"]:
            quarantine_frames.append(
                marked_df.where(F.col("_is_malformed"))
                .transform(to_bronze_quarantine, source, schema, ctx.run_id, name)
            )
    quarantined: dict[str, str] = {}
    if quarantine_frames:
        bad_df = quarantine_frames[0]
        for frame in quarantine_frames[1:]:
            bad_df = bad_df.unionByName(frame)
        quarantined = ctx.lakehouse.write(bad_df, "bronze", f"{name}_quarantine", txn=txn)
    elif not ctx.lakehouse.exists("bronze", f"{name}_quarantine"):
        empty = file_quarantine(ctx.spark, [], plan.batch_id, plan.planned_at, ctx.run_id, name)
        ctx.lakehouse.create_empty("bronze", f"{name}_quarantine", empty.schema)

    rejected_rows = 0
    if split.rejected:  # counted by the write's scan, or again when the write was skipped (a completed batch)
        seen = observed(rejection) if not quarantined.get("skipped") else None
        rejected_rows = int((seen or {}).get("rows") or rejected_df.count())
    result = TableResult(
        "ingest", f"bronze.{name}", records_in=int(counts["records"] or 0) + rejected_rows,
        records_out=int(written.get("numOutputRows", 0)),
        quarantined=int(quarantined.get("numOutputRows", 0)),
        batch_ids=[plan.batch_id], detail=_detail(files, split),
    )
    result.inserted = result.records_out
    result.check_accounting()
    ctx.ops.append("ingested_files", [{
        "source": name, "path": f.path, "size_bytes": f.size,
        "modified_ms": f.modified_ms, "batch_id": plan.batch_id,
        "run_id": ctx.run_id, "ingested_at": now(), "batch_rows": result.records_out, "etag": f.etag,
    } for f in plan.files], txn=txn)
    return result


def _detail(files: list[LandingFile], split: Split) -> str:
    parts = [f"{len(files)} new file(s)"]
    if split.empty:
        parts.append(f"{len(split.empty)} empty")
    if split.rejected:
        parts.append(f"{len(split.rejected)} rejected whole")
    reordered = sum(len(paths) for order, paths in split.readable.items() if order is not None)
    if reordered:
        parts.append(f"{reordered} with reordered columns, read by name")
    for path, reason, _ in split.rejected[:3]:
        log.warning("  %s: quarantined whole: %s", path, reason)
    return ", ".join(parts)
