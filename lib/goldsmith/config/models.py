"""Typed, frozen models of a pipeline file. Validated before any SparkSession exists."""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from goldsmith.io.tables import TableRef

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


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
    header_names: dict[str, str] = Field(
        default_factory=dict,
        description="CSV header cells that name a declared column differently, e.g. {drugName: drug_name}; "
                    "a file's header is matched to the schema by name, after this renaming",
    )

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


class IncrementalBuild(Model):
    """Rebuild only the gold rows an input change can affect, for point-in-time tables.

    The SQL reads `:since` (a TIMESTAMP) and returns exactly the rows whose `column` is at or after it, as a
    full build would compute them. goldsmith finds `since` from the inputs' Delta change feeds: the earliest
    `inputs[table]` value among the rows inserted, updated or deleted since the last build. A point-in-time
    table guarantees that a change at time t can only change gold rows at or after t. Any other change (an
    input not listed, the SQL, its params, a missing change feed) rebuilds the whole table.
    """

    column: str = Field(description="the gold row's point in time; rows at or after :since are replaced")
    inputs: dict[str, str] = Field(
        min_length=1, description="input table -> its time column, e.g. {silver.flights: sched_dep_at}"
    )


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
    incremental: IncrementalBuild | None = Field(
        default=None, description="rebuild only the rows at or after the earliest changed input row"
    )


LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})
METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "accuracy", "f1", "precision", "recall", "log_loss"),
    "multiclass": ("macro_f1", "weighted_f1", "accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
ALGORITHMS: dict[str, dict[str, tuple[str, ...]]] = {
    "spark-ml": {
        "binary": ("logistic_regression", "gbt", "random_forest"),
        "multiclass": ("logistic_regression", "random_forest"),
        "regression": ("linear_regression", "gbt", "random_forest"),
    },
    "sklearn-udf": {
        "binary": ("logistic_regression", "hist_gradient_boosting", "random_forest"),
        "multiclass": ("logistic_regression", "hist_gradient_boosting", "random_forest"),
        "regression": ("ridge", "hist_gradient_boosting", "random_forest"),
    },
    "torch-distributor": {"binary": ("mlp",), "multiclass": ("mlp",), "regression": ("mlp",)},
    "horovod": {"binary": ("mlp",), "multiclass": ("mlp",), "regression": ("mlp",)},
}
ParamValue = str | int | float | bool | None


class FeatureSet(Model):
    """The model's input columns, by kind: numbers are imputed and scaled, categories one-hot encoded,
    text tokenised into TF-IDF."""

    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    text: list[str] = Field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.text]

    @model_validator(mode="after")
    def _some_unique(self) -> FeatureSet:
        names = self.all
        if not names:
            raise ValueError("list at least one feature under numeric, categorical or text")
        for name in names:
            _check_ident(name, "feature")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"a feature is listed twice: {', '.join(dupes)}")
        return self


class SplitConfig(Model):
    """Train / validation / test. `time`: by a date or timestamp column (train before `validation_from`,
    validation before `test_from`, test before `until`); `random`: by a hash of the keys, stable across runs."""

    method: Literal["time", "random"]
    column: str | None = None
    validation_from: str | None = None
    test_from: str | None = None
    until: str | None = Field(default=None, description="rows at or after this are never trained on (time split)")
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 42

    @model_validator(mode="after")
    def _complete(self) -> SplitConfig:
        if self.method == "time":
            missing = [k for k in ("column", "validation_from", "test_from") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a time split needs {', '.join(missing)}")
            bounds = [b for b in (self.validation_from, self.test_from, self.until) if b is not None]
            if bounds != sorted(bounds):
                raise ValueError("validation_from < test_from < until must hold")
        else:
            if any(f <= 0 for f in self.fractions) or abs(sum(self.fractions) - 1.0) > 1e-9:
                raise ValueError("fractions are three positive numbers (train, validation, test) summing to 1")
        return self


class TrainerConfig(Model):
    """How to train: a backend, an algorithm and its parameters, optionally a search grid of candidates."""

    backend: Literal["spark-ml", "sklearn-udf", "torch-distributor", "horovod"]
    algorithm: str | None = None
    params: dict[str, ParamValue | list[int]] = Field(default_factory=dict)
    search: dict[str, dict[str, list[ParamValue]]] = Field(
        default_factory=dict,
        description="algorithm -> parameter -> values; every combination is a candidate, the best on validation wins",
    )
    group_by: str | None = Field(default=None, description="sklearn-udf: one model per value of this column")
    min_group_rows: int = Field(default=50, ge=2, description="smaller groups use the model of all groups")
    class_weight: Literal["balanced", "none"] = "balanced"
    max_train_rows: int | None = Field(
        default=None, ge=100, description="sklearn-udf / torch: train on a seeded sample of at most this many rows"
    )
    num_processes: int = Field(default=2, ge=1, description="torch-distributor / horovod: training processes (ranks)")
    local_mode: bool = Field(
        default=True,
        description="torch-distributor: torchrun on the driver, or barrier tasks (horovod's ranks are always tasks)",
    )

    @model_validator(mode="after")
    def _supported(self) -> TrainerConfig:
        if self.group_by is not None:
            _check_ident(self.group_by, "group_by column")
            if self.backend != "sklearn-udf":
                raise ValueError("group_by (one model per group) is a sklearn-udf mode")
            if self.search:
                raise ValueError("group_by and search do not combine: per-group models use algorithm and params")
        if self.algorithm is None and not self.search:
            raise ValueError("name an algorithm (or a search grid)")
        return self

    def candidates(self) -> list[tuple[str, dict[str, Any]]]:
        """(algorithm, params) of every candidate: the search grid's combinations, or the one algorithm."""
        if not self.search:
            assert self.algorithm is not None
            return [(self.algorithm, dict(self.params))]
        found = []
        for algorithm, grid in self.search.items():
            keys = list(grid)
            for values in product(*(grid[k] for k in keys)) if keys else [()]:
                base = dict(self.params) if algorithm == self.algorithm else {}
                found.append((algorithm, {**base, **dict(zip(keys, values, strict=True))}))
        return found


class Gates(Model):
    """What a new model must pass to become `champion` (it is `challenger` either way)."""

    min_metrics: dict[str, float] = Field(default_factory=dict, description="test metric >= value")
    max_metrics: dict[str, float] = Field(default_factory=dict, description="test metric <= value")
    min_improvement: float = Field(
        default=0.0, description="must beat the champion's test value of the primary metric by this margin"
    )


class ScoreConfig(Model):
    """Batch scoring with `models:/<name>@champion`."""

    table: str | None = Field(default=None, description="default: the training table")
    where: str | None = Field(default=None, description="the scoring window, a SQL predicate over the table")
    output: str | None = Field(default=None, description="default: gold.<model>_predictions")


BIAS_PRE_TRAINING = ("ci", "dpl", "kl", "js", "lp", "tvd", "ks", "cddl")
BIAS_POST_TRAINING = ("dppl", "di", "dca", "dcr", "rd", "sd", "ad", "dar", "drr", "te", "cddpl")


class BiasLimit(Model):
    """Bounds a post-training bias metric must stay within for a model to become champion."""

    min: float | None = None
    max: float | None = None
    max_abs: float | None = Field(default=None, ge=0, description="|value| <= max_abs, i.e. -max_abs..max_abs")

    @model_validator(mode="after")
    def _some_bound(self) -> BiasLimit:
        if self.min is None and self.max is None and self.max_abs is None:
            raise ValueError("give min, max or max_abs")
        if self.max_abs is not None and (self.min is not None or self.max is not None):
            raise ValueError("max_abs replaces min and max: give one or the other")
        return self

    def bounds(self) -> tuple[float | None, float | None]:
        if self.max_abs is not None:
            return -self.max_abs, self.max_abs
        return self.min, self.max


class BiasConfig(Model):
    """Bias of the labels (before training, on the training split) and of the predictions (after training, on the
    test split) for a facet: the sensitive group d (rows whose facet is in `sensitive`) against the rest a.
    Definitions follow SageMaker Clarify; multiclass labels are measured one class against the rest."""

    facet: str = Field(description="the group column, e.g. origin")
    sensitive: list[str] = Field(
        default_factory=list, description="facet values forming group d; empty: each frequent value against the rest"
    )
    group: str | None = Field(default=None, description="strata for conditional demographic disparity (CDDL, CDDPL)")
    favorable: str | None = Field(default=None, description="binary: the favorable label value (default: positive)")
    max_facet_values: int = Field(default=10, ge=1, le=100)
    gates: dict[str, BiasLimit] = Field(
        default_factory=dict, description="post-training metric -> bounds; outside them the model stays challenger"
    )

    @model_validator(mode="after")
    def _known(self) -> BiasConfig:
        _check_ident(self.facet, "bias.facet")
        if self.group is not None:
            _check_ident(self.group, "bias.group")
        for name in self.gates:
            if name not in BIAS_POST_TRAINING:
                raise ValueError(f"bias.gates: {name!r} is not a post-training bias metric "
                                 f"({', '.join(BIAS_POST_TRAINING)})")
        return self


class SliceConfig(Model):
    """The model's test metric per class and per value of chosen columns; a slice more than `margin` below the
    overall value is flagged ("poor on one carrier", "poor on recent data")."""

    columns: list[str] = Field(default_factory=list)
    metric: str | None = Field(default=None, description="default: the primary metric")
    margin: float = Field(default=0.05, ge=0)
    min_rows: int = Field(default=100, ge=1, description="smaller slices are reported, never flagged")
    max_values: int = Field(default=50, ge=1, description="per column, the most frequent values")

    @field_validator("columns")
    @classmethod
    def _idents(cls, value: list[str]) -> list[str]:
        for column in value:
            _check_ident(column, "slices column")
        return value


class PeriodConfig(Model):
    """Drift is also reported per period of the scoring window (e.g. per week of flight_date)."""

    column: str
    unit: Literal["day", "week", "month", "quarter", "year"] = "week"


class MonitorConfig(Model):
    """Drift of the scoring window against the training baseline: per feature, of the predictions, of the labels
    once they arrive, and of the realised metric."""

    features: list[str] | None = Field(default=None, description="default: every numeric and categorical feature")
    bins: int = Field(default=10, ge=2, le=100)
    period: PeriodConfig | None = None
    thresholds: dict[Literal["psi", "ks", "js"], float] = Field(
        default_factory=lambda: {"psi": 0.25, "js": 0.1, "ks": 0.2},  # type: ignore[arg-type,dict-item]
        description="a value above its threshold is a violation",
    )
    performance_drop: float | None = Field(
        default=0.05, ge=0, description="primary metric on the labelled window vs the champion's test value"
    )
    min_rows: int = Field(default=100, ge=1, description="a period with fewer rows is reported, never a violation")
    on_breach: Literal["fail", "flag"] = Field(
        default="fail", description="fail: the stage exits non-zero; flag: the champion is tagged for retraining"
    )


class LabelIssuesConfig(Model):
    """After training, out-of-fold probabilities of the winning algorithm flag rows whose label is likely wrong
    into gold.<model>_label_review."""

    folds: int = Field(default=5, ge=2, le=20)


class ModelSpec(Model):
    """A model trained from a gold (or silver) table, registered under its name and scored in batch."""

    table: str = Field(description="layer.table, e.g. gold.flight_features")
    label: str
    keys: list[str] = Field(min_length=1, description="identify a row; predictions are MERGEd on them")
    features: FeatureSet
    task: Literal["binary", "multiclass", "regression"]
    where: str | None = Field(default=None, description="rows usable for training, e.g. 'label is not null'")
    positive_class: str | None = Field(default=None, description="binary: the positive label (default 1 / true)")
    split: SplitConfig
    primary_metric: str | None = None
    trainer: TrainerConfig
    gates: Gates = Field(default_factory=Gates)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    bias: BiasConfig | None = None
    slices: SliceConfig | None = None
    monitor: MonitorConfig | None = None
    label_issues: LabelIssuesConfig | None = None

    @field_validator("table")
    @classmethod
    def _layer_table(cls, value: str) -> str:
        layer, _, table = value.partition(".")
        if layer not in ("silver", "gold") or not table:
            raise ValueError(f"{value!r} must be silver.<table> or gold.<table>")
        _check_ident(table, "table")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        for column in (self.label, *self.keys):
            _check_ident(column, "column")
        if self.label in self.features.all:
            raise ValueError(f"the label {self.label!r} is also a feature")
        metric = self.metric
        if metric not in METRICS[self.task]:
            raise ValueError(f"primary_metric {metric!r} is not a {self.task} metric ({', '.join(METRICS[self.task])})")
        for gate in (self.gates.min_metrics, self.gates.max_metrics):
            for name in gate:
                if name not in METRICS[self.task]:
                    raise ValueError(f"gates: {name!r} is not a {self.task} metric ({', '.join(METRICS[self.task])})")
        known = ALGORITHMS[self.trainer.backend][self.task]
        for algorithm, _ in self.trainer.candidates():
            if algorithm not in known:
                raise ValueError(
                    f"trainer: {self.trainer.backend} has no {self.task} algorithm {algorithm!r} "
                    f"(choose from {', '.join(known)})"
                )
        if self.trainer.group_by and self.trainer.group_by not in self.features.all:
            raise ValueError(f"trainer.group_by {self.trainer.group_by!r} must also be a feature: each row is routed "
                             "to its group's model by it")
        if self.bias is not None and self.task == "regression":
            raise ValueError("bias metrics need classes: they are defined for binary and multiclass models")
        if self.label_issues is not None and self.task == "regression":
            raise ValueError("label_issues needs classes: it is defined for binary and multiclass models")
        if self.slices is not None and self.slices.metric is not None and self.slices.metric not in METRICS[self.task]:
            raise ValueError(f"slices.metric {self.slices.metric!r} is not a {self.task} metric "
                             f"({', '.join(METRICS[self.task])})")
        if self.monitor is not None and self.monitor.features is not None:
            unknown = [f for f in self.monitor.features if f not in self.features.all]
            if unknown:
                raise ValueError(f"monitor.features: {', '.join(unknown)} are not features of the model")
        if self.features.text and self.trainer.backend in ("torch-distributor", "horovod"):
            raise ValueError(f"{self.trainer.backend} trains on numeric and categorical features; text needs spark-ml "
                             "or sklearn-udf")
        return self

    @property
    def metric(self) -> str:
        """The primary metric: candidates are ranked and gates compared on it."""
        return self.primary_metric or {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}[self.task]

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in LOWER_IS_BETTER

    def output_table(self, name: str) -> str:
        return self.score.output or f"gold.{name}_predictions"


class ProfileConfig(Model):
    """Which tables the profile stage describes (default: every silver and gold table) and how."""

    tables: list[str] | None = Field(default=None, description="layer.table names; default: all silver and gold")
    top_values: int = Field(default=10, ge=1, le=100)
    histogram_bins: int = Field(default=20, ge=2, le=200)
    correlation_columns: int = Field(default=30, ge=0, le=100)


class StorageConfig(Model):
    """Where tables live. `catalog` is a Unity Catalog name on Databricks, empty elsewhere."""

    root: str = Field(default="./lakehouse", min_length=1)
    # A catalog (Unity Catalog on Databricks): tables are `<catalog>.<schema_prefix><layer>.<table>`, by name.
    catalog: str | None = None
    schema_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_]*$")
    # MLflow's tracking/registry URI (an MLflow server on a cluster); empty: $MLFLOW_TRACKING_URI, else SQLite
    # under the root.
    tracking_uri: str | None = None


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
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    base_dir: Path = Field(default=Path("."), exclude=True, description="folder of the pipeline file")

    @field_validator("name")
    @classmethod
    def _name_ident(cls, value: str) -> str:
        return _check_ident(value, "pipeline name")

    @field_validator("sources", "silver", "gold", "models")
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
        for name, spec in self.models.items():
            for where, ref in (("table", spec.table), ("score.table", spec.score.table)):
                if ref is None:
                    continue
                parsed = TableRef.parse(ref)
                if parsed.table not in (self.silver if parsed.layer == "silver" else self.gold):
                    raise ValueError(f"models.{name}.{where}: {ref} is not a table this pipeline builds")
            if spec.monitor is not None and spec.monitor.period is not None:
                _check_ident(spec.monitor.period.column, "monitor.period.column")
            output = spec.output_table(name)
            if not output.startswith("gold.") or output.removeprefix("gold.") in self.gold:
                raise ValueError(f"models.{name}.score.output: {output} must be a new gold.<table>")
            if spec.label_issues is not None and f"{name}_label_review" in self.gold:
                raise ValueError(f"models.{name}.label_issues writes gold.{name}_label_review, which is also a gold "
                                 "table of this pipeline: rename one")
        for ref in self.profile.tables or []:
            if ref not in self.built_tables():
                raise ValueError(f"profile.tables: {ref} is not a table this pipeline builds "
                                 f"({', '.join(self.built_tables())})")
        return self

    def built_tables(self) -> list[str]:
        """Every table the pipeline writes, as layer.table (quarantine tables excluded)."""
        return [*(f"bronze.{n}" for n in self.sources), *(f"silver.{n}" for n in self.silver),
                *(f"gold.{n}" for n in self.gold), *(spec.output_table(n) for n, spec in self.models.items()),
                *(f"gold.{n}_label_review" for n, spec in self.models.items() if spec.label_issues is not None)]

    def profiled_tables(self) -> list[str]:
        """The tables the profile stage describes."""
        if self.profile.tables is not None:
            return list(self.profile.tables)
        return [*(f"silver.{n}" for n in self.silver), *(f"gold.{n}" for n in self.gold)]

    def sql_path(self, relative: Path) -> Path:
        """The SQL file's absolute path (SQL paths are relative to the pipeline file)."""
        return relative if relative.is_absolute() else (self.base_dir / relative).resolve()
