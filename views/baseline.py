"""Baseline: pick a dataset and train an architecture (or upload a model), as a background job."""

import os
from pathlib import Path

import streamlit as st

from compression.studio import charts, dashboard, uploads
from compression.recipe.choices import Arch, DatasetName, ExportMode, options
from compression.errors import UserError
from views._ui import PAGES, jobs_or_stop, page, read_only, read_only_note, state_badge, try_cached_run

ARCH_HELP = {
    "dense_redundant": "a deliberately over-sized dense network: prunes and clusters well",
    "lenet_300_100": "the classic 300-100 dense LeNet",
    "lenet_5": "the small convolutional LeNet-5",
    "lenet_5_caffe": "Deep Compression's LeNet-5 (431k parameters; images of at least 16×16, e.g. MNIST)",
    "resnet_20": "a small ResNet: residual blocks with batch norm (273k parameters)",
    "mobilenet_v2": "a narrow MobileNetV2: inverted residuals, depthwise convolutions, ReLU6 (91k parameters)",
}
UPLOAD_CHOICE = "uploaded .npz file"


def _upload(kind: str, uploaded) -> Path | None:
    """Check and store an upload once per file; show the verdict; return the stored path."""
    done = st.session_state.setdefault("uploads_done", {})
    key = f"{kind}:{uploaded.file_id}"
    if key not in done:
        with st.spinner(f"Checking {uploaded.name}…"):
            try:
                path, info = dashboard.save_upload(uploaded, uploaded.name, kind)
                done[key] = {"path": str(path), "info": info}
            except UserError as e:
                done[key] = {"error": str(e)}
    verdict = done[key]
    if "error" in verdict:
        st.error(verdict["error"], icon=":material/block:")
        return None
    info = verdict.get("info") or {}
    if kind == "dataset":
        st.success(f"{uploaded.name}: {info.get('n_train')} training and {info.get('n_test')} test samples of shape "
                   f"{info.get('input_shape')}, {info.get('num_classes')} classes. Stored in the workspace.")
    else:
        st.success(f"{uploaded.name}: a {info.get('format')} model ({info.get('model_class')}, "
                   f"{info.get('layers') or '?'} layers). Stored in the workspace; the job loads it with TensorFlow.")
    return Path(verdict["path"])


def _new_baseline_form():
    st.subheader("New baseline")
    name = st.text_input("Name", value="baseline", max_chars=100, key="bl_name")

    st.markdown("**Dataset**")
    dataset_opts = options(DatasetName) + [UPLOAD_CHOICE]
    ds_choice = st.selectbox("Dataset", dataset_opts, key="bl_dataset",
                             help="digits (scikit-learn's 8×8 digits) works offline; mnist and fashion_mnist read "
                                  "COMPRESSION_DATA_DIR; or upload an .npz with x_train, y_train, x_test, y_test.")
    dataset = ds_choice
    if ds_choice == UPLOAD_CHOICE:
        previous = uploads.list_uploads("dataset")
        up = st.file_uploader("Dataset (.npz)", type=["npz"], key="bl_npz")
        path = _upload("dataset", up) if up is not None else None
        if path is None and previous:
            chosen = st.selectbox("…or an earlier upload", previous, format_func=lambda p: p.name, key="bl_prev_npz")
            path = chosen
        dataset = {"npz": str(path)} if path else None
    elif ds_choice in ("mnist", "fashion_mnist", "cifar10") and not os.environ.get("COMPRESSION_DATA_DIR"):
        st.info(f"{ds_choice} is read from COMPRESSION_DATA_DIR, which is not set here; the job will say so if "
                "the files are missing. digits always works.", icon=":material/info:")

    st.markdown("**Model**")
    source = st.radio("Model", ["Train an architecture", "Upload a .keras / .h5 model"], horizontal=True,
                      key="bl_source", label_visibility="collapsed")
    arch = model_path = None
    d = dashboard.DEFAULT_BASELINE
    epochs, batch, seed, lr = d["epochs"], d["batch_size"], d["seed"], d["learning_rate"]
    if source == "Train an architecture":
        arch = st.selectbox("Architecture", options(Arch), index=options(Arch).index(d["arch"]), key="bl_arch",
                            help="; ".join(f"{a}: {ARCH_HELP.get(a, '')}" for a in options(Arch)))
        st.caption(ARCH_HELP.get(arch, ""))  # the whole description, never cut by the box's width
        c1, c2, c3 = st.columns(3)
        epochs = c1.number_input("Epochs", 1, 200, d["epochs"], key="bl_epochs")
        batch = c2.select_slider("Batch size", [16, 32, 64, 128, 256, 512], value=d["batch_size"], key="bl_batch")
        seed = c3.number_input("Seed", 0, 2**31 - 1, d["seed"], key="bl_seed")
        lr = st.select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], value=d["learning_rate"], key="bl_lr",
                              format_func=lambda v: f"{v:g}")
        st.caption("The defaults reach about 98% on digits in a few seconds of training (measured: 98.05%).")
    else:
        previous = uploads.list_uploads("model")
        up = st.file_uploader("Model (.keras or .h5)", type=["keras", "h5", "hdf5"], key="bl_model")
        model_path = _upload("model", up) if up is not None else None
        if model_path is None and previous:
            model_path = st.selectbox("…or an earlier upload", previous, format_func=lambda p: p.name, key="bl_prev_model")
        epochs = 0

    quick = st.toggle("Cap the training samples", value=False, key="bl_quick",
                      help="Trains on at most N samples: faster on big datasets, but a small cap costs accuracy. "
                           "digits needs no cap (1,294 training samples).")
    cap = st.slider("N (training samples)", 100, 20000, 5000, step=100, key="bl_cap", disabled=not quick)
    export = st.selectbox("Export the baseline as", options(ExportMode), index=0, key="bl_export",
                          help="The baseline's own TFLite file: float32 is the honest reference size.")

    ready = dataset is not None and (arch is not None or model_path is not None)
    if st.button("Train baseline" if arch else "Load and measure baseline", type="primary", disabled=not ready,
                 key="bl_submit", icon=":material/play_arrow:"):
        recipe = dashboard.baseline_recipe(name, dataset, arch=arch, model_path=str(model_path) if model_path else None,
                                           epochs=int(epochs), batch_size=int(batch), seed=int(seed), learning_rate=float(lr),
                                           max_train_samples=int(cap) if quick else None, export=export)
        job_id = dashboard.submit(recipe)
        st.session_state["bl_selected"] = job_id
        st.toast(f"Baseline job {job_id} submitted")
        st.rerun()
    if not ready:
        st.caption("Choose a dataset and a model first.")


def _show_baseline(job: dict):
    run = try_cached_run(job["run_dir"])
    if run is None:
        st.warning("This run has no report.")
        return
    facts = dashboard.baseline_facts(run.report)
    st.markdown(f"#### {job.get('name')} · {facts.get('dataset')}")
    c1, c2 = st.columns(2)
    c3, c4 = st.columns(2)
    c1.metric("Test accuracy", f"{facts['accuracy']:.2%}" if facts.get("accuracy") is not None else "–")
    c2.metric("Parameters", f"{facts['params_total']:,}" if facts.get("params_total") else "–")
    c3.metric("TFLite (float32)", charts.human_bytes(facts.get("tflite_bytes")),
              help=f"zipped: {charts.human_bytes(facts.get('tflite_zip_bytes'))}; "
                   f"Keras zipped: {charts.human_bytes(facts.get('keras_zip_bytes'))}")
    c4.metric("Latency", f"{facts['latency_ms']:.3f} ms" if facts.get("latency_ms") is not None else "–",
              help="median TFLite inference, batch 1, on this machine")
    st.caption(f"{facts.get('source') or 'trained'} in {dashboard.fmt_duration(facts.get('wall_s'))}; "
               f"{facts.get('n_train')} training / {facts.get('n_test')} test samples; input {facts.get('input_shape')}, "
               f"{facts.get('num_classes')} classes. Keras zipped {charts.human_bytes(facts.get('keras_zip_bytes'))}, "
               f"TFLite zipped {charts.human_bytes(facts.get('tflite_zip_bytes'))}.")
    st.dataframe(charts.architecture_df(run.report), hide_index=True, width="stretch",
                 column_config={"parameters": st.column_config.NumberColumn(format="localized")})
    a, b = st.columns(2)
    with a:
        st.page_link(PAGES["pipeline"], label="Compress this baseline", icon=":material/tune:",
                     query_params={"baseline": job["id"]})
    with b:
        st.page_link(PAGES["results"], label="Full measurements", icon=":material/insights:", query_params={"run": job["id"]})


def _your_baselines(jobs: list[dict]):
    st.subheader("Your baselines")
    mine = [j for j in jobs if dashboard.is_baseline(j)]
    if not mine:
        st.info("No baselines yet: train one with the form.")
        return
    ids = [j["id"] for j in mine]
    selected = st.session_state.get("bl_selected")
    index = ids.index(selected) if selected in ids else 0
    job_id = st.selectbox("Baseline", ids, index=index, key="bl_pick",
                          # no state in the label: the select keeps its first labels while a job moves on
                          format_func=lambda i: f"{next(j for j in mine if j['id'] == i).get('name')} · {i}")
    st.session_state["bl_selected"] = job_id
    job = next(j for j in mine if j["id"] == job_id)
    if job.get("state") in dashboard.ACTIVE:
        _watch(job_id)
    elif job.get("state") == "succeeded":
        _show_baseline(job)
    else:
        st.markdown(state_badge(job))
        st.error(job.get("error") or f"The job {job.get('state')}.", icon=":material/cancel:")
        st.page_link(PAGES["runs"], label="See its log on the Runs page", query_params={"job": job_id})


@st.fragment(run_every=2)
@page
def _watch(job_id: str):
    job = dashboard.get_job(job_id)
    if job is None:
        st.warning("The job disappeared.")
        return
    if job.get("state") not in dashboard.ACTIVE:
        st.rerun()
    st.markdown(state_badge(job) + f" {dashboard.describe_progress(job)}")
    st.progress(min(1.0, max(0.0, float(job.get("progress") or 0))),
                text=f"{float(job.get('progress') or 0):.0%} · elapsed {dashboard.fmt_duration(dashboard.elapsed_s(job))}")
    st.caption("Training runs in the background; you can leave this page and come back.")


@page
def main():
    st.title("Baseline")
    st.markdown("The model every compression step is measured against. Train a small architecture on a dataset, "
                "or upload your own model; either way it runs as a background job and is measured like every "
                "later stage (accuracy, size, latency).")
    jobs = jobs_or_stop()
    left, right = st.columns([2, 3], gap="large")
    with left:
        with st.container(border=True):
            if read_only():
                st.subheader("New baseline")
                read_only_note("Training and uploading baselines")
            else:
                _new_baseline_form()
    with right:
        _your_baselines(jobs)


main()
