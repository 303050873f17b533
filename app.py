"""The dashboard's entry point: the navigation over the pages, nothing else.

Run it with ``streamlit run app.py``; the first session starts the background worker.
"""

import os

import compression  # noqa: F401  (first: sets TF_USE_LEGACY_KERAS for anything downstream)
import streamlit as st

from compression.studio import dashboard

st.set_page_config(page_title="Compression studio", page_icon="🗜️", layout="wide")

try:  # .streamlit/secrets.toml may say read_only = true (COMPRESSION_READ_ONLY wins when set)
    dashboard.set_read_only_secret(bool(st.secrets.get("read_only", False)))
except Exception:  # no secrets file
    dashboard.set_read_only_secret(False)


@st.cache_resource(ttl=60, show_spinner=False)
def _worker(home: str) -> bool:
    """Start the background worker at most once a minute per server process, not once per browser
    session: a fresh tab (a shared Results link) then renders without waiting on the start check."""
    return dashboard.ensure_worker()


if "worker_started" not in st.session_state and not dashboard.read_only():
    st.session_state.worker_started = _worker(os.environ.get("COMPRESSION_HOME", ""))

st.navigation(
    {
        "Studio": [
            st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
            st.Page("views/baseline.py", title="Baseline", icon=":material/model_training:"),
            st.Page("views/pipeline.py", title="Pipeline", icon=":material/tune:"),
            st.Page("views/studies.py", title="Studies", icon=":material/science:"),
        ],
        "Results": [
            st.Page("views/runs.py", title="Runs", icon=":material/pending_actions:"),
            st.Page("views/results.py", title="Results", icon=":material/insights:"),
            st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
        ],
    }
).run()
