"""`goldsmith models` reads the registry and `ops.model_promotions` without a JVM; a move it cannot record (Spark
cannot start to append it) leaves the alias where it was."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

import goldsmith
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.io.ops import OpsLog
from goldsmith.ml.registry import local_moves
from goldsmith.ml.tracking import activate, experiment_id, tracking_for

T0 = datetime(2024, 5, 1, 8, 0, 0)


def move(from_version: int | None, to_version: int, at: datetime) -> dict[str, object]:
    return {"model_name": "delay", "alias": "champion", "action": "promote", "from_version": from_version,
            "to_version": to_version, "reason": f"v{to_version} passed the gates", "actor": "ci@host",
            "mlflow_run_id": "m", "run_id": "r", "moved_at": at}


def test_models_list_needs_no_jvm(spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "lake"
    lakehouse = Lakehouse(spark, str(root))
    ops = OpsLog(lakehouse)
    ops.append("model_promotions", [move(None, 1, T0)])
    ops.append("model_promotions", [move(1, 2, T0 + timedelta(hours=1))])
    tracking = tracking_for(lakehouse.root)
    client = activate(tracking)
    run = client.create_run(experiment_id(client, tracking, "toy"), run_name="delay")
    client.create_registered_model("delay")
    for auc in (0.71, 0.83):
        client.create_model_version("delay", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags={
            "goldsmith.primary_metric": "roc_auc", "goldsmith.test_metrics": f'{{"roc_auc": {auc}}}',
            "goldsmith.backend": "spark-ml", "goldsmith.algorithm": "logistic_regression",
        })
    client.set_registered_model_alias("delay", "champion", "2")

    # No java anywhere (nor bash for Spark's launch scripts): a JVM cannot start in these processes.
    env = {"PATH": str(Path(sys.executable).parent), "JAVA_HOME": str(tmp_path / "no-java"),
           "PYTHONPATH": str(Path(goldsmith.__file__).parents[1]), "HOME": os.environ.get("HOME", str(tmp_path))}

    def models(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "goldsmith.cli", "models", *args, "delay", "--root", str(root)],
                              env=env, capture_output=True, text=True, timeout=300, check=False)

    listed = models("list")
    assert listed.returncode == 0, listed.stderr[-3000:]
    lines = listed.stdout.splitlines()
    assert lines[1].split()[:2] == ["2", "champion"] and "test roc_auc 0.8300" in lines[1]
    assert lines[2].split()[0] == "1" and "test roc_auc 0.7100" in lines[2]
    assert lines[-1].split()[2:] == ["champion", "promote", "v1", "->", "v2", "by", "ci@host:", "v2", "passed", "the",
                                     "gates"]
    assert "2024-05-01 09:00:00" in lines[-1]
    assert "starting Spark" not in listed.stderr

    # A rollback must append its move, so it starts Spark, which cannot start here: the alias stays put.
    rolled = models("rollback")
    assert rolled.returncode != 0 and "starting Spark" in rolled.stderr and "JAVA_GATEWAY_EXITED" in rolled.stderr
    assert int(client.get_model_version_by_alias("delay", "champion").version) == 2
    assert len(local_moves(lakehouse.root)) == 2
