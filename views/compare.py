"""Compare: several runs side by side; accuracy against size with the Pareto frontier."""

import streamlit as st

from compression.studio import charts, dashboard
from compression.store.runs import try_load_run
from views._ui import PAGES, jobs_or_stop, page

SUMMARY_COLUMNS = {
    "run": st.column_config.TextColumn("Run"),
    "steps": st.column_config.TextColumn("Steps"),
    "export": st.column_config.TextColumn("Export"),
    "accuracy": st.column_config.NumberColumn("Accuracy", format="percent"),
    "baseline_accuracy": st.column_config.NumberColumn("Its baseline", format="percent"),
    "keras_zip_bytes": st.column_config.NumberColumn("Keras zip (B)", format="localized"),
    "tflite_bytes": st.column_config.NumberColumn("TFLite (B)", format="localized"),
    "tflite_zip_bytes": st.column_config.NumberColumn("TFLite zip (B)", format="localized"),
    "latency_ms": st.column_config.NumberColumn("Latency (ms)", format="%.3f"),
    "sparsity": st.column_config.NumberColumn("Sparsity", format="percent"),
    "unique_values": st.column_config.NumberColumn("Distinct values", format="localized"),
    "pareto": st.column_config.CheckboxColumn("Pareto", help="no other run is both smaller (zipped) and more accurate"),
}


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
    loaded = []
    for job_id in chosen:
        run = try_load_run(by_id[job_id]["run_dir"])
        if run is None:
            st.warning(f"{job_id}: the report cannot be read; left out.")
            continue
        label = f"{by_id[job_id].get('name')} ({job_id[-6:]})"
        loaded.append((label, run.report))
    if not loaded:
        return
    df = charts.compare_df(loaded)
    st.dataframe(df, hide_index=True, width="stretch", column_config=SUMMARY_COLUMNS)

    size_field = st.segmented_control("Compressed size", ["tflite_zip_bytes", "tflite_bytes"], default="tflite_zip_bytes",
                                      format_func=lambda f: charts.MEASURE_LABELS[f], key="cmp_size") or "tflite_zip_bytes"
    if size_field != "tflite_zip_bytes":
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
