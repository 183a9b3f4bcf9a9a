"""The JVM class archive's path and options (no JVM here; tests/spark checks the shared session maps it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldsmith import class_archive


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GOLDSMITH_CACHE", str(tmp_path))
    monkeypatch.delenv("GOLDSMITH_CLASS_ARCHIVE", raising=False)
    return tmp_path


def test_no_archive_no_options(cache: Path) -> None:
    assert class_archive.archive_path().parent == cache / "cds"
    assert class_archive.java_options() == []


def test_a_recorded_archive_is_mapped_quietly(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = class_archive.archive_path()
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"recorded")
    options = class_archive.java_options()
    assert options[0] == f"-XX:SharedArchiveFile={archive}"
    assert "-Xshare:auto" in options and "-Xlog:cds=off" in options  # a stale archive is ignored, silently
    monkeypatch.setenv("GOLDSMITH_CLASS_ARCHIVE", "0")
    assert class_archive.java_options() == []


def test_each_java_has_its_own_archive(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = class_archive.archive_path()
    other = tmp_path / "jdk"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "java").write_text("")
    monkeypatch.setenv("JAVA_HOME", str(other))
    assert class_archive.archive_path() != first


def test_setup_command_usage(capsys: pytest.CaptureFixture[str], cache: Path) -> None:
    assert class_archive.main([]) == 2
    assert "usage" in capsys.readouterr().err
    assert class_archive.main(["--path"]) == 0
    assert capsys.readouterr().out.strip() == str(class_archive.archive_path())
