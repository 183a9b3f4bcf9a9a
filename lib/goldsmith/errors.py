"""The errors goldsmith raises for user mistakes and data failures.

Every error a user can cause is a `GoldsmithError`: the CLI prints its message on one line and exits with
its `exit_code`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


class GoldsmithError(Exception):
    """Base class: a failure the user can act on, with a message that says how."""

    exit_code = 2


class ConfigError(GoldsmithError):
    """The pipeline file, an overlay, an override or a SQL file is invalid."""


class ExecutorsMismatch(GoldsmithError):
    """A cluster's executors cannot import goldsmith, or import another version than the driver runs."""


class SchemaMismatch(GoldsmithError):
    """Data does not have the columns or types the pipeline declares."""

    exit_code = 1


class ExpectationFailed(GoldsmithError):
    """An expectation with `action: fail` rejected rows; the table was left unchanged."""

    exit_code = 1


class AccountingError(GoldsmithError):
    """Records in != records out + quarantined + duplicates: a record was lost or invented."""

    exit_code = 1


class KeyNotUnique(GoldsmithError):
    """A table's declared keys are not unique (a join fanned out, or the source repeats keys)."""

    exit_code = 1


class StageFailed(GoldsmithError):
    """Spark rejected a stage's query or write (bad data for a cast, a schema change, ...)."""

    exit_code = 1


class BackendUnavailable(GoldsmithError):
    """A required component (Delta jars, a training backend) is not installed or not supported."""


class QueryError(GoldsmithError):
    """`goldsmith sql`: the query does not parse, names something that does not exist, or fails while it runs."""


class RegistryError(GoldsmithError):
    """A registry request that cannot be done (no such model or version, nothing to roll back to)."""

    exit_code = 1


class GateFailed(GoldsmithError):
    """A manual promotion refused by the model's gates."""

    exit_code = 1


class DeltaLogUnsupported(GoldsmithError):
    """The pure-Python Delta reader met something it does not read (a table feature, a remote root): use Spark."""


class NoChampion(GoldsmithError):
    """Scoring asked for a champion that does not exist yet."""

    exit_code = 1


class DriftDetected(GoldsmithError):
    """The monitor found a violation and the model's monitor says `on_breach: fail`."""

    exit_code = 3


class RenderFailed(GoldsmithError):
    """Chromium could not open or screenshot the report."""

    exit_code = 1


class PortInUse(GoldsmithError):
    """The port the server should listen on is taken."""


class LeaseHeld(GoldsmithError):
    """Another run of the same pipeline holds the storage root's writer lease."""

    exit_code = 4


class LeaseLost(GoldsmithError):
    """This run's writer lease was taken over (its heartbeat stalled past the lease's time to live)."""

    exit_code = 4


class StorageUnavailable(GoldsmithError):
    """The storage (a disk, an object store) failed an I/O: unreachable, refused, timed out, denied."""

    exit_code = 1


def storage_failure(exc: BaseException) -> str | None:
    """When `exc` comes from the JVM and an I/O error is behind it (a `java.io.IOException` in its causes: the
    object store refused the connection, a timeout, access denied), that error's first line; else None."""
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    seen = 0
    while java is not None and seen < 20:
        seen += 1
        try:
            kind = java.getClass()
            io = False
            while kind is not None:
                if kind.getName() == "java.io.IOException":
                    io = True
                    break
                kind = kind.getSuperclass()
            if io:
                return first_line(str(java.getMessage() or "")) or str(java.getClass().getName())
            cause = java.getCause()
        except Exception:  # the JVM is gone: nothing more to learn
            return None
        java = None if cause is None or cause.equals(java) else cause
    return None


def first_line(text: str) -> str | None:
    """The first line of `text` that is not blank, stripped; None when there is none."""
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


def message_line(exc: BaseException, most: int | None = None) -> str:
    """The first line of an error's message that says something (Spark's often start with a blank line), cut to
    `most` characters; the error's type name when the message is empty."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    first = lines[0]
    if "thrown from the Python worker" in first:  # a UDF's error: its last traceback line says what happened
        raised = [line for line in lines[1:] if _RAISED.match(line)]
        if raised:
            first = f"a Python function failed: {raised[-1]}"
    return first[:most] if most else first
