"""Results of one run: what every stage cost and saved, charts, and the downloads."""

import json

import streamlit as st

from compression.studio import charts, dashboard
from compression.store.runs import ResultsError, load_run
from views._ui import PAGES, jobs_or_stop, page, path_bytes

STAGE_COLUMNS = {  # keys: compression.studio.charts.stage_table columns
    "stage": st.column_config.TextColumn("Stage", width="medium"),
    "accuracy": st.column_config.NumberColumn("Accuracy", format="percent"),
    "accuracy_delta": st.column_config.NumberColumn("Δ acc. (pts)", format="%+.2f", help="percentage points vs the baseline"),
    "params_nonzero": st.column_config.NumberColumn("Nonzero params", format="localized"),
    "sparsity": st.column_config.NumberColumn("Sparsity", format="percent"),
    "unique_values": st.column_config.NumberColumn("Distinct values", format="localized",
                                                   help="most distinct kernel values in any one layer"),
    "keras_zip_kb": st.column_config.NumberColumn("Keras zip (KB)", format="%.1f"),
    "keras_zip_ratio": st.column_config.NumberColumn("× base", format="%.2f×"),
    "tflite_kb": st.column_config.NumberColumn("TFLite (KB)", format="%.1f"),
    "tflite_ratio": st.column_config.NumberColumn("× base", format="%.2f×"),
    "tflite_zip_kb": st.column_config.NumberColumn("TFLite zip (KB)", format="%.1f"),
    "tflite_zip_ratio": st.column_config.NumberColumn("× base", format="%.2f×"),
    "latency_ms": st.column_config.NumberColumn("Latency (ms)", format="%.3f"),
    "latency_ratio": st.column_config.NumberColumn("× base", format="%.2f×"),
}


def _pick_run(jobs):
    done = dashboard.succeeded_with_report(jobs)
    if not done:
        st.info("No finished run yet. Runs appear here once they succeed.")
        st.page_link(PAGES["runs"], label="Runs", icon=":material/pending_actions:")
        st.stop()
    ids = [j["id"] for j in done]
    wanted = st.query_params.get("run")
    if wanted and wanted not in ids:
        other = next((j for j in jobs if j.get("id") == wanted), None)
        if other is not None:
            st.warning(f"Run {wanted} is {other.get('state')}; it has no results yet. Showing the latest finished run.")
        else:
            st.warning(f"There is no run {wanted} in this workspace. Showing the latest finished run.")
        wanted = None
    if st.session_state.get("res_run") not in ids or (wanted and st.session_state.get("res_qp") != wanted):
        st.session_state.res_run = wanted or ids[0]
    st.session_state.res_qp = wanted or st.session_state.res_run
    by_id = {j["id"]: j for j in done}
    job_id = st.selectbox("Run", ids, key="res_run",
                          format_func=lambda i: f"{by_id[i].get('name')} · {by_id[i].get('kind')} · {i}")
    if st.query_params.get("run") != job_id:
        st.query_params["run"] = job_id  # the deep link: survives a reload
        st.session_state.res_qp = job_id
    return by_id[job_id]


def _headline(table, report):
    base, final = table.iloc[0], table.iloc[-1]

    def pct_change(ratio):
        return f"{(ratio - 1):+.0%} vs baseline" if ratio == ratio else None

    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Accuracy (exported file)", f"{final['accuracy']:.2%}",
              delta=f"{(final['accuracy'] - base['accuracy']) * 100:+.2f} pts vs baseline")
    c2.metric("TFLite file, zipped", charts.human_bytes(final["tflite_zip_kb"] * charts.KB),
              delta=pct_change(final["tflite_zip_ratio"]), delta_color="inverse",
              help=f"the baseline's: {charts.human_bytes(base['tflite_zip_kb'] * charts.KB)}; raw TFLite: "
                   f"{charts.human_bytes(final['tflite_kb'] * charts.KB)}")
    c3.metric("Sparsity", f"{final['sparsity']:.0%}" if final["sparsity"] == final["sparsity"] else "–",
              help="share of the kernel weights that are exactly zero in the exported file")
    c4.metric("Latency", f"{final['latency_ms']:.3f} ms" if final["latency_ms"] == final["latency_ms"] else "–",
              delta=pct_change(final["latency_ratio"]), delta_color="inverse",
              help="median TFLite inference time, batch of 1, on the machine that ran the job")


def _downloads(run):
    name = run.name
    c1, c2, c3, c4 = st.columns(4)
    tfl, keras, rep = run.artifact("tflite"), run.artifact("keras"), run.artifact("report")
    c1.download_button("TFLite model", path_bytes(tfl) or b"", file_name=f"{name}.tflite", disabled=tfl is None,
                       mime="application/octet-stream", icon=":material/download:", type="primary", key="dl_tflite")
    c2.download_button("Keras model", path_bytes(keras) or b"", file_name=f"{name}.keras", disabled=keras is None,
                       mime="application/octet-stream", icon=":material/download:", key="dl_keras")
    c3.download_button("report.json", path_bytes(rep) or json.dumps(run.report, indent=2), file_name=f"{name}-report.json",
                       mime="application/json", icon=":material/download:", key="dl_report")
    c4.download_button("Recipe (JSON)", json.dumps(run.recipe or {}, indent=2), file_name=f"{name}-recipe.json",
                       mime="application/json", icon=":material/download:", key="dl_recipe")
    if keras is not None and (run.recipe or {}).get("steps") and any(
            s.get("method") == "quantize" for s in run.recipe["steps"]):
        st.caption("The Keras model of a QAT run loads inside `tfmot.quantization.keras.quantize_scope()`.")


def _weights_section(run):
    w = run.weights
    layers = charts.weight_layers(w)
    if not layers:
        st.info("No weight histograms in this run.")
        return
    labels = charts.weight_stage_labels(w)
    st.subheader("Weights, before and after")
    c1, c2, c3 = st.columns([2, 4, 1], vertical_alignment="bottom")
    layer = c1.selectbox("Layer", layers, key="res_layer")
    default = [labels[0], labels[-1]] if len(labels) > 1 else labels
    stages = c2.multiselect("Stages", labels, default=default, key="res_stages")
    log = c3.toggle("Log scale", key="res_log")
    hist = charts.histogram_df(w, layer, stages)
    zeros = charts.zeros_df(w, layer, stages)
    if hist.empty:
        st.info("Pick at least one stage.")
    else:
        st.altair_chart(charts.weight_histogram_chart(hist, zeros, log_scale=log, title=f"Weights of {layer}"),
                        width="content")
        st.caption("Each stage's histogram counts the nonzero weights; the bars on the right show how many weights "
                   "are exactly zero (what pruning removed). Clustering shows up as a few tall spikes.")

    clustered = charts.clustered_stages(w, layer)
    if clustered:
        st.subheader("Cluster centroids")
        stage = st.selectbox("Stage", clustered, key="res_cstage", index=0)
        cents = charts.centroids_df(w, layer, stage)
        before = labels[max(0, labels.index(stage) - 1)]
        base_hist = charts.histogram_df(w, layer, [before])
        st.altair_chart(charts.centroid_chart(base_hist, cents, title=f"{layer}: the shared values after '{stage}'"),
                        width="content")
        st.caption(f"Grey: the layer's nonzero weights before that stage ('{before}'). Each red line is one shared value "
                   "the weights were snapped to; thicker lines are shared by more weights (tooltip: exact count).")


@page
def main():
    st.title("Results")
    jobs = jobs_or_stop()
    job = _pick_run(jobs)
    try:
        run = load_run(job["run_dir"])
    except ResultsError as e:
        st.error(str(e))
        return
    recipe = run.recipe or {}
    steps = " → ".join(s.get("method", "?") for s in recipe.get("steps") or []) or "baseline only"
    ds = run.report.get("dataset") or {}
    st.markdown(f"**{run.name}** · {steps} · export `{(run.report.get('final') or {}).get('export')}` · "
                f"dataset {ds.get('name')} ({ds.get('n_test')} test samples) · "
                f"took {dashboard.fmt_duration((run.report.get('timing') or {}).get('total_s'))}")
    for problem in run.problems:
        st.caption(f"Note: {problem}.")
    for sentence in run.report.get("undone") or []:
        st.warning(sentence, icon=":material/warning:")

    table = charts.stage_table(run.report)
    _headline(table, run.report)
    _downloads(run)

    st.subheader("Stage by stage")
    shown = table.drop(columns=["order"]).assign(accuracy_delta=table["accuracy_delta"] * 100)
    st.dataframe(shown, hide_index=True, width="stretch", column_config=STAGE_COLUMNS)
    st.caption("Every figure is measured on the artifact: each stage's Keras model and its TFLite conversion, and the "
               "exported file itself (last row). × base = ratio to the baseline (0.25× is a quarter). A raw .tflite "
               "file does not shrink from pruning alone: zeros cost as much as other weights until the file is zipped. "
               "A QAT stage's Keras file keeps float weights and quantizer state, so it does not shrink; its "
               "TFLite file is the int8 one.")

    if run.weights:
        _weights_section(run)

    st.subheader("Where the savings come from")
    c1, c2 = st.columns([3, 2])
    with c1:
        st.altair_chart(charts.size_chart(charts.sizes_df(run.report)), width="stretch")
    with c2:
        st.altair_chart(charts.latency_chart(charts.latency_df(run.report)), width="stretch")
    sp = charts.sparsity_df(run.report)
    if not sp.empty:
        st.altair_chart(charts.sparsity_chart(sp), width="stretch")

    st.subheader("Who pays for it: per-class recall")
    rec = charts.recall_df(run.report, run.predictions)
    if rec.empty:
        st.info("This run has no per-class recall.")
    else:
        st.altair_chart(charts.recall_shift_chart(rec), width="content")
        worst = rec.sort_values("shift").iloc[0]
        if worst["shift"] <= -charts.SHIFT_THRESHOLD:
            st.markdown(f"Class **{worst['class']}** lost the most: recall {worst['baseline']:.1%} → "
                        f"{worst['compressed']:.1%}. Overall accuracy hides such shifts.")
        else:
            st.markdown("No class lost more than "
                        f"{charts.SHIFT_THRESHOLD:.0%} recall.")

    st.subheader("Test samples whose prediction changed")
    class_names = ds.get("class_names")
    samples = charts.changed_samples(run.predictions, class_names)
    if not samples:
        st.info("No test sample changed its prediction between the baseline and the compressed model.")
    else:
        kinds = sorted({s["kind"] for s in samples})
        chosen = st.pills("Show", kinds, selection_mode="multi", default=kinds, key="res_kinds")
        shown = [s for s in samples if s["kind"] in (chosen or kinds)]
        if len(shown) > 24 and not st.toggle(f"Show all {len(shown)}", key="res_all_samples"):
            shown = shown[:24]
        flips = charts.flip_counts(run.predictions)
        st.caption(f"{flips['changed']} of {flips['total']} test samples changed their prediction "
                   f"({flips['now_wrong']} now wrong, {flips['now_right']} now right, {flips['still_wrong']} wrong "
                   f"either way): pruning-identified exemplars. The gallery holds {len(samples)} of them, "
                   "those the compression broke first.")
        per_row = 8
        for start in range(0, len(shown), per_row):
            cols = st.columns(per_row)
            for col, s in zip(cols, shown[start:start + per_row]):
                with col:
                    if s["image"] is not None:
                        st.image(s["image"], width="stretch", clamp=True)
                    color = {"now wrong": "red", "now right": "green"}.get(s["kind"], "gray")
                    st.markdown(f"<small>true **{s['true']}**<br>{s['baseline']} → :{color}[**{s['compressed']}**]</small>",
                                unsafe_allow_html=True)


main()
