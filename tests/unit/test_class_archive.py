"""The JVM class archive's path and options (no JVM here; tests/spark checks the shared session maps it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from goldsmith import class_archive


@pytest.fixture
def venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A virtualenv of its own (sys.prefix) with a pyspark jars folder of its own."""
    prefix = tmp_path / "venv"
    jars = prefix / "jars"
    jars.mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(class_archive, "_spark_jars", lambda: jars)
    monkeypatch.delenv("GOLDSMITH_CLASS_ARCHIVE", raising=False)
    return prefix


def test_no_archive_no_options(venv: Path) -> None:
    assert class_archive.archive_path().parent == venv / "goldsmith-cds"
    assert class_archive.java_options() == []


def test_outside_a_virtualenv_the_cache_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)
    monkeypatch.setenv("GOLDSMITH_CACHE", str(tmp_path))
    assert class_archive.archive_path().parent == tmp_path / "cds"


def test_another_class_path_has_another_archive(venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second clone's jars (same versions, another folder) must not find the first clone's archive: its JVM
    would refuse it without a word."""
    first = class_archive.archive_path()
    other = tmp_path / "clone2" / "jars"
    other.mkdir(parents=True)
    monkeypatch.setattr(class_archive, "_spark_jars", lambda: other)
    assert class_archive.archive_path().name != first.name


def test_a_reinstalled_jar_folder_has_another_archive(venv: Path) -> None:
    first = class_archive.archive_path()
    jars = class_archive._spark_jars()
    stat = jars.stat()
    os.utime(jars, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert class_archive.archive_path() != first


def test_a_recorded_archive_is_mapped_quietly(venv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = class_archive.archive_path()
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"recorded")
    options = class_archive.java_options()
    assert options[0] == f"-XX:SharedArchiveFile={archive}"
    assert "-Xshare:auto" in options and "-Xlog:cds=off" in options  # a stale archive is ignored, silently
    monkeypatch.setenv("GOLDSMITH_CLASS_ARCHIVE", "0")
    assert class_archive.java_options() == []


def test_each_java_has_its_own_archive(venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = class_archive.archive_path()
    other = tmp_path / "jdk"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "java").write_text("")
    monkeypatch.setenv("JAVA_HOME", str(other))
    assert class_archive.archive_path() != first


def test_setup_command_usage(capsys: pytest.CaptureFixture[str], venv: Path) -> None:
    assert class_archive.main([]) == 2
    assert "usage" in capsys.readouterr().err
    assert class_archive.main(["--path"]) == 0
    assert capsys.readouterr().out.strip() == str(class_archive.archive_path())


def test_a_new_recording_removes_the_virtualenvs_stale_archives(venv: Path) -> None:
    archive = class_archive.archive_path()
    archive.parent.mkdir(parents=True)
    stale = archive.parent / "spark-0000000000000000.jsa"
    for path in (archive, stale):
        path.write_bytes(b"recorded")
    assert class_archive.remove_stale(archive) == [stale]
    assert archive.is_file() and not stale.exists()


def test_a_batch_jvm_gets_the_parallel_collector_unless_the_user_picks_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from goldsmith import session

    monkeypatch.setenv(session.JAVA_OPTIONS, "-XX:TieredStopAtLevel=1")
    options = session.driver_java_options()
    assert options[-2:] == [session.BATCH_GC, "-XX:TieredStopAtLevel=1"]  # the user's options come last
    assert session.BATCH_GC not in session.driver_java_options(batch=False)  # a server keeps Java's default
    monkeypatch.setenv(session.JAVA_OPTIONS, "-XX:+UseZGC -Xmx1g")
    options = session.driver_java_options()
    # Two collectors would stop the JVM at start ("Conflicting collector combinations").
    assert session.BATCH_GC not in options and options[-2:] == ["-XX:+UseZGC", "-Xmx1g"]
