"""The model registry: versions, the `champion` / `challenger` aliases, gates, and the record of every move.

MLflow keeps only the current alias of a version, not its history: every move is appended to
`ops.model_promotions` (who, when, why, from which version to which), which is also what `rollback` reads.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

# GateFailed is raised by the callers that check gates (`goldsmith models promote`); importable here as before.
from goldsmith.errors import GateFailed as GateFailed
from goldsmith.errors import RegistryError

if TYPE_CHECKING:
    from goldsmith.io.lakehouse import Lakehouse

log = logging.getLogger("goldsmith")

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTIONS = "model_promotions"
MOVE_COLUMNS = ("model_name", "alias", "action", "from_version", "to_version", "reason", "actor", "mlflow_run_id",
                "run_id", "moved_at")


class MoveLog(Protocol):
    """Where alias moves are recorded: a run's `OpsLog`, or one that starts Spark only when it must write."""

    @property
    def lakehouse(self) -> Lakehouse: ...

    def append(self, table: str, rows: Sequence[dict[str, Any]]) -> None: ...


def actor() -> str:
    """Who moves an alias: user@host (or $GOLDSMITH_ACTOR, e.g. a CI job)."""
    import os

    return os.environ.get("GOLDSMITH_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def check_gates(
    gates: dict[str, Any], metrics: dict[str, float], primary: str, higher_is_better: bool,
    champion_value: float | None,
) -> list[str]:
    """Why `metrics` (test metrics) fail the gates; empty when they pass."""
    failures = []
    for name, floor in gates.get("min_metrics", {}).items():
        value = metrics.get(name)
        if value is None or not value >= floor:
            failures.append(f"{name} {_fmt(value)} < minimum {floor}")
    for name, ceiling in gates.get("max_metrics", {}).items():
        value = metrics.get(name)
        if value is None or not value <= ceiling:
            failures.append(f"{name} {_fmt(value)} > maximum {ceiling}")
    if champion_value is not None:
        margin = float(gates.get("min_improvement", 0.0))
        value = metrics.get(primary)
        beats = value is not None and (
            value >= champion_value + margin if higher_is_better else value <= champion_value - margin
        )
        if not beats:
            relation = "+" if higher_is_better else "-"
            failures.append(
                f"{primary} {_fmt(value)} does not beat the champion's {_fmt(champion_value)} "
                f"{relation} margin {margin}"
            )
    return failures


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4f}"


@dataclass
class Registry:
    """Aliases of registered models, with every move recorded in `ops.model_promotions`.

    `read_moves` returns every row of `ops.model_promotions` ([] when it does not exist); by default the
    table is read with Spark through `ops.lakehouse`.
    """

    client: Any
    ops: MoveLog
    run_id: str = ""
    read_moves: Callable[[], list[dict[str, Any]]] | None = None

    def versions(self, name: str) -> list[Any]:
        """Every version of `name`, newest first; RegistryError when the model is not registered."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            raise RegistryError(f"no registered model named {name!r} (train it with `goldsmith run ...`)") from None
        found = self.client.search_model_versions(f"name = '{name}'")
        return sorted(found, key=lambda v: int(v.version), reverse=True)

    def version(self, name: str, version: int) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException:
            raise RegistryError(f"model {name!r} has no version {version}") from None

    def alias(self, name: str, alias: str) -> int | None:
        """The version holding `alias`, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def move(self, name: str, alias: str, version: int, action: str, reason: str, mlflow_run_id: str = "") -> None:
        """Point `alias` at `version` and record the move."""
        previous = self.alias(name, alias)
        self._recorded_move(name, alias, action, previous, version, reason, mlflow_run_id)
        log.info("  %s@%s: %s -> v%d (%s)", name, alias, f"v{previous}" if previous else "none", version, reason)

    def record(
        self, name: str, alias: str, action: str, from_version: int | None, to_version: int | None, reason: str,
        mlflow_run_id: str = "",
    ) -> None:
        """Append one move to `ops.model_promotions`."""
        from goldsmith.io.ops import now  # here: reading the registry needs neither pyspark nor Delta

        self.ops.append(PROMOTIONS, [{
            "model_name": name, "alias": alias, "action": action, "from_version": from_version,
            "to_version": to_version, "reason": reason[:2000], "actor": actor(), "mlflow_run_id": mlflow_run_id,
            "run_id": self.run_id, "moved_at": now(),
        }])

    def history(self, name: str) -> list[dict[str, Any]]:
        """The recorded moves of `name`, oldest first."""
        moves = self.read_moves() if self.read_moves is not None else spark_moves(self.ops.lakehouse)
        mine = [m for m in moves if m["model_name"] == name]
        return sorted(mine, key=lambda m: m["moved_at"] or datetime.min)

    def rollback(self, name: str, reason: str) -> tuple[int, int]:
        """Move `champion` back to the version it replaced; repeated rollbacks walk further back."""
        current = self.alias(name, CHAMPION)
        if current is None:
            raise RegistryError(f"model {name!r} has no champion to roll back")
        promotions = [
            m for m in self.history(name)
            if m["alias"] == CHAMPION and m["action"] in ("promote", "manual") and m["to_version"] == current
        ]
        previous = promotions[-1]["from_version"] if promotions else None
        if previous is None:
            raise RegistryError(
                f"model {name!r}: v{current} became champion with no champion before it; nothing to roll back to"
            )
        self._recorded_move(name, CHAMPION, "rollback", current, int(previous), reason)
        return current, int(previous)

    def _recorded_move(
        self, name: str, alias: str, action: str, previous: int | None, version: int, reason: str,
        mlflow_run_id: str = "",
    ) -> None:
        """Point `alias` at `version`, then record it; when the record fails the alias is put back, since a move
        missing from `ops.model_promotions` could never be rolled back."""
        self.client.set_registered_model_alias(name, alias, str(version))
        try:
            self.record(name, alias, action, previous, version, reason, mlflow_run_id)
        except BaseException:
            if previous is None:
                self.client.delete_registered_model_alias(name, alias)
            else:
                self.client.set_registered_model_alias(name, alias, str(previous))
            raise


def spark_moves(lakehouse: Lakehouse) -> list[dict[str, Any]]:
    """Every row of `ops.model_promotions` read with Spark (`moved_at` as naive UTC); [] when it does not exist."""
    from pyspark.sql import functions as F

    if not lakehouse.exists("ops", PROMOTIONS):
        return []
    # `moved_at` as UTC microseconds: a collected timestamp is in the Python process's time zone, `now()` is UTC.
    df = lakehouse.read("ops", PROMOTIONS).withColumn("moved_at", F.unix_micros("moved_at"))
    rows = [r.asDict() for r in df.collect()]
    for row in rows:
        if row["moved_at"] is not None:
            row["moved_at"] = datetime(1970, 1, 1) + timedelta(microseconds=row["moved_at"])
    return rows


def local_moves(root: str) -> list[dict[str, Any]]:
    """Every row of `ops.model_promotions` of a local lakehouse `root`, read without Spark (`moved_at` as naive UTC,
    as `now()` stamps it); [] when the table does not exist. Raises DeltaLogUnsupported for a root that is not a
    local folder or a table this reader does not read: read it with `spark_moves` instead."""
    from goldsmith.io.delta_log import read_rows

    rows = read_rows(f"{root.rstrip('/')}/ops/{PROMOTIONS}", MOVE_COLUMNS) or []
    for row in rows:
        if row["moved_at"] is not None:
            row["moved_at"] = row["moved_at"].replace(tzinfo=None)
    return rows


def version_tags(version: Any) -> dict[str, str]:
    return dict(version.tags or {})


def recorded_test_metrics(version: Any) -> dict[str, float]:
    """The test metrics recorded on a registered version."""
    raw = version_tags(version).get("goldsmith.test_metrics")
    return {k: float(v) for k, v in json.loads(raw).items()} if raw else {}
