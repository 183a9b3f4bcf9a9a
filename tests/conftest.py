"""Shared by every test layer: where the repository is."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (conf/, spark_jobs/, ...)."""
    return REPO
