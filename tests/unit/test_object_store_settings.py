"""Object-store settings and the credential check (goldsmith.io.object_store): what a session is given from the
AWS environment variables, and the one-line error before Spark starts when an s3a:// path has no credential; the
local store's script refusing a bucket name S3 would refuse."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from goldsmith.errors import ConfigError
from goldsmith.io.object_store import check_credentials, is_object_store, spark_settings
from goldsmith.io.storage_jar import S3_LOG_STORE

ENV = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_ENDPOINT_URL": "http://127.0.0.1:8333"}
H = "spark.hadoop.fs.s3a."
REPO = Path(__file__).resolve().parents[2]


def test_schemes() -> None:
    assert [is_object_store(u) for u in ("s3a://b/x", "S3://b/x", "s3n://b", "/tmp/x", "file:/x", "dbfs:/x", None)] \
        == [True, True, True, False, False, False, False]


def test_a_store_that_is_not_aws_gets_path_style_plain_http_and_a_region() -> None:
    got = spark_settings({}, ENV, log_store=True)
    assert got[f"{H}endpoint"] == "http://127.0.0.1:8333"
    assert got[f"{H}path.style.access"] == "true" and got[f"{H}connection.ssl.enabled"] == "false"
    assert got[f"{H}endpoint.region"] == "us-east-1"
    assert (got[f"{H}access.key"], got[f"{H}secret.key"]) == ("key", "secret")
    assert got["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert got["spark.delta.logStore.s3a.impl"] == got["spark.delta.logStore.s3.impl"] == S3_LOG_STORE
    https = spark_settings({}, {**ENV, "AWS_ENDPOINT_URL_S3": "https://s3.example.org", "AWS_REGION": "eu-west-1"})
    assert https[f"{H}endpoint"] == "https://s3.example.org" and https[f"{H}connection.ssl.enabled"] == "true"
    assert https[f"{H}endpoint.region"] == "eu-west-1"


def test_settings_given_win_over_the_environment() -> None:
    conf = {f"{H}access.key": "from-overlay", f"{H}endpoint": "http://other:9000"}
    got = spark_settings(conf, ENV)
    assert f"{H}endpoint" not in got and f"{H}access.key" not in got and f"{H}secret.key" not in got


def test_aws_itself_needs_no_endpoint_and_a_session_token_names_its_provider() -> None:
    got = spark_settings({}, {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"})
    assert f"{H}endpoint" not in got and f"{H}path.style.access" not in got
    assert got[f"{H}session.token"] == "t"
    assert got[f"{H}aws.credentials.provider"].endswith("TemporaryAWSCredentialsProvider")
    assert spark_settings({}, {}, log_store=False) == {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem", f"{H}create.conditional.enabled": "true"}


def test_a_missing_credential_is_one_line_naming_the_path_and_the_variable() -> None:
    check_credentials(["/tmp/lake", "dbfs:/lake"], {}, {})  # nothing on a store: nothing to check
    check_credentials(["s3a://b/lake"], {}, ENV)
    check_credentials(["s3a://b/lake"], {f"{H}aws.credentials.provider": "x.InstanceRole"}, {})
    with pytest.raises(ConfigError) as error:
        check_credentials(["/tmp/landing", "s3a://b/lake"], {}, {"AWS_ACCESS_KEY_ID": "key"})
    message = str(error.value)
    assert "\n" not in message and "s3a://b/lake" in message and "AWS_SECRET_ACCESS_KEY is missing" in message


def test_the_local_store_script_refuses_a_bucket_name_s3_would_refuse_at_once(tmp_path: Path) -> None:
    """`scripts/objectstore start --bucket B` with a name S3 refuses fails in one line before starting anything
    (SeaweedFS would answer 400 to the bucket's creation, which the script would wait two minutes on)."""
    env = {**os.environ, "GOLDSMITH_OBJECTSTORE_DIR": str(tmp_path / "store")}
    for name in ("b1", "Upper-Case", "-dash-first", "x" * 64):
        done = subprocess.run(["bash", str(REPO / "scripts" / "objectstore"), "start", "--bucket", name], env=env,
                              capture_output=True, text=True, check=False, timeout=30)
        assert done.returncode == 2 and f"'{name}' is not a bucket name" in done.stderr, done.stderr
    assert not (tmp_path / "store").exists()
