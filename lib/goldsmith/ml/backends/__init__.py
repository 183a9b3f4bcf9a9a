"""Training backends, imported only when a model asks for them (torch is heavy)."""

from __future__ import annotations

from goldsmith.errors import BackendUnavailable
from goldsmith.ml.base import Backend


def get_backend(name: str) -> Backend:
    """The backend called `name` in the pipeline YAML."""
    if name == "spark-ml":
        from goldsmith.ml.backends.spark_ml import SparkMLBackend

        return SparkMLBackend()
    if name == "sklearn-udf":
        from goldsmith.ml.backends.sklearn_udf import SklearnUdfBackend

        return SklearnUdfBackend()
    if name == "torch-distributor":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise BackendUnavailable(
                "trainer.backend torch-distributor needs PyTorch: pip install 'goldsmith[torch]' "
                "(torch==2.13.0); `scripts/setup.sh test` installs it"
            ) from None
        from goldsmith.ml.backends.torch_ddp import TorchDistributorBackend

        return TorchDistributorBackend()
    raise BackendUnavailable(f"unknown training backend {name!r}")
