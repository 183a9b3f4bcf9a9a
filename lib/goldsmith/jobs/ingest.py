"""ingest: new landing files -> `bronze.<source>`, malformed records -> `bronze.<source>_quarantine`."""

from __future__ import annotations

from pyspark.sql import Observation
from pyspark.sql import functions as F

from goldsmith.config.models import SourceConfig
from goldsmith.io.landing import list_files, read_source
from goldsmith.io.ops import now
from goldsmith.jobs.context import RunContext, TableResult, Timer, log, observed
from goldsmith.jobs.parallel import for_each_table
from goldsmith.transforms.lineage import LINEAGE_COLUMNS, with_lineage
from goldsmith.transforms.quarantine import to_bronze_quarantine
from goldsmith.transforms.records import with_malformed_flag


def run(ctx: RunContext) -> list[TableResult]:
    """Ingest every source's new files, sources side by side; a file already ingested (same path, size,
    mtime) is skipped."""
    # A session per source: observed metrics (below) give a session a member that Java cannot serialise, and
    # Spark ML's models capture their training session in their closures (Spark 4.1).
    return for_each_table(ctx, list(ctx.config.sources.items()), ingest_logged, own_session=True)


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


def ingest_source(ctx: RunContext, name: str, source: SourceConfig) -> TableResult:
    """Read one source's new files into bronze and its quarantine; check that no record was lost."""
    files = list_files(ctx.spark, source)
    seen = ctx.ops.ingested_files(name)
    new = [f for f in files if (f.path, f.size, f.modified_ms) not in seen]
    if not new:
        detail = f"no new files ({len(files)} already ingested)" if files else f"no files in {source.path}"
        return TableResult("ingest", f"bronze.{name}", status="skipped", detail=detail)

    batch_id = f"{ctx.run_id}-{name}"
    raw_df, schema = read_source(ctx.spark, name, source, [f.path for f in new])
    marked_df = raw_df.transform(with_lineage, batch_id, ctx.started_at).transform(with_malformed_flag, schema)
    # One pass over the files: the good records are written while the same scan counts every record and the
    # malformed ones (Spark's observed metrics). Only a batch with malformed records is read a second time,
    # for its quarantine rows; the count check below holds the two passes to the same total.
    tally = [F.count(F.lit(1)).alias("records"), F.sum(F.col("_is_malformed").cast("long")).alias("malformed")]
    observation = Observation(f"ingest-{batch_id}")
    good_df = marked_df.observe(observation, *tally).where(~F.col("_is_malformed")).select(
        *schema.fieldNames(), *LINEAGE_COLUMNS
    )
    written = ctx.lakehouse.write(good_df, "bronze", name)
    counts = observed(observation) or marked_df.agg(*tally).first().asDict()  # type: ignore[union-attr]
    quarantined: dict[str, str] = {}
    bad_df = marked_df.where(F.col("_is_malformed")).transform(to_bronze_quarantine, source, schema, ctx.run_id, name)
    if counts["malformed"]:
        quarantined = ctx.lakehouse.write(bad_df, "bronze", f"{name}_quarantine")
    elif not ctx.lakehouse.exists("bronze", f"{name}_quarantine"):
        ctx.lakehouse.create_empty("bronze", f"{name}_quarantine", bad_df.schema)

    result = TableResult(
        "ingest", f"bronze.{name}", records_in=int(counts["records"]),
        records_out=int(written.get("numOutputRows", 0)),
        quarantined=int(quarantined.get("numOutputRows", 0)),
        batch_ids=[batch_id], detail=f"{len(new)} new file(s)",
    )
    result.inserted = result.records_out
    result.check_accounting()
    ctx.ops.append("ingested_files", [{
        "source": name, "path": f.path, "size_bytes": f.size,
        "modified_ms": f.modified_ms, "batch_id": batch_id,
        "run_id": ctx.run_id, "ingested_at": now(), "batch_rows": result.records_out,
    } for f in new])
    return result
