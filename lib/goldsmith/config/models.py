"""Typed, frozen models of a pipeline file. Validated before any SparkSession exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
LINEAGE_COLUMNS = ("_source_file", "_ingested_at", "_batch_id")


def _check_ident(value: str, what: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"{what} {value!r} must be lowercase snake_case (letters, digits, _)")
    return value


def spark_strings(value: object) -> object:
    """Spark options and settings are strings, but YAML reads `header: true` as a bool and `4` as an int.

    Scalars become Spark's spelling (`true`, `4`); anything else is left for validation to reject.
    """
    if not isinstance(value, dict):
        return value
    return {
        k: (str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v)
        for k, v in value.items()
    }


class Model(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SourceConfig(Model):
    """A landing source read into `bronze.<name>`."""

    format: Literal["csv", "json", "parquet"]
    path: str = Field(description="a file, or a folder whose files (matching `glob`) are read")
    schema_ddl: str = Field(alias="schema", description="DDL column list, e.g. 'id INT, name STRING'")
    glob: str = "*"
    options: dict[str, str] = Field(default_factory=dict)

    @field_validator("schema_ddl")
    @classmethod
    def _schema_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("schema must list the columns, e.g. 'id INT, name STRING'")
        return value

    _options_as_strings = field_validator("options", mode="before")(lambda value: spark_strings(value))


class Expectation(Model):
    """A SQL boolean rule every row should satisfy. A row fails when the rule is false (null passes,
    as in a SQL CHECK constraint)."""

    name: str
    rule: str
    action: Literal["warn", "drop", "fail"] = "warn"

    @field_validator("name")
    @classmethod
    def _name_ident(cls, value: str) -> str:
        return _check_ident(value, "expectation name")


class SilverTable(Model):
    """`silver.<name>`: typed and cleaned by a SQL file over the new bronze rows, MERGEd on `keys`."""

    source: str = Field(description="the bronze source this table refines")
    sql: Path
    keys: list[str] = Field(min_length=1)
    sequence_by: list[str] = Field(
        default_factory=lambda: ["_ingested_at", "_source_file"],
        description="among rows with the same keys in one refine, the last by these columns wins",
    )
    expectations: list[Expectation] = Field(default_factory=list)

    @field_validator("keys", "sequence_by")
    @classmethod
    def _column_names(cls, value: list[str]) -> list[str]:
        for column in value:
            _check_ident(column, "column")
        return value

    @model_validator(mode="after")
    def _unique_expectations(self) -> SilverTable:
        names = [e.name for e in self.expectations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"expectation names must be unique, repeated: {', '.join(dupes)}")
        return self


class GoldTable(Model):
    """`gold.<name>`: the result of one SQL file over silver (and earlier gold) tables."""

    sql: Path
    keys: list[str] = Field(default_factory=list, description="checked unique after every build")
    grain: str | None = Field(
        default=None,
        description="a table with one row per gold row, e.g. 'silver.flights': row counts must match",
    )
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="named parameters the SQL reads as :name"
    )


class StorageConfig(Model):
    """Where tables live. `catalog` is a Unity Catalog name on Databricks, empty elsewhere."""

    root: str = Field(default="./lakehouse", min_length=1)
    catalog: str | None = None


class SparkConfig(Model):
    """Spark settings for the session goldsmith builds (ignored where a session already exists)."""

    master: str = "local[*]"
    conf: dict[str, str] = Field(default_factory=dict)

    _conf_as_strings = field_validator("conf", mode="before")(lambda value: spark_strings(value))


class PipelineConfig(Model):
    """A whole pipeline file, after overlays, overrides and `${var}` interpolation."""

    name: str
    description: str = ""
    vars: dict[str, str] = Field(default_factory=dict)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    silver: dict[str, SilverTable] = Field(default_factory=dict)
    gold: dict[str, GoldTable] = Field(default_factory=dict)
    base_dir: Path = Field(default=Path("."), exclude=True, description="folder of the pipeline file")

    @field_validator("name")
    @classmethod
    def _name_ident(cls, value: str) -> str:
        return _check_ident(value, "pipeline name")

    @field_validator("sources", "silver", "gold")
    @classmethod
    def _table_names(cls, value: dict[str, object]) -> dict[str, object]:
        for key in value:
            _check_ident(key, "table name")
        return value

    @model_validator(mode="after")
    def _references(self) -> PipelineConfig:
        for name, table in self.silver.items():
            if table.source not in self.sources:
                known = ", ".join(sorted(self.sources)) or "none"
                raise ValueError(
                    f"silver.{name}.source: {table.source!r} is not a source (sources: {known})"
                )
        return self

    def sql_path(self, relative: Path) -> Path:
        """The SQL file's absolute path (SQL paths are relative to the pipeline file)."""
        return relative if relative.is_absolute() else (self.base_dir / relative).resolve()
