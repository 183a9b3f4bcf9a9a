"""The flights model trained with `backend: horovod` on the e2e lakehouse's features (11,226 flights, the shipped
time split: train January-August, test November), against `torch-distributor` on the same data and seed; then
registered, promoted and scoring December, in local mode (`goldsmith run`: two ranks from local[*]'s two tasks) and
submitted to the standalone cluster with goldsmith shipped as `--py-files`.

Horovod is built by scripts/horovod/build (scripts/test runs it): without it these tests fail in CI and skip
elsewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from components import unavailable
from goldsmith.errors import BackendUnavailable
from goldsmith.ml.backends import require

from .conftest import BIN, LANE, Cluster, Reader, Subprocesses, submit_command

pytestmark = pytest.mark.slow

try:
    require("horovod")
except BackendUnavailable as missing:
    unavailable(f"horovod is not installed: {missing}", f"CI runs the horovod tests: {missing}")

PIPELINE = "conf/pipelines/flights.yml"
TRAINER = ("models.flight_delay.trainer={backend: %s, algorithm: mlp, num_processes: 2, "
           "params: {epochs: 6, hidden: [32, 16], lr: 0.003, batch_size: 256}}")
# The MLP is weaker than the shipped gradient boosting on 7,500 training flights: a floor it clears, and no
# comparison with an earlier champion; the bias gates stay as shipped.
GATES = "models.flight_delay.gates={min_metrics: {roc_auc: 0.55}, min_improvement: -1}"
DECEMBER = "select count(*) as n from gold.flight_features where flight_date >= '2013-12-01'"
SCORED = ("select count(*) as n, count(distinct model_version) as versions, max(model_version) as version, "
          "min(probability) as low, max(probability) as high from gold.flight_delay_predictions")


def features_copy(first: Path, dest: Path) -> Path:
    """A lakehouse root holding only the first run's (at `first`) gold.flight_features: training starts there."""
    root = dest / "lake"
    (root / "gold").mkdir(parents=True)
    shutil.copytree(first / "gold" / "flight_features", root / "gold" / "flight_features")
    return root


@dataclass(frozen=True)
class Trained:
    """What `goldsmith run` said of the model it trained (its summary on stdout, its log on stderr)."""

    version: int
    backend: str
    status: str
    roc_auc: float  # on the test set, as printed (4 decimals)
    rows: tuple[int, int, int]  # train, validation, test
    reasons: list[str]

    @classmethod
    def of(cls, done: subprocess.CompletedProcess[str]) -> Trained:
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        head = re.search(r"Model flight_delay version (\d+) \(([\w-]+): .*\) is (\w+)", done.stdout)
        auc = re.search(r"test set: roc_auc ([0-9.]+)", done.stdout)
        rows = re.search(r"model flight_delay: ([0-9,]+) rows train / ([0-9,]+) validation / ([0-9,]+) test",
                         done.stderr)
        assert head and auc and rows, (done.stdout + done.stderr)[-3000:]
        return cls(int(head.group(1)), head.group(2), head.group(3), float(auc.group(1)),
                   tuple(int(n.replace(",", "")) for n in rows.groups()),  # type: ignore[arg-type]
                   re.findall(r"not champion: (.*)", done.stdout))


@dataclass(frozen=True)
class LocalRun:
    root: Path
    torch: Trained
    horovod: Trained


@LANE.job(fixtures=("local_run",), needs=("start_first_run",))
def train_locally(factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str],
                                                             subprocess.CompletedProcess[str]]:
    """In the background lane: `goldsmith run` of the train stage with `backend: torch-distributor`, then of
    train and score with `backend: horovod`, in local mode (two ranks from local[*]'s two tasks), on a copy of
    the first run's features."""
    first: Subprocesses = LANE.result("start_first_run", factory)
    root = features_copy(first.root, factory.mktemp("horovod-local"))
    run = (str(BIN / "goldsmith"), "run", PIPELINE, "--set", f"storage.root={root}", "--set", GATES)
    torch = LANE.run(*run, "--set", TRAINER % "torch-distributor", "--stages", "train", timeout=900)
    horovod = LANE.run(*run, "--set", TRAINER % "horovod", "--stages", "train,score", timeout=900)
    return root, torch, horovod


@pytest.fixture(scope="session")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    root, torch, horovod = LANE.result("train_locally", tmp_path_factory)
    return LocalRun(root, Trained.of(torch), Trained.of(horovod))


def test_horovod_matches_torch_distributor_and_scores_december(local_run: LocalRun, reader: Reader) -> None:
    torch, horovod = local_run.torch, local_run.horovod
    assert torch.backend == "torch-distributor" and horovod.backend == "horovod"
    assert horovod.rows == torch.rows and horovod.rows[2] > 800  # the same November flights
    print(f"test ROC AUC: torch-distributor {torch.roc_auc:.4f}, horovod {horovod.roc_auc:.4f}")  # shown with -s
    assert abs(horovod.roc_auc - torch.roc_auc) <= 0.02, (torch, horovod)
    assert horovod.roc_auc >= 0.6
    # Version 1 is torch-distributor's; horovod's version 2 passed the gates and scores December.
    assert (torch.version, horovod.version, horovod.status) == (1, 2, "champion"), horovod.reasons
    december = reader.row(DECEMBER, local_run.root)["n"]
    scored = reader.row(SCORED, local_run.root)
    assert december > 800 and scored["n"] == december
    assert (scored["versions"], scored["version"]) == (1, 2)
    assert 0.0 < scored["low"] < scored["high"] < 1.0


@LANE.job(fixtures=("horovod_on_the_cluster",), needs=("start_first_run", "start_cluster"))
def submit_horovod(factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """In the background lane: the train and score stages with `backend: horovod` submitted to the cluster, on a
    copy of the first run's features. Its lakehouse root, the shipped --py-files archive, and the command's outcome."""
    first: Subprocesses = LANE.result("start_first_run", factory)
    cluster: Cluster = LANE.result("start_cluster", factory)
    folder = factory.mktemp("horovod-cluster")
    root = features_copy(first.root, folder)
    submit = submit_command(cluster.url, cluster.wheel, folder)
    done = LANE.run(*submit, "spark_jobs/pipeline.py", PIPELINE, "--stages", "train,score", "--set",
                    f"storage.root={root}", "--set", GATES, "--set", TRAINER % "horovod",
                    "--set", "spark.conf.spark.sql.shuffle.partitions=2",
                    env={"SPARK_LOCAL_IP": "127.0.0.1"}, timeout=900)
    return root, Path(submit[submit.index("--py-files") + 1]), done


@pytest.fixture(scope="session")
def horovod_on_the_cluster(tmp_path_factory: pytest.TempPathFactory,
                           ) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    return LANE.result("submit_horovod", tmp_path_factory)  # type: ignore[no-any-return]


def test_horovod_on_the_cluster_trains_the_same_model(
    local_run: LocalRun, horovod_on_the_cluster: tuple[Path, Path, subprocess.CompletedProcess[str]],
    cluster: Cluster, reader: Reader,
) -> None:
    root, code, done = horovod_on_the_cluster
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "2 processes (Spark tasks)" in done.stdout
    # Both ranks imported goldsmith from the shipped --py-files archive, not the workers' installed copy.
    line = next(x for x in done.stdout.splitlines() if "horovod ranks import goldsmith from" in x)
    paths = line.split(" from ", 1)[1].split(", ")
    assert paths and all(p.endswith(f"/{code.name}/goldsmith/__init__.py") for p in paths), line
    query = "select flight_id, probability, model_version from gold.flight_delay_predictions"
    rows = {r["flight_id"]: r for r in reader.rows(query, root)}
    local = {r["flight_id"]: r["probability"] for r in reader.rows(query, local_run.root)}
    assert rows.keys() == local.keys()
    # The same rows, seed and ranks give the same weights: the cluster's predictions are the local run's.
    for flight_id, row in rows.items():
        assert row["model_version"] == 1
        assert row["probability"] == pytest.approx(local[flight_id], abs=1e-6), flight_id
