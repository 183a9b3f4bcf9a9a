"""Storage URIs as the POSIX paths that Python code (pyarrow, numpy, torch) opens directly."""

from __future__ import annotations

import re

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def mounted_path(uri: str) -> str | None:
    """The POSIX path of a plain path, a `file:` URI or a `dbfs:/` URI (Databricks' FUSE mount under /dbfs);
    None for any other scheme (s3a://, abfss://, ...), which only Hadoop's file systems open."""
    if uri.startswith("dbfs:/"):
        return "/dbfs/" + uri.removeprefix("dbfs:").lstrip("/")
    if uri.startswith("file:"):
        return "/" + uri.removeprefix("file:").lstrip("/")
    if _SCHEME.match(uri):
        return None
    return uri
