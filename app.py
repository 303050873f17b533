"""The dashboard's entry point: the navigation over the pages, nothing else.

Run it with ``streamlit run app.py``; the first session starts the background worker.
"""

import compression  # noqa: F401  (first: sets TF_USE_LEGACY_KERAS for anything downstream)
import streamlit as st

from compression.studio import dashboard

st.set_page_config(page_title="Compression studio", page_icon="🗜️", layout="wide")

if "worker_started" not in st.session_state:  # once per session; jobs.ensure_worker is lock-guarded
    st.session_state.worker_started = dashboard.ensure_worker()

st.navigation(
    {
        "Studio": [
            st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
            st.Page("views/baseline.py", title="Baseline", icon=":material/model_training:"),
            st.Page("views/pipeline.py", title="Pipeline", icon=":material/tune:"),
        ],
        "Results": [
            st.Page("views/runs.py", title="Runs", icon=":material/pending_actions:"),
            st.Page("views/results.py", title="Results", icon=":material/insights:"),
            st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
        ],
    }
).run()
