"""A local session's Python workers run goldsmith's daemon: no re-read of the archives on their path per task."""

from __future__ import annotations

import sys

import pytest
from pyspark.sql import SparkSession


def test_local_workers_run_goldsmith_daemon(spark: SparkSession) -> None:
    def _worker_facts(_: object) -> tuple[str, int, int]:  # defined here: a test module is not importable by workers
        import importlib
        import zipimport

        importers = [i for i in sys.path_importer_cache.values() if isinstance(i, zipimport.zipimporter)]
        before = [id(i._files) for i in importers]  # type: ignore[attr-defined]
        importlib.invalidate_caches()  # what PySpark's worker does before every task
        reread = sum(id(i._files) != b for i, b in zip(importers, before, strict=True))  # type: ignore[attr-defined]
        return zipimport.zipimporter.invalidate_caches.__qualname__, len(importers), reread

    assert spark.conf.get("spark.python.daemon.module") == "goldsmith.spark_daemon"
    facts = spark.sparkContext.parallelize(range(2), 2).map(_worker_facts).collect()
    # Every worker has imported pyspark from its zip archive (one importer per sub-package).
    assert all(importers > 0 for _, importers, _ in facts), facts
    if sys.version_info < (3, 12):
        assert {name for name, _, _ in facts} == {"_keep_directory"}
    # With the stock daemon on 3.11 every one of them re-reads its archive here (~100 ms a task).
    assert [reread for _, _, reread in facts] == [0, 0]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="CPython 3.12 re-reads zip directories lazily")
def test_stock_invalidate_caches_rereads_every_zip_on_the_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The cost the daemon removes, shown without Spark: 3.11 re-reads an imported archive at each call."""
    import importlib
    import zipfile
    import zipimport

    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("probe_pkg/__init__.py", "")
        for i in range(3000):
            zf.writestr(f"probe_pkg/m{i}.py", "")
    sys.path.insert(0, str(archive))
    try:
        importlib.import_module("probe_pkg")
        importer = sys.path_importer_cache[str(archive)]
        assert isinstance(importer, zipimport.zipimporter)
        before = importer._files  # type: ignore[attr-defined]
        importlib.invalidate_caches()
        assert importer._files is not before  # type: ignore[attr-defined]  # read again: a new directory dict
    finally:
        sys.path.remove(str(archive))
        sys.modules.pop("probe_pkg", None)
        sys.path_importer_cache.pop(str(archive), None)


def test_executor_probe_reports_what_the_workers_import(spark: SparkSession) -> None:
    import goldsmith
    from goldsmith.session import executor_goldsmith, executors_problem

    found = executor_goldsmith(spark)
    assert {(version, file, error) for _, version, file, error in found} == \
        {(goldsmith.__version__, goldsmith.__file__, "")}
    assert executors_problem(found) is None
