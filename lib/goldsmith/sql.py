"""`goldsmith sql`: run a query on the lakehouse catalog and print it as a table, CSV or JSON lines.

CSV and JSON are exports: every row, streamed to the output a partition at a time, unless `limit` caps them.
The table view is laid out from all its rows at once, so it shows a page (`TABLE_PAGE` rows unless `limit`
says otherwise). Whenever rows are left out, one line on stderr says so: a cut is never silent.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Row, SparkSession

from goldsmith.errors import ConfigError, QueryError, message_line

FORMATS = ("table", "csv", "json")
TABLE_PAGE = 1000  # rows the table view shows when no --limit is given


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@contextmanager
def _query_errors() -> Iterator[None]:
    """Spark's failures of the query as one-line `QueryError`s."""
    try:
        yield
    except PySparkException as exc:
        raise QueryError(f"query failed: {message_line(exc)}") from None
    except Py4JJavaError as exc:
        # A failure while the query runs (an ANSI overflow, a bad cast) arrives from the JVM unconverted:
        # its innermost cause is the error the user can act on.
        cause = exc.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        raise QueryError(f"query failed: {str(cause.getMessage()).strip().splitlines()[0]}") from None


def check_output(fmt: str, limit: int | None) -> None:
    """Raise ConfigError for an unknown format or a `limit` below 1 (callers check before Spark starts)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}; leave it out for every row (csv, json)")


def run_query(
    spark: SparkSession, query: str, fmt: str, limit: int | None, out: TextIO, err: TextIO | None = None
) -> int:
    """Print `query`'s rows to `out` and return how many were printed.

    `limit` caps any format; without it csv and json print every row (streamed with `toLocalIterator`, never
    collected at once) and the table view `TABLE_PAGE` rows. When rows are left out, one line on `err`
    (default stderr) says how many were printed and that the query has more.
    """
    check_output(fmt, limit)
    with _query_errors():
        df = spark.sql(query)
        columns = df.columns
        # One row more than the cap tells whether the query has more.
        if fmt == "table":
            page_size = limit or TABLE_PAGE
            printed, more = _write_table(columns, df.limit(page_size + 1).collect(), page_size, limit is not None, out)
        else:
            rows = df.toLocalIterator() if limit is None else df.limit(limit + 1).toLocalIterator()
            printed, more = _write_lines(fmt, columns, rows, limit, out)
    if more:
        why = f"--limit {limit}" if limit is not None else f"the table view's page of {TABLE_PAGE:,} rows"
        hint = "" if limit is not None else "; --limit N shows up to N, --format csv|json writes every row"
        print(f"goldsmith sql: printed the first {printed:,} rows ({why}); the query has more{hint}",
              file=err if err is not None else sys.stderr)
    return printed


def _write_lines(fmt: str, columns: Sequence[str], rows: Iterable[Row], cap: int | None, out: TextIO
                 ) -> tuple[int, bool]:
    """Rows as CSV (with a header) or JSON lines, as they arrive; (rows printed, whether more were left out)."""
    writer = csv.writer(out, lineterminator="\n")
    if fmt == "csv":
        writer.writerow(columns)
    printed = 0
    for row in rows:
        if cap is not None and printed == cap:
            return printed, True
        if fmt == "json":
            out.write(json.dumps({c: _plain(row[i]) for i, c in enumerate(columns)}) + "\n")
        else:
            writer.writerow(["" if v is None else _plain(v) for v in row])
        printed += 1
    return printed, False


def _write_table(columns: Sequence[str], page: list[Row], page_size: int, limited: bool, out: TextIO
                 ) -> tuple[int, bool]:
    """Rows as an aligned text table with a row count; (rows printed, whether more were left out)."""
    more = len(page) > page_size
    rows = page[:page_size]
    cells = [[("NULL" if v is None else str(_plain(v))) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    line = "+".join("-" * (w + 2) for w in widths)
    out.write(" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write(line + "\n")
    for r in cells:
        out.write(" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
    cut = (", truncated by --limit" if limited else f", truncated to the table view's {TABLE_PAGE:,}") if more else ""
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{cut})\n")
    return len(rows), more
