"""The shared session's JVM as goldsmith starts it: it maps the class archive set-up recorded
(goldsmith.class_archive) and collects with the batch collector (goldsmith.session.BATCH_GC)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from goldsmith import class_archive


@pytest.mark.skipif(os.environ.get("GOLDSMITH_CLASS_ARCHIVE") == "0", reason="turned off by the environment")
def test_the_session_jvm_maps_the_recorded_archive(spark: SparkSession) -> None:
    archive = class_archive.archive_path()
    assert archive.is_file(), "scripts/setup.sh records it (python -m goldsmith.class_archive)"
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    arguments = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"-XX:SharedArchiveFile={archive}" in arguments
    jcmd = Path(os.path.realpath(class_archive._java())).parent / "jcmd"
    info = subprocess.run([str(jcmd), str(jvm.java.lang.ProcessHandle.current().pid()), "VM.info"],
                          capture_output=True, text=True, check=True, timeout=60).stdout
    mapped = re.search(r"CDS archive\(s\) mapped at: .*size (\d+)", info)
    assert mapped is not None, "class data sharing is off in the session's JVM"
    # The JDK's base archive alone is ~15 MB; with the recorded one mapped, both are.
    assert int(mapped.group(1)) > archive.stat().st_size, (
        "only the JDK's base archive is mapped: the JVM refused the recorded one (recorded with another class "
        "path or JDK than this session's)")


def test_the_session_jvm_collects_with_the_parallel_collector(spark: SparkSession) -> None:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    collectors = {bean.getName() for bean in jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()}
    assert collectors == {"PS Scavenge", "PS MarkSweep"}, collectors  # G1's are "G1 Young Generation", ...
