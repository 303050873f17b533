"""End to end in a real browser: `streamlit run app.py` driven by Playwright + Debian's chromium.

Follows a newcomer taking every default (issue 9): trains the default baseline, compresses
it with the default preset, waits for success, checks the accuracies, downloads the TFLite
file and runs it with the LiteRT interpreter.
With UPDATE_SCREENSHOTS=1 it saves a full-page screenshot of every page into
docs/screenshots/ at the end of the flow.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from browser import ARGS, CHROMIUM, chromium_path, full_page_screenshot, start_streamlit, stop_streamlit

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def server(tmp_path):
    if chromium_path() is None:
        pytest.skip(f"chromium not found at {CHROMIUM}; .ci/run installs it (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    home = tmp_path / "home"
    env = dict(os.environ, COMPRESSION_HOME=str(home), COMPRESSION_EMBEDDED_WORKER="1", PYTHONUNBUFFERED="1")
    env.pop("COMPRESSION_DATA_DIR", None)
    proc, url = start_streamlit(env, tmp_path / "streamlit.log")
    try:
        yield url, home, tmp_path
    finally:
        stop_streamlit(proc)
        sys.path.insert(0, str(ROOT))
        from compression import jobs

        jobs.stop_worker(home)  # the embedded worker outlives the app by design


def _settle(page, timeout=30_000):
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=timeout)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
                           " && !document.querySelector('[data-testid=\"stSkeleton\"]')"
                           " && !document.querySelector('[data-stale=\"true\"]')", timeout=timeout)
    page.wait_for_timeout(600)


def _select(page, key: str, option: str):
    page.locator(f".st-key-{key} input[role='combobox']").click()
    page.get_by_role("option", name=option, exact=False).first.click()
    _settle(page)


def _shoot(page, name: str):
    """Full-page screenshot: Streamlit scrolls inside its own container, so grow the viewport
    to the content's height (charts below the fold render lazily, hence the loop)."""
    if os.environ.get("UPDATE_SCREENSHOTS") != "1":
        return
    full_page_screenshot(page, SHOTS / f"{name}.png")


def _reports(home: Path) -> dict[str, dict]:
    import json

    out = {}
    for f in (home / "runs").glob("*/report.json"):
        r = json.loads(f.read_text())
        out["compress" if (r.get("recipe") or {}).get("steps") else "baseline"] = r
    return out


def test_a_newcomer_taking_every_default_gets_a_good_model(server):
    """Issue 9: Home → Baseline → Train baseline → Compress this baseline → Run → Results → TFLite,
    touching nothing else. The baseline reaches 95% on digits; the exported file stays within 2 points."""
    from playwright.sync_api import expect, sync_playwright

    url, home, tmp = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(30_000)
        try:
            # 1. Home → Baseline
            page.goto(url)
            _settle(page)
            expect(page.get_by_role("heading", name="Model compression studio")).to_be_visible()
            page.get_by_role("link", name="Baseline", exact=True).click()
            _settle(page)

            # 2. Train the default baseline
            page.get_by_role("button", name="Train baseline").click()
            expect(page.get_by_text("Compress this baseline")).to_be_visible(timeout=120_000)
            _settle(page)
            expect(page.get_by_text("Test accuracy")).to_be_visible()
            _shoot(page, "baseline")

            # 3. Pipeline with its default preset, then Run
            page.get_by_text("Compress this baseline").click()
            _settle(page)
            expect(page.get_by_text("jumps to", exact=False)).to_have_count(0)  # the default preset fits the data
            _shoot(page, "pipeline")
            page.get_by_role("button", name="Run", exact=True).click()

            # 4. Runs follows the job until it succeeds
            page.wait_for_url("**/runs?job=*", timeout=30_000)
            _shoot(page, "runs")
            expect(page.locator("[data-testid='stMain']").get_by_role("link", name="Results")).to_have_count(
                2, timeout=180_000)
            _settle(page)

            # 5. Results: no alarm, the input contract, the downloads
            page.locator("[data-testid='stMain']").get_by_role("link", name="Results").first.click()
            page.wait_for_url("**/results?run=*")
            _settle(page)
            expect(page.get_by_text("Stage by stage")).to_be_visible()
            expect(page.get_by_text("no better than guessing")).to_have_count(0)
            expect(page.get_by_text("Class labels")).to_be_visible()
            charts = page.locator("[data-testid='stVegaLiteChart']")
            expect(charts.first).to_be_visible(timeout=30_000)
            with page.expect_download() as dl:
                page.get_by_role("button", name="TFLite model").click()
            assert dl.value.suggested_filename == "prune-cluster-qat.tflite"
            tflite = tmp / "downloaded.tflite"
            dl.value.save_as(tflite)
            if os.environ.get("UPDATE_SCREENSHOTS") == "1":
                _shoot(page, "results")
                for name, path in (("home", ""), ("compare", "compare")):
                    page.goto(f"{url}/{path}")
                    _settle(page)
                    page.wait_for_timeout(1500)
                    _shoot(page, name)
        finally:
            browser.close()

    reports = _reports(home)
    base_acc = reports["baseline"]["baseline"]["metrics"]["accuracy"]
    final_acc = reports["compress"]["final"]["accuracy"]
    print(f"default baseline {base_acc:.4f}, default preset's exported file {final_acc:.4f}")
    assert base_acc >= 0.95, base_acc
    assert final_acc >= base_acc - 0.02, (base_acc, final_acc)

    # 6. The downloaded file runs in LiteRT
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tflite))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = np.zeros(inp["shape"], dtype=inp["dtype"])
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert out.shape[-1] == 10


def test_the_page_speed_benchmark_runs(tmp_path):
    """bench/pages.py --quick: a synthetic workspace, one page timed in chromium, a markdown table."""
    if chromium_path() is None:
        pytest.skip(f"chromium not found at {CHROMIUM}")
    pytest.importorskip("playwright.sync_api")
    out = subprocess.run([sys.executable, "bench/pages.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
                         timeout=180, env=dict(os.environ, COMPRESSION_HOME=str(tmp_path)))
    assert "| page | median (s) |" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert "| Results |" in out.stdout


REPORT_CHECKS = """() => {
    const charts = [...document.querySelectorAll('.chart')];
    const overflow = [...document.querySelectorAll('body *')].filter(e => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && (r.right > document.documentElement.clientWidth + 1 || e.scrollWidth > e.clientWidth + 1
            && getComputedStyle(e).overflowX !== 'visible');
    }).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));
    return {
        charts: charts.length,
        drawn: charts.filter(c => c.querySelector('svg g.role-mark')).length,
        marks: charts.map(c => [...c.querySelectorAll('g.role-mark')].map(g => g.childElementCount)),
        page: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
        overflow,
    };
}"""


@pytest.mark.parametrize("which", ["run", "compare"])
def test_the_html_reports_draw_every_chart_offline_without_warnings_or_overflow(tmp_path, which):
    """Each offline report, opened with the network off at 1400 px: every chart draws every mark set with data,
    Vega logs no warning or error, nothing is wider than the page. Runs with long, hostile names included."""
    if chromium_path() is None:
        pytest.skip(f"chromium not found at {CHROMIUM}")
    pytest.importorskip("playwright.sync_api")
    pytest.importorskip("vl_convert")
    from playwright.sync_api import sync_playwright
    from synthetic import install_run, make_workspace

    from compression.store.runs import load_run
    from compression.studio import report_html

    home = tmp_path / "home"
    jobs = make_workspace(home)
    odd = install_run(home, "20260102-000000-00aaaa", "compress",
                      name="</script><img src=x> a very long run name that keeps going well past any column width")
    run = load_run(jobs["compress"]["run_dir"])
    if which == "run":
        text = report_html.run_report_html(run.report, run.recipe, run.name)
    else:
        runs = [(load_run(j["run_dir"]).name, load_run(j["run_dir"]).report)
                for j in (jobs["baseline"], jobs["compress"], jobs["prune"], odd)]
        text = report_html.compare_report_html(runs)
    html_file = tmp_path / f"{which}.html"
    html_file.write_text(text, encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=ARGS)
        try:
            ctx = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            console = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type != "log" else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(html_file.as_uri())
            page.wait_for_function("() => [...document.querySelectorAll('.chart')].every(c => c.querySelector('svg'))",
                                   timeout=30_000)
            page.wait_for_timeout(500)
            got = page.evaluate(REPORT_CHECKS)
            assert console == [], console  # no Vega warning ("Infinite extent", a dropped scale property ...)
            assert got["charts"] >= (5 if which == "run" else 4) and got["drawn"] == got["charts"], got
            assert all(marks and all(n > 0 for n in marks) for marks in got["marks"]), got["marks"]  # no empty mark set
            assert got["page"][0] <= got["page"][1] and got["overflow"] == [], got
            assert page.evaluate("() => document.querySelectorAll('img').length") == 0  # the names stayed text
        finally:
            browser.close()
