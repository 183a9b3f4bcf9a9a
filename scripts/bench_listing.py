#!/usr/bin/env python3
"""Ingest from a landing prefix with thousands of small files on the local object store: how many S3 requests the
listing makes, and how long listing and the whole ingest take.

    eval "$(scripts/objectstore start)"
    .venv/bin/python scripts/bench_listing.py [--files 5000]

Uploads FILES one-row CSV files of the items example (once per count), then, in one Spark application: lists
them as ingest does (`goldsmith.io.landing.list_files`) counting the connector's LIST and HEAD requests, and runs
the ingest stage over them into a fresh lakehouse on the store, with the same counts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "spark"))

from items_pipeline import HEADER, Items  # noqa: E402

from goldsmith.config import load_pipeline  # noqa: E402
from goldsmith.io.landing import list_files  # noqa: E402
from goldsmith.io.object_store import upload_folder  # noqa: E402
from goldsmith.jobs.pipeline import run_pipeline  # noqa: E402
from goldsmith.session import build_session  # noqa: E402

COUNTERS = ("object_list_request", "object_metadata_request", "object_get_request")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--bucket", default="goldsmith")
    args = parser.parse_args()
    landing = f"s3a://{args.bucket}/bench-listing/{args.files}/items"
    spark = build_session("goldsmith-bench-listing", "local[2]")
    jvm: Any = spark.sparkContext._jvm
    fs = jvm.org.apache.hadoop.fs.Path(landing).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(jvm.org.apache.hadoop.fs.Path(landing)):
        with tempfile.TemporaryDirectory() as folder:
            for i in range(args.files):
                Path(folder, f"part-{i:05d}.csv").write_text(HEADER + f"{i},n{i % 97},1,2024-01-01T00:00:00Z\n")
            started = time.monotonic()
            upload_folder(Path(folder), landing)
            print(f"uploaded {args.files:,} files in {time.monotonic() - started:.1f} s")
    counters = fs.getIOStatistics().counters()

    def snapshot() -> dict[str, int]:
        return {name: int(counters.get(name) or 0) for name in COUNTERS}

    with tempfile.TemporaryDirectory() as work:
        items = Items(Path(work))
        items.write()
        root = f"s3a://{args.bucket}/bench-listing/lake-{uuid.uuid4().hex[:8]}"
        config = load_pipeline(Path(work) / "mini.yml", [f"storage.root={root}", f"sources.items.path={landing}"])
        before, started = snapshot(), time.monotonic()
        files = list_files(spark, config.sources["items"])
        listed, after = time.monotonic() - started, snapshot()
        print(f"list_files: {len(files):,} files in {listed:.2f} s; requests "
              + ", ".join(f"{k} {after[k] - before[k]}" for k in COUNTERS))
        before, started = snapshot(), time.monotonic()
        ctx = run_pipeline(config, ["ingest"], spark)
        took, after = time.monotonic() - started, snapshot()
        (result,) = ctx.results
        print(f"ingest: {result.records_out:,} rows from {len(files):,} files in {took:.1f} s; requests "
              + ", ".join(f"{k} {after[k] - before[k]}" for k in COUNTERS))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
