"""`goldsmith models list|promote|rollback`: the registry from the command line, every move recorded.

Reading needs no Spark: MLflow's registry is a database, and `ops.model_promotions` of a local lakehouse is read
by the pure-Python Delta reader. Spark starts only to append a move (promote, rollback) to that Delta table, or
to read it where the pure reader cannot (remote storage, a table feature it does not read).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from goldsmith.errors import DeltaLogUnsupported, GateFailed
from goldsmith.io.paths import local_folder, storage_root

if TYPE_CHECKING:
    from goldsmith.io.lakehouse import Lakehouse
    from goldsmith.io.ops import OpsLog
    from goldsmith.ml.registry import Registry

log = logging.getLogger("goldsmith")


class CommandLineOps:
    """The `ops.*` records of the command line's lakehouse, whose Spark session starts when first needed."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._ops: OpsLog | None = None

    def _log(self) -> OpsLog:
        if self._ops is None:
            from goldsmith.io.lakehouse import Lakehouse
            from goldsmith.io.ops import OpsLog
            from goldsmith.session import build_session

            lakehouse = Lakehouse(build_session("goldsmith-models", "local[1]"), self.root)
            lakehouse.attach()
            self._ops = OpsLog(lakehouse)
        return self._ops

    @property
    def lakehouse(self) -> Lakehouse:
        """The lakehouse with its Spark session (started now if it was not)."""
        return self._log().lakehouse

    def append(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows to `ops.<table>` (a Delta commit: Spark starts here)."""
        self._log().append(table, rows)

    def moves(self) -> list[dict[str, Any]]:
        """Every row of `ops.model_promotions`: without Spark when the pure reader can, else with Spark."""
        from goldsmith.ml.registry import local_moves, spark_moves

        try:
            return local_moves(self.root)
        except DeltaLogUnsupported as exc:
            log.info("reading ops.model_promotions with Spark: %s", exc)
            return spark_moves(self.lakehouse)


def _registry(root: str) -> Registry:
    from goldsmith.io.object_store import check_credentials
    from goldsmith.ml.tracking import open_registry

    check_credentials([root], {})
    # Absolute, as a Lakehouse qualifies it: MLflow's SQLite database is named by it.
    absolute = local_folder(root) or root
    ops = CommandLineOps(absolute)
    return open_registry(absolute, ops, run_id="cli", read_moves=ops.moves)


def run_models_command(args: argparse.Namespace) -> int:
    """`goldsmith models <action>`: list, promote or rollback; returns the exit code."""
    registry = _registry(storage_root(args.root))
    if args.models_command == "list":
        return _list(registry, args.name)
    if args.models_command == "promote":
        return _promote(registry, args.name, args.version, args.force, args.reason)
    from goldsmith.ml.registry import CHAMPION

    current, previous = registry.rollback(args.name, args.reason or "rollback from the command line")
    print(f"{args.name}@{CHAMPION}: v{current} -> v{previous}. Re-score with: goldsmith run <pipeline.yml> "
          "--stages score")
    return 0


def _list(registry: Registry, name: str) -> int:
    from goldsmith.ml.registry import recorded_test_metrics, version_tags

    versions = registry.versions(name)
    aliases: dict[str, list[str]] = {}
    for alias, version in (registry.client.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    print(f"{'version':>7}  {'aliases':<20} {'created (UTC)':<19}  {'backend':<17} {'primary metric':<22} algorithm")
    for mv in versions:
        tags = version_tags(mv)
        metric = tags.get("goldsmith.primary_metric", "")
        value = recorded_test_metrics(mv).get(metric)
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        shown = f"test {metric} {value:.4f}" if value is not None else ""
        print(f"{mv.version:>7}  {','.join(sorted(aliases.get(str(mv.version), []))):<20} {created:<19}  "
              f"{tags.get('goldsmith.backend', ''):<17} {shown:<22} {tags.get('goldsmith.algorithm', '')}")
    history = registry.history(name)
    if history:
        print("\nalias moves (ops.model_promotions, times in UTC), latest last:")
        for move in history[-10:]:
            frm = f"v{move['from_version']}" if move["from_version"] is not None else "none"
            to = f"v{move['to_version']}" if move["to_version"] is not None else "none"
            print(f"  {move['moved_at']:%Y-%m-%d %H:%M:%S}  {move['alias']:<10} {move['action']:<8} {frm} -> {to}"
                  f"  by {move['actor']}: {move['reason']}")
    return 0


def _promote(registry: Registry, name: str, version: int, force: bool, reason: str) -> int:
    from goldsmith.ml.registry import CHAMPION, check_gates, recorded_test_metrics, version_tags

    mv = registry.version(name, version)
    tags = version_tags(mv)
    champion = registry.alias(name, CHAMPION)
    if champion == version:
        print(f"{name} v{version} is already champion")
        return 0
    metric = tags.get("goldsmith.primary_metric", "")
    champion_value = (
        recorded_test_metrics(registry.version(name, champion)).get(metric) if champion is not None else None
    )
    failures = check_gates(json.loads(tags.get("goldsmith.gates", "{}")), recorded_test_metrics(mv), metric,
                           tags.get("goldsmith.higher_is_better", "True") == "True", champion_value)
    if failures and not force:
        raise GateFailed(f"{name} v{version} fails its gates ({'; '.join(failures)}); "
                         "use --force --reason '...' to promote it anyway")
    if force and not reason:
        raise GateFailed("--force needs --reason: the override is recorded in ops.model_promotions")
    why = reason or "promoted from the command line (gates passed on recorded test metrics)"
    if failures:
        why = f"forced past failed gates ({'; '.join(failures)}): {reason}"
    registry.move(name, CHAMPION, version, "manual", why, mv.run_id)
    print(f"{name}@{CHAMPION}: {'v' + str(champion) if champion else 'none'} -> v{version}", file=sys.stdout)
    return 0
