"""A gold build's grain check on its failing paths: a SQL that drops rows or fans them out while its keys stay
unique fails the run with the counts, and the commit is undone."""

from __future__ import annotations

import pytest
from items_pipeline import FACTS_SQL, GOOD, Items
from pyspark.sql import SparkSession

from goldsmith.errors import KeyNotUnique
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.jobs.pipeline import run_pipeline


def test_a_gold_sql_that_drops_or_fans_out_rows_fails_its_grain_and_is_undone(
    spark: SparkSession, items: Items,
) -> None:
    config = items.write(facts=True)
    items.land("a.csv", GOOD)
    run_pipeline(config, ["ingest", "refine", "features"], spark)
    lakehouse = Lakehouse(spark, str(items.lake))
    good_version = lakehouse.version("gold", "item_facts")
    good = sorted(tuple(r) for r in lakehouse.read("gold", "item_facts").collect())
    assert len(good) == 3  # one row per silver item

    # Rows dropped: only pear has qty > 3. Its key is unique, so only the grain check can see the loss.
    items.sql("item_facts", FACTS_SQL + " where qty > 3")
    with pytest.raises(KeyNotUnique, match=r"gold.item_facts: 1 rows but its grain silver.items has 3; a join "
                                           r"fanned out or dropped rows; the build was undone"):
        run_pipeline(items.load(), ["features"], spark)
    assert lakehouse.version("gold", "item_facts") == good_version + 2  # the bad build, then its restore
    assert sorted(tuple(r) for r in lakehouse.read("gold", "item_facts").collect()) == good

    # Rows fanned out, every key still unique (the copies get new ids): 6 rows for 3 items.
    items.sql("item_facts", FACTS_SQL + " union all select item_id + 1000, name, qty from silver.items")
    with pytest.raises(KeyNotUnique, match=r"gold.item_facts: 6 rows but its grain silver.items has 3"):
        run_pipeline(items.load(), ["features"], spark)
    assert lakehouse.version("gold", "item_facts") == good_version + 4
    assert sorted(tuple(r) for r in lakehouse.read("gold", "item_facts").collect()) == good
    builds = lakehouse.read("ops", "gold_builds").where("table_name = 'item_facts'").count()
    assert builds == 1  # failed builds are not recorded as builds
