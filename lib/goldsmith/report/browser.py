"""Prove that a report renders: open it in headless Chromium, read back the DOM its inline script marked after
load (sections, broken images) and take a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from goldsmith.errors import BackendUnavailable, RenderFailed

WIDTH = 1280
MAX_HEIGHT = 16_000
TIMEOUT_SECONDS = 120
# Chromium logs every console message (an uncaught exception, a blocked resource, console.error) as
# `INFO:CONSOLE(...)` or `ERROR:CONSOLE(...)` on stderr with --enable-logging=stderr.
CONSOLE_LINE = re.compile(r":CONSOLE[:(\]]")


@dataclass(frozen=True)
class RenderCheck:
    """What headless Chromium saw after the page loaded."""

    rendered: bool
    sections: list[str]
    images: int
    broken_images: int
    page_height: int | None
    console_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    dom: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        """Rendered, every image decoded, nothing on the console."""
        return self.rendered and self.broken_images == 0 and not self.console_errors


class _DomReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.root: dict[str, str] = {}
        self.sections: list[str] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = values
        elif tag == "html":
            self.root = values
        elif tag == "section" and values.get("id"):
            self.sections.append(values["id"])
        elif tag == "img":
            self.images += 1


def chromium() -> str:
    """The headless browser's executable; BackendUnavailable when it is not installed."""
    found = shutil.which("chromium")
    if found is None:
        raise BackendUnavailable(
            "checking a report's rendering needs Chromium, and `chromium` is not on PATH: install it "
            "(Debian/Ubuntu: `apt-get install chromium`)"
        )
    return found


def _run(binary: str, url: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="goldsmith-chromium-") as profile:
        command = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", "--no-first-run",
            "--hide-scrollbars", "--mute-audio", "--enable-logging=stderr", "--v=0", *args, url,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            raise RenderFailed(f"chromium did not finish {url} within {TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RenderFailed(f"chromium exited with {done.returncode} on {url}: {tail}")
    return done


def _console(stderr: str) -> list[str]:
    return [line.split("] ", 1)[-1] for line in stderr.splitlines() if CONSOLE_LINE.search(line)]


def check_render(html: Path, screenshot: Path | None = None, width: int = WIDTH) -> RenderCheck:
    """Load `html` in headless Chromium; report what rendered, and save a full-page PNG to `screenshot` if given.

    The report's inline script marks `<body>` after load (`data-rendered`, `data-broken-images`,
    `data-page-height`); the DOM is read back with `--dump-dom`. The page logs nothing to the console, so any
    console line (an exception, a resource the page's CSP refused) is returned in `console_errors`.
    """
    binary = chromium()
    url = html.resolve().as_uri()
    budget = "--virtual-time-budget=5000"  # let the load event (and the marking script) finish before the dump
    dumped = _run(binary, url, [f"--window-size={width},900", budget, "--dump-dom"])
    reader = _DomReader()
    reader.feed(dumped.stdout)
    errors = _console(dumped.stderr)
    script_errors = int(reader.root.get("data-script-errors") or 0)
    if script_errors and not errors:
        errors.append(f"{script_errors} script error(s) reported by the page")
    height_text = reader.body.get("data-page-height", "")
    height = int(height_text) if height_text.isdigit() else None
    shot = None
    if screenshot is not None:
        shot = screenshot.resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        window = f"--window-size={width},{min(height or 2000, MAX_HEIGHT)}"
        taken = _run(binary, url, [window, budget, f"--screenshot={shot}"])
        errors += [e for e in _console(taken.stderr) if e not in errors]
        if not shot.exists():
            raise RenderFailed(f"chromium wrote no screenshot to {shot}")
    return RenderCheck(
        rendered=reader.body.get("data-rendered") == "true",
        sections=reader.sections,
        images=reader.images,
        broken_images=int(reader.body.get("data-broken-images") or 0),
        page_height=height,
        console_errors=errors,
        screenshot=shot,
        dom=dumped.stdout,
    )
