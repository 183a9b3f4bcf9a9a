"""Key and grain checks of a built table: its declared keys are unique, and it has one row per row of its grain.

A check counts (one aggregation over the key columns) and raises `KeyNotUnique`; the caller undoes the commit.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from goldsmith.errors import KeyNotUnique


def check_grain(name: str, grain: str, rows: int, grain_df: DataFrame) -> None:
    """`gold.<name>` (`rows` rows) has one row per row of its grain table `grain` (`grain_df`)."""
    grain_rows = grain_df.count()
    if grain_rows != rows:
        raise KeyNotUnique(
            f"gold.{name}: {rows:,} rows but its grain {grain} has {grain_rows:,}; "
            "a join fanned out or dropped rows; the build was undone"
        )


def _rows_and_distinct_keys(df: DataFrame, keys: list[str]) -> tuple[int, int]:
    """`df`'s row count and its count of distinct `keys` (null-safe: null keys are one value), in one pass."""
    row = df.agg(F.count(F.lit(1)).alias("rows"), F.count_distinct(F.struct(*keys)).alias("distinct_keys")).first()
    assert row is not None
    return int(row["rows"]), int(row["distinct_keys"])


def check_keys(df: DataFrame, name: str, keys: list[str]) -> int:
    """Row count of `df` (the table's key columns); raise `KeyNotUnique` when `keys` repeat (one pass)."""
    if not keys:
        return int(df.count())
    rows, distinct = _rows_and_distinct_keys(df, keys)
    if rows != distinct:
        raise KeyNotUnique(
            f"gold.{name}: keys ({', '.join(keys)}) repeat: {rows:,} rows, {distinct:,} distinct keys; "
            "the build was undone"
        )
    return rows


# A rebuilt part of at most this many rows is broadcast against the kept rows' keys (no shuffle of the table).
BROADCAST_REBUILT_ROWS = 2_000_000


def check_rebuilt_keys(
    df: DataFrame, name: str, keys: list[str], column: str, since: int,
    broadcast_up_to: int = BROADCAST_REBUILT_ROWS,
) -> int:
    """Row count of the table `df` after an incremental build; raise `KeyNotUnique` when a key repeats among
    the rebuilt rows (`column` at or after `since`) or is also on a kept row.

    The kept rows were unique when they were built, so only the rebuilt part is counted; it is then matched
    against the kept rows' keys, broadcast when small: a scan of the key columns, not a distinct count of the
    whole table."""
    if not keys:
        return int(df.count())
    total = int(df.count())  # from the Delta log's file statistics, no scan
    # A plain comparison (null is not rebuilt), so the scan skips the files of rows before :since.
    is_rebuilt = F.col(column) >= F.timestamp_micros(F.lit(since))
    rebuilt_rows, distinct = _rows_and_distinct_keys(df.where(is_rebuilt), keys)
    if rebuilt_rows != distinct:
        raise KeyNotUnique(
            f"gold.{name}: keys ({', '.join(keys)}) repeat among the rebuilt rows: {rebuilt_rows:,} rows, "
            f"{distinct:,} distinct keys; the build was undone"
        )
    rebuilt_df = df.where(is_rebuilt).select(*keys)
    probe = F.broadcast(rebuilt_df) if rebuilt_rows <= broadcast_up_to else rebuilt_df
    kept = df.where(~F.coalesce(is_rebuilt, F.lit(False))).select(*keys).alias("kept")
    same_key = [F.col(f"kept.`{k}`").eqNullSafe(F.col(f"rebuilt.`{k}`")) for k in keys]
    clashes = kept.join(probe.alias("rebuilt"), reduce(lambda a, b: a & b, same_key), "left_semi").count()
    if clashes:
        raise KeyNotUnique(
            f"gold.{name}: {clashes:,} kept row(s) before :since have the key ({', '.join(keys)}) of a rebuilt "
            "row (an incremental SQL must return every row at or after :since and only those); the build was "
            "undone"
        )
    return total
