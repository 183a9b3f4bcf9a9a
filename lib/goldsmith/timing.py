"""Wall-clock timing of a block, for progress lines and recorded durations."""

from __future__ import annotations

import time
from typing import Any


class Timer:
    """`with Timer() as t: ...; t.seconds`."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start
