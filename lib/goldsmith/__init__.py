"""goldsmith: raw files to gold Delta tables and production models on Apache Spark."""

__version__ = "0.1.0"
