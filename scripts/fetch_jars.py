#!/usr/bin/env python3
"""Download the Delta Lake jars once from Maven Central into the cache, checking each SHA-1.

Later runs find them there and need no network. Only the jars Spark does not already ship are fetched
(Ivy's `--packages` would also pull older Jackson, Parquet and Hadoop copies that shadow Spark's own).
Usage: fetch_jars.py CACHE_DIR [SPARK_JARS_DIR]   (with the second argument, also link them there)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.request
from pathlib import Path

DELTA_VERSION = "4.4.0"
UNITY_CATALOG_VERSION = "0.6.0"
ARTIFACTS = [
    ("io.delta", "delta-spark_4.1_2.13", DELTA_VERSION),
    ("io.delta", "delta-storage", DELTA_VERSION),
    ("io.delta", "delta-kernel-api", DELTA_VERSION),
    ("io.delta", "delta-kernel-defaults", DELTA_VERSION),
    ("io.delta", "delta-kernel-unitycatalog", DELTA_VERSION),
    ("io.unitycatalog", "unitycatalog-client", UNITY_CATALOG_VERSION),
    ("io.unitycatalog", "unitycatalog-hadoop", UNITY_CATALOG_VERSION),
]
REPO = os.environ.get("MAVEN_REPO", "https://repo1.maven.org/maven2").rstrip("/")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def main() -> int:
    cache = Path(sys.argv[1]) / "jars" / f"delta-{DELTA_VERSION}"
    cache.mkdir(parents=True, exist_ok=True)
    for group, artifact, version in ARTIFACTS:
        name = f"{artifact}-{version}.jar"
        target = cache / name
        if target.is_file():
            continue
        url = f"{REPO}/{group.replace('.', '/')}/{artifact}/{version}/{name}"
        print(f"  downloading {url}", flush=True)
        data = fetch(url)
        expected = fetch(url + ".sha1").decode().split()[0].strip()
        actual = hashlib.sha1(data).hexdigest()
        if actual != expected:
            print(f"checksum mismatch for {name}: {actual} != {expected}", file=sys.stderr)
            return 1
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)
    if len(sys.argv) > 2:
        # Spark's own jars folder: then spark-submit, spark-class and the Thrift server see Delta too.
        spark_jars = Path(sys.argv[2])
        for jar in cache.glob("*.jar"):
            link = spark_jars / jar.name
            if not link.exists() or link.stat().st_size != jar.stat().st_size:
                partial = link.with_suffix(".part")
                shutil.copyfile(jar, partial)
                partial.replace(link)
    return 0


if __name__ == "__main__":
    sys.exit(main())
