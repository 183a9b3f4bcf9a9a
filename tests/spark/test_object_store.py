"""The lakehouse and the landing files on an S3-protocol object store (SeaweedFS on loopback, `object_store` in
tests/conftest.py), through the S3A connector set-up installs: a file rewritten in place with the same size counts
as new (its ETag), a folder of files is one listing, two writers of the same Delta version cannot both win
(goldsmith's conditional log store), and a store killed during a run fails it in one line, after which the next
run converges to the tables of the same run on a disk and a run after that changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from items_pipeline import GOOD, HEADER, Items
from pyspark.sql import SparkSession

from goldsmith import faults
from goldsmith.config import load_pipeline
from goldsmith.errors import ConfigError, GoldsmithError
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.io.landing import list_files, read_source
from goldsmith.io.object_store import configure
from goldsmith.io.storage_jar import S3_LOG_STORE
from goldsmith.jobs.pipeline import run_pipeline

pytestmark = pytest.mark.usefixtures("s3")
STAGES = ["ingest", "refine", "features"]
TABLES = ("bronze.items", "silver.items", "silver.items_quarantine", "gold.totals", "ops.ingested_files")


@pytest.fixture(scope="module")
def s3(spark: SparkSession, object_store: Any) -> str:
    """This session's S3A connector pointed at the local store (what a new session takes from the AWS_*
    variables); the bucket's URI."""
    configure(spark.sparkContext._jsc.hadoopConfiguration(), object_store.env)
    return f"s3a://{object_store.bucket}"


def put(spark: SparkSession, local: Path, uri: str) -> None:
    """Upload a local file to `uri` (the Hadoop file system API, as any client would PUT it)."""
    jvm: Any = spark.sparkContext._jvm
    target = jvm.org.apache.hadoop.fs.Path(uri)
    fs = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    fs.copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(str(local)), target)


def table_sums(spark: SparkSession, root: str) -> dict[str, Any]:
    """Row count and a checksum of the data columns of each table (lineage columns name the files)."""
    lakehouse = Lakehouse(spark, root)
    sums = {}
    for name in TABLES[:4]:
        layer, table = name.split(".")
        df = lakehouse.read(layer, table)
        data = [c for c in df.columns if not c.startswith("_")]
        (row,) = df.selectExpr("count(*) as n", f"sum(hash({', '.join(data)})) as h").collect()
        sums[name] = (row["n"], row["h"])
    return sums


def test_a_file_rewritten_in_place_with_the_same_size_is_new(spark: SparkSession, s3: str, tmp_path: Path) -> None:
    items = Items(tmp_path)
    items.write()
    root, landing = f"{s3}/runs/rewrite/lake", f"{s3}/runs/rewrite/landing/items"
    items.land("a.csv", GOOD)
    put(spark, tmp_path / "landing" / "items" / "a.csv", f"{landing}/a.csv")
    config = load_pipeline(tmp_path / "mini.yml", [f"storage.root={root}", f"sources.items.path={landing}"])
    run_pipeline(config, ["ingest", "refine"], spark)
    before = list_files(spark, config.sources["items"])
    # The same bytes but one digit: same name, same size, most likely the same second.
    changed = GOOD.replace("1,apple,3,", "1,apple,4,")
    assert len(changed) == len(GOOD)
    items.land("a.csv", changed)
    put(spark, tmp_path / "landing" / "items" / "a.csv", f"{landing}/a.csv")
    after = list_files(spark, config.sources["items"])
    assert [f.size for f in after] == [f.size for f in before] and after[0].etag != before[0].etag
    ctx = run_pipeline(config, ["ingest", "refine"], spark)
    assert ctx.results[0].status == "ok" and ctx.results[0].records_out == 3
    qty = spark.read.format("delta").load(f"{root}/silver/items").where("item_id = 1").first()
    assert qty is not None and qty["qty"] == 4


def test_a_folder_of_many_files_is_listed_and_read_without_a_request_per_file(
    spark: SparkSession, s3: str, tmp_path: Path,
) -> None:
    """300 files: one LIST request (S3 returns up to 1,000 keys a page) and no HEAD; the reader loads the folder
    pruned to those files, not each file by path (which checks each: 2 HEAD and 1 LIST per file). A subfolder's
    file and a file the glob does not take are in the folder and are not read. (5,000 files and the whole ingest of
    them: scripts/bench_listing.py.)"""
    items = Items(tmp_path)
    config = items.write()
    folder = tmp_path / "many"
    (folder / "old").mkdir(parents=True)
    for i in range(300):
        (folder / f"part-{i:04d}.csv").write_text(HEADER + f"{i},n{i},1,2024-01-01T00:00:00Z\n")
    (folder / "old" / "part-9999.csv").write_text(HEADER + "9999,old,1,2024-01-01T00:00:00Z\n")
    (folder / "notes.txt").write_text(HEADER + "9998,notes,1,2024-01-01T00:00:00Z\n")
    landing = f"{s3}/runs/many"
    put(spark, folder, landing)
    source = config.sources["items"].model_copy(update={"path": landing})
    jvm: Any = spark.sparkContext._jvm
    fs = jvm.org.apache.hadoop.fs.Path(landing).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    counters = fs.getIOStatistics().counters()

    def requests() -> dict[str, int]:
        return {k: int(counters.get(k) or 0) for k in ("object_list_request", "object_metadata_request")}

    start = requests()
    files = list_files(spark, source)
    end = requests()
    assert len(files) == 300 and all(f.etag for f in files)
    assert end["object_list_request"] - start["object_list_request"] == 1, (start, end)
    assert end["object_metadata_request"] - start["object_metadata_request"] == 0, (start, end)

    start = requests()
    df, _ = read_source(spark, "items", source, [f.path for f in files])
    end = requests()
    assert end["object_list_request"] - start["object_list_request"] <= 5, (start, end)  # the folder and old/
    assert end["object_metadata_request"] - start["object_metadata_request"] <= 5, (start, end)
    rows = df.select("item_id", "_source_file").collect()
    assert sorted(r["item_id"] for r in rows) == list(range(300))
    assert {r["_source_file"] for r in rows} == {f.path for f in files}


def test_two_writers_of_the_same_delta_version_cannot_both_win(spark: SparkSession, s3: str) -> None:
    """goldsmith's log store (what every session uses for s3a:// once set-up installed it) creates a commit file
    only if absent: the second writer of a version gets FileAlreadyExistsException, as from a disk, and the first
    one's commit stays. Delta's default S3 log store would let the second overwrite it."""
    assert spark.conf.get("spark.delta.logStore.s3a.impl") == S3_LOG_STORE
    jvm: Any = spark.sparkContext._jvm
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    first, second = (jvm.goldsmith.storage.ConditionalS3LogStore(hadoop) for _ in range(2))
    path = jvm.org.apache.hadoop.fs.Path(f"{s3}/runs/race/_delta_log/00000000000000000001.json")
    path.getFileSystem(hadoop).delete(path, False)

    def lines(text: str) -> Any:
        return jvm.java.util.ArrayList([text]).iterator()

    first.write(path, lines('{"commitInfo":{"writer":"first"}}'), False, hadoop)
    with pytest.raises(Exception) as lost:
        second.write(path, lines('{"commitInfo":{"writer":"second"}}'), False, hadoop)
    assert "java.nio.file.FileAlreadyExistsException" in str(lost.value)
    kept = list(first.read(path, hadoop))
    assert kept == ['{"commitInfo":{"writer":"first"}}']


def test_a_store_killed_during_a_run_fails_it_naming_the_storage_and_the_next_run_converges(
    spark: SparkSession, tmp_path: Path,
) -> None:
    """A store of its own (this one is killed), reached as bucket goldsmith-kill through per-bucket settings.
    SIGKILL right after bronze's commit, before the batch's ingested-files record: the run fails with one line
    naming the storage; readers see bronze whole or not at all; once the store is back on its port the next run
    finishes the batch (bronze is not written twice), the tables equal the same run's on a disk, and a run after it
    changes nothing."""
    state = tmp_path / "store"
    script = str(Path(__file__).resolve().parents[2] / "scripts" / "objectstore")
    env = {**os.environ, "GOLDSMITH_OBJECTSTORE_DIR": str(state)}

    def start(*extra: str) -> dict[str, str]:
        done = subprocess.run(["bash", script, "start", "--bucket", "goldsmith-kill", *extra], env=env,
                              capture_output=True, text=True, check=False, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())

    def kill() -> None:
        os.kill(int((state / "pid").read_text()), signal.SIGKILL)

    exports = start()
    endpoint = exports["AWS_ENDPOINT_URL"]
    try:
        hadoop = spark.sparkContext._jsc.hadoopConfiguration()
        bucket = "fs.s3a.bucket.goldsmith-kill."
        configure(hadoop, exports, bucket="goldsmith-kill")
        # A dead store fails an operation after one quick retry here (defaults: minutes of back-off).
        for key, value in {"retry.limit": "1", "attempts.maximum": "1", "retry.interval": "100ms"}.items():
            hadoop.set(bucket + key, value)
        items = Items(tmp_path / "items")
        items.write()
        items.land("a.csv", GOOD)
        run_pipeline(items.load(), STAGES, spark)
        expected = table_sums(spark, str(items.lake))
        root, landing = "s3a://goldsmith-kill/lake", "s3a://goldsmith-kill/landing/items"
        put(spark, items.tmp / "landing" / "items" / "a.csv", f"{landing}/a.csv")
        config = load_pipeline(items.tmp / "mini.yml", [f"storage.root={root}", f"sources.items.path={landing}"])

        with faults.simulate("commit:bronze.items", action=kill), pytest.raises(GoldsmithError) as failed:
            run_pipeline(config, STAGES, spark)
        message = str(failed.value)
        assert "\n" not in message and "goldsmith-kill" in message, message
        assert endpoint.removeprefix("http://") in message or "Connection refused" in message, message

        start("--port", endpoint.rsplit(":", 1)[1])  # back, on the same port, with its data
        bronze = spark.read.format("delta").load(f"{root}/bronze/items").count()
        assert bronze == 3  # committed whole before the kill
        ctx = run_pipeline(config, STAGES, spark)
        assert [r.status for r in ctx.results] == ["ok", "ok", "ok"], [r.detail for r in ctx.results]
        assert table_sums(spark, root) == expected
        history = spark.sql(f"describe history delta.`{root}/bronze/items`").count()
        assert history == 1  # the batch was finished, not ingested again
        etags = spark.read.format("delta").load(f"{root}/ops/ingested_files").select("etag").collect()
        assert [len(r["etag"]) > 0 for r in etags] == [True]

        # Run again: nothing new, no table changes.
        lakehouse = Lakehouse(spark, root)
        versions = {t: lakehouse.version(*t.split(".")) for t in TABLES}
        again = run_pipeline(config, STAGES, spark)
        assert {r.status for r in again.results} == {"skipped"}, [r.detail for r in again.results]
        assert {t: lakehouse.version(*t.split(".")) for t in TABLES} == versions
    finally:
        subprocess.run(["bash", script, "stop", "--now"], env=env, capture_output=True, check=False, timeout=120)


def test_demo_data_uploads_the_example_once(object_store: Any, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`goldsmith demo-data reviews --dest s3a://...` (no JVM): the files go up once; run again, the objects of the
    same size stay (a new upload would be a new landing file); without a secret key it is one line."""
    from goldsmith.cli import build_parser, cmd_demo_data

    for key, value in object_store.env.items():
        monkeypatch.setenv(key, value)
    dest = f"s3a://{object_store.bucket}/runs/demo-data/landing"
    args = ["demo-data", "reviews", "--dest", dest]
    assert cmd_demo_data(build_parser().parse_args(args)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"uploaded 2 of 2 file(s) to {dest}"
    assert cmd_demo_data(build_parser().parse_args(args)) == 0
    assert "uploaded 0 of 2 file(s)" in capsys.readouterr().out
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY is missing"):
        cmd_demo_data(build_parser().parse_args(args))
