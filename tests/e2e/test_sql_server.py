"""`goldsmith serve-sql`: beeline reads gold tables over JDBC while a pipeline writes the same lakehouse; every kind
of write through the read-only endpoint is refused and changes nothing; `--writable` allows them; SIGTERM stops
the server cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.examples import write_landing

from .conftest import (
    BIN,
    FLIGHTS,
    FirstRun,
    Reader,
    copy_tables,
    free_port,
    listening,
    run,
    run_in_process,
    start_goldsmith,
)

pytestmark = pytest.mark.slow
CHECKSUM = "select count(*) as n, sum(cast(xxhash64(flight_id, carrier, route_delay_rate, temp_f) as decimal(38, 0)))" \
    " as h from gold.flight_features"
# Each statement that would change a table or the catalog, and the plan the read-only check names when refusing it.
WRITES = {
    "drop table gold.flight_features": "DropTable",
    "insert into silver.airlines select * from silver.airlines": "AppendData",
    "create table gold.copy as select * from gold.flight_features": "CreateDataSourceTableAsSelectCommand",
    "update silver.airlines set airline_name = 'x'": "UpdateCommand",
    "delete from silver.airlines where carrier = 'UA'": "DeleteCommand",
    "merge into silver.airlines t using (select 'UA' as carrier) s on t.carrier = s.carrier "
    "when matched then update set airline_name = 'x'": "MergeIntoCommand",
    "vacuum silver.airlines retain 0 hours": "VacuumTableCommand",
    # To the version before the pipeline's write (restoring the current version is a no-op Delta skips).
    "restore table gold.flight_features to version as of 0": "RestoreTableCommand",
    "alter table silver.airlines add columns (extra int)": "AddColumns",
    "add jar /tmp/goldsmith-not-a.jar": "AddJarsCommand",
    "create function gold.evil as 'org.example.Evil'": "CreateFunctionCommand",
}


def beeline(port: int, *statements: str) -> subprocess.CompletedProcess[str]:
    """One beeline process for all `statements` (a script file), going on after a failed one (`--force`)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("".join(f"{s};\n" for s in statements))
    try:
        return run(str(BIN / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}", "--silent=true", "--force=true",
                   "--outputformat=csv2", "-f", script.name, timeout=300)
    finally:
        os.unlink(script.name)


# What beeline writes around the rows of a script: the prompts it echoes, and a `null` (padded with spaces, or
# glued to the next line) for each statement it reads from the file.
PROMPT = re.compile(r"^(\d+: jdbc:hive2://\S+> |null)+")


def csv_rows(output: str) -> list[list[str]]:
    """beeline's csv2 output without the JVM's warnings and what it echoes: the header and rows of each query."""
    lines = (PROMPT.sub("", line).strip() for line in output.splitlines())
    return [line.split(",") for line in lines if line and not line.startswith(("WARNING", "SLF4J"))]


def serve(root: Path, log: Path, *extra: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """`goldsmith serve-sql` on a free port, until SIGTERM."""
    port = free_port()
    server = start_goldsmith("serve-sql", "--root", str(root), "--port", str(port), "--refresh-seconds", "1",
                             *extra, log=log)
    try:
        deadline = time.monotonic() + 180
        while not listening(port):
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "serve-sql did not listen within 180 s"
            time.sleep(0.5)
        yield port, server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)


def test_beeline_reads_gold_tables_while_a_pipeline_writes_and_cannot_write(
    flights_lake: FirstRun, landing: Path, reader: Reader, tmp_path: Path,
) -> None:
    root, log = tmp_path / "lake", tmp_path / "serve-sql.log"
    served = serve(root, log)
    port, server = next(served)
    try:
        # Tables that appear under the root after the server started are attached within a refresh or two.
        copy_tables(flights_lake.root, root)
        expected = reader.row(CHECKSUM, root)
        assert expected["n"] == FLIGHTS
        deadline = time.monotonic() + 60
        while True:
            read = beeline(port, CHECKSUM)
            if csv_rows(read.stdout)[-1:] == [[str(expected["n"]), str(expected["h"])]] \
                    or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert csv_rows(read.stdout) == [["n", "h"], [str(expected["n"]), str(expected["h"])]], \
            (read.stdout + read.stderr)[-3000:]

        # A pipeline writes the lakehouse the server has open (no lock, no metastore between them): 20 more
        # flights (the 2nd to the 21st of the year, left out of the every-30th slice), merged into silver, the gold
        # table rebuilt from their time on. The next query sees them.
        # (In this process: the command under test is the server, `goldsmith run` has its own subprocess test.)
        write_landing("flights", tmp_path / "next", 21)
        lines = (tmp_path / "next" / "flights" / "flights.csv").read_text().splitlines()
        more = tmp_path / "more-flights"
        more.mkdir()
        (more / "flights_next.csv").write_text("\n".join([lines[0], *lines[2:22]]) + "\n")
        run_in_process(reader.spark, "conf/pipelines/flights.yml", "--stages", "ingest,refine,features",
                       "--set", f"storage.root={root}", "--set", f"vars.landing={landing}",
                       "--set", f"sources.flights.path={more}")
        after = reader.row(CHECKSUM, root)
        assert after["n"] == FLIGHTS + 20
        rows = beeline(port, CHECKSUM, "select flight_id, carrier, origin from gold.flight_features "
                                       "order by flight_id limit 3")
        got = csv_rows(rows.stdout)
        assert got[:2] == [["n", "h"], [str(after["n"]), str(after["h"])]], (rows.stdout + rows.stderr)[-3000:]
        assert got[2] == ["flight_id", "carrier", "origin"] and len(got) == 6

        versions = {t: reader.version(t, root) for t in ("gold.flight_features", "silver.airlines")}
        assert versions["gold.flight_features"] != 0  # the pipeline wrote it: RESTORE would change it
        refused = beeline(port, *WRITES)
        said = refused.stdout + refused.stderr
        # One error per statement, in order, each naming the plan it refused.
        plans = re.findall(r"^Error: .*goldsmith serve-sql is read-only: (\w+) would change", said, re.M)
        assert plans == list(WRITES.values()), said[-3000:]
        assert {t: reader.version(t, root) for t in versions} == versions
        assert reader.row("select count(*) as n from silver.airlines where airline_name = 'x'", root) == {"n": 0}
        assert reader.row("select count(*) as n from silver.airlines", root) == {"n": 16}
        assert not (root / "gold" / "copy").exists()
    finally:
        next(served, None)
    err = log.read_text()
    assert server.returncode == 0, err[-3000:]
    assert "serving" in err and "read-only" in err and "stopping the SQL server" in err
    assert not listening(port)


def test_writable_server_runs_the_writes(flights_lake: FirstRun, reader: Reader, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    copy_tables(flights_lake.root, root)
    served = serve(root, tmp_path / "serve-sql.log", "--writable")
    port, _ = next(served)
    try:
        done = beeline(port, "update silver.airlines set airline_name = 'renamed' where carrier = 'UA'",
                       "insert into silver.airlines select * from silver.airlines where carrier = 'AA'")
        assert "read-only" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]
    finally:
        next(served, None)
    got = reader.row("select count(*) as n, count_if(airline_name = 'renamed') as renamed from silver.airlines",
                     root)
    assert got == {"n": 17, "renamed": 1}
