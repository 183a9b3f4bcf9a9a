"""A new lakehouse's MLflow database is a copy of an empty one this MLflow version made, never a replacement."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from goldsmith.ml.tracking import open_client, tracking_for


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDSMITH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)


def test_a_new_lakehouse_gets_a_working_database_with_its_own_default_artifacts(tmp_path: Path) -> None:
    for name in ("one", "two"):
        root = tmp_path / name
        client = open_client(str(root))
        database = root / "_mlflow" / "mlflow.db"
        assert database.is_file()
        default = client.get_experiment("0")
        assert default.artifact_location == f"{(root / '_mlflow' / 'artifacts').as_uri()}/0"
        run = client.create_run(client.create_experiment(f"e-{name}"))
        client.log_metric(run.info.run_id, "m", 1.0)
        assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert len(list((tmp_path / "cache" / "mlflow").glob("empty-*.db"))) == 1  # made once, copied twice
    assert not list((tmp_path / "one" / "_mlflow").glob("*.partial"))


def test_an_existing_database_is_never_replaced(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    client = open_client(str(root))
    kept = client.create_experiment("kept")
    tracking = tracking_for(str(root))
    assert tracking.uri.endswith("/_mlflow/mlflow.db")
    again = open_client(str(root))
    assert again.get_experiment(kept).name == "kept"
    with sqlite3.connect(root / "_mlflow" / "mlflow.db") as db:
        assert db.execute("select count(*) from experiments where name = 'kept'").fetchone() == (1,)
