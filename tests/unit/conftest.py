"""Unit tests run without Spark and without the caller's goldsmith environment variables."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GOLDSMITH_ROOT", "GOLDSMITH_ENV", "GOLDSMITH_MASTER", "GOLDSMITH_CATALOG"):
        monkeypatch.delenv(var, raising=False)
