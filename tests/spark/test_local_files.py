"""Local files without a process per file: the session's file:// is goldsmith's fork-free local file system
(goldsmith.io.storage_jar), so writing, committing, merging and reading a Delta table makes the JVM start none of
the commands Hadoop's local file system runs without its native library (`chmod`, `readlink`, `ls`, `stat`).
Counted with the JDK's flight recorder (its `jdk.ProcessStart` events), in the test session's own JVM; Hadoop's
default starts about 25 for a one-row append. (Spark itself still removes a finished session's scratch folder
with `rm -rf`.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pyspark.sql import SparkSession

from goldsmith.io import storage_jar

HADOOP_SHELL = ("chmod", "readlink", "ls", "stat")


def started_processes(spark: SparkSession, work: object, folder: Path) -> list[str]:
    """The commands the driver's JVM started while `work()` ran."""
    jvm = spark.sparkContext._jvm
    recording = jvm.jdk.jfr.Recording()
    recording.enable("jdk.ProcessStart")
    recording.start()
    try:
        work()  # type: ignore[operator]
    finally:
        recording.stop()
    dump = jvm.java.io.File(str(folder / "processes.jfr")).toPath()
    recording.dump(dump)
    recording.close()
    events = jvm.jdk.jfr.consumer.RecordingFile.readAllEvents(dump)
    return [str(event.getString("command")) for event in events]


def test_delta_writes_and_reads_start_no_process(spark: SparkSession, tmp_path: Path) -> None:
    assert storage_jar.installed(), "set-up installs goldsmith's storage jar (scripts/setup.sh)"
    assert spark.conf.get("spark.hadoop.fs.file.impl") == "goldsmith.storage.LocalFileSystem"
    table = str(tmp_path / "t")
    rows = spark.range(3).selectExpr("id", "cast(id as string) as s")

    def work() -> None:
        rows.write.format("delta").save(table)
        rows.write.format("delta").mode("append").save(table)
        spark.sql(f"merge into delta.`{table}` t using (select 1 as id, 'x' as s) u on t.id = u.id "
                  "when matched then update set s = u.s")
        assert spark.read.format("delta").load(table).where("s = 'x'").count() == 2

    started = started_processes(spark, work, tmp_path)
    assert [c for c in started if c.split()[0] in HADOOP_SHELL] == [], started
    # Permissions are still set: a data file and a commit are readable by all, writable by the owner only
    # (Hadoop's 0666 and 0777 under the umask 022 of the tests).
    data = next(p for p in (tmp_path / "t").iterdir() if p.suffix == ".parquet")
    commit = tmp_path / "t" / "_delta_log" / "00000000000000000000.json"
    umask = os.umask(0)
    os.umask(umask)
    for path in (data, commit):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert stat.S_IMODE((tmp_path / "t").stat().st_mode) == 0o777 & ~umask


def test_hadoops_default_would_fork(spark: SparkSession, tmp_path: Path) -> None:
    """The counter counts: Hadoop's own local file system, asked for directly, forks `chmod`."""
    jvm = spark.sparkContext._jvm
    raw = jvm.org.apache.hadoop.fs.RawLocalFileSystem()
    raw.initialize(jvm.java.net.URI("file:///"), spark.sparkContext._jsc.hadoopConfiguration())
    path = jvm.org.apache.hadoop.fs.Path(str(tmp_path / "made-by-hadoop"))
    commands = started_processes(spark, lambda: raw.mkdirs(path, jvm.org.apache.hadoop.fs.permission.FsPermission
                                                           .createImmutable(0o750)), tmp_path)
    assert any(c.startswith("chmod") for c in commands), commands
