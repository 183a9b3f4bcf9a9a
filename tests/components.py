"""What the suite does when a component a test runs is not here (a server binary, a built library): in CI
(`CI=true`, where set-up provides everything) the test fails; on a developer's machine it is skipped, with why."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(skip: str, fail: str) -> NoReturn:
    """Skip with `skip` (also at a module's top level), or fail with `fail` in CI."""
    if in_ci():
        pytest.fail(fail, pytrace=False)
    pytest.skip(skip, allow_module_level=True)
