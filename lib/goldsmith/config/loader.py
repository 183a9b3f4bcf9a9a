"""Load a pipeline file: YAML, environment overlay, `--set` overrides, `${var}` interpolation, validation.

Everything here runs before Spark starts, so a bad config costs milliseconds, not a JVM start.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from goldsmith.config.models import PipelineConfig
from goldsmith.errors import ConfigError

OVERLAY_KEYS = frozenset({"storage", "vars", "spark"})
_VAR = re.compile(r"\$\{([^}]+)\}")
# `layer.table` in a pipeline SQL file: checked here, renamed for a catalog by goldsmith.io.lakehouse.
TABLE_REF = re.compile(r"\b(bronze|silver|gold|ops)\.([a-z_][a-z0-9_]*)\b", re.IGNORECASE)
_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a one-line `ConfigError`."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read as UTF-8 text: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, merging nested mappings; lists and scalars are replaced."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.key=value` override in place; the value is parsed as YAML (`3`, `true`, `[a]`)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. --set sources.flights.path=/data")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = _split_key(key.strip())
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            child = node[_list_index(node, part, where, assignment)]
        else:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
        if not isinstance(child, dict | list):
            raise ConfigError(f"--set {assignment!r}: {where} is a value, not a section")
        node = child
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key, assignment)] = value
    else:
        node[last] = value


# Mappings whose keys may contain dots (Spark settings, reader options, SQL parameters, vars): the rest of
# a `--set` key after one of these paths is a single key, e.g. spark.conf.spark.sql.shuffle.partitions.
_FREE_KEY_MAPS = (
    ("spark", "conf"), ("sources", "*", "options"), ("gold", "*", "params"), ("models", "*", "trainer", "params"),
    ("vars",),
)


def _split_key(key: str) -> list[str]:
    parts = key.split(".")
    for pattern in _FREE_KEY_MAPS:
        n = len(pattern)
        if len(parts) > n + 1 and all(p in ("*", part) for p, part in zip(pattern, parts[:n], strict=False)):
            return [*parts[:n], ".".join(parts[n:])]
    return parts


def _list_index(node: list[Any], part: str, where: str, assignment: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {assignment!r}: {where} needs a list index 0..{len(node) - 1}")
    return int(part)


def interpolate(data: Any, variables: Mapping[str, str], origin: str = "") -> Any:
    """Replace `${name}` with `variables[name]` and `${env:NAME:-default}` with the environment."""
    if isinstance(data, dict):
        return {k: interpolate(v, variables, f"{origin}.{k}" if origin else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, variables, f"{origin}.{i}") for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name.startswith("env:"):
            var, _, default = name[4:].partition(":-")
            value = os.environ.get(var) or None  # empty counts as unset, as ${VAR:-default} in a shell
            if value is None:
                if ":-" not in name:
                    raise ConfigError(
                        f"{origin}: environment variable {var} is not set (or write ${{env:{var}:-default}})"
                    )
                return default
            return value
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise ConfigError(f"{origin}: unknown variable ${{{name}}} (defined: {known}; add it under vars:)")
        return variables[name]

    return _VAR.sub(substitute, data)


def _resolve_vars(data: Mapping[str, Any]) -> dict[str, str]:
    """`vars` plus `root`, each resolved against the others (a var may use `${root}` or another var)."""
    storage = data.get("storage") or {}
    raw: dict[str, str] = {"root": str(storage.get("root", "./lakehouse")) if isinstance(storage, dict) else ""}
    declared = data.get("vars") or {}
    if not isinstance(declared, dict):
        raise ConfigError(f"vars: expected a mapping of name: value, found {type(declared).__name__}")
    for key, value in declared.items():
        raw[str(key)] = str(value)
    def origin(name: str) -> str:
        return "storage.root" if name == "root" else f"vars.{name}"

    for _ in range(len(raw) + 1):
        resolved = {k: interpolate(v, raw, origin(k)) for k, v in raw.items()}
        if resolved == raw:
            break
        raw = resolved
    else:
        raise ConfigError("vars: circular ${...} references")
    for name, value in raw.items():
        left = [m.group(1).strip() for m in _VAR.finditer(value) if not m.group(1).strip().startswith("env:")]
        if left:
            raise ConfigError(f"{origin(name)}: circular reference through ${{{left[0]}}}")
    return raw


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        message = f"unknown key {loc!r}; check its spelling against the docs"
    elif kind == "missing":
        message = f"{loc}: required key is missing"
    else:
        message = f"{loc}: {first['msg']}"
        if "input" in first and not isinstance(first["input"], dict | list):
            message += f" (found {first['input']!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {message}{more}"


def overlay_path(pipeline_path: Path, env: str) -> Path:
    """Overlays live beside the pipelines folder: `conf/env/<env>.yml` for `conf/pipelines/x.yml`."""
    candidate = Path(env)
    if candidate.suffix in {".yml", ".yaml"}:
        return candidate
    return pipeline_path.resolve().parent.parent / "env" / f"{env}.yml"


def load_pipeline(
    path: str | Path, overrides: Iterable[str] = (), env: str | None = None
) -> PipelineConfig:
    """Read, overlay, override, interpolate and validate a pipeline file.

    Args:
        path: the pipeline YAML file.
        overrides: `dotted.key=value` strings, applied after the overlay.
        env: an overlay name (`local`, `cluster`, `databricks`) or a path to an overlay file. Default:
            `$GOLDSMITH_ENV`, else `local` when that overlay exists.

    Raises:
        ConfigError: with one line naming the file, the key path and the fix.
    """
    pipeline_path = Path(path)
    data = read_yaml(pipeline_path)

    env = env or os.environ.get("GOLDSMITH_ENV")
    overlay_file = overlay_path(pipeline_path, env or "local")
    if env or overlay_file.is_file():
        if not overlay_file.is_file():
            raise ConfigError(f"--env {env}: overlay {overlay_file} not found")
        overlay = read_yaml(overlay_file)
        unknown = sorted(set(overlay) - OVERLAY_KEYS)
        if unknown:
            raise ConfigError(
                f"{overlay_file}: an overlay may set only {', '.join(sorted(OVERLAY_KEYS))}; found {unknown[0]!r}"
            )
        data = deep_merge(data, overlay)

    for assignment in overrides:
        apply_override(data, assignment)

    variables = _resolve_vars(data)
    data = interpolate({k: v for k, v in data.items() if k != "vars"}, variables)
    data["vars"] = variables
    data["base_dir"] = pipeline_path.resolve().parent

    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(pipeline_path, exc)) from None
    check_sql_files(config, pipeline_path)
    return config


def check_sql_files(config: PipelineConfig, pipeline_path: Path) -> None:
    """Every SQL file exists and reads only tables the pipeline (or the engine) defines."""
    known = {f"bronze.{n}" for n in config.sources}
    known |= {f"silver.{n}" for n in config.silver} | {f"gold.{n}" for n in config.gold}
    tables = [("silver", n, t.sql) for n, t in config.silver.items()]
    tables += [("gold", n, t.sql) for n, t in config.gold.items()]
    for layer, name, sql in tables:
        file = config.sql_path(sql)
        if not file.is_file():
            raise ConfigError(
                f"{pipeline_path}: {layer}.{name}.sql: file not found: {file} (paths are relative to the pipeline file)"
            )
        try:
            text = _SQL_COMMENT.sub(" ", file.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{file}: not UTF-8 text ({layer}.{name})") from None
        if not text.strip():
            raise ConfigError(f"{file}: empty SQL file ({layer}.{name})")
        for ref_layer, ref_name in TABLE_REF.findall(text):
            ref = f"{ref_layer.lower()}.{ref_name.lower()}"
            if ref not in known and not ref.startswith("ops."):
                raise ConfigError(f"{file}: reads {ref}, which this pipeline does not define")
    for name, table in config.gold.items():
        if table.grain and table.grain not in known:
            raise ConfigError(f"{pipeline_path}: gold.{name}.grain: {table.grain} is not a table of this pipeline")
        if table.incremental:
            check_incremental(config, pipeline_path, name)


def check_incremental(config: PipelineConfig, pipeline_path: Path, name: str) -> None:
    """An incremental gold table's SQL reads `:since` and every table its `inputs` name."""
    table = config.gold[name]
    assert table.incremental is not None
    where = f"{pipeline_path}: gold.{name}.incremental"
    text = _SQL_COMMENT.sub(" ", config.sql_path(table.sql).read_text(encoding="utf-8"))
    if not re.search(r":since\b", text):
        raise ConfigError(
            f"{where}: {config.sql_path(table.sql).name} must read :since and return only the rows whose "
            f"{table.incremental.column} is at or after it"
        )
    if "since" in table.params:
        raise ConfigError(f"{pipeline_path}: gold.{name}.params: 'since' is set by goldsmith for incremental builds")
    refs = sql_table_refs(text)
    for ref in table.incremental.inputs:
        if ref.lower() not in refs:
            raise ConfigError(f"{where}.inputs: {ref} is not a table {config.sql_path(table.sql).name} reads")


def sql_table_refs(sql_text: str) -> set[str]:
    """`layer.table` names a SQL text reads (comments ignored)."""
    text = _SQL_COMMENT.sub(" ", sql_text)
    return {f"{a.lower()}.{b.lower()}" for a, b in TABLE_REF.findall(text)}
