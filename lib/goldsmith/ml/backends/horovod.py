"""horovod: the torch-distributor's multilayer perceptron, trained with Horovod on Spark (`horovod.spark.run`).

Everything but the launch is the torch backend's: the driver snapshots the training rows as Parquet under the
workdir and fits the encoder with Spark; each rank reads its own files of the snapshot (r::world_size), and rank 0
writes each candidate's weights, so the model predicts with numpy and scoring needs no torch. Here the ranks are
processes Horovod starts from `num_processes` Spark tasks on the executors (in local mode, the driver's JVM runs
those tasks), rank 0's initial parameters and optimizer state are broadcast, and `hvd.DistributedOptimizer`
averages the gradients over Gloo.

Horovod 0.28.1 is PyPI's last release and only builds against PyTorch >= 2.1 with the C++17 change upstream made
afterwards: `scripts/horovod/build` applies it and caches the wheel (`scripts/setup.sh horovod` or `test`).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from goldsmith.errors import ConfigError
from goldsmith.ml.backends.torch_ddp import (
    Collectives,
    TorchDistributorBackend,
    captured_run,
    load_shard,
    rank_errors,
    task_slots,
    train_candidates,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from goldsmith.config.models import TrainerConfig
    from goldsmith.ml.encoding import TabularEncoder

log = logging.getLogger("goldsmith")

# How long the ranks' Spark tasks may take to start and register before Horovod gives up (its default is 600 s).
START_TIMEOUT_SECONDS = 120


class HorovodBackend(TorchDistributorBackend):
    """Trains `mlp` candidates with Horovod (Gloo, CPU): one `horovod.spark.run` for all of them."""

    name = "horovod"
    folder = "horovod"

    def check_slots(self, model: str, trainer: TrainerConfig, spark: SparkSession) -> None:
        # Every rank is a Spark task, whatever local_mode says: the tasks must all run at once.
        slots = task_slots(spark)
        if slots is not None and slots < trainer.num_processes:
            raise ConfigError(
                f"model {model}: trainer.num_processes {trainer.num_processes} needs as many Spark task slots for "
                f"Horovod's ranks, the cluster has {slots} (lower num_processes)"
            )

    def mode(self, trainer: TrainerConfig) -> str:
        return "Spark tasks"

    def launch(self, job: dict[str, Any], encoder: TabularEncoder, trainer: TrainerConfig) -> None:
        import horovod.spark
        from pyspark import SparkContext

        context = SparkContext._active_spark_context
        assert context is not None
        # The ranks are new Python processes in the executors' working directories: they see the code shipped
        # with --py-files only through these paths (Spark puts them on its own workers' sys.path, not on theirs).
        shipped = [Path(p).name for p in context.getConf().get("spark.submit.pyFiles", "").split(",") if p]
        # Horovod's thread that runs the ranks' Spark job re-raises the job's failure after the run has reported it:
        # at debug level, not as a second traceback on the console.
        previous = threading.excepthook
        threading.excepthook = lambda hook: log.debug("horovod's Spark job thread: %s", hook.exc_value)
        # Its thread's Py4J connection can be reset as the thread ends; Py4J resends the command on a new one and
        # logs the reset with a traceback (seen once in four runs of scripts/bench_distributed.py): kept quiet.
        py4j = logging.getLogger("py4j.clientserver")
        with contextlib.ExitStack() as stack:
            stack.callback(setattr, threading, "excepthook", previous)
            stack.callback(py4j.setLevel, py4j.level)
            py4j.setLevel(logging.CRITICAL)
            output = stack.enter_context(captured_run(self.name, job))
            imported = horovod.spark.run(
                rank_entry(shipped),
                args=(job, pickle.dumps(encoder)),
                num_proc=trainer.num_processes,
                use_gloo=True,
                verbose=0,
                start_timeout=START_TIMEOUT_SECONDS,
                stdout=output,
                stderr=output,
            )
        if shipped:  # on a cluster: where the ranks found goldsmith (the shipped code, not a worker's own copy)
            log.info("  horovod ranks import goldsmith from %s", ", ".join(sorted(set(imported))))


def rank_entry(shipped: list[str]) -> Any:
    """The function each rank runs. It is a closure so that cloudpickle sends it by value: it puts the shipped
    code on the path before anything of goldsmith is unpickled (the encoder travels as bytes for that reason), and
    returns where the rank imported goldsmith from."""

    def entry(job: dict[str, Any], encoder: bytes) -> str:
        import os
        import pickle
        import sys

        workdir = os.environ.get("HOROVOD_SPARK_WORK_DIR", os.getcwd())
        for name in shipped:
            path = os.path.join(workdir, name)
            if os.path.exists(path) and path not in sys.path:
                sys.path.insert(0, path)
        import goldsmith
        from goldsmith.ml.backends.horovod import horovod_ranks

        horovod_ranks(job, pickle.loads(encoder))
        return str(goldsmith.__file__)

    return entry


def horovod_ranks(job: dict[str, Any], encoder: TabularEncoder) -> None:
    """One rank: its shard of the snapshot, the shared training loop; a traceback goes to error-rank<r>.txt."""
    import horovod.torch as hvd

    hvd.init()
    rank = hvd.rank()
    with rank_errors(job, rank):
        shard = load_shard(job, encoder, rank, hvd.size())
        train_candidates(job, encoder, shard, HorovodCollectives(rank, hvd.size()))
    hvd.shutdown()


class HorovodCollectives(Collectives):
    """Horovod's collectives: rank 0's state broadcast, gradients averaged by `hvd.DistributedOptimizer`."""

    def gather_counts(self, count: int) -> list[int]:
        import horovod.torch as hvd
        import torch

        return [int(c) for c in hvd.allgather(torch.tensor([count], dtype=torch.int64), name="rows").tolist()]

    def sum(self, tensor: Any) -> Any:
        import horovod.torch as hvd

        return hvd.allreduce(tensor, op=hvd.Sum, name="loss_totals")

    def distribute(self, net: Any, optimizer: Any) -> tuple[Any, Any]:
        import horovod.torch as hvd

        hvd.broadcast_parameters(net.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        return net, hvd.DistributedOptimizer(optimizer, named_parameters=net.named_parameters())

    def barrier(self) -> None:
        import horovod.torch as hvd

        hvd.barrier()
