"""Pipeline configuration: typed models and the loader."""

from goldsmith.config.loader import load_pipeline
from goldsmith.config.models import PipelineConfig

__all__ = ["PipelineConfig", "load_pipeline"]
