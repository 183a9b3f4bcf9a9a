"""`goldsmith sql`: run a query on the lakehouse catalog and print it as a table, CSV or JSON lines."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
from typing import Any, TextIO

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from goldsmith.errors import GoldsmithError


class QueryError(GoldsmithError):
    """The query does not parse or names something that does not exist."""


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


def run_query(spark: SparkSession, query: str, fmt: str, limit: int, out: TextIO) -> int:
    """Print at most `limit` rows of `query`; return how many were printed."""
    try:
        df = spark.sql(query)
        rows = df.limit(limit + 1).collect()  # bounded by --limit: never the whole table
    except PySparkException as exc:
        raise QueryError(f"query failed: {str(exc).strip().splitlines()[0]}") from None
    except Py4JJavaError as exc:
        # A failure while the query runs (an ANSI overflow, a bad cast) arrives from the JVM unconverted:
        # its innermost cause is the error the user can act on.
        cause = exc.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        raise QueryError(f"query failed: {str(cause.getMessage()).strip().splitlines()[0]}") from None
    truncated = len(rows) > limit
    rows = rows[:limit]
    columns = df.columns
    if fmt == "json":
        for row in rows:
            out.write(json.dumps({c: _plain(row[i]) for i, c in enumerate(columns)}) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else _plain(v) for v in row])
    else:
        cells = [[("NULL" if v is None else str(_plain(v))) for v in row] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        line = "+".join("-" * (w + 2) for w in widths)
        out.write(" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
        out.write(line + "\n")
        for r in cells:
            out.write(" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{', truncated by --limit' if truncated else ''})\n")
    return len(rows)
