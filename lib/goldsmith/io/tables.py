"""`TableRef`: a table's name as the pipeline file writes it, `layer.table` (`gold.flight_features`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableRef:
    """A lakehouse table: its layer (`bronze`, `silver`, `gold`, `ops`) and its name in the layer."""

    layer: str
    table: str

    @classmethod
    def parse(cls, ref: str) -> TableRef:
        """`"gold.flight_features"` -> `TableRef("gold", "flight_features")` (split at the first dot).

        Raises:
            ValueError: `ref` has no dot, or nothing before or after it (a config validator turns this into the
                pipeline file's error).
        """
        layer, dot, table = ref.partition(".")
        if not (dot and layer and table):
            raise ValueError(f"{ref!r} is not a table name: write layer.table, e.g. gold.flight_features")
        return cls(layer, table)

    def __str__(self) -> str:
        return f"{self.layer}.{self.table}"
