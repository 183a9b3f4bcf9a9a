"""A small pipeline for the Spark tier's stage tests: one CSV source of items, `silver.items` (MERGEd on item_id,
latest `updated_at` wins, two expectations), `gold.totals` per name, and optionally `gold.item_facts`, one row
per silver item (`grain: silver.items`). Written under a test's folder; `items` in conftest.py makes one.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from goldsmith.config import load_pipeline
from goldsmith.config.models import PipelineConfig

HEADER = "item_id,name,qty,updated_at\n"
GOOD = "1,apple,3,2024-01-01T00:00:00Z\n2,pear,5,2024-01-01T00:00:00Z\n3,fig,NA,2024-01-01T00:00:00Z\n"
ITEMS_SQL = """
    with source as (select * from bronze_batch)
    select item_id, upper(name) as name, qty, updated_at, _source_file, _ingested_at, _batch_id
    from source
"""
TOTALS_SQL = "select name, sum(qty) as total_qty, count(*) as items from silver.items group by name"
FACTS_SQL = "select item_id, name, qty from silver.items"


class Items:
    """The items pipeline under `tmp` (its YAML, SQL files, landing folder and lakehouse)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.lake = tmp / "lake"

    def write(self, name_action: str = "warn", facts: bool = False) -> PipelineConfig:
        """Write the YAML and the SQL files (the shipped versions) and return the loaded config."""
        (self.tmp / "sql").mkdir(parents=True, exist_ok=True)
        (self.tmp / "landing" / "items").mkdir(parents=True, exist_ok=True)
        self.sql("items", ITEMS_SQL)
        self.sql("totals", TOTALS_SQL)
        self.sql("item_facts", FACTS_SQL)
        item_facts = textwrap.indent(textwrap.dedent("""
            item_facts:
              sql: sql/item_facts.sql
              keys: [item_id]
              grain: silver.items
        """), "  ") if facts else ""
        (self.tmp / "mini.yml").write_text(textwrap.dedent(f"""
            name: mini
            storage: {{root: {self.lake}}}
            spark: {{master: "local[2]"}}
            sources:
              items:
                format: csv
                path: {self.tmp / "landing" / "items"}
                glob: "*.csv"
                options: {{header: true, nullValue: NA}}
                schema: item_id INT, name STRING, qty INT, updated_at TIMESTAMP
            silver:
              items:
                source: items
                sql: sql/items.sql
                keys: [item_id]
                sequence_by: [updated_at]
                expectations:
                  - {{name: qty_not_negative, rule: qty >= 0, action: drop}}
                  - {{name: has_name, rule: name is not null, action: {name_action}}}
            gold:
              totals:
                sql: sql/totals.sql
                keys: [name]
        """) + item_facts)
        return self.load()

    def load(self) -> PipelineConfig:
        return load_pipeline(self.tmp / "mini.yml")

    def sql(self, name: str, text: str) -> None:
        """Replace `sql/<name>.sql`."""
        (self.tmp / "sql" / f"{name}.sql").write_text(textwrap.dedent(text))

    def land(self, file: str, body: str | bytes) -> None:
        """A landing CSV file: the header, then `body`."""
        data = body if isinstance(body, bytes) else body.encode()
        (self.tmp / "landing" / "items" / file).write_bytes(HEADER.encode() + data)
