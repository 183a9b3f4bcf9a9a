"""Text cleaning, as Column functions and the SQL functions goldsmith adds to every session."""

from __future__ import annotations

import html

import pandas as pd
from pyspark.sql import Column, SparkSession
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import StringType


# A pandas UDF because Spark has no HTML entity decoder and the entities are open-ended (&#039;,
# &rsquo;, &hellip;, ...): regexp_replace chains would miss the numeric ones. Vectorised over Arrow batches.
@pandas_udf(StringType())  # type: ignore[call-overload]
def html_unescape(text: pd.Series) -> pd.Series:
    """`&#039;` -> `'`, `&rsquo;` -> `'`, `&amp;` -> `&`; null stays null."""
    return text.map(lambda value: html.unescape(value) if isinstance(value, str) else value)


def unescaped(column: Column) -> Column:
    """The column with HTML entities decoded."""
    return html_unescape(column)  # type: ignore[no-any-return]


def register_sql_functions(spark: SparkSession) -> None:
    """Make goldsmith's functions callable from pipeline SQL files: `html_unescape(text)`."""
    spark.udf.register("html_unescape", html_unescape)
