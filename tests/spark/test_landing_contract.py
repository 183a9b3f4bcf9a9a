"""Landing files that break their contract: a reordered or wrong header, no records, only malformed records,
compressed data, a huge field, a SQL typo. Each: the good records of other files are kept, the bad file is
quarantined or reported in one line naming it, the pipeline is not blocked, and a re-run adds nothing."""

from __future__ import annotations

import gzip
import logging
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from items_pipeline import GOOD, HEADER, Items
from pyspark.sql import SparkSession

from goldsmith.config import load_pipeline
from goldsmith.errors import ConfigError
from goldsmith.io.landing import FOLDER_READ_FILES
from goldsmith.jobs.context import RunContext
from goldsmith.jobs.pipeline import run_pipeline

STAGES = ["ingest", "refine"]


def rows(spark: SparkSession, lake: Path, table: str) -> list[dict]:
    return [r.asDict() for r in spark.read.format("delta").load(str(lake / table)).collect()]


HUGE = "9" * 200_000
# Every bad file at once, beside a good one, in one run after a first good file; what each must do is a test.
BAD_FILES = {
    "reordered.csv": b"updated_at,qty,name,item_id\n2024-03-01T00:00:00Z,11,quince,7\n",
    "wrong_header.csv": b"item_id,title,qty,updated_at\n8,melon,1,2024-03-01T00:00:00Z\n"
                        b"9,grape,2,2024-03-01T00:00:00Z\n",
    "empty.csv": b"",
    "header_only.csv": HEADER.encode(),
    "all_malformed.csv": HEADER.encode() + b"1,2\n3\n",
    "gzip_named.csv": gzip.compress(HEADER.encode() + GOOD.encode()),
    "compressed.csv.gz": gzip.compress(HEADER.encode() + b"11,cherry,6,2024-03-01T00:00:00Z\n"),
    "huge_field.csv": (HEADER + f"{HUGE},big,1,2024-03-01T00:00:00Z\n").encode(),
    "good.csv": HEADER.encode() + b"10,date,4,2024-03-01T00:00:00Z\n",
}


@dataclass
class Contract:
    items: Items
    ctx: RunContext
    log: str
    quarantine: list[dict]
    silver: dict[int, dict]
    files: dict[str, int]  # file name -> rows ingest recorded


@pytest.fixture(scope="module")
def contract(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Contract:
    items = Items(tmp_path_factory.mktemp("contract"))
    items.write()
    items.land("a.csv", GOOD)
    run_pipeline(items.load(), STAGES, spark)
    for name, data in BAD_FILES.items():
        (items.tmp / "landing" / "items" / name).write_bytes(data)
    with zipfile.ZipFile(items.tmp / "landing" / "items" / "archive.csv.zip", "w") as z:
        z.writestr("archive.csv", HEADER + "12,lemon,1,2024-03-01T00:00:00Z\n")
    handler = logging.Handler()
    lines: list[str] = []
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("goldsmith").addHandler(handler)
    try:
        ctx = run_pipeline(items.load(), STAGES, spark)
    finally:
        logging.getLogger("goldsmith").removeHandler(handler)
    files = {Path(r["path"]).name: r["batch_rows"] for r in rows(spark, items.lake, "ops/ingested_files")}
    return Contract(items, ctx, "\n".join(lines), rows(spark, items.lake, "bronze/items_quarantine"),
                    {r["item_id"]: r for r in rows(spark, items.lake, "silver/items")}, files)


def quarantined(contract: Contract, file: str) -> list[dict]:
    return [r for r in contract.quarantine if r["_source_file"].endswith("/" + file)]


def test_every_file_is_recorded_once_and_the_good_ones_are_kept(contract: Contract) -> None:
    # archive.csv.zip is reported, not ingested; the batch's other files are recorded, the empty ones too, each
    # with the batch's row count (the three good rows of good.csv, compressed.csv.gz and reordered.csv)
    assert sorted(contract.files) == sorted(["a.csv", *BAD_FILES])
    assert {f: n for f, n in contract.files.items() if f != "a.csv"} == dict.fromkeys(BAD_FILES, 3)
    assert {10, 11, 7} <= set(contract.silver)  # good.csv, compressed.csv.gz, reordered.csv
    ingest = contract.ctx.results[0]
    assert ingest.records_in == ingest.records_out + ingest.quarantined
    assert (ingest.records_out, ingest.quarantined) == (1 + 1 + 1, 2 + 2 + 1 + 1)


def test_a_reordered_header_is_read_by_name(contract: Contract) -> None:
    assert (contract.silver[7]["name"], contract.silver[7]["qty"]) == ("QUINCE", 11)
    assert "1 with reordered columns, read by name" in contract.ctx.results[0].detail


def test_a_header_that_does_not_fit_quarantines_the_file_whole(contract: Contract) -> None:
    bad = quarantined(contract, "wrong_header.csv")
    assert sorted(r["raw_record"] for r in bad) == ["8,melon,1,2024-03-01T00:00:00Z",
                                                     "9,grape,2,2024-03-01T00:00:00Z"]
    assert {r["reason"] for r in bad} == {
        "the header does not match sources.items.schema: missing name; unexpected title"}
    assert "wrong_header.csv: quarantined whole" in contract.log


def test_files_without_good_records(contract: Contract) -> None:
    assert quarantined(contract, "empty.csv") == quarantined(contract, "header_only.csv") == []
    assert sorted(r["raw_record"] for r in quarantined(contract, "all_malformed.csv")) == ["1,2", "3"]
    (gz,) = quarantined(contract, "gzip_named.csv")
    assert gz["reason"] == "the file holds gzip-compressed data in a file whose name does not end in .gz"


def test_compressed_files_are_read_or_reported(contract: Contract) -> None:
    assert contract.silver[11]["name"] == "CHERRY"  # compressed.csv.gz, matched by glob *.csv
    assert "1 file(s) compressed in a format Spark does not read, not ingested" in contract.log
    assert "archive.csv.zip" in contract.log and 12 not in contract.silver


def test_a_huge_field_keeps_its_data_but_not_in_the_reason(contract: Contract) -> None:
    (bad,) = quarantined(contract, "huge_field.csv")
    assert len(bad["raw_record"]) > 200_000
    assert len(bad["reason"]) <= 1100 and bad["reason"].startswith("unparsable value: item_id=999")


def test_a_rerun_adds_nothing(spark: SparkSession, contract: Contract) -> None:
    again = run_pipeline(contract.items.load(), STAGES, spark)
    assert all(r.status == "skipped" for r in again.results)
    assert len(rows(spark, contract.items.lake, "bronze/items_quarantine")) == len(contract.quarantine)


def test_a_moved_lakehouse_and_landing_reached_by_another_path_ingest_nothing_again(
    spark: SparkSession, contract: Contract
) -> None:
    """Last: it moves the module's lakehouse."""
    tmp = contract.items.tmp
    moved = tmp.parent / (tmp.name + "-moved")
    shutil.move(tmp, moved)  # a rename keeps the files' modification times
    elsewhere = moved.parent / (moved.name + "-link")
    elsewhere.symlink_to(moved / "landing", target_is_directory=True)
    config = load_pipeline(moved / "mini.yml", [f"storage.root={moved / 'lake'}",
                                                f"sources.items.path=file://{elsewhere}/items"])
    ctx = run_pipeline(config, STAGES, spark)
    assert [r.status for r in ctx.results] == ["skipped", "skipped"], [r.detail for r in ctx.results]
    assert len(rows(spark, moved / "lake", "bronze/items")) == 3 + 3


def test_a_sql_typo_stops_the_run_before_any_stage(spark: SparkSession, items: Items) -> None:
    items.write()
    items.land("a.csv", GOOD)
    items.sql("items", "select item_id,, name from bronze_batch")
    with pytest.raises(ConfigError) as error:
        run_pipeline(items.load(), STAGES, spark)
    message = str(error.value)
    assert "items.sql" in message and "Syntax error" in message, message
    assert not message.rstrip().endswith(":")
    assert not (items.lake / "bronze").exists()


def test_a_batch_of_many_files_is_read_from_its_folder_by_name(spark: SparkSession, items: Items) -> None:
    # Enough files that ingest loads the folder pruned to them (FOLDER_READ_FILES): names with a space and a
    # percent sign are matched as Spark encodes them; a subfolder's file and a file the glob skips are not read.
    assert FOLDER_READ_FILES <= 10
    items.write()
    names = [f"part-{i}.csv" for i in range(8)] + ["with space.csv", "100%.csv"]
    for i, name in enumerate(names):
        items.land(name, f"{100 + i},n{i},{i},2024-03-01T00:00:00Z\n")
    (items.tmp / "landing" / "items" / "old").mkdir()
    (items.tmp / "landing" / "items" / "old" / "part-0.csv").write_text(HEADER + "999,old,1,2024-03-01T00:00:00Z\n")
    (items.tmp / "landing" / "items" / "notes.txt").write_text(HEADER + "998,notes,1,2024-03-01T00:00:00Z\n")
    ctx = run_pipeline(items.load(), ["ingest"], spark)
    bronze = rows(spark, items.lake, "bronze/items")
    assert sorted(r["item_id"] for r in bronze) == list(range(100, 110))
    assert {Path(r["_source_file"]).name for r in bronze} == {"part-0.csv", *(f"part-{i}.csv" for i in range(1, 8)),
                                                               "with%20space.csv", "100%25.csv"}
    assert ctx.results[0].records_out == 10
    assert all(r.status == "skipped" for r in run_pipeline(items.load(), ["ingest"], spark).results)
