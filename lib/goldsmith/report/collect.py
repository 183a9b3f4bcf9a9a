"""What the report shows, gathered on the driver: `ops.*` rows (small by design), row counts of the data tables
(counts only, never their rows) and the champion of each model from the MLflow registry."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from goldsmith.config.models import ModelSpec, PipelineConfig
from goldsmith.errors import DeltaLogUnsupported, GoldsmithError, SchemaMismatch, message_line
from goldsmith.io import delta_log
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.io.ops import column_names, naive_times, now
from goldsmith.io.paths import local_folder
from goldsmith.io.tables import TableRef

log = logging.getLogger(__name__)
T = TypeVar("T")

CHAMPION = "champion"
# The command that fills each ops table, shown where a section has nothing to show yet.
COMPUTED_BY: dict[str, str] = {
    "quality_metrics": "goldsmith run <pipeline.yml> --stages ingest,refine,features",
    "gold_builds": "goldsmith run <pipeline.yml> --stages features",
    "model_promotions": "goldsmith run <pipeline.yml> --stages train",
    "scoring_runs": "goldsmith run <pipeline.yml> --stages score",
    "run_log": "goldsmith run <pipeline.yml>",
    "profiles": "goldsmith run <pipeline.yml> --stages profile",
    "profile_correlations": "goldsmith run <pipeline.yml> --stages profile",
    "bias_metrics": "goldsmith run <pipeline.yml> --stages monitor",
    "slice_metrics": "goldsmith run <pipeline.yml> --stages monitor",
    "monitor_results": "goldsmith run <pipeline.yml> --stages monitor",
}
# Training's test-split plots (`goldsmith.jobs.train`), in the order the report shows them.
MODEL_PLOTS: dict[str, str] = {
    "plots/test_roc_curve.png": "ROC curve (test)",
    "plots/test_pr_curve.png": "Precision-recall curve (test)",
    "plots/test_confusion_matrix.png": "Confusion matrix (test)",
    "plots/test_per_class_report.png": "Per-class report (test)",
}


@dataclass
class LineageNode:
    """One box of the lineage diagram: a table (or source, or model) with its counts."""

    stage: str
    name: str
    rows: int | None = None
    exists: bool = True
    inputs: list[str] = field(default_factory=list)
    quarantine: str | None = None
    quarantine_rows: int | None = None
    metrics: dict[str, Any] | None = None
    detail: str = ""


@dataclass
class TableProfile:
    """The latest profile of one table: a row per column, and the column pairs' correlations."""

    table: str
    run_id: str
    table_version: int | None
    profiled_at: datetime | None
    rows: int | None
    columns: list[dict[str, Any]]
    correlations: list[dict[str, Any]]


@dataclass
class ModelReport:
    """A model's champion as the registry knows it, with training's plots and leaderboard."""

    name: str
    spec: ModelSpec | None
    state: str  # champion | no_champion | not_trained | unavailable
    message: str = ""
    version: int | None = None
    versions: int = 0
    algorithm: str = ""
    backend: str = ""
    mlflow_run_id: str = ""
    created_at: datetime | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    plots: dict[str, bytes] = field(default_factory=dict)
    leaderboard: dict[str, Any] | None = None
    promotions: list[dict[str, Any]] | None = None
    scoring: dict[str, Any] | None = None
    scoring_computed: bool = False


@dataclass
class ReportData:
    """Everything the HTML needs. A `None` table means its ops table does not exist yet."""

    pipeline: str
    description: str
    root: str
    generated_at: datetime
    latest_run: dict[str, Any] | None
    lineage: list[LineageNode]
    ledger: list[dict[str, Any]] | None
    profiles: list[TableProfile] | None
    models: list[ModelReport]
    bias: dict[str, list[dict[str, Any]]] | None
    slices: dict[str, list[dict[str, Any]]] | None
    drift: dict[str, list[dict[str, Any]]] | None
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class Tables:
    """The tables a report reads. Under a local root they are read from their Delta logs without Spark (a
    report of a local lakehouse starts no JVM); a catalog's or an object store's tables, or one the pure reader
    refuses, through the lakehouse, opened (Spark started) on first need."""

    root: str  # as `Lakehouse` qualifies it (file:/... for a local folder)
    folder: str | None  # the local folder of the root; None for a catalog or an object store
    opener: Callable[[], Lakehouse]
    _opened: Lakehouse | None = None

    @classmethod
    def of(cls, lakehouse: Lakehouse) -> Tables:
        """An open lakehouse's tables (local ones still read without Spark jobs)."""
        folder = None if lakehouse.catalog else local_folder(lakehouse.root)
        return cls(lakehouse.root, folder, lambda: lakehouse, lakehouse)

    @classmethod
    def of_config(cls, config: PipelineConfig, opener: Callable[[], Lakehouse]) -> Tables:
        """The pipeline's tables; `opener` opens its lakehouse, called only if Spark is needed."""
        folder = None if config.storage.catalog else local_folder(config.storage.root)
        if folder is None:
            return cls.of(opener())
        return cls(f"file:{folder}", folder, opener)

    @property
    def lakehouse(self) -> Lakehouse:
        if self._opened is None:
            self._opened = self.opener()
        return self._opened

    def local(self, layer: str, table: str) -> str | None:
        """The table's local folder, None when it must be read through Spark."""
        return None if self.folder is None else f"{self.folder}/{layer}/{table}"


def collect_report(source: Lakehouse | Tables, config: PipelineConfig) -> ReportData:
    """Gather the report's data; a missing ops table or registry leaves its part empty, never raises."""
    errors: dict[str, str] = {}
    lakehouse = source if isinstance(source, Tables) else Tables.of(source)

    def guarded(section: str, read: Callable[[], T], empty: T) -> T:
        # A table that cannot be read (an unexpected schema, a corrupt log) costs the reader its section only.
        try:
            return read()
        except Exception as exc:
            log.exception("report: reading the data of section %s failed", section)
            errors[section] = f"{type(exc).__name__}: {message_line(exc)}"
            return empty

    # Once, guarded: the models section reads MLflow and two ops tables, any of which may be unreadable.
    models: list[ModelReport] = guarded("models", lambda: _collect_models(lakehouse, config), [])
    ledger = guarded("lineage", lambda: _ledger(lakehouse), None)
    return ReportData(
        pipeline=config.name, description=config.description, root=lakehouse.root, generated_at=now(),
        latest_run=guarded("header", lambda: _latest_run(lakehouse), None),
        lineage=guarded("lineage", lambda: _lineage(lakehouse, config, ledger, models), []),
        ledger=ledger,
        profiles=guarded("profiles", lambda: _profiles(lakehouse), None),
        models=models,
        bias=guarded("bias", lambda: _latest_run_per_model(lakehouse, "bias_metrics", "computed_at"), None),
        slices=guarded("slices", lambda: _latest_run_per_model(lakehouse, "slice_metrics", "computed_at"), None),
        drift=guarded("drift", lambda: _latest_run_per_model(lakehouse, "monitor_results", "checked_at"), None),
        errors=errors,
    )


def _ops(lakehouse: Tables, table: str) -> list[dict[str, Any]] | None:
    """Every row of `ops.<table>` (small by design), None when the table does not exist.

    A local lakehouse's tables are read from their Delta logs with pyarrow (milliseconds, no Spark job); a
    catalog's or an object store's, or one the pure-Python reader refuses, through Spark."""
    rows: list[dict[str, Any]] | None = None
    columns: list[str] = []
    read = False
    local = lakehouse.local("ops", table)
    if local is not None:
        try:
            found = delta_log.read_table(local)
        except DeltaLogUnsupported:
            pass
        else:
            read = True
            if found is not None:
                columns = found.column_names
                rows = [naive_times(row) for row in found.to_pylist(maps_as_pydicts="strict")]
    if not read and lakehouse.lakehouse.exists("ops", table):
        df = lakehouse.lakehouse.read("ops", table)
        columns, rows = df.columns, [r.asDict(recursive=True) for r in df.collect()]
    if rows is None:
        return None
    # A table of another shape under the name (not written by goldsmith) is refused in words; a column added
    # to the schema after an older goldsmith wrote the table reads as None.
    expected = column_names(table)
    missing = [c for c in expected if c not in columns]
    if len(missing) == len(expected) or any(c in missing for c in ("run_id", "model_name", "table_name")
                                            if c in expected):
        raise SchemaMismatch(f"ops.{table} lacks the column(s) {', '.join(missing)}: it was not written by "
                             "goldsmith")
    return [{**dict.fromkeys(missing), **row} for row in rows]


def _newest(rows: list[dict[str, Any]], time_column: str) -> dict[str, Any] | None:
    """The row with the latest `time_column` (a row without one counts as oldest)."""
    return max(rows, key=lambda r: r.get(time_column) or datetime.min, default=None)


def _of_latest_run(rows: list[dict[str, Any]], group: str, time_column: str) -> list[dict[str, Any]]:
    """The rows of each group's newest run (the run of the group's row with the latest `time_column`)."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get(group), []).append(row)
    latest = {key: (_newest(members, time_column) or {}).get("run_id") for key, members in groups.items()}
    return [r for r in rows if r.get("run_id") == latest[r.get(group)]]


def _latest_run(lakehouse: Tables) -> dict[str, Any] | None:
    return _newest(_ops(lakehouse, "run_log") or [], "started_at")


def _ledger(lakehouse: Tables) -> list[dict[str, Any]] | None:
    """The latest `ops.quality_metrics` row per (stage, table); a run that skipped the table (it had nothing new)
    does not hide the run that last did the work."""
    rows = _ops(lakehouse, "quality_metrics")
    if rows is None:
        return None
    latest: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        row.pop("batch_ids", None)
        key = (row.get("stage"), row.get("table_name"))
        kept = latest.get(key)
        if kept is None or _ledger_rank(row) > _ledger_rank(kept):
            latest[key] = row
    return sorted(latest.values(), key=lambda r: (r.get("recorded_at") or datetime.min, r.get("table_name") or ""))


def _ledger_rank(row: dict[str, Any]) -> tuple[bool, datetime]:
    return row.get("status") != "skipped", row.get("recorded_at") or datetime.min


def _count(lakehouse: Tables, name: str) -> int | None:
    """Row count of `layer.table` (from its Delta log's statistics), None when it does not exist."""
    ref = TableRef.parse(name)
    local = lakehouse.local(ref.layer, ref.table)
    if local is not None:
        try:
            return delta_log.row_count(local)
        except DeltaLogUnsupported:
            pass
    if not lakehouse.lakehouse.exists(ref.layer, ref.table):
        return None
    return int(lakehouse.lakehouse.read(ref.layer, ref.table).count())


def _lineage(
    lakehouse: Tables, config: PipelineConfig, ledger: list[dict[str, Any]] | None, models: list[ModelReport]
) -> list[LineageNode]:
    metrics = {(r["stage"], r["table_name"]): r for r in ledger or []}
    gold_inputs = _gold_inputs(lakehouse)
    nodes: list[LineageNode] = []

    def table_node(stage: str, metric_stage: str, name: str, inputs: list[str]) -> LineageNode:
        rows = _count(lakehouse, name)
        quarantine = f"{name}_quarantine"
        q_rows = _count(lakehouse, quarantine)
        return LineageNode(
            stage, name, rows, rows is not None, inputs, quarantine if q_rows is not None else None, q_rows,
            metrics.get((metric_stage, name)),
        )

    for name, source in config.sources.items():
        nodes.append(LineageNode("sources", name, None, True, [], detail=f"{source.format}: {source.path}",
                                 metrics=metrics.get(("ingest", f"bronze.{name}"))))
        nodes.append(table_node("bronze", "ingest", f"bronze.{name}", [name]))
    for name, silver in config.silver.items():
        nodes.append(table_node("silver", "refine", f"silver.{name}", [f"bronze.{silver.source}"]))
    for name in config.gold:
        nodes.append(table_node("gold", "features", f"gold.{name}", gold_inputs.get(name, [])))
    by_name = {m.name: m for m in models}
    for name, spec in config.models.items():
        model = by_name.get(name)
        detail = "not trained yet"
        if model is not None and model.version is not None:
            detail = f"champion v{model.version}" + (f" · {model.algorithm}" if model.algorithm else "")
        elif model is not None and model.state == "no_champion":
            detail = f"{model.versions} version(s), no champion"
        nodes.append(LineageNode("model", name, None, True, [spec.table], detail=detail,
                                 metrics=metrics.get(("train", f"model {name}"))))
        output = spec.output_table(name)
        rows = _count(lakehouse, output)
        nodes.append(LineageNode("predictions", output, rows, rows is not None, [name],
                                 metrics=metrics.get(("score", output))))
    return nodes


def _gold_inputs(lakehouse: Tables) -> dict[str, list[str]]:
    """Input tables of each gold table's latest build (from the fingerprint `features` records)."""
    builds: dict[str, list[dict[str, Any]]] = {}
    for row in _ops(lakehouse, "gold_builds") or []:
        builds.setdefault(row["table_name"], []).append(row)
    found = {}
    for table, rows in builds.items():
        latest = _newest(rows, "built_at") or {}
        try:
            found[table] = sorted(json.loads(latest.get("inputs") or "{}").get("tables", {}))
        except (ValueError, AttributeError):
            found[table] = []
    return found


def _profiles(lakehouse: Tables) -> list[TableProfile] | None:
    rows = _ops(lakehouse, "profiles")
    if rows is None:
        return None
    columns = _of_latest_run(rows, "table_name", "profiled_at")
    correlations = _of_latest_run(_ops(lakehouse, "profile_correlations") or [], "table_name", "profiled_at")
    profiles = []
    for table in sorted({c["table_name"] for c in columns}):
        mine = [c for c in columns if c["table_name"] == table]
        first = mine[0]
        profiles.append(TableProfile(
            table=table, run_id=first["run_id"], table_version=first["table_version"],
            profiled_at=first["profiled_at"], rows=first["rows"], columns=mine,
            correlations=[c for c in correlations if c["table_name"] == table],
        ))
    return profiles


def _latest_run_per_model(lakehouse: Tables, table: str, time_column: str) -> dict[str, list[dict[str, Any]]] | None:
    rows = _ops(lakehouse, table)
    if rows is None:
        return None
    found: dict[str, list[dict[str, Any]]] = {}
    for row in _of_latest_run(rows, "model_name", time_column):
        found.setdefault(row["model_name"], []).append(row)
    return found


def _mlflow_client(lakehouse: Tables, tracking_uri: str | None) -> Any:
    """An MlflowClient for the lakehouse, or None when nothing was ever tracked there (a report must not create
    the tracking database as a side effect)."""
    from goldsmith.ml.tracking import local_path, open_client

    folder = local_path(lakehouse.root)
    if not (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")) and folder is not None \
            and not (folder / "_mlflow" / "mlflow.db").exists():
        return None
    return open_client(lakehouse.root, tracking_uri)


def _collect_models(lakehouse: Tables, config: PipelineConfig) -> list[ModelReport]:
    promotions = _ops(lakehouse, "model_promotions")
    scoring = _ops(lakehouse, "scoring_runs")
    promotion_rows = None if promotions is None else sorted(promotions, key=lambda r: r.get("moved_at") or datetime.min)
    scoring_rows = _of_latest_run(scoring, "model_name", "scored_at") if scoring is not None else []
    try:
        client = _mlflow_client(lakehouse, config.storage.tracking_uri)
        state, reason = "not_trained", "not trained yet: nothing is tracked in this lakehouse's MLflow"
    except GoldsmithError as exc:
        client, state, reason = None, "unavailable", f"MLflow is not reachable: {exc}"
    reports = []
    for name, spec in config.models.items():
        report = ModelReport(name, spec, state, reason) if client is None else _champion(client, name, spec)
        report.promotions = None if promotion_rows is None else [r for r in promotion_rows if r["model_name"] == name]
        report.scoring_computed = scoring is not None
        report.scoring = next((r for r in scoring_rows if r["model_name"] == name), None)
        reports.append(report)
    return reports


def _utc(epoch_ms: int | None) -> datetime | None:
    """An MLflow timestamp (epoch milliseconds) as a naive UTC datetime, like the ops tables'."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).replace(tzinfo=None) if epoch_ms else None


def _champion(client: Any, name: str, spec: ModelSpec) -> ModelReport:
    """The champion of `name` with its run's test metrics, plots and leaderboard; an MLflow error becomes a note."""
    from mlflow.exceptions import MlflowException

    try:
        return _champion_of(client, name, spec)
    except (MlflowException, OSError, ValueError) as exc:
        log.warning("report: model %s: %s", name, exc)
        return ModelReport(name, spec, "unavailable", f"MLflow could not be read for this model: {exc}")


def _champion_of(client: Any, name: str, spec: ModelSpec) -> ModelReport:
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return ModelReport(name, spec, "not_trained", "not trained yet: the MLflow registry has no such model")
        return ModelReport(name, spec, "unavailable", f"MLflow registry error: {exc.message}")
    aliases = dict(registered.aliases or {})
    versions = len(client.search_model_versions(f"name = '{name}'"))
    if CHAMPION not in aliases:
        return ModelReport(name, spec, "no_champion", f"{versions} version(s) registered, none is champion yet",
                           versions=versions)
    mv = client.get_model_version(name, str(aliases[CHAMPION]))
    tags = dict(mv.tags or {})
    report = ModelReport(
        name, spec, "champion", version=int(mv.version), versions=versions,
        algorithm=tags.get("goldsmith.algorithm", ""), backend=tags.get("goldsmith.backend", ""),
        mlflow_run_id=mv.run_id or "",
        created_at=_utc(mv.creation_timestamp),
    )
    if not mv.run_id:
        report.message = "the champion version has no MLflow run: no metrics or plots"
        return report
    run = client.get_run(mv.run_id)
    report.metrics = {k: float(v) for k, v in sorted(run.data.metrics.items()) if k.startswith("test_")}
    with tempfile.TemporaryDirectory(prefix="goldsmith-report-") as tmp:
        available = {f.path for f in client.list_artifacts(mv.run_id, "plots")}
        for artifact in MODEL_PLOTS:
            if artifact in available:
                report.plots[artifact] = Path(client.download_artifacts(mv.run_id, artifact, tmp)).read_bytes()
        if any(f.path == "leaderboard.json" for f in client.list_artifacts(mv.run_id)):
            board = json.loads(Path(client.download_artifacts(mv.run_id, "leaderboard.json", tmp)).read_text())
            report.leaderboard = board if isinstance(board, dict) else None
    return report
