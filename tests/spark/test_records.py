"""Why a landing record is malformed: the Column functions behind the quarantine reasons."""

from __future__ import annotations

from chispa import assert_column_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

from goldsmith.transforms.records import (
    csv_field_count,
    csv_malformed_reason,
    has_invalid_encoding,
    has_unbalanced_quotes,
    with_unparsable_detail,
)

SCHEMA = StructType([
    StructField("id", IntegerType()), StructField("name", StringType()), StructField("price", DoubleType())
])


def test_field_count_ignores_delimiters_inside_quotes(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("a,b,c", 3), ('a,"b,c",d', 3), ('a,"say ""hi"", ok",d', 3), ("a,b", 2), ("", 1), (None, None)],
        "raw STRING, expected INT",
    )
    result = df.withColumn("found", csv_field_count(F.col("raw")))
    assert_column_equality(result, "found", "expected")


def test_field_count_with_a_tab_delimiter(spark: SparkSession) -> None:
    df = spark.createDataFrame([("a\tb\tc", 3), ("a,b\tc", 2)], "raw STRING, expected INT")
    result = df.withColumn("found", csv_field_count(F.col("raw"), "\t"))
    assert_column_equality(result, "found", "expected")


def test_unbalanced_quotes(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [('1,"abc,2', True), ('1,"abc",2', False), ('1,"a""b",2', False), ("1,2,3", False), (None, None)],
        "raw STRING, expected BOOLEAN",
    )
    assert_column_equality(df.withColumn("found", has_unbalanced_quotes(F.col("raw"))), "found", "expected")


def test_invalid_encoding_in_any_text_column(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("ok", "fine", False), ("bad\ufffd", "fine", True), ("ok", "\ufffd", True), (None, None, False)],
        "a STRING, b STRING, expected BOOLEAN",
    )
    result = df.withColumn("found", has_invalid_encoding([F.col("a"), F.col("b")]))
    assert_column_equality(result, "found", "expected")


def test_reasons_name_the_cause(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("1,apple",), ("1,apple,2.5,x",), ('1,"apple,2.5',), ("1,apple,cheap",), ("1,b\ufffd,2",)], "raw STRING"
    )
    result = df.withColumn("reason", csv_malformed_reason(F.col("raw"), SCHEMA, {}))
    result = with_unparsable_detail(result, "raw", "reason", SCHEMA, {"nullValue": "NA"})
    reasons = [r["reason"] for r in result.collect()]
    assert reasons == [
        "wrong field count: expected 3, found 2",
        "wrong field count: expected 3, found 4",
        "broken quoting: a quote is opened and never closed",
        "unparsable value: price=cheap (not double)",
        "invalid UTF-8 byte sequence in the record",
    ]


def test_null_marker_is_not_an_unparsable_value(spark: SparkSession) -> None:
    df = spark.createDataFrame([("NA,apple,NA", "unparsable value: x")], "raw STRING, reason STRING")
    result = with_unparsable_detail(df, "raw", "reason", SCHEMA, {"nullValue": "NA"})
    # No column is at fault, so the generic reason stays.
    assert result.first()["reason"] == "unparsable value: x"
