"""Unit tests run without Spark and without the caller's goldsmith environment variables."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GOLDSMITH_ROOT", "GOLDSMITH_ENV", "GOLDSMITH_MASTER", "GOLDSMITH_CATALOG"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def no_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that must finish before any SparkSession exists: starting one (or reusing the test process's)
    fails it. A tripwire on the two ways a session is had, not a stand-in for Spark."""
    from pyspark.sql import SparkSession

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a SparkSession was asked for: the command should have stopped before Spark")

    monkeypatch.setattr(SparkSession, "getActiveSession", classmethod(lambda cls: refuse()))
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", refuse)
