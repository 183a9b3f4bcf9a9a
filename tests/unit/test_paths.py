"""Storage roots: the commands' default root, and which roots are local folders (read without Spark)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from goldsmith.io.paths import local_folder, storage_root


def test_storage_root_prefers_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert storage_root(None) == "lakehouse"
    monkeypatch.setenv("GOLDSMITH_ROOT", "/data/lake")
    assert storage_root(None) == "/data/lake"
    assert storage_root("elsewhere") == "elsewhere"


def test_local_folders_are_plain_paths_and_file_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert local_folder("lakehouse") == os.path.join(str(tmp_path), "lakehouse")
    assert local_folder("/data/lake/") == "/data/lake"
    assert local_folder("file:/data/lake") == local_folder("file:///data/lake") == "/data/lake"
    for remote in ("s3a://bucket/lake", "abfss://c@a.dfs.core.windows.net/lake", "dbfs:/lake", "hdfs:/lake"):
        assert local_folder(remote) is None
