"""Shared helpers for driving the dashboard in Debian's chromium (the browser test and
docs/make_screenshots.py): browser flags, a free port, and full-page screenshots."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium keeps dialling hosts this closed network refuses.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH = 1400


def chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_height(page) -> int:
    """Streamlit scrolls inside its own container: the tallest scrollable element's height."""
    return page.evaluate("""() => { let h = 0; document.querySelectorAll('*').forEach(e => {
        if (e.scrollHeight > h && getComputedStyle(e).overflowY.match(/auto|scroll/)) h = e.scrollHeight; });
        return Math.max(h, document.body.scrollHeight); }""")


def full_page_screenshot(page, path: Path, pause_ms: int = 1500) -> None:
    """Grow the viewport to the content's height (charts below the fold render lazily, hence
    the loop), take the screenshot, and put the viewport back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = 0
    for _ in range(6):
        new = page_height(page)
        if new <= height:
            break
        height = new
        page.set_viewport_size({"width": WIDTH, "height": min(height + 60, 16000)})
        page.wait_for_timeout(pause_ms)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": WIDTH, "height": 1000})
