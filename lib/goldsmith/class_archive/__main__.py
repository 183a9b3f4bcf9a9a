"""`python -m goldsmith.class_archive PIPELINE.yml | --path`, the set-up command (`scripts/setup.sh`): record the
class archive of this virtualenv and Java unless it exists, or print its path.

Recording runs a pipeline (`goldsmith.jobs.pipeline`), which starts Spark through the session factory, which
maps the archive (`goldsmith.class_archive`): so the recording lives here, above all three, and the package's
own module stays below the session factory.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from goldsmith.class_archive import LOG_OFF, archive_path, main, remove_stale
from goldsmith.config import load_pipeline
from goldsmith.examples import write_flights_landing
from goldsmith.jobs.pipeline import run_pipeline
from goldsmith.jvm import log4j_option
from goldsmith.session import build_session


def record(pipeline: Path, limit: int = 300) -> Path:
    """Run the pipeline's ingest, refine and features on `limit` example flights in a JVM that writes the
    classes it loaded to the archive at exit; return the archive."""
    archive = archive_path()
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    options = " ".join([log4j_option(), f"-XX:ArchiveClassesAtExit={partial}", *LOG_OFF])
    with tempfile.TemporaryDirectory(prefix="goldsmith-cds-") as work:
        landing = Path(work) / "landing"
        write_flights_landing(landing, limit=limit)
        config = load_pipeline(pipeline, [f"storage.root={Path(work) / 'lake'}", f"vars.landing={landing}"])
        spark = build_session("goldsmith-class-archive", "local[2]",
                              {**config.spark.conf, "spark.driver.extraJavaOptions": options})
        jvm_process = spark.sparkContext._gateway.proc  # type: ignore[union-attr]
        run_pipeline(config, ["ingest", "refine", "features"], spark)
        spark.stop()
        # The JVM writes the archive as it exits, which it does when its input closes.
        jvm_process.stdin.close()
        jvm_process.wait(timeout=600)
    if not partial.is_file():
        raise RuntimeError(f"the JVM wrote no class archive at {partial}")
    partial.replace(archive)
    remove_stale(archive)
    return archive


def run(argv: list[str]) -> int:
    """`PIPELINE.yml`: record the archive unless it exists; any other arguments: `goldsmith.class_archive.main`."""
    if len(argv) != 1 or argv[0] == "--path":
        return main(argv)
    archive = archive_path()
    if archive.is_file():
        return 0
    print(f"goldsmith set-up: recording the JVM class archive {archive} (once per virtualenv and Java)", flush=True)
    record(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
