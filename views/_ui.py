"""Streamlit helpers shared by the pages (not a page itself: app.py does not list it)."""

from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st

from compression.studio import dashboard
from compression.errors import UserError

STATE_ICONS = {"queued": ":material/schedule:", "running": ":material/autorenew:", "succeeded": ":material/check_circle:",
               "failed": ":material/error:", "cancelled": ":material/block:"}
PAGES = {
    "home": "views/home.py", "baseline": "views/baseline.py", "pipeline": "views/pipeline.py",
    "runs": "views/runs.py", "results": "views/results.py", "compare": "views/compare.py",
}


def page(fn):
    """Run a page body; any error becomes a one-line message in the page, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            st.error(str(e), icon=":material/error:")
        except Exception as e:  # noqa: BLE001  (the page must stay usable)
            first = str(e).splitlines()[0] if str(e) else ""
            st.error(f"Something went wrong: {type(e).__name__}{': ' + first if first else ''}. "
                     "Reload the page; if it persists, the run folder may be damaged.", icon=":material/error:")

    return wrapper


def jobs_or_stop() -> list[dict]:
    try:
        return dashboard.list_jobs()
    except Exception as e:  # noqa: BLE001
        st.error(f"Cannot read the job list: {e}")
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
