"""Screenshots of every page over a realistic workspace, for the README.

    COMPRESSION_DATA_DIR=../shared/data python docs/make_screenshots.py [--home DIR]

Trains an MNIST LeNet-300-100 baseline and compresses it twice (prune -> cluster -> QAT,
and the textbook 50% -> 95% pruning exported as int8) through the background worker, then
opens each page of `streamlit run app.py` in Debian's chromium and saves a full-page PNG
into docs/screenshots/. Takes about five minutes on 2 cores. The browser test
(tests/test_e2e_browser.py) checks the same flow on tiny data; this script only shows it
at a realistic size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
SHOTS = ROOT / "docs" / "screenshots"

from browser import ARGS, chromium_path, full_page_screenshot, start_streamlit, stop_streamlit  # noqa: E402

BASELINE = {"name": "MNIST LeNet-300-100", "dataset": "mnist",
            "baseline": {"arch": "lenet_300_100", "epochs": 4, "batch_size": 128, "seed": 0},
            "steps": [], "export": "float32"}


def compress(baseline_dir: Path, name: str, steps: list[dict], export: str) -> dict:
    return {"name": name, "dataset": "mnist", "baseline": {"path": str(baseline_dir / "baseline.keras")},
            "steps": steps, "export": export}


def prepare(home: Path) -> dict[str, str]:
    from compression import jobs

    os.environ["COMPRESSION_HOME"] = str(home)
    jobs.ensure_worker(home)
    base = jobs.submit(BASELINE, home)
    record = jobs.wait(base, home, timeout=900)
    assert record.state == "succeeded", record
    run = Path(record.run_dir)
    pcq = jobs.submit(compress(run, "prune 90% → cluster 16 → QAT", [
        {"method": "prune", "initial_sparsity": 0.5, "final_sparsity": 0.9, "epochs": 3},
        {"method": "cluster", "number_of_clusters": 16, "epochs": 1},
        {"method": "quantize", "epochs": 1}], "int8_dynamic"), home)
    textbook = jobs.submit(compress(run, "prune 50% → 95%, int8", [
        {"method": "prune", "initial_sparsity": 0.5, "final_sparsity": 0.95, "epochs": 3}], "int8_dynamic"), home)
    for job in (pcq, textbook):
        record = jobs.wait(job, home, timeout=900)
        assert record.state == "succeeded", record
    return {"baseline": base, "pcq": pcq, "textbook": textbook}


def settle(page):
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
                           " && !document.querySelector('[data-testid=\"stSkeleton\"]')")
    page.wait_for_timeout(2500)


def shoot(page, name: str):
    full_page_screenshot(page, SHOTS / f"{name}.png", pause_ms=2000)
    print("wrote", SHOTS / f"{name}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", default=None, help="workspace to fill (default: a new temporary folder)")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="studio-shots-"))
    ids = prepare(home)
    env = dict(os.environ, COMPRESSION_HOME=str(home))
    server, url = start_streamlit(env, home / "streamlit.log")
    try:
        from playwright.sync_api import sync_playwright

        SHOTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            pages = [
                ("home", ""),
                ("baseline", ""),
                ("pipeline", f"?baseline={ids['baseline']}"),
                ("runs", ""),
                ("results", f"?run={ids['pcq']}"),
                ("compare", f"?runs={ids['pcq']},{ids['textbook']},{ids['baseline']}"),
            ]
            for name, query in pages:
                page.goto(f"{url}/{'' if name == 'home' else name}{query}")
                settle(page)
                if name == "pipeline":
                    page.locator(".st-key-pl_preset input[role='combobox']").click()
                    page.get_by_role("option", name="prune → cluster → QAT", exact=False).first.click()
                    settle(page)  # choosing a preset loads it
                shoot(page, name)
            browser.close()
    finally:
        stop_streamlit(server)
        from compression import jobs

        jobs.stop_worker(home)
    print("workspace:", home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
