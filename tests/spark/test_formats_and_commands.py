"""JSON and Parquet sources, `goldsmith validate`'s SQL parsing, and `goldsmith sql`'s output formats."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from goldsmith.config import load_pipeline
from goldsmith.errors import ConfigError, QueryError
from goldsmith.jobs.pipeline import run_pipeline
from goldsmith.sql import run_query
from goldsmith.validate import parse_sql_files


def pipeline(tmp: Path, fmt: str, sql: str = "select * from bronze_batch") -> Path:
    (tmp / "events.sql").write_text(sql)
    (tmp / "p.yml").write_text(textwrap.dedent(f"""
        name: formats
        storage: {{root: {tmp / "lake"}}}
        sources:
          events:
            format: {fmt}
            path: {tmp / "landing"}
            schema: event_id BIGINT, kind STRING, amount DOUBLE
        silver:
          events: {{source: events, sql: events.sql, keys: [event_id]}}
    """))
    return tmp / "p.yml"


def test_json_source_quarantines_malformed_lines(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "a.json").write_text(
        '{"event_id": 1, "kind": "click", "amount": 1.5}\n'
        '{"event_id": 2, "kind": "view"\n'  # truncated
        '{"event_id": 3, "kind": "buy", "amount": "lots"}\n'  # wrong type
        '{"event_id": 4, "kind": null, "amount": null}\n'
    )
    ctx = run_pipeline(load_pipeline(pipeline(tmp_path, "json")), spark=spark, stages=["ingest", "refine"])
    ingest = ctx.results[0]
    assert (ingest.records_in, ingest.records_out, ingest.quarantined) == (4, 2, 2)
    raws = sorted(r[0] for r in spark.sql("select raw_record from bronze.events_quarantine").collect())
    assert raws == ['{"event_id": 2, "kind": "view"', '{"event_id": 3, "kind": "buy", "amount": "lots"}']
    assert sorted(r[0] for r in spark.sql("select event_id from silver.events").collect()) == [1, 4]


def test_parquet_source_with_declared_schema(spark: SparkSession, tmp_path: Path) -> None:
    spark.createDataFrame([(1, "a", 1.0), (2, None, None)], "event_id BIGINT, kind STRING, amount DOUBLE") \
        .coalesce(1).write.parquet(str(tmp_path / "landing"))
    ctx = run_pipeline(load_pipeline(pipeline(tmp_path, "parquet")), spark=spark, stages=["ingest", "refine"])
    assert (ctx.results[0].records_in, ctx.results[0].records_out) == (2, 2)
    assert spark.sql("select count(*) from silver.events where _source_file like '%.parquet'").first()[0] == 2


def test_validate_names_the_sql_file_with_a_syntax_error(spark: SparkSession, tmp_path: Path) -> None:
    config = load_pipeline(pipeline(tmp_path, "json", sql="select * frm bronze_batch where"))
    with pytest.raises(ConfigError, match=r"events\.sql \(silver\.events\)"):
        parse_sql_files(config)


def test_validate_accepts_the_shipped_pipelines(spark: SparkSession, repo: Path) -> None:
    assert parse_sql_files(load_pipeline(repo / "conf/pipelines/flights.yml")) == 6
    assert parse_sql_files(load_pipeline(repo / "conf/pipelines/reviews.yml")) == 1


QUERY = "select * from values (1, 'a,b', cast(null as double)), (2, 'c', 2.5) as t(id, label, score) order by id"


def test_sql_formats(spark: SparkSession) -> None:
    out = io.StringIO()
    run_query(spark, QUERY, "json", 10, out)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"id": 1, "label": "a,b", "score": None}, {"id": 2, "label": "c", "score": 2.5},
    ]
    out = io.StringIO()
    run_query(spark, QUERY, "csv", 10, out)
    assert out.getvalue() == 'id,label,score\n1,"a,b",\n2,c,2.5\n'
    out = io.StringIO()
    assert run_query(spark, QUERY, "table", 1, out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].split(" | ") == ["id", "label", "score"]
    assert "NULL" in lines[2] and lines[-1] == "(1 row, truncated by --limit)"


def test_sql_error_is_one_clear_line(spark: SparkSession) -> None:
    with pytest.raises(QueryError, match="TABLE_OR_VIEW_NOT_FOUND") as caught:
        run_query(spark, "select * from silver.nope", "table", 10, io.StringIO())
    assert "\n" not in str(caught.value)


def test_sql_runtime_error_is_one_clear_line(spark: SparkSession) -> None:
    # Fails while it runs, not while it is analysed: ANSI mode refuses the overflow.
    with pytest.raises(QueryError, match="ARITHMETIC_OVERFLOW") as caught:
        run_query(spark, "select sum(id + 9223372036854775000) from range(10)", "table", 10, io.StringIO())
    assert "\n" not in str(caught.value)
