"""Training backends, imported only when a model asks for them (torch is heavy)."""

from __future__ import annotations

from importlib.util import find_spec

from goldsmith.errors import BackendUnavailable
from goldsmith.ml.base import Backend

TORCH_HINT = "pip install 'goldsmith[torch]' (torch==2.13.0); `scripts/setup.sh test` installs it"
HOROVOD_HINT = (
    "pip install 'goldsmith[horovod]' brings its runtime dependencies; Horovod itself is built from PyPI's "
    "0.28.1 sdist by scripts/horovod/build (`scripts/setup.sh horovod` does both)"
)


def require(name: str) -> None:
    """BackendUnavailable, naming what to install, when backend `name` cannot be imported here. Cheap: it looks
    for the modules without importing them, so `goldsmith validate` and a run check it before Spark starts."""
    if name in ("spark-ml", "sklearn-udf"):
        return
    if name not in ("torch-distributor", "horovod"):
        raise BackendUnavailable(f"unknown training backend {name!r}")
    if find_spec("torch") is None:
        raise BackendUnavailable(f"trainer.backend {name} needs PyTorch: {TORCH_HINT}")
    if name == "horovod":
        if find_spec("horovod") is None or find_spec("horovod.torch.mpi_lib_v2") is None:
            raise BackendUnavailable(
                f"trainer.backend horovod needs Horovod with its PyTorch extension: {HOROVOD_HINT}"
            )


def get_backend(name: str) -> Backend:
    """The backend called `name` in the pipeline YAML."""
    require(name)
    if name == "spark-ml":
        from goldsmith.ml.backends.spark_ml import SparkMLBackend

        return SparkMLBackend()
    if name == "sklearn-udf":
        from goldsmith.ml.backends.sklearn_udf import SklearnUdfBackend

        return SklearnUdfBackend()
    if name == "torch-distributor":
        from goldsmith.ml.backends.torch_ddp import TorchDistributorBackend

        return TorchDistributorBackend()
    from goldsmith.ml.backends.horovod import HorovodBackend

    return HorovodBackend()
