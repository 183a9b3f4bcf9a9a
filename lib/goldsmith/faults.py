"""Named fault points: a run that kills itself at a chosen instant, so that crash recovery is tested
deterministically (tests and `scripts/kill_soak.py`).

`GOLDSMITH_FAULT=<point>[#n]` makes the run's process and every process below it (the JVM, Python workers) die
by SIGKILL the n-th time (default the first) the run reaches `<point>`. The points:

- `commit:<layer>.<table>`: right after a commit to that table (`commit:ops.ingested_files`,
  `commit:bronze.flights`, `commit:silver.flights_quarantine`, ...);
- `stage:<stage>`: when the stage starts;
- `registered:<model>`: after a model version is registered, before any alias moves.

Unset (the default), a fault point costs one dictionary lookup. In the test process, `simulate(point)` raises
`SimulatedCrash` there instead: the commits made so far stay, nothing after the point runs (but `finally`
blocks do), so that many crash points are checked without a JVM start each. `simulate(point, action=f)` calls
`f()` there and lets the run go on: a fault outside the run (its object store killed at that instant).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ENV = "GOLDSMITH_FAULT"
_seen: Counter[str] = Counter()
_lock = threading.Lock()
_simulated: tuple[str, int] | None = None
_action: Callable[[], None] | None = None


class SimulatedCrash(BaseException):
    """Raised at a simulated fault point; a BaseException, so no `except Exception` of the run swallows it."""


@contextmanager
def simulate(point: str, nth: int = 1, action: Callable[[], None] | None = None) -> Iterator[None]:
    """Within the block, the `nth` visit of `point` raises `SimulatedCrash` (in this process, any thread), or
    calls `action` and goes on."""
    global _simulated, _action
    with _lock:
        _seen.clear()
        _simulated, _action = (point, nth), action
    try:
        yield
    finally:
        with _lock:
            _simulated, _action = None, None
            _seen.clear()


def armed() -> tuple[str, int] | None:
    """The fault point of this process and the visit that triggers it, or None."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    point, _, nth = value.partition("#")
    return point, int(nth) if nth.isdigit() and int(nth) > 0 else 1


def reached(point: str) -> None:
    """Die here (SIGKILL of the whole process group) when `point` is the armed one and its visit has come."""
    fault = _simulated or armed()
    if fault is None or fault[0] != point:
        return
    with _lock:
        _seen[point] += 1
        if _seen[point] != fault[1]:
            return
    if _simulated is not None:
        if _action is not None:
            _action()
            return
        raise SimulatedCrash(point)
    print(f"goldsmith: fault point {point} (visit {fault[1]}): killing the process group", file=sys.stderr,
          flush=True)
    for pid in _descendants(os.getpid()):  # the JVM and Python workers first, as a SIGKILL of the group would
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    """Every process below `root` (Linux `/proc`; elsewhere none: the JVM exits when its parent's pipe closes)."""
    children: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def committed(layer: str, table: str) -> None:
    """The fault point right after a commit to `layer.table`."""
    reached(f"commit:{layer}.{table}")
