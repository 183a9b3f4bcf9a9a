"""The Python worker daemon of a local goldsmith session: PySpark's own daemon, minus a per-task cost of CPython 3.11.

Before every task a PySpark worker calls `importlib.invalidate_caches()` (it may have received new files). On
CPython 3.11 that makes every `zipimporter` on the worker's path re-read its archive's directory at once; a
worker's path holds `pyspark.zip` (1,328 entries, one importer per imported sub-package) and Spark's core jar
(5,358 entries), so each task spent ~120 ms re-reading them: measured 145 ms between two no-op tasks on one
worker, which made 89 one-group tasks cost 7 s of overhead on 2 cores. CPython 3.12 made the re-read lazy
(python/cpython#103200); on 3.11 this module turns it off. The archives on a worker's path are PySpark's own and
files Spark ships, which keep their content for the life of the application (a file added later is a new path
with a new importer), so nothing has to be re-read.

`goldsmith.session.build_session` selects this module (`spark.python.daemon.module`) only when the workers run
this interpreter, where goldsmith is importable.
"""

from __future__ import annotations

import sys
import zipimport


def _keep_directory(self: zipimport.zipimporter) -> None:
    """An archive on a worker's path does not change while the application runs: keep its directory."""


if sys.version_info < (3, 12):
    zipimport.zipimporter.invalidate_caches = _keep_directory  # type: ignore[method-assign]

from pyspark import daemon  # noqa: E402  (after the patch: the daemon forks the workers that run the tasks)

if __name__ == "__main__":
    daemon.manager()
