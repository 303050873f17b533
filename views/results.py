"""Results of one run: what every stage cost and saved, charts, and the downloads."""

import json
from pathlib import Path

import streamlit as st

from compression.errors import UserError
from compression.store.runs import ResultsError, tidy_recipe
from compression.store.workspace import home_dir
from compression.recipe import exporters, figures
from compression.studio import bundle, charts, dashboard, health
from views._ui import PAGES, cached_run, jobs_or_stop, md, page, path_bytes, show_findings

DASH_HELP = ("A dash means the figure does not exist for that row: the exported file has no Keras file, and some "
             "artifacts are made from the exported file only.")


def stage_columns() -> dict:
    """Column settings of the stage tables (keys: charts.stage_columns), the size columns from the declared
    size figures; pixel widths that keep each of the two tables whole at 1400 px."""
    cols = {
        "stage": st.column_config.TextColumn("Stage", width=230, pinned=True),
        "accuracy": st.column_config.TextColumn("Accuracy", width=80),
        "accuracy_delta": st.column_config.TextColumn("Δ pts", width=60,
                                                      help="accuracy change in percentage points against the baseline"),
        "params_nonzero": st.column_config.TextColumn("Nonzero", width=80,
                                                      help="parameters (kernels and biases) that are not zero"),
        "sparsity": st.column_config.TextColumn("Sparsity", width=75,
                                                help="share of kernel weights that are zero because they were pruned "
                                                     "(weights a quantizer rounded to zero are not counted)"),
        "unique_values": st.column_config.TextColumn("Distinct", width=75,
                                                     help="most distinct kernel values in any one layer; per output "
                                                          "channel where the file quantizes per channel"),
    }
    for fig in figures.size_figures():
        cols[charts._short(fig.field)] = st.column_config.TextColumn(
            fig.label, width=135, help=f"{fig.help} · {fig.ratio_text}. {DASH_HELP}")
    cols["latency"] = st.column_config.TextColumn(
        "Latency", width=210,
        help="median batch-1 TFLite inference ± half its interquartile range · ratio to the baseline, or "
             "'same' where the difference is within the two timings' spread")
    return cols


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
            st.warning(f"Run {md(wanted)} is {md(other.get('state'))}; it has no results yet. Showing the latest "
                       "finished run.")
        else:
            st.warning(f"There is no run {md(wanted)} in this workspace. Showing the latest finished run.")
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


def _headline(table, report, findings):
    base, final = table.iloc[0], table.iloc[-1]
    baseline_only = not (report.get("stages") or (report.get("recipe") or {}).get("steps"))
    alarmed = bool(findings)

    def pct_change(ratio):
        # no self-comparison for a baseline-only run, no green badge beside a run that failed its checks
        if baseline_only or alarmed or ratio != ratio:
            return None
        return f"{(ratio - 1):+.0%} vs baseline"

    c1, c2, c3, c4 = st.columns(4)
    acc_delta = None if baseline_only else f"{(final['accuracy'] - base['accuracy']) * 100:+.2f} pts vs baseline"
    c1.metric("Accuracy (exported file)" if not baseline_only else "Accuracy (baseline file)",
              f"{final['accuracy']:.2%}" if final["accuracy"] == final["accuracy"] else "–", delta=acc_delta)
    c2.metric("TFLite file, zipped", charts.human_bytes(final["tflite_zip_kb"] * charts.KB),
              delta=pct_change(final["tflite_zip_ratio"]), delta_color="inverse",
              help=f"the baseline's: {charts.human_bytes(base['tflite_zip_kb'] * charts.KB)}; raw TFLite: "
                   f"{charts.human_bytes(final['tflite_kb'] * charts.KB)}"
                   + ("; no size badge: this run failed its checks (see above)" if alarmed else ""))
    c3.metric("Sparsity", f"{final['sparsity']:.0%}" if final["sparsity"] == final["sparsity"] else "–",
              help="share of the kernel weights that are exactly zero in the exported file")
    c4.metric("Latency", f"{final['latency_ms']:.3f} ms" if final["latency_ms"] == final["latency_ms"] else "–",
              delta=pct_change(final["latency_ratio"]), delta_color="inverse",
              help="median TFLite inference time, batch of 1, on the machine that ran the job")


def _contract(run):
    c = bundle.input_contract(run.report)
    st.subheader("The exported file")
    a, b = st.columns([3, 2])
    with a:
        st.markdown(f"**Input** shape {md(c['shape'])} (one sample; batch of 1 in front) · dtype {md(c['dtype'])} · "
                    f"values {md(c['value_range'])}  \n**Scaling** {md(c['scaling'])}  \n**Output** {md(c['output'])}")
        names = c["class_names"]
        st.markdown("**Class labels** (output order) " + (", ".join(md(n) for n in names[:20])
                                                          + (f" … ({len(names)} in all)" if len(names) > 20 else "")
                                                          if names else "–"))
        if not c["known"]:
            st.caption("– : this run is older than the input contract; its report does not record the input.")
    with b:
        _downloads(run)


def _downloads(run):
    slug = bundle.slug(run.name)
    tfl, keras, rep = run.artifact(exporters.primary().key), run.artifact("keras"), run.artifact("report")
    st.download_button("TFLite model", path_bytes(tfl) or b"", file_name=f"{slug}.tflite", disabled=tfl is None,
                       mime="application/octet-stream", icon=":material/download:", type="primary", key="dl_tflite",
                       width="stretch")
    base = run.artifact("baseline")
    st.download_button("Model + labels.txt + MODEL.md (zip)",
                       lambda: bundle.bundle_zip(run.report, run.recipe, tfl.read_bytes() if tfl else None, run.name,
                                                 baseline=base.read_bytes() if base else None,
                                                 home=home_dir(create=False)),
                       file_name=f"{slug}.zip", mime="application/zip", icon=":material/folder_zip:", key="dl_bundle",
                       width="stretch", help="the TFLite file with labels.txt (one class per line), MODEL.md (input, "
                                             "accuracy per class, the test split, how it was made), reproduce.py (checks "
                                             "the accuracy with LiteRT) and a recipe that runs elsewhere (its baseline "
                                             "file is in the zip)")
    for exporter in exporters.all_exporters():  # every other artifact the run wrote
        path = run.artifact(exporter.key)
        if exporter.primary or path is None:
            continue
        suffix = "".join(Path(exporter.file_name).suffixes) or ".bin"
        st.download_button(f"{exporter.file_name} ({exporter.title})", path_bytes(path), file_name=f"{slug}{suffix}",
                           mime="application/octet-stream", icon=":material/download:", key=f"dl_{exporter.key}",
                           width="stretch", help=exporter.help)
    c1, c2 = st.columns(2)
    c1.download_button("Keras model", path_bytes(keras) or b"", file_name=f"{slug}.keras", disabled=keras is None,
                       mime="application/octet-stream", icon=":material/download:", key="dl_keras", width="stretch")
    c2.download_button("report.json", path_bytes(rep) or json.dumps(run.report, indent=2), file_name=f"{slug}-report.json",
                       mime="application/json", icon=":material/download:", key="dl_report", width="stretch")
    loads = isinstance(((run.recipe or {}).get("baseline") or {}).get("path"), str)
    portable = bundle.portable_recipe(run.recipe or {}, home_dir(create=False),
                                      bundle.BUNDLED_BASELINE if loads and base else None)
    st.download_button("Recipe (JSON)", json.dumps(portable, indent=2), file_name=f"{slug}-recipe.json",
                       mime="application/json", icon=":material/download:", key="dl_recipe", width="stretch",
                       help="no server path: its baseline is baseline.keras, the file in the zip above" if loads and base
                       else "no server path; the fields its schedules ignore left out")
    _html_download(run, slug)
    if keras is not None and run.report.get("qat") is True:
        st.caption("The Keras model of a QAT run loads inside `tfmot.quantization.keras.quantize_scope()`.")


def _html_download(run, slug):
    try:
        from compression.studio import report_html
    except ImportError:
        return
    report_html.warm_up()  # Vega is built or read once, in the background: the click then takes about a second
    st.download_button("Report (HTML, works offline)", lambda: report_html.run_report_html(run.report, run.recipe, run.name),
                       file_name=f"{slug}-report.html", mime="text/html", icon=":material/description:", key="dl_html",
                       width="stretch")


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


@st.cache_data(max_entries=20, show_spinner=False)
def _test_split(dataset_json: str):
    from compression.studio import tryit

    return tryit.test_split(json.loads(dataset_json))


def _try_it(run, job):
    from compression.studio import tryit

    st.subheader("Try it")
    tfl = run.artifact(exporters.primary().key)
    base = tryit.baseline_tflite(run.run_dir, run.recipe)
    st.caption("Pick test samples and run them through the TFLite files with LiteRT, on this server.")
    if tfl is None:
        st.info("This run has no TFLite file to try.")
        return
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    picks = c1.text_input("Test sample numbers", value="0, 1, 2, 3", key="try_idx",
                          help="comma-separated indices into the test split")
    go = c2.button("Run them", key="try_go", icon=":material/play_arrow:")
    if not go and "try_out" not in st.session_state:
        return
    if go:
        try:
            idx = [int(t) for t in picks.replace(" ", "").split(",") if t][:12]
        except ValueError:
            st.error("Test sample numbers must be whole numbers separated by commas, e.g. 0, 5, 17.",
                     icon=":material/block:")
            return
        try:
            x, y, names = _test_split(json.dumps((run.recipe or {}).get("dataset")))
        except UserError as e:
            st.error(f"Cannot load the test samples: {md(e)}", icon=":material/block:")
            return
        bad = [i for i in idx if not 0 <= i < len(x)]
        if bad:
            st.error(f"Sample {bad[0]} does not exist: the test split has {len(x)} samples (0 to {len(x) - 1}).",
                     icon=":material/block:")
            return
        comp = tryit.predict(tfl, x[idx])
        basep = tryit.predict(base, x[idx]) if base is not None and base != tfl else None
        st.session_state.try_out = {"run": job["id"], "idx": idx, "y": [int(y[i]) for i in idx], "names": names,
                                    "images": [tryit.to_image(x[i]) for i in idx], "comp": comp, "base": basep}
    out = st.session_state.get("try_out")
    if not out or out["run"] != job["id"]:
        return
    if out["base"] is None and (run.recipe or {}).get("steps"):
        st.caption("No TFLite file of the baseline exists for this run (neither baseline.tflite in the run folder nor "
                   "a baseline job's model.tflite): only the compressed file's predictions are shown.")
    names = out["names"]

    def nm(c):
        return names[c] if c < len(names) else str(c)

    cols = st.columns(min(4, len(out["idx"])) or 1)
    for k, i in enumerate(out["idx"]):
        with cols[k % len(cols)]:
            with st.container(border=True):
                if out["images"][k] is not None:
                    st.image(out["images"][k], width=96, clamp=True)
                lines = [f"**#{i}** · true **{md(nm(out['y'][k]))}**"]
                for who, preds in (("baseline", out["base"]), ("compressed", out["comp"])):
                    if preds is None:
                        continue
                    p = preds[k]
                    ok = ":green[✔]" if p.label == out["y"][k] else ":red[✘]"
                    top = ", ".join(f"{md(nm(c))} {pr:.0%}" for c, pr in p.top)
                    lines.append(f"{who}: {ok} **{md(nm(p.label))}**  \n<small>{top}</small>")
                st.markdown("  \n".join(lines), unsafe_allow_html=True)


@page
def main():
    st.title("Results")
    jobs = jobs_or_stop()
    job = _pick_run(jobs)
    try:
        run = cached_run(job["run_dir"])
    except ResultsError as e:
        st.error(str(e), icon=":material/error:")
        return
    recipe = tidy_recipe(run.recipe or run.report.get("recipe"))
    steps = " → ".join(str(s.get("method", "?")) for s in recipe.get("steps")) or "baseline only"
    ds = run.report.get("dataset") or {}
    st.markdown(f"**{md(run.name)}** · {md(steps)} · export {md((run.report.get('final') or {}).get('export'))} · "
                f"dataset {md(ds.get('name'))} ({md(ds.get('n_test'))} test samples) · "
                f"took {dashboard.fmt_duration((run.report.get('timing') or {}).get('total_s'))}")
    for problem in run.problems:
        st.caption(f"Note: {md(problem)}.")
    for sentence in run.report.get("undone") or []:
        st.warning(md(sentence), icon=":material/warning:")

    pts = float(st.session_state.get("alarm_pts", health.DEFAULT_THRESHOLD_PTS))
    findings = health.assess(run.report, pts)
    show_findings(findings)
    table = charts.stage_table(run.report)
    _headline(table, run.report, findings)
    with st.popover("Alarm threshold", icon=":material/tune:"):
        st.number_input("Warn when the exported file loses more than (points)", 0.0, 100.0, pts, 0.5, key="res_pts",
                        on_change=lambda: st.session_state.update(alarm_pts=st.session_state.res_pts))
    _contract(run)

    st.subheader("Stage by stage")
    shown, cols = charts.stage_display(table), stage_columns()
    # two tables, each whole on a laptop screen (1400 px): accuracy, weights and latency; then the sizes
    st.dataframe(shown[charts.STAGE_QUALITY_COLUMNS], hide_index=True, width="stretch", column_config=cols)
    st.dataframe(shown[charts.stage_size_columns()], hide_index=True, width="stretch", column_config=cols)
    if any(q is False for q in table.get("latency_quiet", [])):
        st.caption("Latency was timed while another job was training on this machine (the studio waited "
                   "for a quiet moment and then timed anyway): those figures may be slower than the file is.")
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
    for exporter, accounting in charts.accountings(run.report):  # each artifact that accounts for its bytes
        spec = exporter.accounting
        st.subheader(f"{spec.title}: {exporter.file_name}")
        st.caption(spec.caption)
        st.altair_chart(charts.accounting_chart(spec, accounting, exporter.file_name), width="stretch")
        st.dataframe(charts.accounting_display(spec, accounting), hide_index=True, width="stretch")
        st.caption(f"ratio: the layer's raw bytes in the TFLite file over its bytes in {exporter.file_name}. "
                   "– : does not apply (the rest of the file has no weights).")
    sp = charts.sparsity_df(run.report)
    compressed = bool(run.report.get("stages"))
    if not sp.empty and compressed:
        st.altair_chart(charts.sparsity_chart(sp), width="stretch")
    if not compressed:
        st.info("A baseline-only run: no compression step, so nothing to compare per class. Compress it on the "
                "Pipeline page, then its Results show what each step cost, class by class.")
        _try_it(run, job)
        return

    st.subheader("Who pays for it: per-class recall")
    rec = charts.recall_df(run.report, run.predictions)
    if rec.empty:
        st.info("This run has no per-class recall.")
    else:
        st.altair_chart(charts.recall_shift_chart(rec), width="content")
        worst = rec.sort_values("shift").iloc[0]
        if worst["shift"] <= -charts.SHIFT_THRESHOLD:
            st.markdown(f"Class **{md(worst['class'])}** lost the most: recall {worst['baseline']:.1%} → "
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
                   f"either way). Hooker et al. call such samples pruning-identified exemplars: the compressed "
                   f"model forgets them first. The gallery holds {len(samples)}, the newly wrong first.")
        per_row = 8
        for start in range(0, len(shown), per_row):
            cols = st.columns(per_row)
            for col, s in zip(cols, shown[start:start + per_row]):
                with col:
                    if s["image"] is not None:
                        st.image(s["image"], width="stretch", clamp=True)
                    color = {"now wrong": "red", "now right": "green"}.get(s["kind"], "gray")
                    st.markdown(f"<small>true **{md(s['true'])}**<br>{md(s['baseline'])} → "
                                f":{color}[**{md(s['compressed'])}**]</small>",
                                unsafe_allow_html=True)

    _try_it(run, job)


main()
