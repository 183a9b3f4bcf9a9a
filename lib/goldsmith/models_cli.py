"""`goldsmith models list|promote|rollback`: the registry from the command line, every move recorded."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any


def _registry(root: str) -> Any:
    from goldsmith.io.lakehouse import Lakehouse
    from goldsmith.io.ops import OpsLog
    from goldsmith.ml.registry import Registry
    from goldsmith.ml.tracking import activate, tracking_for
    from goldsmith.session import build_session

    spark = build_session("goldsmith-models", "local[1]")
    lakehouse = Lakehouse(spark, root)
    lakehouse.attach()
    return Registry(activate(tracking_for(lakehouse.root)), OpsLog(lakehouse), run_id="cli")


def run_models_command(args: argparse.Namespace) -> int:
    from goldsmith.cli import storage_root

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


def _list(registry: Any, name: str) -> int:
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
        print("\nalias moves (ops.model_promotions), latest last:")
        for move in history[-10:]:
            frm = f"v{move['from_version']}" if move["from_version"] is not None else "none"
            to = f"v{move['to_version']}" if move["to_version"] is not None else "none"
            print(f"  {move['moved_at']:%Y-%m-%d %H:%M:%S}  {move['alias']:<10} {move['action']:<8} {frm} -> {to}"
                  f"  by {move['actor']}: {move['reason']}")
    return 0


def _promote(registry: Any, name: str, version: int, force: bool, reason: str) -> int:
    from goldsmith.ml.registry import CHAMPION, GateFailed, check_gates, recorded_test_metrics, version_tags

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
