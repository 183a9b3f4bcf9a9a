"""`goldsmith serve-sql`: beeline reads gold tables over JDBC while a pipeline writes the same lakehouse; every kind
of write through the read-only endpoint is refused and changes nothing; `--writable` allows them; SIGTERM stops
the server cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import (
    BIN,
    FLIGHTS,
    FirstRun,
    Reader,
    copy_tables,
    free_port,
    goldsmith,
    listening,
    run,
    start_goldsmith,
)

pytestmark = pytest.mark.slow
CHECKSUM = "select count(*) as n, sum(cast(xxhash64(flight_id, carrier, route_delay_rate, temp_f) as decimal(38, 0)))" \
    " as h from gold.flight_features"
# Each statement that would change a table or the catalog, and the plan the read-only check names when refusing it.
WRITES = {
    "drop table gold.flight_features": "DropTable",
    "insert into silver.airlines select * from silver.airlines": "AppendData",
    "create table gold.copy as select * from gold.flight_features": "CreateTableAsSelect",
    "update silver.airlines set name = 'x'": "UpdateTable",
    "delete from silver.airlines where carrier = 'UA'": "DeleteFromTable",
    "merge into silver.airlines t using (select 'UA' as carrier, 'x' as name) s on t.carrier = s.carrier "
    "when matched then update set name = s.name": "MergeIntoTable",
    "vacuum silver.airlines retain 0 hours": "Vacuum",
    "restore table silver.airlines to version as of 0": "Restore",
    "alter table silver.airlines add columns (extra int)": "AddColumns",
    "add jar /tmp/goldsmith-not-a.jar": "AddJars",
    "create function gold.evil as 'org.example.Evil'": "CreateFunction",
}


def beeline(port: int, *statements: str) -> subprocess.CompletedProcess[str]:
    """One beeline process for all `statements`, going on after a failed one (`--force`)."""
    return run(str(BIN / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}", "--silent=true", "--force=true",
               "--outputformat=csv2", "-e", "; ".join(statements) + ";", timeout=300)


PROMPT = re.compile(r"^(\d+: jdbc:hive2://\S+> )+")


def csv_rows(output: str) -> list[list[str]]:
    """beeline's csv2 output without the JVM's warnings and the prompts it echoes."""
    lines = (PROMPT.sub("", line) for line in output.splitlines())
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
        written = goldsmith("demo-data", "flights", "--dest", str(tmp_path / "next"), "--limit", "21")
        assert written.returncode == 0, written.stderr
        lines = (tmp_path / "next" / "flights" / "flights.csv").read_text().splitlines()
        more = tmp_path / "more-flights"
        more.mkdir()
        (more / "flights_next.csv").write_text("\n".join([lines[0], *lines[2:22]]) + "\n")
        pipeline = run(str(BIN / "goldsmith"), "run", "conf/pipelines/flights.yml", "--stages",
                       "ingest,refine,features", "--set", f"storage.root={root}", "--set", f"vars.landing={landing}",
                       "--set", f"sources.flights.path={more}")
        assert pipeline.returncode == 0, pipeline.stderr[-3000:]
        after = reader.row(CHECKSUM, root)
        assert after["n"] == FLIGHTS + 20
        rows = beeline(port, CHECKSUM, "select flight_id, carrier, origin from gold.flight_features "
                                       "order by flight_id limit 3")
        got = csv_rows(rows.stdout)
        assert got[:2] == [["n", "h"], [str(after["n"]), str(after["h"])]], (rows.stdout + rows.stderr)[-3000:]
        assert got[2] == ["flight_id", "carrier", "origin"] and len(got) == 6

        versions = {t: reader.version(t, root) for t in ("gold.flight_features", "silver.airlines")}
        refused = beeline(port, *WRITES)
        said = refused.stdout + refused.stderr
        for statement, plan in WRITES.items():
            assert f"goldsmith serve-sql is read-only: {plan}" in said, (statement, said[-3000:])
        assert said.count("goldsmith serve-sql is read-only") == len(WRITES), said[-3000:]
        assert {t: reader.version(t, root) for t in versions} == versions
        assert reader.row("select count(*) as n from silver.airlines where name = 'x'", root) == {"n": 0}
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
        done = beeline(port, "update silver.airlines set name = 'renamed' where carrier = 'UA'",
                       "insert into silver.airlines select * from silver.airlines where carrier = 'AA'")
        assert "read-only" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]
    finally:
        next(served, None)
    got = reader.row("select count(*) as n, count_if(name = 'renamed') as renamed from silver.airlines", root)
    assert got == {"n": 17, "renamed": 1}
