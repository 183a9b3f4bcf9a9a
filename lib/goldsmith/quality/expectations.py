"""Expectations as Column functions: each rule becomes a `_fails_<name>` flag on the row."""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from goldsmith.config.models import Expectation
from goldsmith.errors import ConfigError, message_line

KEYS_RULE = "keys_not_null"


def flag_column(name: str) -> str:
    """The flag column of an expectation."""
    return f"_fails_{name}"


def key_rule(keys: list[str]) -> Expectation:
    """The implicit rule every silver table has: its MERGE keys are not null (a null key matches nothing)."""
    return Expectation(
        name=KEYS_RULE, rule=" and ".join(f"`{k}` is not null" for k in keys), action="drop"
    )


def fails(rule: str) -> Column:
    """True where `rule` is false. Null passes, as in a SQL CHECK constraint."""
    return F.coalesce(~F.expr(rule), F.lit(False))


def any_of(flags: list[Column]) -> Column:
    """True when any flag is true."""
    return reduce(lambda a, b: a | b, flags, F.lit(False))


def with_expectation_flags(df: DataFrame, expectations: list[Expectation]) -> DataFrame:
    """Add one boolean `_fails_<name>` column per expectation, plus `_dropped` (a drop rule failed)."""
    try:
        flagged = df.select("*", *[fails(e.rule).alias(flag_column(e.name)) for e in expectations])
    except Exception as exc:  # an analysis error here is a bad rule in the pipeline file
        names = ", ".join(e.name for e in expectations)
        raise ConfigError(f"expectations ({names}): a rule does not compile: {message_line(exc)}") from None
    drop_flags = [F.col(flag_column(e.name)) for e in expectations if e.action == "drop"]
    return flagged.withColumn("_dropped", any_of(drop_flags))


def failed_rule_names(expectations: list[Expectation], actions: tuple[str, ...]) -> Column:
    """Comma-separated names of the rules with these actions that the row fails."""
    parts = [F.when(F.col(flag_column(e.name)), F.lit(e.name)) for e in expectations if e.action in actions]
    return F.concat_ws(", ", *parts) if parts else F.lit("")


def with_duplicate_flag(df: DataFrame, keys: list[str], sequence_by: list[str]) -> DataFrame:
    """Flag `_duplicate` on every kept row but the last one per key (by `sequence_by`).

    Dropped rows (`_dropped`) sort after kept ones, so a quarantined row never hides a valid one.
    """
    order = [F.col("_dropped").asc(), *[F.col(c).desc_nulls_last() for c in sequence_by]]
    window = Window.partitionBy(*[F.col(k) for k in keys]).orderBy(*order)
    return df.withColumn("_duplicate", ~F.col("_dropped") & (F.row_number().over(window) > 1))
