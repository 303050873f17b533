"""Screenshots of the Studies page for the README, from finished studies.

    python docs/make_study_screenshot.py STUDY_DIR [STUDY_DIR ...] [--out docs/screenshots]

Each STUDY_DIR is a study's folder (``python -m compression study SPEC --out STUDY_DIR``, or a
workspace's ``studies/<id>``). They are installed into a fresh workspace, ``streamlit run app.py``
serves it, and Debian's chromium (1400 px wide) saves the page that creates a study
(``studies.png``) and each study's result page (``study-<kind>.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import ARGS, WIDTH, chromium_path, full_page_screenshot, start_streamlit, stop_streamlit  # noqa: E402


def install(home: Path, folder: Path) -> tuple[str, str]:
    from compression.studies import record as rec

    study = json.loads((folder / rec.STUDY_FILE).read_text())
    study_id = study["id"]
    dest = rec.study_dir(study_id, home)
    dest.mkdir(parents=True)
    shutil.copy(folder / rec.STUDY_FILE, dest / rec.STUDY_FILE)
    if (folder / rec.ARRAYS_FILE).is_file():
        shutil.copy(folder / rec.ARRAYS_FILE, dest / rec.ARRAYS_FILE)
    return study_id, study["kind"]


def settle(page):
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
                           " && !document.querySelector('[data-testid=\"stSkeleton\"]')")
    page.wait_for_timeout(3000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", help="study folders")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="study-shots-"))
    shown = [install(home, Path(f)) for f in args.studies]
    env = dict(os.environ, COMPRESSION_HOME=str(home), COMPRESSION_EMBEDDED_WORKER="0")
    server, url = start_streamlit(env, home / "streamlit.log")
    out = Path(args.out)
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=ARGS)
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            page.goto(f"{url}/studies")
            settle(page)
            full_page_screenshot(page, out / "studies.png", pause_ms=2000)
            print("wrote", out / "studies.png")
            for study_id, kind in shown:
                page.goto(f"{url}/studies?study={study_id}")
                settle(page)
                full_page_screenshot(page, out / f"study-{kind}.png", pause_ms=2500)
                print("wrote", out / f"study-{kind}.png")
            browser.close()
    finally:
        stop_streamlit(server)
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
