"""Storage URIs as the POSIX paths that Python code (pyarrow, numpy, torch) opens directly, and the default
storage root of the commands that take no pipeline file."""

from __future__ import annotations

import os
import re

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_ANY_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def storage_root(arg: str | None) -> str:
    """`--root`, else $GOLDSMITH_ROOT, else ./lakehouse: the root of commands that take no pipeline file."""
    return arg or os.environ.get("GOLDSMITH_ROOT") or "lakehouse"


def local_folder(uri: str) -> str | None:
    """The absolute POSIX path of a plain path or a `file:` URI, as `Lakehouse` qualifies it; None for any other
    scheme (dbfs:/ included), whose files only Spark's file systems are trusted to list and read."""
    if uri.startswith("file:"):
        return os.path.abspath("/" + uri.removeprefix("file:").lstrip("/"))
    if _ANY_SCHEME.match(uri):
        return None
    return os.path.abspath(uri)


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
