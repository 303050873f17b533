"""Page speed: time every dashboard page until it is idle in Chromium, after a warm-up.

    python bench/pages.py            # 50 synthetic runs (one standing for a >= 3 M-weight model), every page
    python bench/pages.py --quick    # the synthetic workspace only, one page: a smoke test

Builds a synthetic workspace (tests/synthetic.py), starts ``streamlit run app.py`` headless
against it with no worker, opens each page in Debian's chromium via Playwright, loads it once
to warm up, then times ``--repeat`` fresh loads until Streamlit is idle (no status widget,
no skeleton, no stale element) and prints a markdown table of the median times.
Budget (issue 9): every page interactive <= 1.5 s after warm-up; Results of the large model <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import ARGS, chromium_path, start_streamlit, stop_streamlit  # noqa: E402

IDLE_JS = ("() => !!document.querySelector('[data-testid=\"stAppViewContainer\"]')"
           " && !document.querySelector('[data-testid=\"stStatusWidget\"]')"
           " && !document.querySelector('[data-testid=\"stSkeleton\"]')"
           " && !document.querySelector('[data-stale=\"true\"]')"
           " && !!document.querySelector('[data-testid=\"stMain\"] h1')")


def build_workspace(home: Path, quick: bool) -> dict[str, str]:
    from synthetic import add_big_run, add_collapsed_run, add_many_runs, make_workspace

    jobs = make_workspace(home)
    pages = {"Home": "", "Baseline": "baseline", "Pipeline": "pipeline", "Runs": "runs",
             "Results": f"results?run={jobs['compress']['id']}", "Compare": "compare"}
    if quick:
        return {"Results": pages["Results"]}
    add_collapsed_run(home)
    big = add_big_run(home)
    add_many_runs(home, 50 - 6)
    pages["Results (large model)"] = f"results?run={big['id']}"
    return pages


def start_server(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, COMPRESSION_HOME=str(home), COMPRESSION_EMBEDDED_WORKER="0", PYTHONUNBUFFERED="1")
    return start_streamlit(env, log, "--server.fileWatcherType", "none")


def time_page(page, url: str) -> float:
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(IDLE_JS, timeout=60_000, polling=50)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few runs, one page (smoke test)")
    ap.add_argument("--repeat", type=int, default=None, help="timed loads per page (default 3, quick 1)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    if chromium_path() is None:
        print("chromium not found", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        pages = build_workspace(home, args.quick)
        n_runs = len(list((home / "runs").iterdir()))
        built = time.perf_counter() - t0
        proc, url = start_server(home, Path(tmp) / "streamlit.log")
        rows = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium_path(), args=ARGS)
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = ctx.new_page()
                for name, path in pages.items():
                    time_page(page, f"{url}/{path}")  # warm-up: server caches, the browser's bundle
                    times = [time_page(page, f"{url}/{path}") for _ in range(repeat)]
                    rows.append((name, statistics.median(times), max(times)))
                browser.close()
        finally:
            stop_streamlit(proc)
    print(f"\n{n_runs} run folders (built in {built:.1f} s); {repeat} timed load(s) per page after a warm-up; "
          "time from navigation until Streamlit is idle.\n")
    print("| page | median (s) | worst (s) | budget (s) |")
    print("| --- | ---: | ---: | ---: |")
    over = 0
    for name, med, worst in rows:
        budget = 2.0 if "large" in name else 1.5
        over += med > budget
        print(f"| {name} | {med:.2f} | {worst:.2f} | {budget:.1f}{' ⚠' if med > budget else ''} |")
    return 0 if not over else 1


if __name__ == "__main__":
    sys.exit(main())
