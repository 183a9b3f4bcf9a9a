"""torch-distributor: a multilayer perceptron trained with PyTorch DDP under Spark's TorchDistributor.

The driver fits a `TabularEncoder` with Spark and snapshots the training rows as Parquet under the workdir
(`num_processes * FILES_PER_PROCESS` files). One distributed run trains every candidate: rank r reads files
r::world_size, encodes them, and all ranks step the same number of batches per epoch. Rank 0 writes each
candidate's weights (numpy) and per-epoch losses to `<workdir>/torch/<candidate index>/`. The trained model
predicts with a numpy forward pass, so scoring needs no torch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark.sql import functions as F

from goldsmith.errors import ConfigError, StageFailed
from goldsmith.io.paths import mounted_path
from goldsmith.ml.base import (
    LABEL,
    WEIGHT,
    Backend,
    Candidate,
    PandasModel,
    Problem,
    TrainingSets,
    feature_columns,
)
from goldsmith.ml.encoding import TabularEncoder
from goldsmith.ml.pandas_predictor import PyfuncPredictor
from goldsmith.ml.snapshots import sample_rows, snapshot_files, write_snapshot
from goldsmith.timing import Timer

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from goldsmith.config.models import TrainerConfig

log = logging.getLogger("goldsmith")

FILES_PER_PROCESS = 2
WEIGHTS_FILE = "weights.npz"
LOSS_FILE = "loss.json"
Layers = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class MLPSettings:
    """The parameters of the `mlp` algorithm. `batch_size` is rows per optimiser step over all processes."""

    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    epochs: int = 5
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0


PARAMS = tuple(MLPSettings.__dataclass_fields__)


def mlp_settings(algorithm: str, params: dict[str, Any], backend: str = "torch-distributor") -> MLPSettings:
    """Check a candidate's algorithm and parameters; ConfigError names the first bad one."""
    if algorithm != "mlp":
        raise ConfigError(f"trainer: {backend} has no algorithm {algorithm!r} (it trains 'mlp')")
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ConfigError(
            f"trainer: mlp has no parameter {unknown[0]!r} (its parameters: {', '.join(PARAMS)})"
        )
    defaults = MLPSettings()
    return MLPSettings(
        hidden=_hidden(params.get("hidden", defaults.hidden)),
        dropout=_number(params, "dropout", defaults.dropout, low=0.0, high=1.0, high_open=True),
        epochs=_integer(params, "epochs", defaults.epochs),
        batch_size=_integer(params, "batch_size", defaults.batch_size),
        lr=_number(params, "lr", defaults.lr, low=0.0, low_open=True),
        weight_decay=_number(params, "weight_decay", defaults.weight_decay, low=0.0),
    )


def _hidden(value: Any) -> tuple[int, ...]:
    """Layer sizes from a list, one int, or a string like '64,32' (search grids hold scalars only)."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\sx]+", value.strip()) if p]
        value = [int(p) if p.isdigit() else p for p in parts]
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
    ):
        raise ConfigError(f"trainer.params.hidden: layer sizes are positive integers, e.g. [64, 32], not {value!r}")
    return tuple(value)


def _integer(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"trainer.params.{name}: a positive integer, not {value!r}")
    return value


def _number(
    params: dict[str, Any], name: str, default: float, low: float, high: float = math.inf,
    low_open: bool = False, high_open: bool = False,
) -> float:
    value = params.get(name, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(f"trainer.params.{name}: a number in {left}{low}, {high}{right}, not {value!r}")
    return float(value)


def local_path(uri: str, backend: str = "torch-distributor") -> str:
    """The POSIX path of a workdir the driver and the executors mount (a path, file: or dbfs:)."""
    path = mounted_path(uri)
    if path is None:
        raise ConfigError(
            f"{backend} needs a workdir on a file system the driver and executors mount "
            f"(a path, file: or dbfs:), not {uri}"
        )
    return path


class TorchDistributorBackend(Backend):
    """Trains `mlp` candidates with DistributedDataParallel on CPU (gloo), one TorchDistributor run for all."""

    name = "torch-distributor"
    folder = "torch"  # under the workdir

    def train(self, problem: Problem, sets: TrainingSets) -> list[Candidate]:
        trainer = problem.spec.trainer
        candidates = trainer.candidates()
        settings = [mlp_settings(algorithm, params, self.name) for algorithm, params in candidates]
        features = problem.features
        if features.text:
            raise ConfigError(f"{self.name} trains on numeric and categorical features, not text")
        if problem.is_classifier and problem.n_classes < 2:
            raise ConfigError(f"a {problem.task} model needs at least two classes, found {problem.n_classes}")
        root_uri = f"{sets.workdir.rstrip('/')}/{self.folder}"
        root = Path(local_path(root_uri, self.name))
        self.check_slots(problem.name, trainer, sets.train.sparkSession)
        prepared = time.perf_counter()
        snapshot = self._snapshot(problem, sets, trainer, f"{root_uri}/snapshot")
        files = snapshot_files(root / "snapshot")
        if len(files) < trainer.num_processes:
            raise ConfigError(
                f"model {problem.name}: {len(files)} training file(s) for {trainer.num_processes} processes; "
                "too few training rows (lower trainer.num_processes)"
            )
        encoder = TabularEncoder.fit_spark(snapshot, features)
        target_mean, target_std = 0.0, 1.0
        if not problem.is_classifier:  # the network learns the standardised target
            stats = snapshot.agg(F.avg(LABEL).alias("mean"), F.stddev_pop(LABEL).alias("std")).first()
            assert stats is not None
            target_mean = float(stats["mean"] or 0.0)
            target_std = float(stats["std"]) if stats["std"] and stats["std"] > 1e-12 else 1.0

        job = {
            "files": files,
            "columns": [*encoder.numeric, *encoder.categorical],
            "classifier": problem.is_classifier,
            "outputs": problem.n_classes if problem.is_classifier else 1,
            "target_mean": target_mean,
            "target_std": target_std,
            "seed": problem.seed,
            "root": str(root),
            "candidates": [{"out_dir": str(root / str(i)), **asdict(s)} for i, s in enumerate(settings)],
        }
        mode = self.mode(trainer)
        log.info(
            "  %s: %d candidate(s), %d inputs, %d processes (%s); data prepared in %.1f s",
            problem.name, len(candidates), encoder.width, trainer.num_processes, mode, time.perf_counter() - prepared,
        )
        clear_outputs(job)
        with Timer() as watch:
            self.launch(job, encoder, trainer)
        reports = [json.loads((root / str(i) / LOSS_FILE).read_text()) for i in range(len(candidates))]
        rows = sum(reports[0]["rank_rows"])  # the ranks' shards partition the snapshot
        overhead = max(0.0, watch.seconds - sum(r["seconds"] for r in reports)) / len(candidates)

        results = []
        for i, ((algorithm, params), report) in enumerate(zip(candidates, reports, strict=True)):
            model = TorchMLPModel(
                encoder, load_layers(root / str(i) / WEIGHTS_FILE), problem.is_classifier, target_mean, target_std
            )
            seconds = report["seconds"] + overhead
            losses = [float(v) for v in report["epochs_loss"]]
            candidate = Candidate(
                algorithm=algorithm,
                params=params,
                predictor=PyfuncPredictor(problem, model),
                train_seconds=seconds,
                info={
                    "epochs_loss": losses,
                    "num_processes": trainer.num_processes,
                    "local_mode": trainer.local_mode,
                    "train_rows": rows,
                },
            )
            log.info(
                "  %s: %-40s %s rows, %d processes (%s), final loss %.4f  (%.1f s)",
                problem.name, candidate.label, f"{rows:,}", report["world_size"], mode, losses[-1], seconds,
            )
            results.append(candidate)
        return results

    def check_slots(self, model: str, trainer: TrainerConfig, spark: SparkSession) -> None:
        """ConfigError when the ranks would wait for Spark task slots the cluster does not have."""
        slots = None if trainer.local_mode else task_slots(spark)
        if slots is not None and slots < trainer.num_processes:
            raise ConfigError(
                f"model {model}: trainer.num_processes {trainer.num_processes} with local_mode: false needs "
                f"as many Spark task slots, the cluster has {slots} (lower num_processes or set local_mode: true)"
            )

    def mode(self, trainer: TrainerConfig) -> str:
        return "local mode" if trainer.local_mode else "barrier mode"

    def launch(self, job: dict[str, Any], encoder: TabularEncoder, trainer: TrainerConfig) -> None:
        run_distributed(job, encoder, trainer)

    @staticmethod
    def _snapshot(problem: Problem, sets: TrainingSets, trainer: TrainerConfig, path: str) -> DataFrame:
        """Write the (sampled) training rows as Parquet, `num_processes * FILES_PER_PROCESS` files; read back."""
        df = sets.train
        weight = F.col(WEIGHT).cast("double") if WEIGHT in df.columns else F.lit(1.0)
        df = df.where(F.col(LABEL).isNotNull()).select(
            *feature_columns(problem.features),
            F.col(LABEL).cast("double").alias(LABEL),
            F.coalesce(weight, F.lit(1.0)).alias(WEIGHT),
        )
        df = sample_rows(df, trainer.max_train_rows, problem.seed)
        write_snapshot(df, path, files=trainer.num_processes * FILES_PER_PROCESS)
        return df.sparkSession.read.parquet(path)


def task_slots(spark: SparkSession) -> int | None:
    """How many tasks the cluster runs at once (a barrier stage needs one per process); None if unknown."""
    try:
        context = spark.sparkContext._jsc.sc()
        return int(context.maxNumConcurrentTasks(context.resourceProfileManager().defaultResourceProfile()))
    except Exception:  # Spark Connect, or an internal API that moved
        return None


def run_distributed(job: dict[str, Any], encoder: TabularEncoder, trainer: TrainerConfig) -> None:
    """Run `train_ranks` under TorchDistributor; its output is kept from the console unless the run fails."""
    from pyspark.ml.torch.distributor import TorchDistributor

    distributor = TorchDistributor(
        num_processes=trainer.num_processes, local_mode=trainer.local_mode, use_gpu=False
    )
    distributor.logger.setLevel(logging.WARNING)
    with captured_run("torch-distributor", job):
        distributor.run(train_ranks, job, encoder)


def clear_outputs(job: dict[str, Any]) -> None:
    """Empty every candidate's output folder and drop the last run's rank error reports."""
    for stale in Path(job["root"]).glob("error-rank*.txt"):
        stale.unlink()
    for spec in job["candidates"]:
        shutil.rmtree(spec["out_dir"], ignore_errors=True)
        Path(spec["out_dir"]).mkdir(parents=True)


@contextlib.contextmanager
def captured_run(backend: str, job: dict[str, Any]) -> Iterator[io.StringIO]:
    """Run the block with the console captured (shown at debug level); StageFailed with the most telling error
    line when it raises or a candidate has no report."""
    captured = io.StringIO()
    failure: BaseException | None = None
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            yield captured
    except Exception as exc:
        failure = exc
    output = captured.getvalue()
    if output.strip():
        log.debug("%s output:\n%s", backend, output)
    missing = [s["out_dir"] for s in job["candidates"] if not (Path(s["out_dir"]) / LOSS_FILE).exists()]
    if failure is not None or missing:
        message = first_error(Path(job["root"]), output, failure)
        raise StageFailed(f"{backend} training failed: {message}") from None


_ERROR_LINE = re.compile(r"^\s*(?:\[rank\d+\]:\s*)?((?:[\w.]+\.)?\w*(?:Error|Exception|Exit|Interrupt)\b(?::.*)?)$")
_COLLATERAL = ("ChildFailedError", "TorchDistributor failed", "Command [", "PythonException")


def first_error(root: Path, output: str, failure: BaseException | None) -> str:
    """The most telling error line: the exception of the earliest rank traceback in `root`, else the first
    exception line of the workers' output or of the failure."""
    reports = sorted(root.glob("error-rank*.txt"), key=lambda p: p.stat().st_mtime_ns)
    for report in reports:
        lines = [line for line in report.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return f"{lines[-1].strip()} ({report.stem.removeprefix('error-')})"
    texts = [output, str(failure) if failure is not None else ""]
    for text in texts:
        for line in text.splitlines():
            found = _ERROR_LINE.match(line)
            if found and not any(noise in line for noise in _COLLATERAL):
                return found.group(1).strip()[:500]
    if failure is not None:
        lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
        return (lines[0] if lines else type(failure).__name__)[:500]
    return "no weights were written (see the debug log for the workers' output)"


def train_ranks(job: dict[str, Any], encoder: TabularEncoder) -> None:
    """The function every DDP process runs; its traceback, if any, goes to `<root>/error-rank<r>.txt` too."""
    rank = int(os.environ.get("RANK", "0"))
    with rank_errors(job, rank):
        _train_ranks(job, encoder, rank, int(os.environ.get("WORLD_SIZE", "1")))


@contextlib.contextmanager
def rank_errors(job: dict[str, Any], rank: int) -> Iterator[None]:
    """A rank's block: what it raises is also written to `<root>/error-rank<rank>.txt`, where `first_error`
    finds it (the launcher itself sees only that a process failed)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            Path(job["root"], f"error-rank{rank}.txt").write_text(traceback.format_exc())
        raise


def _train_ranks(job: dict[str, Any], encoder: TabularEncoder, rank: int, world: int) -> None:
    import torch.distributed as dist

    shard = load_shard(job, encoder, rank, world)
    dist.init_process_group("gloo")
    try:
        train_candidates(job, encoder, shard, DDPCollectives(rank, world))
    finally:
        dist.destroy_process_group()


@dataclass
class Shard:
    """One rank's training rows as tensors: encoded features, targets (class index or standardised value), weights."""

    features: Any
    targets: Any
    weights: Any

    def __len__(self) -> int:
        return int(self.features.shape[0])


def load_shard(job: dict[str, Any], encoder: TabularEncoder, rank: int, world: int) -> Shard:
    """Rank `rank`'s files of the snapshot (files rank::world), encoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    torch.set_num_threads(1)
    mine = job["files"][rank::world]
    columns = [*job["columns"], LABEL, WEIGHT]
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in mine]) if mine else None
    pdf = table.to_pandas() if table is not None else None
    if pdf is None or len(pdf) == 0:
        x = np.zeros((0, encoder.width), dtype=np.float32)
        label = weight = np.zeros(0)
    else:
        x = encoder.transform(pdf)
        label, weight = pdf[LABEL].to_numpy(dtype=np.float64), pdf[WEIGHT].to_numpy(dtype=np.float64)
    if job["classifier"]:
        targets = torch.from_numpy(label.astype(np.int64))
    else:
        targets = torch.from_numpy(((label - job["target_mean"]) / job["target_std"]).astype(np.float32))
    return Shard(torch.from_numpy(x), targets, torch.from_numpy(weight.astype(np.float32)))


class Collectives:
    """What the training loop asks of the process group; one subclass per way of launching ranks."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank = rank
        self.world = world

    def gather_counts(self, count: int) -> list[int]:
        """Every rank's `count`, in rank order."""
        raise NotImplementedError

    def sum(self, tensor: Any) -> Any:
        """The element-wise sum of `tensor` over the ranks."""
        raise NotImplementedError

    def distribute(self, net: Any, optimizer: Any) -> tuple[Any, Any]:
        """The module to step and the optimizer, with rank 0's initial state on every rank and gradients averaged."""
        raise NotImplementedError

    def barrier(self) -> None:
        raise NotImplementedError


class DDPCollectives(Collectives):
    """torch.distributed (gloo), as TorchDistributor starts it: DistributedDataParallel averages the gradients."""

    def gather_counts(self, count: int) -> list[int]:
        import torch
        import torch.distributed as dist

        counts = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world)]
        dist.all_gather(counts, torch.tensor([count], dtype=torch.int64))
        return [int(c.item()) for c in counts]

    def sum(self, tensor: Any) -> Any:
        import torch.distributed as dist

        dist.all_reduce(tensor)
        return tensor

    def distribute(self, net: Any, optimizer: Any) -> tuple[Any, Any]:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(net), optimizer  # DDP broadcasts rank 0's parameters as it wraps

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()


def train_candidates(job: dict[str, Any], encoder: TabularEncoder, shard: Shard, comm: Collectives) -> None:
    """Train every candidate of `job` on this rank's shard; rank 0 writes each one's weights and report."""
    import torch

    rank, world = comm.rank, comm.world
    rank_rows = comm.gather_counts(len(shard))
    shared_rows = min(rank_rows)  # every rank steps through this many rows per epoch
    if shared_rows == 0:
        raise ValueError(f"a process has no training rows (rows per process: {rank_rows})")
    for spec in job["candidates"]:
        started = time.perf_counter()
        settings = MLPSettings(**{k: v for k, v in spec.items() if k != "out_dir"})
        torch.manual_seed(job["seed"] + rank)
        generator = torch.Generator().manual_seed(job["seed"] + rank)
        net = build_mlp(encoder.width, settings.hidden, job["outputs"], settings.dropout)
        optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        model, optimizer = comm.distribute(net, optimizer)
        per_rank = max(1, settings.batch_size // world)
        losses = []
        for _ in range(settings.epochs):
            model.train()
            order = torch.randperm(len(shard), generator=generator)[:shared_rows]
            totals = torch.zeros(2, dtype=torch.float64)
            for start in range(0, shared_rows, per_rank):
                batch = order[start : start + per_rank]
                out, w = model(shard.features[batch]), shard.weights[batch]
                if job["classifier"]:
                    each = torch.nn.functional.cross_entropy(out, shard.targets[batch], reduction="none")
                else:
                    each = (out[:, 0] - shard.targets[batch]) ** 2
                loss = (each * w).sum() / w.sum().clamp_min(1e-12)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                totals += torch.stack([(each.detach() * w).sum(), w.sum()]).double()
            totals = comm.sum(totals)
            losses.append(float(totals[0] / totals[1].clamp_min(1e-12)))
        if rank == 0:
            out_dir = Path(spec["out_dir"])
            arrays: dict[str, Any] = {}
            for i, (weight_matrix, bias) in enumerate(linear_layers(net)):
                arrays[f"w{i}"], arrays[f"b{i}"] = weight_matrix, bias
            with open(out_dir / f".{WEIGHTS_FILE}", "wb") as f:
                np.savez(f, **arrays)
            os.replace(out_dir / f".{WEIGHTS_FILE}", out_dir / WEIGHTS_FILE)
            report = {
                "epochs_loss": losses,
                "world_size": world,
                "rank_rows": rank_rows,
                "steps_per_epoch": math.ceil(shared_rows / per_rank),
                "rows_per_step": per_rank * world,
                "seconds": time.perf_counter() - started,
            }
            (out_dir / LOSS_FILE).write_text(json.dumps(report))
    comm.barrier()


def build_mlp(width: int, hidden: tuple[int, ...], outputs: int, dropout: float) -> Any:
    """The network: Linear -> ReLU -> Dropout per hidden layer, then a Linear to the outputs."""
    import torch

    layers: list[Any] = []
    size = width
    for h in hidden:
        layers += [torch.nn.Linear(size, h), torch.nn.ReLU()]
        if dropout > 0:
            layers.append(torch.nn.Dropout(dropout))
        size = h
    layers.append(torch.nn.Linear(size, outputs))
    return torch.nn.Sequential(*layers)


def linear_layers(net: Any) -> Layers:
    """The (weight, bias) arrays of each Linear layer of `net`, in order, as float32 numpy."""
    import torch

    return [
        (m.weight.detach().cpu().numpy().astype(np.float32), m.bias.detach().cpu().numpy().astype(np.float32))
        for m in net.modules()
        if isinstance(m, torch.nn.Linear)
    ]


def load_layers(path: Path) -> Layers:
    """The layers rank 0 saved."""
    with np.load(path) as arrays:
        return [(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(len(arrays.files) // 2)]


class TorchMLPModel(PandasModel):
    """The trained MLP as numpy arrays: encoder, then Linear/ReLU layers; softmax for classification,
    the de-standardised output for regression."""

    def __init__(
        self, encoder: TabularEncoder, layers: Layers, classifier: bool, target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        self.encoder = encoder
        self.layers = layers
        self.classifier = classifier
        self.target_mean = target_mean
        self.target_std = target_std

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The network's raw outputs (logits) for encoded rows."""
        h = np.asarray(x, dtype=np.float32)
        for i, (weight, bias) in enumerate(self.layers):
            h = h @ weight.T + bias
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        if not self.classifier:
            raise TypeError("a regression model has no class probabilities")
        logits = self.forward(self.encoder.transform(features)).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict_value(self, features: pd.DataFrame) -> np.ndarray:
        if self.classifier:
            raise TypeError("a classification model predicts probabilities")
        out = self.forward(self.encoder.transform(features))[:, 0].astype(np.float64)
        return out * self.target_std + self.target_mean
