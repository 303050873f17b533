"""Compare: several runs side by side; accuracy against size with the Pareto frontier."""

import streamlit as st

from compression.studio import charts, dashboard, health
from views._ui import PAGES, cached_report, findings_for, jobs_or_stop, page

SUMMARY_COLUMNS = {
    "alarm": st.column_config.TextColumn("⚠", width="small", pinned=True,
                                         help="⚠: the run failed a health check (at chance, lost more than the "
                                              "threshold, or a class collapsed); its Results page says why"),
    "run": st.column_config.TextColumn("Run", width="medium", pinned=True),
    "steps": st.column_config.TextColumn("Steps"),
    "export": st.column_config.TextColumn("Export", width="small"),
    "accuracy": st.column_config.TextColumn("Accuracy", width="small"),
    "baseline_accuracy": st.column_config.TextColumn("Its baseline", width="small"),
    "tflite_zip": st.column_config.TextColumn("TFLite zip", width="small"),
    "dc": st.column_config.TextColumn("model.dc", width="small",
                                      help="the Deep Compression container (lossless; unpack restores the TFLite file)"),
    "tflite": st.column_config.TextColumn("TFLite", width="small"),
    "keras_zip": st.column_config.TextColumn("Keras zip", width="small",
                                             help="the last stage's zipped Keras file; – for a baseline-only run's export"),
    "latency": st.column_config.TextColumn("Latency (ms)", width="small"),
    "sparsity": st.column_config.TextColumn("Sparsity", width="small"),
    "unique_values": st.column_config.TextColumn("Distinct values", width="small"),
    "pareto": st.column_config.CheckboxColumn("Pareto", width="small",
                                              help="no other run is both smaller (zipped) and more accurate"),
}


def _html(loaded):
    from compression.studio import report_html

    return report_html.compare_report_html(loaded)


@page
def main():
    st.title("Compare runs")
    jobs = jobs_or_stop()
    done = dashboard.succeeded_with_report(jobs)
    if len(done) < 1:
        st.info("No finished runs to compare yet.")
        st.page_link(PAGES["pipeline"], label="Compose a pipeline", icon=":material/tune:")
        return
    by_id = {j["id"]: j for j in done}
    ids = list(by_id)
    wanted = [i for i in (st.query_params.get("runs") or "").split(",") if i in by_id]
    chosen = st.multiselect("Runs", ids, default=wanted or ids[:6], key="cmp_runs",
                            format_func=lambda i: f"{by_id[i].get('name')} · {i}")
    if chosen:
        st.query_params["runs"] = ",".join(chosen)
    if not chosen:
        st.info("Pick at least one run.")
        return
    loaded, marks = [], []
    pts = float(st.session_state.get("alarm_pts", health.DEFAULT_THRESHOLD_PTS))
    for job_id in chosen:
        report = cached_report(by_id[job_id]["run_dir"])
        if report is None:
            st.warning(f"{job_id}: the report cannot be read; left out.")
            continue
        label = f"{by_id[job_id].get('name')} ({job_id[-6:]})"
        loaded.append((label, report))
        marks.append(health.short_mark(findings_for(by_id[job_id], pts)))
    if not loaded:
        return
    df = charts.compare_df(loaded)
    st.dataframe(charts.compare_display(df, marks), hide_index=True, width="stretch", column_config=SUMMARY_COLUMNS)
    if any(marks):
        st.caption("⚠ marks runs that failed a health check; open them on the Results page to see why.")
    st.download_button("Download report (HTML, works offline)", lambda: _html(loaded), file_name="compare-runs.html",
                       mime="text/html", icon=":material/description:", key="cmp_html")

    sizes = ["tflite_zip_bytes", "dc_bytes", "tflite_bytes"] if df["dc_bytes"].notna().any() else \
        ["tflite_zip_bytes", "tflite_bytes"]
    size_field = st.segmented_control("Compressed size", sizes, default="tflite_zip_bytes",
                                      format_func=lambda f: charts.MEASURE_LABELS[f], key="cmp_size") or "tflite_zip_bytes"
    if size_field != "tflite_zip_bytes":
        df = df[df[size_field].notna()]  # runs made before model.dc existed have no such size
        df = df.assign(pareto=charts.pareto_mask(df[size_field].to_numpy(float), df["accuracy"].to_numpy(float)))
    st.altair_chart(charts.pareto_chart(df, size_field), width="content")
    front = df[df["pareto"]]["run"].tolist()
    st.caption(f"On the frontier: {', '.join(front) or 'none'}. A run off the frontier is beaten by another run that "
               "is at least as small and at least as accurate.")

    c1, c2 = st.columns(2)
    with c1:
        st.altair_chart(charts.compare_size_chart(charts.compare_sizes_df(df)), width="stretch")
    with c2:
        st.altair_chart(charts.compare_latency_chart(df), width="stretch")
    rec = charts.recall_matrix_df(loaded)
    if not rec.empty:
        st.altair_chart(charts.recall_heatmap(rec), width="stretch")


main()
