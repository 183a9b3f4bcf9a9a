"""S3-protocol object stores (AWS S3, SeaweedFS, Ceph, ...) through Hadoop's S3A connector.

A storage root, a landing path or an MLflow artifact location may be `s3a://bucket/...` (`s3://` is read as the same
connector). The connector's jars are in Spark's own jars folder (set-up: scripts/fetch_jars.py), so every JVM of the
virtualenv opens such paths: a run, `goldsmith sql`, the SQL server, spark-submit, a local cluster's workers.

Settings come from the standard places, in this order: the pipeline's `spark.conf` (an overlay may say
`spark.hadoop.fs.s3a.access.key: ${env:MY_KEY}`), then the AWS environment variables every AWS tool reads:
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`,
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (a store that is not AWS: path-style requests, TLS as the URL says).
Never from a file in the repository. The keys go into the Hadoop configuration of the application (so a cluster's
executors have them too); Spark redacts them in its UI and logs (`spark.redaction.regex`).

Delta on S3: a commit is the creation of `_delta_log/<version>.json`, and of two writers of the same version
exactly one may succeed. Delta's own S3 LogStore (`S3SingleDriverLogStore`) only excludes writers inside one JVM:
two processes (a second run, a notebook, another cluster) could both write version N, the second silently
replacing the first. goldsmith's log store (`resources/ConditionalS3LogStore.java`, compiled and put among Spark's
jars by set-up: `goldsmith.io.storage_jar`) creates the file with `If-None-Match: *`, which
AWS S3 (since 2024) and SeaweedFS honour: the loser gets 412, which Delta sees as a lost race. Every commit then
holds across processes, and so does goldsmith's writer lease (`goldsmith.io.lease`), which is a Delta table.
Without the compiled jar (no JDK at set-up) sessions keep Delta's default and say so once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from goldsmith.errors import ConfigError
from goldsmith.io import storage_jar

log = logging.getLogger(__name__)

SCHEMES = ("s3a://", "s3://", "s3n://")
_HADOOP = "spark.hadoop.fs.s3a."
# A credential given as settings, or a provider chain named explicitly (instance roles, web identity, ...).
_CREDENTIAL_SETTINGS = (f"{_HADOOP}access.key", f"{_HADOOP}aws.credentials.provider")
def is_object_store(uri: str | None) -> bool:
    """Whether `uri` is on an S3-protocol store."""
    return bool(uri) and str(uri).lower().startswith(SCHEMES)


def uses_object_store(uris: Iterable[str | None]) -> bool:
    return any(is_object_store(uri) for uri in uris)


def spark_settings(conf: Mapping[str, str], environ: Mapping[str, str] | None = None,
                   log_store: bool | None = None) -> dict[str, str]:
    """The S3A settings to add to a new session's `conf` (what `conf` sets itself wins): endpoint, region and
    credentials from the AWS environment variables, `s3://` as S3A, and the conditional log store for both
    schemes when it is installed (`log_store`: whether it is; None: look)."""
    env = os.environ if environ is None else environ
    found: dict[str, str] = {
        # s3:// (MLflow's artifact URIs, AWS's own spelling) through the same connector.
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        f"{_HADOOP}create.conditional.enabled": "true",
    }
    if log_store if log_store is not None else storage_jar.installed():
        found["spark.delta.logStore.s3a.impl"] = storage_jar.S3_LOG_STORE
        found["spark.delta.logStore.s3.impl"] = storage_jar.S3_LOG_STORE
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if endpoint:
        found[f"{_HADOOP}endpoint"] = endpoint
        # A store that is not AWS serves buckets as paths (http://host:port/bucket/key), not as host names.
        found[f"{_HADOOP}path.style.access"] = "true"
        found[f"{_HADOOP}connection.ssl.enabled"] = str(urlparse(endpoint).scheme == "https").lower()
        region = region or "us-east-1"
    if region:
        found[f"{_HADOOP}endpoint.region"] = region
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret and not any(name in conf for name in _CREDENTIAL_SETTINGS):
        found[f"{_HADOOP}access.key"] = key
        found[f"{_HADOOP}secret.key"] = secret
        token = env.get("AWS_SESSION_TOKEN")
        if token:
            found[f"{_HADOOP}session.token"] = token
            found[f"{_HADOOP}aws.credentials.provider"] = \
                "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
    return {name: value for name, value in found.items() if name not in conf}


def configure(hadoop_conf: Any, environ: Mapping[str, str], bucket: str | None = None) -> None:
    """Point a running application's S3A connector at the store `environ` (AWS_* variables) describes: the
    settings `spark_settings` gives a new session, set on its Hadoop configuration (for `bucket` only, when
    given: S3A's per-bucket settings). For a session made before the variables were known (a test's)."""
    prefix = f"fs.s3a.bucket.{bucket}." if bucket else "fs.s3a."
    for key, value in spark_settings({}, environ, log_store=False).items():
        if key.startswith("spark.hadoop.fs.s3a."):
            hadoop_conf.set(prefix + key.removeprefix("spark.hadoop.fs.s3a."), value)


def check_credentials(uris: Iterable[str | None], conf: Mapping[str, str],
                      environ: Mapping[str, str] | None = None) -> None:
    """Before Spark starts: a one-line `ConfigError` when a path is on an object store and no credential is
    given (settings, or the AWS environment variables; an instance role or a profile is named with
    `spark.hadoop.fs.s3a.aws.credentials.provider`)."""
    on_store = sorted({str(u) for u in uris if is_object_store(u)})
    if not on_store:
        return
    env = os.environ if environ is None else environ
    if any(name in conf for name in _CREDENTIAL_SETTINGS):
        return
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return
    missing = "AWS_ACCESS_KEY_ID" if not env.get("AWS_ACCESS_KEY_ID") else "AWS_SECRET_ACCESS_KEY"
    raise ConfigError(
        f"{on_store[0]} is on an object store but no credential is set: export AWS_ACCESS_KEY_ID and "
        f"AWS_SECRET_ACCESS_KEY ({missing} is missing), or set spark.conf.{_HADOOP}access.key and secret.key "
        "(e.g. ${env:...}) in an overlay"
    )


def upload_folder(folder: Path, uri: str, environ: Mapping[str, str] | None = None) -> int:
    """Copy every file under `folder` to the prefix `uri` (s3a:// or s3://) without a JVM (pyarrow's S3 client,
    with the endpoint, region and keys of the AWS_* variables); the number of files copied. An object already
    there with the same size is left alone, as the local example writer leaves a current file: rewriting it
    would give it a new time and ETag, and make it a new landing file."""
    from pyarrow import fs as pafs

    env = os.environ if environ is None else environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    parsed = urlparse(endpoint) if endpoint else None
    store = pafs.S3FileSystem(
        access_key=env.get("AWS_ACCESS_KEY_ID"), secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
        session_token=env.get("AWS_SESSION_TOKEN"),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        endpoint_override=parsed.netloc if parsed else None, scheme=parsed.scheme if parsed else "https",
    )
    prefix = uri.split("://", 1)[1].rstrip("/")
    files = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    copied = 0
    for path in files:
        target = f"{prefix}/{path.relative_to(folder).as_posix()}"
        there = store.get_file_info(target)
        if there.type == pafs.FileType.File and there.size == path.stat().st_size:
            continue
        pafs.copy_files(str(path), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=store)
        copied += 1
    return copied


def arrow_options(hadoop_conf: Any, uri: str) -> dict[str, str] | None:
    """For Python code that reads `uri` with pyarrow where the JVM's settings do not reach (a Python worker on a
    cluster's executor): the S3A settings of the application (per bucket first) as pyarrow `S3FileSystem`
    arguments; None when `uri` is not on an object store. Keys that are not set are left out (pyarrow then uses the
    AWS environment of the worker)."""
    if not is_object_store(uri):
        return None
    bucket = urlparse(uri).netloc

    def get(key: str) -> str | None:
        value = hadoop_conf.get(f"fs.s3a.bucket.{bucket}.{key}") or hadoop_conf.get(f"fs.s3a.{key}")
        return str(value) if value else None

    found = {"access_key": get("access.key"), "secret_key": get("secret.key"), "session_token": get("session.token"),
             "region": get("endpoint.region")}
    endpoint = get("endpoint")
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        ssl = (get("connection.ssl.enabled") or "true").lower() == "true"
        found["endpoint_override"] = parsed.netloc
        found["scheme"] = parsed.scheme if "://" in endpoint else ("https" if ssl else "http")
        found["region"] = found["region"] or "us-east-1"
    return {key: value for key, value in found.items() if value}


def arrow_path(uri: str, options: dict[str, str] | None) -> tuple[str, Any]:
    """The path and pyarrow file system that read `uri` (`arrow_options` for an object store; a plain path
    otherwise)."""
    if options is None:
        return uri, None
    from pyarrow import fs as pafs

    return uri.split("://", 1)[1], pafs.S3FileSystem(**options)


def warn_without_log_store(uris: Iterable[str | None]) -> None:
    """Say once, when a path is on an object store and the conditional log store is not installed, what that
    means for concurrent writers."""
    if uses_object_store(uris) and not storage_jar.installed():
        log.warning("no %s among Spark's jars (set-up builds it with a JDK): Delta's default S3 log store "
                    "excludes concurrent commits only inside this process", storage_jar.JAR)

