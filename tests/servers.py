"""What the tiers start and build for their tests, as plain functions: goldsmith's wheel and the S3-protocol
object store. The session fixtures of tests/conftest.py call them, and so does the end-to-end tier's background
lane (tests/e2e/conftest.py), which starts the cluster test's own store while the Spark tier runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from components import unavailable

REPO = Path(__file__).resolve().parents[1]

_WHEEL_LOCK = threading.Lock()
_WHEEL: list[Path] = []


def goldsmith_wheel(folder: Path) -> Path:
    """goldsmith's wheel, built offline from a copy of the sources into `folder`, once per process (the fixture and
    the background lane ask for it from different threads; the first caller's folder holds it)."""
    with _WHEEL_LOCK:
        if not _WHEEL:
            _WHEEL.append(_build_wheel(folder))
        return _WHEEL[0]


def _build_wheel(folder: Path) -> Path:
    # From a copy: an in-tree build leaves build/lib behind, whose stale modules end up in later wheels
    # (a deleted module would still "exist in the wheel"), and two builds at once share it.
    src, out = folder / "src", folder / "dist"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "lib", src / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--wheel-dir", str(out), str(src)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert done.returncode == 0, f"pip wheel failed (setuptools and wheel come with scripts/setup.sh):\n" \
                                 f"{done.stderr[-3000:]}"
    (built,) = out.glob("*.whl")
    return built


@dataclass(frozen=True)
class ObjectStore:
    """A local S3-protocol store (scripts/objectstore: SeaweedFS on loopback)."""

    env: dict[str, str]  # the AWS_* variables a goldsmith process reads
    bucket: str
    state: Path  # its folder: data, pid, log

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    def stop(self) -> subprocess.CompletedProcess[str]:
        """Stop it by its PID, at once (its data stays in `state`)."""
        return subprocess.run(["bash", str(REPO / "scripts" / "objectstore"), "stop", "--now"],
                              env={**os.environ, "GOLDSMITH_OBJECTSTORE_DIR": str(self.state)},
                              capture_output=True, text=True, check=False, timeout=120)


def start_object_store(state: Path, bucket: str) -> ObjectStore:
    """`scripts/objectstore start` (free loopback ports, a key made for it) with its state in `state`. Without its
    binary (scripts/seaweedfs/build needs Go): a failure in CI, a skip elsewhere."""
    env = {**os.environ, "GOLDSMITH_OBJECTSTORE_DIR": str(state)}
    started = subprocess.run(["bash", str(REPO / "scripts" / "objectstore"), "start", "--bucket", bucket],
                             env=env, capture_output=True, text=True, check=False, timeout=300)
    if started.returncode != 0 and "scripts/seaweedfs/build needs Go" in started.stderr:
        unavailable("no SeaweedFS binary (scripts/seaweedfs/build needs Go)",
                    "no SeaweedFS binary: scripts/test builds it with scripts/seaweedfs/build (needs Go)")
    assert started.returncode == 0, started.stderr[-3000:]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
                   if line.startswith("export "))
    return ObjectStore(exports, bucket, state)


def warm_object_store(store: ObjectStore) -> None:
    """Make one small object in the bucket: a fresh SeaweedFS allocates its first volumes only after a few seconds
    of heartbeats (~8 s after a start here), and the first write waits for them; later writes take milliseconds."""
    from goldsmith.io.object_store import upload_folder

    folder = store.state / "warm-up"
    folder.mkdir(exist_ok=True)
    (folder / "ready.txt").write_text("ready\n")
    upload_folder(folder, f"s3a://{store.bucket}/warm-up", store.env)

