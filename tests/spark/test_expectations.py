"""Expectations and deduplication flags."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from goldsmith.config.models import Expectation
from goldsmith.errors import ConfigError
from goldsmith.quality.expectations import (
    failed_rule_names,
    key_rule,
    with_duplicate_flag,
    with_expectation_flags,
)

ROWS = [
    (1, "a", 5, 1),
    (1, "a", 7, 2),  # same key, later: wins
    (2, "b", -1, 1),  # fails qty_positive (drop)
    (2, "b", 3, 0),  # same key, earlier, but the later one is dropped: this one is kept
    (3, None, 4, 1),  # null name: warn only
    (None, "x", 1, 1),  # null key: dropped by keys_not_null
    (4, "d", None, 1),  # null qty: a null rule result passes
]
SCHEMA = "id INT, name STRING, qty INT, seq INT"
RULES = [
    Expectation(name="qty_positive", rule="qty > 0", action="drop"),
    Expectation(name="has_name", rule="name is not null", action="warn"),
]


def flagged(spark: SparkSession):  # type: ignore[no-untyped-def]
    df = spark.createDataFrame(ROWS, SCHEMA)
    rules = [key_rule(["id"]), *RULES]
    return df.transform(with_expectation_flags, rules).transform(with_duplicate_flag, ["id"], ["seq"]), rules


def test_flags_per_rule_and_null_passes(spark: SparkSession) -> None:
    df, _ = flagged(spark)
    rows = {(r["id"], r["seq"], r["qty"]): r for r in df.collect()}
    assert rows[(2, 1, -1)]["_fails_qty_positive"] is True
    assert rows[(2, 1, -1)]["_dropped"] is True
    assert rows[(4, 1, None)]["_fails_qty_positive"] is False
    assert rows[(3, 1, 4)]["_fails_has_name"] is True
    assert rows[(3, 1, 4)]["_dropped"] is False  # warn never drops
    assert rows[(None, 1, 1)]["_fails_keys_not_null"] is True


def test_duplicates_keep_the_last_valid_row(spark: SparkSession) -> None:
    df, _ = flagged(spark)
    kept = sorted(
        (r["id"], r["seq"]) for r in df.where("not _dropped and not _duplicate").collect() if r["id"] is not None
    )
    assert kept == [(1, 2), (2, 0), (3, 1), (4, 1)]
    assert df.where("_duplicate").count() == 1  # only (1, seq 1)


def test_failed_rule_names(spark: SparkSession) -> None:
    df, rules = flagged(spark)
    names = df.select("id", "seq", failed_rule_names(rules, ("drop",)).alias("names"))
    got = {(r["id"], r["seq"]): r["names"] for r in names.collect()}
    assert got[(2, 1)] == "qty_positive"
    assert got[(None, 1)] == "keys_not_null"
    assert got[(3, 1)] == ""


def test_a_rule_that_does_not_compile_is_a_config_error(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1,)], "id INT")
    with pytest.raises(ConfigError, match=r"no_such_column|does not compile"):
        df.transform(with_expectation_flags, [Expectation(name="bad", rule="no_such_column > 1")]).collect()


def test_key_rule_covers_every_key(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1, None), (1, 2), (None, 2)], "a INT, b INT")
    rule = key_rule(["a", "b"])
    result = df.select(F.expr(rule.rule).alias("ok")).collect()
    assert [r["ok"] for r in result] == [False, True, False]
