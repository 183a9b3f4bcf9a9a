#!/usr/bin/env python3
"""Download the Delta Lake jars and the S3A connector's once from Maven Central into the cache, checking each SHA-1.

Later runs find them there and need no network. Only the jars Spark does not already ship are fetched
(Ivy's `--packages` would also pull older Jackson, Parquet, Netty, SLF4J and Hadoop copies that shadow Spark's own).

The S3A connector (`s3a://` paths) is hadoop-aws at the version of the Hadoop client inside pyspark (checked
against SPARK_JARS_DIR's hadoop-client-api jar) and the modules of the AWS SDK v2 it was built with (its pom's
`aws-java-sdk-v2.version`), not the SDK's 600 MB bundle: the modules S3, STS and the transfer manager use.
Usage: fetch_jars.py CACHE_DIR [SPARK_JARS_DIR]   (with the second argument, also copy them there: then every
Spark JVM of the virtualenv, spark-submit, the Thrift server and a cluster's workers, reads Delta and s3a://)
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
HADOOP_VERSION = "3.4.2"  # pyspark 4.1.1's hadoop-client-api
AWS_SDK_VERSION = "2.29.52"  # hadoop-aws 3.4.2's aws-java-sdk-v2.version
AWS_SDK_MODULES = (
    "annotations", "apache-client", "arns", "auth", "aws-core", "aws-query-protocol", "aws-xml-protocol",
    "checksums", "checksums-spi", "crt-core", "endpoints-spi", "http-auth", "http-auth-aws",
    "http-auth-aws-eventstream", "http-auth-spi", "http-client-spi", "identity-spi", "json-utils", "metrics-spi",
    "netty-nio-client", "profiles", "protocol-core", "regions", "retries", "retries-spi", "s3",
    "s3-transfer-manager", "sdk-core", "sts", "third-party-jackson-core", "utils",
)
S3A_ARTIFACTS = [
    ("org.apache.hadoop", "hadoop-aws", HADOOP_VERSION),
    *(("software.amazon.awssdk", module, AWS_SDK_VERSION) for module in AWS_SDK_MODULES),
    ("software.amazon.eventstream", "eventstream", "1.0.1"),
    ("org.reactivestreams", "reactive-streams", "1.0.4"),
    ("software.amazon.s3.analyticsaccelerator", "analyticsaccelerator-s3", "1.2.1"),
    ("org.wildfly.openssl", "wildfly-openssl", "2.1.4.Final"),
]
REPO = os.environ.get("MAVEN_REPO", "https://repo1.maven.org/maven2").rstrip("/")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def download(cache: Path, artifacts: list[tuple[str, str, str]]) -> bool:
    """Each artifact's jar into `cache` unless there; False on a checksum mismatch."""
    cache.mkdir(parents=True, exist_ok=True)
    for group, artifact, version in artifacts:
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
            return False
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)
    return True


def install(cache: Path, spark_jars: Path) -> None:
    """Copy the cached jars into Spark's own jars folder (each appears whole)."""
    for jar in cache.glob("*.jar"):
        link = spark_jars / jar.name
        if not link.exists() or link.stat().st_size != jar.stat().st_size:
            partial = link.with_suffix(".part")
            shutil.copyfile(jar, partial)
            partial.replace(link)


def main() -> int:
    caches = {
        Path(sys.argv[1]) / "jars" / f"delta-{DELTA_VERSION}": ARTIFACTS,
        Path(sys.argv[1]) / "jars" / f"s3a-hadoop-{HADOOP_VERSION}": S3A_ARTIFACTS,
    }
    spark_jars = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    if spark_jars is not None and not (spark_jars / f"hadoop-client-api-{HADOOP_VERSION}.jar").is_file():
        found = sorted(p.name for p in spark_jars.glob("hadoop-client-api-*.jar"))
        print(f"fetch_jars.py: hadoop-aws {HADOOP_VERSION} needs pyspark's Hadoop client at the same version; "
              f"{spark_jars} has {found or 'none'} (update HADOOP_VERSION and AWS_SDK_VERSION together)",
              file=sys.stderr)
        return 1
    for cache, artifacts in caches.items():
        if not download(cache, artifacts):
            return 1
        if spark_jars is not None:
            install(cache, spark_jars)
    return 0


if __name__ == "__main__":
    sys.exit(main())
