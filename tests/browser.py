"""Shared helpers for driving the dashboard in Debian's chromium (the browser test,
bench/pages.py and docs/make_screenshots.py): the dashboard server, browser flags, a free
port, and full-page screenshots."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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


def start_streamlit(env: dict, log: Path, *extra: str, timeout_s: float = 60) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` headless on a free loopback port, once it answers its health
    check; its output goes to ``log``. RuntimeError with the log's tail if it does not start."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                 "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--browser.gatherUsageStats", "false", *extra],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("streamlit did not start:\n" + Path(log).read_text(errors="replace")[-3000:])
        time.sleep(0.3)


def stop_streamlit(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
