"""Home: what the studio does, the workspace at a glance, where to go next."""

import streamlit as st

from compression.studio import dashboard
from compression.store.workspace import home_dir
from views._ui import PAGES, findings_for, jobs_or_stop, md, page, read_only, state_badge


@page
def main():
    st.title("Model compression studio")
    st.markdown(
        "Train or upload a **baseline** Keras model, then chain **pruning**, **weight clustering** and "
        "**quantization** in the order you choose. "
        "Each chain runs in the background and is measured after every step: accuracy, sparsity, distinct weight "
        "values, file sizes and latency, read back from the actual files. "
        "When you like the trade-off, download the compressed **TFLite** file and the recipe that made it."
    )
    if read_only():
        st.info("Read-only mode: every result and download is here; training, uploads and cancels are turned off.",
                icon=":material/lock:")
    jobs = jobs_or_stop()
    summary = dashboard.workspace_summary(jobs)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Baselines", summary["baselines"], help="Succeeded baseline runs you can compress")
    c2.metric("Compression runs", summary["runs"])
    c3.metric("Running or queued", summary["active"])
    c4.metric("Failed", summary["failed"])
    st.caption(f"Workspace: `{home_dir(create=False)}`")

    st.subheader("Next step")
    if read_only():  # only what a viewer can do: no link to a form that is turned off
        st.markdown("Browse what the workspace holds: every run's results, charts and downloads.")
    elif summary["baselines"] == 0:
        st.markdown("Start with a baseline: pick a dataset and train a small model (seconds with the quick demo), "
                    "or upload your own .keras / .h5 model.")
        st.page_link(PAGES["baseline"], label="1 · Build a baseline", icon=":material/model_training:")
    else:
        st.page_link(PAGES["pipeline"], label="Compose a compression pipeline for a baseline", icon=":material/tune:")
        st.page_link(PAGES["baseline"], label="Build another baseline", icon=":material/model_training:")
    cols = st.columns(3)
    with cols[0]:
        st.page_link(PAGES["runs"], label="Watch the runs", icon=":material/pending_actions:")
    with cols[1]:
        st.page_link(PAGES["results"], label="See what a run did", icon=":material/insights:")
    with cols[2]:
        st.page_link(PAGES["compare"], label="Compare runs", icon=":material/compare_arrows:")

    if jobs:
        st.subheader("Latest jobs")
        for job in jobs[:5]:
            with st.container(border=True):
                a, b, c = st.columns([4, 2, 2], vertical_alignment="center")
                a.markdown(f"**{md(job.get('name'))}** · {md(job.get('kind', ''))}  \n"
                           f"<small>{md(dashboard.job_summary(job))}</small>", unsafe_allow_html=True)
                b.markdown(state_badge(job) + (" :red-badge[⚠ check]" if findings_for(job) else ""))
                with c:
                    if job.get("state") == "succeeded":
                        st.page_link(PAGES["results"], label="Results", icon=":material/insights:",
                                     query_params={"run": job["id"]})
                    else:
                        st.page_link(PAGES["runs"], label="Details", icon=":material/pending_actions:",
                                     query_params={"job": job["id"]})


main()
