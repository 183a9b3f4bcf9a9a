"""Malformed landing records: which rows are (`with_malformed_flag`) and why, as Column expressions over the raw
record."""

from __future__ import annotations

import re
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructType

from goldsmith.io.landing import CORRUPT_COLUMN

REPLACEMENT_CHAR = "\ufffd"  # what Spark's decoder puts where bytes were not valid UTF-8


def has_invalid_encoding(columns: list[Column]) -> Column:
    """True when any of the string columns holds U+FFFD, the decoder's mark for invalid bytes."""
    checks = [F.coalesce(c.contains(REPLACEMENT_CHAR), F.lit(False)) for c in columns]
    return reduce(lambda a, b: a | b, checks, F.lit(False))


def csv_field_count(raw: Column, delimiter: str = ",", quote: str = '"') -> Column:
    """Number of fields in one CSV record: quoted sections removed, then delimiters counted."""
    q = re.escape(quote)
    no_quoted = F.regexp_replace(raw, f"{q}(?:[^{q}]|{q}{q})*{q}", "")
    return F.size(F.split(no_quoted, re.escape(delimiter), -1))


def has_unbalanced_quotes(raw: Column, quote: str = '"') -> Column:
    """True when the record has an odd number of quote characters (a quote opened and never closed)."""
    count = F.length(raw) - F.length(F.regexp_replace(raw, re.escape(quote), ""))
    return (count % 2) == 1


def csv_malformed_reason(
    raw: Column, schema: StructType, options: dict[str, str]
) -> Column:
    """A sentence saying why a CSV record failed to parse, checked from the most to the least basic cause."""
    delimiter = options.get("sep", options.get("delimiter", ","))
    quote = options.get("quote", '"')
    expected = len(schema.fields)
    found = csv_field_count(raw, delimiter, quote)
    return (
        F.when(raw.contains(REPLACEMENT_CHAR), F.lit("invalid UTF-8 byte sequence in the record"))
        .when(has_unbalanced_quotes(raw, quote), F.lit("broken quoting: a quote is opened and never closed"))
        .when(found != expected, F.format_string(f"wrong field count: expected {expected}, found %d", found))
        .otherwise(F.lit("unparsable value: a field does not match its declared type"))
    )


def with_unparsable_detail(df: DataFrame, raw_col: str, reason_col: str, schema: StructType,
                           options: dict[str, str], most: int = 80) -> DataFrame:
    """Name the columns that did not parse in the reasons of 'unparsable value' rows (each value quoted to at
    most `most` characters)."""
    as_text = ", ".join(f"`{f.name}` STRING" for f in schema.fields)
    parse_options = {k: v for k, v in options.items() if k in {"sep", "delimiter", "quote", "escape"}}
    null_value = options.get("nullValue", "")
    checks = []
    for f in schema.fields:
        if isinstance(f.dataType, StringType):
            continue
        text = F.trim(F.col("_p")[f.name])
        bad = text.isNotNull() & (text != F.lit(null_value)) & (text != F.lit("")) & \
            text.try_cast(f.dataType).isNull()
        quoted = F.when(F.length(text) > most, F.concat(F.substring(text, 1, most), F.lit("..."))).otherwise(text)
        checks.append(F.when(bad, F.format_string("%s=%s (not %s)", F.lit(f.name), quoted,
                                                  F.lit(f.dataType.simpleString()))))
    if not checks:
        return df
    detail = F.concat_ws(", ", *checks)
    return (
        df.withColumn("_p", F.from_csv(F.col(raw_col), as_text, parse_options))
        .withColumn(
            reason_col,
            F.when(
                F.col(reason_col).startswith("unparsable value") & (detail != ""),
                F.concat(F.lit("unparsable value: "), detail),
            ).otherwise(F.col(reason_col)),
        )
        .drop("_p")
    )


def with_malformed_flag(df: DataFrame, schema: StructType) -> DataFrame:
    """`_is_malformed`: the reader could not parse the record, or a text field holds invalid UTF-8."""
    text_columns = [F.col(f.name) for f in schema.fields if isinstance(f.dataType, StringType)]
    return df.withColumn(
        "_is_malformed", F.col(CORRUPT_COLUMN).isNotNull() | has_invalid_encoding(text_columns)
    )
