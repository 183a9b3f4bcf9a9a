"""Training snapshots: the rows a Python backend trains on outside the JVM, written once as Parquet under the
training workdir (`TrainingSets.workdir`) by Spark and read back by Python with pyarrow.

scikit-learn (`sklearn_udf`) snapshots the train and validation sets and each candidate's task reads both whole;
PyTorch (`torch_ddp`) snapshots the train set in `num_processes * FILES_PER_PROCESS` files and each rank reads
its share of the files. Both sample the train set first to `trainer.max_train_rows`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame

from goldsmith.io.paths import mounted_path

if TYPE_CHECKING:
    import pandas as pd


def sample_rows(df: DataFrame, limit: int | None, seed: int) -> DataFrame:
    """At most `limit` rows, a seeded sample (the whole DataFrame when it is small enough, or `limit` is None)."""
    if limit is None:
        return df
    total = df.count()
    if total <= limit:
        return df
    return df.sample(fraction=min(1.0, 1.1 * limit / total), seed=seed).limit(limit)


def write_snapshot(df: DataFrame, uri: str, files: int | None = None) -> None:
    """Write `df` as Parquet at `uri` (replacing what is there), in `files` files when given."""
    if files is not None:
        df = df.repartition(files)
    df.write.mode("overwrite").parquet(uri)


def snapshot_files(folder: Path) -> list[str]:
    """The Parquet files of a snapshot in a mounted folder, sorted (what a rank's share is taken from)."""
    return sorted(str(p) for p in folder.glob("*.parquet"))


def arrow_path(uri: str) -> str:
    """A path pyarrow opens: `file:` URIs become local paths, `dbfs:/` the FUSE mount, `s3a://` `s3://`."""
    path = mounted_path(uri)
    if path is not None:
        return path
    for scheme in ("s3a://", "s3n://"):
        if uri.startswith(scheme):
            return "s3://" + uri[len(scheme):]
    return uri


def read_snapshot(uri: str, store: dict[str, str] | None = None) -> pd.DataFrame:
    """A whole snapshot as one pandas DataFrame (on a worker); `store`: the object store's settings
    (`goldsmith.io.object_store.arrow_options`, taken on the driver) when `uri` is on one."""
    import pyarrow.parquet as pq

    if store is not None:
        from goldsmith.io.object_store import arrow_path as store_path

        path, filesystem = store_path(uri, store)
        return pq.read_table(path, filesystem=filesystem).to_pandas()
    return pq.read_table(arrow_path(uri)).to_pandas()
