"""databricks.yml: every task runs an entry point the wheel declares, on a pipeline and stage that exist."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from goldsmith.jobs.pipeline import STAGES

REPO = Path(__file__).resolve().parents[2]


def test_every_task_calls_a_declared_entry_point_with_a_real_pipeline_and_stage() -> None:
    bundle = yaml.safe_load((REPO / "databricks.yml").read_text())
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(bundle["targets"]) == {"dev", "prod"}
    assert bundle["targets"]["dev"]["mode"] == "development"
    jobs = bundle["resources"]["jobs"]
    assert jobs, "one job per pipeline"
    for job in jobs.values():
        keys = [t["task_key"] for t in job["tasks"]]
        for task in job["tasks"]:
            wheel = task["python_wheel_task"]
            assert wheel["package_name"] == "goldsmith"
            assert wheel["entry_point"] in scripts
            params = wheel["parameters"]
            pipeline = params[1].replace("${workspace.file_path}/", "")
            assert (REPO / pipeline).is_file(), pipeline
            stage = params[params.index("--stages") + 1]
            assert stage in STAGES and stage == task["task_key"]
            for dependency in task.get("depends_on", []):
                assert keys.index(dependency["task_key"]) < keys.index(task["task_key"])
