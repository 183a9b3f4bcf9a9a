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

Delta on S3: a commit is a PUT of `_delta_log/<version>.json`. Delta's S3 LogStore (`S3SingleDriverLogStore`,
the default for the scheme) makes one JVM's commits exclusive; across processes the connector's conditional
create (`fs.s3a.create.conditional.enabled`, on here) sends `If-None-Match: *`, which AWS S3 (since 2024) and
SeaweedFS honour: the second writer of a version gets `412 Precondition Failed` instead of overwriting the first.
goldsmith's writer lease (`goldsmith.io.lease`) is a Delta table, so it holds wherever that holds; readers never
need it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlparse

from goldsmith.errors import ConfigError

SCHEMES = ("s3a://", "s3://", "s3n://")
_HADOOP = "spark.hadoop.fs.s3a."
# A credential given as settings, or a provider chain named explicitly (instance roles, web identity, ...).
_CREDENTIAL_SETTINGS = (f"{_HADOOP}access.key", f"{_HADOOP}aws.credentials.provider")


def is_object_store(uri: str | None) -> bool:
    """Whether `uri` is on an S3-protocol store."""
    return bool(uri) and str(uri).lower().startswith(SCHEMES)


def uses_object_store(uris: Iterable[str | None]) -> bool:
    return any(is_object_store(uri) for uri in uris)


def spark_settings(conf: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The S3A settings to add to a new session's `conf` (what `conf` sets itself wins): endpoint, region and
    credentials from the AWS environment variables, `s3://` as S3A, conditional creates on."""
    env = os.environ if environ is None else environ
    found: dict[str, str] = {
        # s3:// (MLflow's artifact URIs, AWS's own spelling) through the same connector.
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        f"{_HADOOP}create.conditional.enabled": "true",
    }
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
