"""Streamlit helpers shared by the pages (not a page itself: app.py does not list it)."""

from __future__ import annotations

import functools
import html
import os
import re
from pathlib import Path

import streamlit as st

from compression.errors import UserError
from compression.store.runs import RunResult, load_run, read_report
from compression.studio import dashboard, health

STATE_ICONS = {"queued": ":material/schedule:", "running": ":material/autorenew:", "succeeded": ":material/check_circle:",
               "failed": ":material/error:", "cancelled": ":material/block:"}
PAGES = {
    "home": "views/home.py", "baseline": "views/baseline.py", "pipeline": "views/pipeline.py",
    "runs": "views/runs.py", "results": "views/results.py", "compare": "views/compare.py",
    "studies": "views/studies.py",
}


# Error boxes: PAGE_ERROR_ICON only where the page itself failed (the tests fail on any of these);
# content that happens to be an error (a health alarm, a failed job's reason, a refused input) has its own.
PAGE_ERROR_ICON = ":material/error:"
ALARM_ICON = ":material/warning:"
FAILED_ICON = ":material/cancel:"
REFUSED_ICON = ":material/block:"
RAISE_ENV = "COMPRESSION_PAGE_RAISE"  # set by the tests: a page error fails the test instead of showing


def page(fn):
    """Run a page body; any error becomes a one-line message in the page, never a traceback.

    Under COMPRESSION_PAGE_RAISE=1 (the tests) an unexpected error is raised instead, so that no page
    test can pass over a page that shows "Something went wrong"."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            st.error(str(e), icon=PAGE_ERROR_ICON)
        except Exception as e:  # noqa: BLE001  (the page must stay usable)
            if os.environ.get(RAISE_ENV, "") not in ("", "0"):
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            st.error(f"Something went wrong: {type(e).__name__}{': ' + first if first else ''}. "
                     "Reload the page; if it persists, the run folder may be damaged.", icon=PAGE_ERROR_ICON)

    return wrapper


_MD_INLINE = re.compile(r"([\\`*_\[\]|~$:])")  # emphasis, code, links, tables, math, :red[...] / :material/x:
_MD_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+(?=[.)]))", re.M)  # a heading, quote, list or rule


def md(value) -> str:
    """Text from a file or a user (a job name, a class name, a file name, an error) for st.markdown, captions
    and alerts: HTML escaped (no element of a name ever renders, with unsafe_allow_html or without), the
    characters that make markdown or Streamlit directives escaped (no **, links, :red[...] or :material/...:),
    and control characters made visible."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    text = _MD_INLINE.sub(r"\\\1", html.escape(text, quote=False))
    return _MD_LINE_START.sub(r"\1\\\2", text)


def jobs_or_stop() -> list[dict]:
    try:
        return dashboard.list_jobs()
    except Exception as e:  # noqa: BLE001
        st.error(f"Cannot read the job list: {e}", icon=PAGE_ERROR_ICON)
        st.stop()


def state_badge(job: dict) -> str:
    state = job.get("state", "?")
    color = {"queued": "gray", "running": "blue", "succeeded": "green", "failed": "red", "cancelled": "orange"}.get(state, "gray")
    return f":{color}-badge[{STATE_ICONS.get(state, '')} {state}]"


def path_bytes(path: Path | None):
    """A download_button data callable: read the file only when the user clicks."""
    if path is None:
        return None
    return lambda: Path(path).read_bytes()


# --- cached reads of run folders -------------------------------------------------------------
# A finished run folder changes only when a file in it is rewritten, so every read is cached
# under the files' (mtime, size): a rerun of a page reads nothing from disk again.

RUN_FILES = ("report.json", "weights.json", "predictions.npz", "recipe.json", "status.json")


def fingerprint(run_dir: str | Path, names=RUN_FILES) -> tuple:
    out = []
    for name in names:
        try:
            s = os.stat(Path(run_dir) / name)
            out.append((name, s.st_mtime_ns, s.st_size))
        except OSError:
            out.append((name, None, None))
    return tuple(out)


@st.cache_data(max_entries=200, show_spinner=False)
def _load_run(run_dir: str, fp_key: tuple) -> RunResult:
    return load_run(run_dir)


def cached_run(run_dir: str | Path) -> RunResult:
    """load_run, cached until a file of the run folder changes. Raises ResultsError."""
    return _load_run(str(run_dir), fingerprint(run_dir))


def try_cached_run(run_dir: str | Path) -> RunResult | None:
    try:
        return cached_run(run_dir)
    except UserError:
        return None


@st.cache_data(max_entries=1000, show_spinner=False)
def _report(run_dir: str, fp_key: tuple) -> dict | None:
    return read_report(run_dir)  # tidied: every section of the shape the charts read


def cached_report(run_dir: str | Path) -> dict | None:
    """report.json alone (Runs and Compare need no weights), cached like cached_run."""
    return _report(str(run_dir), fingerprint(run_dir, ("report.json",)))


@st.cache_data(max_entries=1000, show_spinner=False)
def _findings(run_dir: str, fp_key: tuple, threshold_pts: float) -> list[health.Finding]:
    report = read_report(run_dir)
    try:
        return health.assess(report, threshold_pts) if report else []
    except Exception:  # noqa: BLE001  (one odd report must not take down the Runs page of every run)
        if os.environ.get(RAISE_ENV, "") not in ("", "0"):
            raise
        return []


def findings_for(job: dict, threshold_pts: float = health.DEFAULT_THRESHOLD_PTS) -> list[health.Finding]:
    """Health findings of a succeeded job's report ([] for any other job)."""
    if job.get("state") != "succeeded" or not job.get("run_dir"):
        return []
    return _findings(str(job["run_dir"]), fingerprint(job["run_dir"], ("report.json",)), float(threshold_pts))


def show_findings(findings: list[health.Finding]) -> None:
    """The red box at the top of Results: every alarm with its likely causes and fixes."""
    if not findings:
        return
    st.error("\n\n".join(f.to_markdown(md) for f in findings), icon=ALARM_ICON)


# --- read-only mode ----------------------------------------------------------------------------


def read_only() -> bool:
    return dashboard.read_only()


def read_only_note(what: str = "Submitting jobs") -> None:
    st.info(f"{what} is turned off: this studio is in read-only mode for a demo. Every result and download "
            "stays available.", icon=":material/lock:")
