"""Compare: several runs side by side; accuracy against size with the Pareto frontier."""

import streamlit as st

from compression.recipe import figures
from compression.studio import charts, dashboard, health
from views._ui import PAGES, cached_report, findings_for, jobs_or_stop, md, page

def summary_columns() -> dict:
    """Column settings of the comparison table (keys: charts.compare_columns), sizes from the declarations."""
    cols = {
        "alarm": st.column_config.TextColumn("⚠", width=40, pinned=True,
                                             help="⚠: the run failed a health check (at chance, lost more than the "
                                                  "threshold, or a class collapsed); its Results page says why"),
        "run": st.column_config.TextColumn("Run", width=260, pinned=True),
        "steps": st.column_config.TextColumn("Steps", width=170),
        "export": st.column_config.TextColumn("Export", width=100),
        "accuracy": st.column_config.TextColumn("Accuracy", width=80),
        "baseline_accuracy": st.column_config.TextColumn("Its baseline", width=95),
    }
    for fig in charts.compare_figures():
        cols[charts._short(fig.field)] = st.column_config.TextColumn(fig.label, width=85, help=fig.help)
    cols.update({
        "latency": st.column_config.TextColumn("Latency", width=190,
                                               help="median batch-1 inference ± half its interquartile range · ratio to "
                                                    "the run's own baseline, or 'same' within the two timings' spread"),
        "sparsity": st.column_config.TextColumn("Sparsity", width=75),
        "unique_values": st.column_config.TextColumn("Distinct", width=75,
                                                     help="most distinct kernel values in one layer (per channel "
                                                          "where the file quantizes per channel)"),
        "pareto": st.column_config.CheckboxColumn("Pareto", width=60,
                                                  help="no other run is both smaller (zipped) and more accurate"),
    })
    return cols


def _html(loaded):
    from compression.studio import report_html

    return report_html.compare_report_html(loaded)


def _published(loaded):
    """Where the runs of a network with published results (the LeNets of the Deep Compression papers)
    stand against those results: error against model.dc's compression ratio."""
    from compression.studio import published

    archs = {((rep.get("recipe") or {}).get("baseline") or {}).get("arch") for _label, rep in loaded
             if (rep.get("recipe") or {}).get("dataset") == "mnist"}
    for arch in sorted(a for a in archs if a and published.for_arch(a)):
        frontier = charts.frontier_df(loaded, "dc_bytes", arch=arch)
        if (frontier["kind"] != "published").any():
            st.altair_chart(charts.frontier_chart(frontier, f"{arch} against the published results"), width="content")
            st.caption("Published rows count the compression of the stored weights as each paper does; the studio's "
                       "ratio is model.dc (the lossless container of the exported file, graph and biases included) "
                       "against the run's own float TFLite file. A run dominates a published row when it is both "
                       "smaller and at least as accurate.")


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
            st.warning(f"{md(job_id)}: the report cannot be read; left out.")
            continue
        label = f"{by_id[job_id].get('name')} ({job_id[-6:]})"
        loaded.append((label, report))
        marks.append(health.short_mark(findings_for(by_id[job_id], pts)))
    if not loaded:
        return
    df = charts.compare_df(loaded)
    shown, cols = charts.compare_display(df, marks), summary_columns()
    # two tables, each whole on a laptop screen (1400 px): what each run achieved; how it was made and its sizes
    st.dataframe(shown[charts.COMPARE_RESULT_COLUMNS], hide_index=True, width="stretch", column_config=cols)
    st.dataframe(shown[charts.compare_size_columns()], hide_index=True, width="stretch", column_config=cols)
    if any(marks):
        st.caption("⚠ marks runs that failed a health check; open them on the Results page to see why.")
    from compression.studio import report_html

    report_html.warm_up()  # Vega is built or read once, in the background: the click then takes about a second
    st.download_button("Download report (HTML, works offline)", lambda: _html(loaded), file_name="compare-runs.html",
                       mime="text/html", icon=":material/description:", key="cmp_html")

    sizes = [charts.PARETO_SIZE] + [f.field for f in figures.size_figures(exported_only=True)
                                    if f.field != charts.PARETO_SIZE and f.field in df and df[f.field].notna().any()]
    size_field = st.segmented_control("Compressed size", sizes, default=charts.PARETO_SIZE,
                                      format_func=charts.measure_label, key="cmp_size") or charts.PARETO_SIZE
    if size_field != charts.PARETO_SIZE:
        df = df[df[size_field].notna()]  # runs that did not write that artifact have no such size
        df = df.assign(pareto=charts.pareto_mask(df[size_field].to_numpy(float), df["accuracy"].to_numpy(float)))
    st.altair_chart(charts.pareto_chart(df, size_field), width="content")
    front = df[df["pareto"]]["run"].tolist()
    st.caption(f"On the frontier: {', '.join(md(f) for f in front) or 'none'}. A run off the frontier is beaten by another run that "
               "is at least as small and at least as accurate.")

    _published(loaded)

    c1, c2 = st.columns(2)
    with c1:
        st.altair_chart(charts.compare_size_chart(charts.compare_sizes_df(df)), width="stretch")
    with c2:
        st.altair_chart(charts.compare_latency_chart(df), width="stretch")
    rec = charts.recall_matrix_df(loaded)
    if not rec.empty:
        st.altair_chart(charts.recall_heatmap(rec), width="stretch")


main()
