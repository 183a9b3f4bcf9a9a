"""Where MLflow keeps runs and the registry: by default a SQLite database and an artifact folder inside the
lakehouse (`<root>/_mlflow/`), so a local run needs no server. `MLFLOW_TRACKING_URI` (and
`MLFLOW_REGISTRY_URI`) override it, e.g. an MLflow server shared by a cluster, or `databricks`.

`open_client` and `open_registry` are how goldsmith opens MLflow: every stage and command goes through them."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from goldsmith.errors import ConfigError
from goldsmith.ml.registry import MoveLog, Registry

log = logging.getLogger("goldsmith")


@dataclass(frozen=True)
class Tracking:
    """The tracking/registry URI and the artifact location new experiments get."""

    uri: str
    artifact_root: str | None

    @property
    def ui_command(self) -> str:
        if self.uri.startswith("sqlite:"):
            return f"mlflow ui --backend-store-uri {self.uri}"
        return f"open {self.uri}"


def local_path(root: str) -> Path | None:
    """The local folder of a `file:` or plain-path storage root, None for remote storage."""
    parsed = urlparse(root)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else root)
    return None


def tracking_for(root: str, uri: str | None = None) -> Tracking:
    """`uri` (the pipeline's `storage.tracking_uri`), else MLFLOW_TRACKING_URI, else SQLite + artifacts under
    the (local) lakehouse root."""
    chosen = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if chosen:
        return Tracking(chosen, None)
    folder = local_path(root)
    if folder is None:
        raise ConfigError(
            f"storage root {root} is not a local folder, so MLflow cannot keep its SQLite database there: "
            "set storage.tracking_uri or MLFLOW_TRACKING_URI (an MLflow server, or `databricks`)"
        )
    mlflow_dir = folder / "_mlflow"
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    return Tracking(f"sqlite:///{mlflow_dir / 'mlflow.db'}", (mlflow_dir / "artifacts").as_uri())


def _seed_database(database: Path, artifact_root: str) -> None:
    """Give a new lakehouse its MLflow database as a copy of an empty one made by this MLflow version (kept in
    goldsmith's cache), instead of letting MLflow create it by running its schema migrations: 1.7 s -> 0.03 s
    per new lakehouse on the 2-core machine. The copy's Default experiment keeps its artifacts under `artifact_root`.
    Another process creating the database meanwhile wins: an existing database is never replaced."""
    import shutil
    import sqlite3
    import tempfile

    import mlflow
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from goldsmith.jvm import cache_dir

    template = cache_dir() / "mlflow" / f"empty-{mlflow.__version__}.db"
    if not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=template.parent) as scratch:
            made = Path(scratch) / "mlflow.db"
            store = SqlAlchemyStore(f"sqlite:///{made}", Path(scratch).as_uri())
            store.engine.dispose()
            os.replace(made, template)
    partial = database.with_name(f".{database.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(template, partial)
        with sqlite3.connect(partial) as db:
            db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (f"{artifact_root}/0",))
        db.close()
        os.link(partial, database)  # fails, leaving it alone, when the database appeared meanwhile
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


def activate(tracking: Tracking) -> Any:
    """Point MLflow (tracking and registry) at `tracking`; return an MlflowClient."""
    import logging as _logging
    import warnings

    # MLflow warns that integer columns cannot hold missing values; goldsmith's signatures use doubles for numbers.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
    # ... and that `predict` has no type hints: goldsmith gives every model an explicit signature instead.
    warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method", category=UserWarning)

    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent", "mlflow.store.model_registry",
                 "mlflow.spark", "mlflow.pyfunc", "mlflow.tracking._model_registry.fluent", "mlflow.models.model"):
        _logging.getLogger(name).setLevel(_logging.WARNING)
    import mlflow

    # MLflow 3 also exports the URIs it is given as MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI; those variables
    # are the user's way to override goldsmith's default, so they are put back as they were: a second lakehouse
    # opened in the same process (a notebook, a test suite) gets its own database, not the first one's.
    if tracking.uri.startswith("sqlite:///") and tracking.artifact_root is not None:
        database = Path(tracking.uri.removeprefix("sqlite:///"))
        if not database.exists():
            _seed_database(database, tracking.artifact_root)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        mlflow.set_tracking_uri(tracking.uri)
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"] or tracking.uri)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return mlflow.MlflowClient()


def open_client(root: str, tracking_uri: str | None = None) -> Any:
    """An MlflowClient of the lakehouse at `root`, MLflow's tracking and registry pointed at its tracking location
    (`tracking_for`: the pipeline's `storage.tracking_uri`, else MLFLOW_TRACKING_URI, else SQLite under `root`)."""
    return activate(tracking_for(root, tracking_uri))


def open_registry(
    root: str, ops: MoveLog, tracking_uri: str | None = None, run_id: str = "",
    read_moves: Callable[[], list[dict[str, Any]]] | None = None,
) -> Registry:
    """The model registry of the lakehouse at `root` (MLflow opened with `open_client`): every alias move it makes
    is appended to `ops.model_promotions` through `ops` with `run_id`; `read_moves` reads them back (default: with
    Spark, see `Registry`)."""
    return Registry(open_client(root, tracking_uri), ops, run_id, read_moves)


def experiment_id(client: Any, tracking: Tracking, name: str) -> str:
    """The experiment `name`, created with its artifacts beside the database when it does not exist."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=tracking.artifact_root and
                                        f"{tracking.artifact_root}/{name}"))
