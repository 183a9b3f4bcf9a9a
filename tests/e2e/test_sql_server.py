"""`goldsmith serve-sql`: beeline reads gold tables over JDBC while a pipeline writes the same lakehouse; writes
through the endpoint are refused; SIGTERM stops it cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import BIN, FLIGHTS, free_port, goldsmith, listening, run, sql_row, start_goldsmith

pytestmark = pytest.mark.slow
CHECKSUM = "select count(*) as n, sum(cast(xxhash64(flight_id, carrier, route_delay_rate, temp_f) as decimal(38, 0)))" \
    " as h from gold.flight_features"


def beeline(port: int, statement: str) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}", "--silent=true",
               "--outputformat=csv2", "-e", statement, timeout=300)


PROMPT = re.compile(r"^(\d+: jdbc:hive2://\S+> )+")


def csv_rows(output: str) -> list[list[str]]:
    """beeline's csv2 output without the JVM's warnings and the prompts it echoes: header first."""
    lines = (PROMPT.sub("", line) for line in output.splitlines())
    return [line.split(",") for line in lines if line and not line.startswith(("WARNING", "SLF4J"))]


def test_beeline_reads_gold_tables_while_a_pipeline_writes(landing: Path, tmp_path: Path) -> None:
    root, port, log = tmp_path / "lake", free_port(), tmp_path / "serve-sql.log"
    server = start_goldsmith("serve-sql", "--root", str(root), "--port", str(port), "--refresh-seconds", "2",
                             log=log)
    try:
        deadline = time.monotonic() + 180
        while not listening(port):
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "serve-sql did not listen within 180 s"
            time.sleep(0.5)

        # The pipeline writes the lakehouse the server has open: no lock, no metastore between them.
        pipeline = goldsmith("run", "conf/pipelines/flights.yml", "--stages", "ingest,refine,features",
                             "--set", f"storage.root={root}", "--set", f"vars.landing={landing}")
        assert pipeline.returncode == 0, pipeline.stderr[-3000:]
        expected = sql_row(CHECKSUM, root)
        assert expected["n"] == FLIGHTS

        # The tables the pipeline created are attached within a refresh or two.
        deadline = time.monotonic() + 60
        while True:
            read = beeline(port, CHECKSUM)
            if read.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert read.returncode == 0, (read.stdout + read.stderr)[-3000:]
        assert csv_rows(read.stdout) == [["n", "h"], [str(expected["n"]), str(expected["h"])]]

        rows = beeline(port, "select flight_id, carrier, origin from gold.flight_features order by flight_id limit 3")
        assert rows.returncode == 0, rows.stderr[-3000:]
        assert len(csv_rows(rows.stdout)) == 4 and csv_rows(rows.stdout)[0] == ["flight_id", "carrier", "origin"]

        for write in ("drop table gold.flight_features",
                      "insert into silver.airlines select * from silver.airlines",
                      "create table gold.copy as select * from gold.flight_features"):
            refused = beeline(port, write)
            assert "goldsmith serve-sql is read-only" in refused.stdout + refused.stderr, write
        assert sql_row("select count(*) as n from gold.flight_features", root) == {"n": FLIGHTS}
        assert sql_row("select count(*) as n from silver.airlines", root) == {"n": 16}
        assert not (root / "gold" / "copy").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    err = log.read_text()
    assert server.returncode == 0, err[-3000:]
    assert "serving" in err and "read-only" in err and "stopping the SQL server" in err
    assert not listening(port)
