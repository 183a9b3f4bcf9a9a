"""The local Spark JVM's files: pyspark's jars folder, Delta's jars, goldsmith's download cache and its log settings.

The bottom of the Spark start-up: the session factory (`goldsmith.session`), the class archive
(`goldsmith.class_archive`) and the SQL server's jar build (`goldsmith.serve`) read these; it imports nothing of
goldsmith but its errors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from goldsmith.errors import BackendUnavailable

log = logging.getLogger(__name__)

DELTA_VERSION = "4.4.0"
DELTA_ARTIFACT = "delta-spark_4.1_2.13"


def cache_dir() -> Path:
    """Where set-up keeps downloads shared by every clone: `$GOLDSMITH_CACHE` or `~/.cache/goldsmith`."""
    base = os.environ.get("GOLDSMITH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "goldsmith"
    )
    return Path(base)


def spark_jars_dir() -> Path:
    """pyspark's jars folder: the local Spark JVM's class path (set-up also puts Delta's jars there)."""
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def delta_jars() -> list[str]:
    """The Delta jars to add to a new JVM, or [] when Spark's own jars folder already has them."""
    spark_jars = spark_jars_dir()
    if list(spark_jars.glob(f"{DELTA_ARTIFACT}-{DELTA_VERSION}.jar")):
        return []
    folder = cache_dir() / "jars" / f"delta-{DELTA_VERSION}"
    jars = sorted(str(p) for p in folder.glob("*.jar"))
    if not jars:
        raise BackendUnavailable(
            f"Delta Lake jars not found in {spark_jars} or {folder}; run scripts/setup.sh once (it downloads "
            "them from Maven Central and caches them)"
        )
    return jars


def log4j_option() -> str:
    """The JVM option that points Spark's logging at goldsmith's quiet log4j settings."""
    return f"-Dlog4j.configurationFile=file:{Path(__file__).parent / 'resources' / 'log4j2.properties'}"


def compiled_jar(name: str, sources: Sequence[Path], needs: str) -> Path:
    """goldsmith's Java sources compiled with `javac` against Spark's jars into `<cache>/jars/NAME-<hash>.jar`
    the first time (named by the sources' hash, so an edit builds anew); `needs` says what the JDK is for."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.read_bytes())
    jar = cache_dir() / "jars" / f"{name}-{digest.hexdigest()[:12]}.jar"
    if jar.exists():
        return jar
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if not javac or not jar_tool:
        raise BackendUnavailable(f"{needs} needs a JDK (javac, jar) once; install a JDK 17")
    log.info("building %s (once): %s", name, jar)
    with tempfile.TemporaryDirectory() as build:
        done = subprocess.run(
            [javac, "--release", "17", "-nowarn", "-cp", f"{spark_jars_dir()}/*", "-d", build, *map(str, sources)],
            check=False, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise BackendUnavailable(f"{needs}: javac failed: {done.stderr.strip()[-2000:]}")
        jar.parent.mkdir(parents=True, exist_ok=True)
        partial = jar.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([jar_tool, "cf", str(partial), "-C", build, "."], check=True, capture_output=True)
        partial.replace(jar)
    return jar
