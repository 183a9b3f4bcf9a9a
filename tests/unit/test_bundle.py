"""databricks.yml: a bundle the Databricks CLI's own schema accepts, whose tasks run what the built wheel declares.

The schema comes from `databricks bundle schema` of the CLI that scripts/databricks-cli/build compiles once
(no workspace, no network). The wheel is built from a copy of the sources, as the bundle's artifact is.
"""

from __future__ import annotations

import ast
import configparser
import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from components import unavailable
from goldsmith.cli import build_parser
from goldsmith.config.loader import overlay_path
from goldsmith.jobs.pipeline import STAGES

REPO = Path(__file__).resolve().parents[2]
CLI_DIR = REPO / "scripts" / "databricks-cli"
WORKSPACE_FILES = "${workspace.file_path}/"
# The stage graph the jobs must follow (README, "What a pipeline is").
DEPENDS_ON = {
    "ingest": set(), "refine": {"ingest"}, "features": {"refine"}, "profile": {"features"},
    "train": {"features"}, "score": {"train"}, "monitor": {"score"},
}
ENV_VARS = {
    "GOLDSMITH_CATALOG": "${var.catalog}", "GOLDSMITH_SCHEMA_PREFIX": "${var.schema_prefix}",
    "GOLDSMITH_ROOT": "${var.storage_root}",
}

Bundle = dict[str, Any]


def load_bundle() -> Bundle:
    return yaml.safe_load((REPO / "databricks.yml").read_text())


def cli_binary() -> Path:
    """Where scripts/databricks-cli/build puts the CLI of the version its go.mod requires."""
    version = re.search(r"^require github\.com/databricks/cli (v\S+)$", (CLI_DIR / "go.mod").read_text(), re.M)
    assert version, "scripts/databricks-cli/go.mod requires github.com/databricks/cli"
    cache = os.environ.get("GOLDSMITH_CACHE") or \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "goldsmith"
    return Path(cache) / "bin" / f"databricks-{version.group(1)}"


@pytest.fixture(scope="module")
def bundle_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    binary = cli_binary()
    if not binary.is_file():
        # On a developer's machine without Go the schema check cannot run and says so; in CI it must run.
        if shutil.which("go") is None:
            unavailable(f"no Databricks CLI at {binary}, and no go on PATH to build it (scripts/databricks-cli/build)",
                        f"no Databricks CLI at {binary}: run scripts/databricks-cli/build (once, ~3 min; needs Go)")
        pytest.fail(f"no Databricks CLI at {binary}: run scripts/databricks-cli/build (once, ~3 min; needs Go)")
    done = subprocess.run([str(binary), "bundle", "schema"], cwd=tmp_path_factory.mktemp("cli"),
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    schema: dict[str, Any] = json.loads(done.stdout)
    return schema


@pytest.fixture(scope="module")
def wheel(goldsmith_wheel: Path) -> Path:
    return goldsmith_wheel


def schema_problems(bundle: Bundle, schema: dict[str, Any]) -> list[str]:
    """Where the bundle breaks the CLI's schema: one line per error, its path and best-matching reason."""
    problems = []
    for error in Draft202012Validator(schema).iter_errors(bundle):
        best = best_match([error])  # the innermost reason, not the whole oneOf
        where = "/".join(str(p) for p in best.absolute_path) or "(top level)"
        problems.append(f"{where}: {best.message[:300]}")
    # The schema lets any top-level key through (additionalProperties: {}); the CLI rejects them at load.
    problems += [f"{key}: not a bundle setting" for key in sorted(set(bundle) - set(schema["properties"]))]
    return problems


def wheel_console_scripts(wheel_path: Path) -> tuple[str, dict[str, str], set[str]]:
    """The wheel's distribution name, its console scripts (name -> module:function), and its file names."""
    with zipfile.ZipFile(wheel_path) as whl:
        names = set(whl.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        dist = re.search(r"^Name: (\S+)$", whl.read(metadata).decode(), re.M)
        entry_points = configparser.ConfigParser(delimiters=("=",))
        entry_points.optionxform = str  # type: ignore[assignment,method-assign]  # keep the names' case
        for name in names:
            if name.endswith(".dist-info/entry_points.txt"):
                entry_points.read_string(whl.read(name).decode())
    scripts = dict(entry_points["console_scripts"]) if entry_points.has_section("console_scripts") else {}
    return (dist.group(1) if dist else ""), scripts, names


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _defines(wheel_path: Path, names: set[str], target: str) -> str | None:
    """None if `module:function` is a function defined in the wheel, else what is missing."""
    module, _, function = target.split("[")[0].strip().partition(":")
    candidates = [module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"]
    path = next((c for c in candidates if c in names), None)
    if path is None:
        return f"module {module} is not in the wheel"
    with zipfile.ZipFile(wheel_path) as whl:
        tree = ast.parse(whl.read(path).decode(), filename=path)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    return None if function.split(".")[0] in defined else f"{path} defines no function {function}"


def _parameter_problems(where: str, task_key: str, params: list[str]) -> list[str]:
    try:
        args = build_parser().parse_args(params)
    except SystemExit:  # argparse has printed why to stderr
        return [f"{where}: goldsmith does not accept the parameters {params}"]
    if args.command != "run":
        return [f"{where}: runs `goldsmith {args.command}`, not `goldsmith run`"]
    problems = []
    pipeline = str(args.pipeline)
    if not pipeline.startswith(WORKSPACE_FILES):
        return [f"{where}: pipeline {pipeline} is not a bundle file ({WORKSPACE_FILES}...)"]
    pipeline_file = REPO / pipeline.removeprefix(WORKSPACE_FILES)
    if not pipeline_file.is_file():
        problems.append(f"{where}: pipeline {pipeline_file.relative_to(REPO)} does not exist")
    elif args.env and not overlay_path(pipeline_file, args.env).is_file():
        problems.append(f"{where}: --env {args.env}: no overlay {overlay_path(pipeline_file, args.env)}")
    stages = (args.stages or "").split(",")
    if [s for s in stages if s not in STAGES] or stages != [task_key]:
        problems.append(f"{where}: --stages {args.stages} is not the stage {task_key} of {', '.join(STAGES)}")
    return problems


def wheel_problems(bundle: Bundle, wheel_path: Path) -> list[str]:
    """What a task asks of the wheel that the wheel does not have: entry point, its function, parameters."""
    dist, scripts, names = wheel_console_scripts(wheel_path)
    problems = []
    for job_key, job in bundle["resources"]["jobs"].items():
        for task in job["tasks"]:
            where = f"{job_key}.{task['task_key']}"
            wheel_task = task.get("python_wheel_task")
            if wheel_task is None:
                problems.append(f"{where}: not a python_wheel_task")
                continue
            if _normalized(wheel_task["package_name"]) != _normalized(dist):
                problems.append(f"{where}: package_name {wheel_task['package_name']} is not the wheel's {dist}")
            libraries = [lib["whl"].removeprefix("./") for lib in task.get("libraries", []) if "whl" in lib]
            if not any(fnmatch.fnmatch(f"dist/{wheel_path.name}", lib) for lib in libraries):
                problems.append(f"{where}: libraries {libraries} do not install dist/{wheel_path.name}")
            entry_point = wheel_task["entry_point"]
            if entry_point not in scripts:
                problems.append(f"{where}: entry point {entry_point} is not a console script of "
                                f"{wheel_path.name} (it has {', '.join(sorted(scripts)) or 'none'})")
            elif (missing := _defines(wheel_path, names, scripts[entry_point])) is not None:
                problems.append(f"{where}: entry point {entry_point} = {scripts[entry_point]}: {missing}")
            problems += _parameter_problems(where, task["task_key"], wheel_task.get("parameters", []))
    return problems


def test_one_job_per_pipeline_with_every_stage_in_dependency_order_on_a_configured_cluster() -> None:
    bundle = load_bundle()
    assert {name: target["mode"] for name, target in bundle["targets"].items()} == \
        {"dev": "development", "prod": "production"}  # the schema takes any string as a mode
    assert bundle["targets"]["dev"]["default"] is True
    for target in bundle["targets"].values():
        assert set(target["variables"]) == set(bundle["variables"]) == {"catalog", "schema_prefix", "storage_root"}
    assert bundle["artifacts"]["goldsmith_wheel"]["type"] == "whl"
    jobs = bundle["resources"]["jobs"]
    pipelines = {p.relative_to(REPO).as_posix() for p in (REPO / "conf" / "pipelines").glob("*.yml")}
    assert pipelines == {"conf/pipelines/flights.yml", "conf/pipelines/reviews.yml"}
    used = set()
    for job_key, job in jobs.items():
        tasks = job["tasks"]
        keys = [t["task_key"] for t in tasks]
        assert sorted(keys) == sorted(STAGES), job_key
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
        for task in tasks:
            depends = {d["task_key"] for d in task.get("depends_on", [])}
            assert depends == DEPENDS_ON[task["task_key"]], (job_key, task["task_key"])
            assert all(keys.index(d) < keys.index(task["task_key"]) for d in depends)
            assert clusters[task["job_cluster_key"]]["spark_env_vars"] == ENV_VARS
            params = task["python_wheel_task"]["parameters"]
            used.add(params[1].removeprefix(WORKSPACE_FILES))
        assert len({t["python_wheel_task"]["parameters"][1] for t in tasks}) == 1, f"{job_key}: one pipeline"
    assert used == pipelines and len(jobs) == len(pipelines)


def test_the_bundle_validates_against_the_cli_schema(bundle_schema: dict[str, Any]) -> None:
    assert schema_problems(load_bundle(), bundle_schema) == []


@pytest.mark.parametrize(("mistake", "path"), [
    ("entry_pont", "resources/jobs/flights/tasks/0/python_wheel_task"),
    ("num_worker", "resources/jobs/flights/job_clusters/0/new_cluster"),
    ("taget", "taget"),
])
def test_a_mistyped_key_fails_the_schema(bundle_schema: dict[str, Any], mistake: str, path: str) -> None:
    bundle = copy.deepcopy(load_bundle())
    job = bundle["resources"]["jobs"]["flights"]
    if mistake == "entry_pont":
        job["tasks"][0]["python_wheel_task"]["entry_pont"] = job["tasks"][0]["python_wheel_task"].pop("entry_point")
    elif mistake == "num_worker":
        job["job_clusters"][0]["new_cluster"]["num_worker"] = job["job_clusters"][0]["new_cluster"].pop("num_workers")
    else:
        bundle["taget"] = bundle.pop("targets")
    problems = schema_problems(bundle, bundle_schema)
    assert len(problems) == 1 and problems[0].startswith(f"{path}:") and mistake in problems[0], problems


def test_every_task_runs_an_entry_point_of_the_built_wheel_with_parameters_goldsmith_accepts(wheel: Path) -> None:
    assert wheel_problems(load_bundle(), wheel) == []


def _with_entry_point(wheel_path: Path, target: str, into: Path) -> Path:
    """A copy of the wheel whose console script `goldsmith` points at `target`."""
    copied = into / wheel_path.name
    with zipfile.ZipFile(wheel_path) as src, zipfile.ZipFile(copied, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(".dist-info/entry_points.txt"):
                data = f"[console_scripts]\ngoldsmith = {target}\n".encode()
            dst.writestr(item, data)
    return copied


def test_a_task_the_wheel_cannot_run_is_caught(wheel: Path, tmp_path: Path) -> None:
    bundle = load_bundle()
    broken = copy.deepcopy(bundle)
    tasks = broken["resources"]["jobs"]["reviews"]["tasks"]
    tasks[0]["python_wheel_task"]["entry_point"] = "goldsmith-nope"
    tasks[1]["python_wheel_task"]["parameters"] = [
        "run", f"{WORKSPACE_FILES}conf/pipelines/nope.yml", "--env", "databricks", "--stages", "refine"]
    tasks[2]["python_wheel_task"]["parameters"][-1] = "gold"
    tasks[3]["python_wheel_task"]["parameters"] += ["--catalog", "main"]
    tasks[4]["libraries"] = [{"whl": "./dist/other-*.whl"}]
    problems = wheel_problems(broken, wheel)
    assert [p.split(":")[0] for p in problems] == \
        ["reviews.ingest", "reviews.refine", "reviews.features", "reviews.profile", "reviews.train"], problems
    assert "goldsmith-nope is not a console script" in problems[0]
    assert "nope.yml does not exist" in problems[1]

    for target, missing in (("goldsmith.cli:nope", "goldsmith/cli.py defines no function nope"),
                            ("goldsmith.nope:main", "module goldsmith.nope is not in the wheel")):
        into = tmp_path / target.replace(":", "_")
        into.mkdir()
        problems = wheel_problems(bundle, _with_entry_point(wheel, target, into))
        assert len(problems) == sum(len(j["tasks"]) for j in bundle["resources"]["jobs"].values()), problems
        assert all(p.endswith(missing) for p in problems), problems



def test_the_wheel_leaves_a_runtimes_own_spark_alone(wheel: Path) -> None:
    # Installed on Databricks (or any Spark installation), the wheel must not pull another pyspark or delta-spark.
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(archive.read(n).decode() for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    spark = [r for r in requires if r.startswith(("pyspark", "delta-spark"))]
    assert spark and all("extra == \"spark\"" in r for r in spark), spark
    assert any(r.startswith("mlflow") and "extra" not in r for r in requires)
