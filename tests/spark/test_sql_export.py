"""`goldsmith sql` exports: csv and json write every row (streamed), and any cut is announced on stderr."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql.classic.dataframe import DataFrame

from goldsmith.cli import main
from goldsmith.errors import ConfigError
from goldsmith.sql import run_query

ROWS = 2500  # more than the table view's page of 1000, over three partitions
QUERY = f"select id, concat('r', id) as label, if(id % 7 = 0, null, id / 4) as quarter from range(0, {ROWS}, 1, 3)"


def expected(i: int) -> tuple[int, str, float | None]:
    return i, f"r{i}", None if i % 7 == 0 else i / 4


@pytest.fixture
def no_collect(monkeypatch: pytest.MonkeyPatch) -> None:
    """An export that collects the whole result at once fails the test."""

    def refuse(self: DataFrame) -> None:
        raise AssertionError("an export must stream its rows, not collect them")

    monkeypatch.setattr(DataFrame, "collect", refuse)


def test_csv_export_has_every_row(spark: SparkSession, no_collect: None) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_query(spark, QUERY, "csv", None, out, err) == ROWS
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert lines[0] == ["id", "label", "quarter"]
    assert [(int(i), label, float(q) if q else None) for i, label, q in lines[1:]] == [
        expected(i) for i in range(ROWS)
    ]
    assert err.getvalue() == ""


def test_json_export_has_every_row(spark: SparkSession, no_collect: None) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_query(spark, QUERY, "json", None, out, err) == ROWS
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["id"], r["label"], r["quarter"]) for r in rows] == [expected(i) for i in range(ROWS)]
    assert err.getvalue() == ""


def test_a_limit_cuts_an_export_and_says_so(spark: SparkSession) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_query(spark, QUERY, "json", 10, out, err) == 10
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == list(range(10))
    assert err.getvalue().count("\n") == 1
    assert "first 10 rows (--limit 10); the query has more" in err.getvalue()
    # A limit the query does not reach cuts nothing, and nothing is announced.
    out, err = io.StringIO(), io.StringIO()
    assert run_query(spark, QUERY, "csv", ROWS, out, err) == ROWS
    assert out.getvalue().count("\n") == ROWS + 1 and err.getvalue() == ""


def test_the_table_view_shows_a_page_and_says_so(spark: SparkSession) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_query(spark, QUERY, "table", None, out, err) == 1000
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 + 1000 + 1 and lines[-1] == "(1000 rows, truncated to the table view's 1,000)"
    assert err.getvalue().count("\n") == 1
    assert "first 1,000 rows (the table view's page of 1,000 rows); the query has more" in err.getvalue()


def test_a_limit_below_one_is_refused(spark: SparkSession) -> None:
    with pytest.raises(ConfigError, match="--limit must be at least 1, got 0"):
        run_query(spark, QUERY, "csv", 0, io.StringIO())


def test_the_command_exports_every_row_by_default(spark: SparkSession, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "sql", QUERY, "--format", "csv", "--root", str(tmp_path / "lake")]) == 0
    captured = capsys.readouterr()
    assert [int(line.split(",")[0]) for line in captured.out.splitlines()[1:]] == list(range(ROWS))
    assert captured.err == ""
    assert main(["-q", "sql", QUERY, "--format", "json", "--limit", "0", "--root", str(tmp_path / "lake")]) == 2
    assert "--limit must be at least 1, got 0" in capsys.readouterr().err
