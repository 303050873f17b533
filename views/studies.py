"""Studies: the chapter's experiments over many runs: create one, watch it, read its result (?study=<id>)."""

import json
from pathlib import Path

import streamlit as st

from compression import studies as kinds
from compression.errors import UserError
from compression.jobs import studies
from compression.recipe.choices import Arch, DatasetName, options
from compression.studies import record as study_record
from compression.studio import dashboard, study_charts
from views._ui import FAILED_ICON, PAGES, REFUSED_ICON, jobs_or_stop, md, page, read_only, read_only_note

REFRESH_S = 2
NEW = "A new baseline, trained by the study"
STATE_COLORS = {"running": "blue", "succeeded": "green", "failed": "red", "cancelled": "orange"}


def _badge(study: dict) -> str:
    state = study.get("state", "?")
    return f":{STATE_COLORS.get(state, 'gray')}-badge[{state}]"


# --- widgets from a kind's declared spec fields --------------------------------------------------------


def _label(name: str, p) -> str:
    if p.label:
        return p.label
    text = name.replace("_", " ").capitalize()
    return f"{text} ({p.unit})" if p.unit and p.unit not in ("fraction",) and p.unit not in name else text


def _widget(where, kind: str, name: str, p, default, layer_names: list[str]):
    key = f"sd_{kind}_{name}"
    label = _label(name, p)
    if p.kind == "bool":
        return bool(where.checkbox(label, value=bool(default), key=key, help=p.help))
    if p.kind == "enum":
        opts = options(p.enum)
        return where.selectbox(label, opts, index=opts.index(str(default)) if str(default) in opts else 0, key=key,
                               help=p.help)
    if p.kind == "name":
        opts = list(p.choices())
        return where.selectbox(label, opts, index=opts.index(default) if default in opts else 0, key=key, help=p.help)
    if p.kind == "names":
        opts = list(p.choices()) if p.choices is not None else list(layer_names)
        if not opts:  # free names (layers of a baseline not trained yet): a comma-separated list
            text = where.text_input(label + " (comma-separated; empty: all)", value=", ".join(default or ()), key=key,
                                    help=p.help)
            values = [v.strip() for v in text.split(",") if v.strip()]
            return values or None
        picked = where.multiselect(label + (" (none: all)" if p.nullable else ""), opts,
                                   default=[v for v in (default or ()) if v in opts], key=key, help=p.help)
        return picked or (None if p.nullable else list(default or ()))
    if p.kind == "float_list":
        text = where.text_input(label + " (comma-separated)", value=", ".join(f"{v:g}" for v in default), key=key,
                                help=p.help)
        values = []
        for part in text.split(","):
            part = part.strip()
            if part:
                try:
                    values.append(float(part))
                except ValueError:
                    values.append(part)  # refused with the field's name by the spec's own check
        return values
    if p.kind == "text":
        text = where.text_input(label + (" (empty: default)" if p.nullable else ""), value=default or "", key=key,
                                help=p.help)
        return text.strip() or (None if p.nullable else "")
    if p.kind == "object":
        text = where.text_area(label + " (JSON object)", value=json.dumps(default or {}), key=key, help=p.help,
                               height=68)
        try:
            return json.loads(text or "{}")
        except ValueError:
            return text  # refused with the field's name by the spec's own check
    if p.kind == "int":
        if p.nullable:
            v = where.number_input(label + " (0 = default)", min_value=0, value=int(default or 0), key=key, help=p.help)
            return int(v) or None
        return int(where.number_input(label, min_value=int(p.lo) if p.lo is not None else None,
                                      max_value=int(p.hi) if p.hi is not None else None, value=int(default), step=1,
                                      key=key, help=p.help))
    if p.kind == "float":
        if p.nullable:
            v = where.number_input(label + " (0 = default)", min_value=0.0, value=float(default or 0.0), format="%g",
                                   key=key, help=p.help)
            return float(v) or None
        lo = None if p.lo is None else float(p.lo)
        hi = None if p.hi is None else float(p.hi)
        return float(where.number_input(label, min_value=lo, max_value=hi, value=float(default), format="%g", key=key,
                                        help=p.help))
    raise ValueError(f"no widget for a spec field of kind {p.kind}")


def _spec_widgets(kind, layer_names: list[str]) -> dict:
    from dataclasses import fields

    declared = kind.spec_type.own_params()
    defaults = {f.name: f.default for f in fields(kind.spec_type)}
    values: dict = {}
    main = [(n, p) for n, p in declared.items() if not p.advanced]
    advanced = [(n, p) for n, p in declared.items() if p.advanced]
    cols = st.columns(2)
    shown = 0
    for name, p in main:
        if p.show_if and str(values.get(p.show_if[0], defaults.get(p.show_if[0]))) != p.show_if[1]:
            continue
        values[name] = _widget(cols[shown % 2], kind.name, name, p, _plain(defaults[name]), layer_names)
        shown += 1
    with st.expander("Advanced"):
        acols = st.columns(2)
        for i, (name, p) in enumerate(advanced):
            if p.show_if and str(values.get(p.show_if[0], defaults.get(p.show_if[0]))) != p.show_if[1]:
                continue
            values[name] = _widget(acols[i % 2], kind.name, name, p, _plain(defaults[name]), layer_names)
    return values


def _plain(value):
    from compression.recipe.params import to_json_value

    return to_json_value(value)


# --- the baseline a study starts from --------------------------------------------------------------------------


def _baseline_choice(jobs: list[dict], kind_name: str) -> tuple[dict, list[str]]:
    """The spec's dataset, baseline and cap, and the baseline's layer names (for layer pickers)."""
    bases = dashboard.baselines(jobs)
    labels = {j["id"]: f"{j.get('name')} · {j['id']}" for j in bases}
    ids = list(labels) + [NEW]
    wanted = st.query_params.get("baseline")
    choice = st.selectbox("Baseline", ids, index=ids.index(wanted) if wanted in ids else 0, key="sd_base",
                          format_func=lambda i: labels.get(i, i),
                          help="a baseline job (the Baseline page trains them), or a new one the study trains first")
    if choice == NEW:
        c1, c2, c3 = st.columns(3)
        ds = c1.selectbox("Dataset", options(DatasetName), key="sd_ds")
        arch = c2.selectbox("Architecture", options(Arch), index=options(Arch).index(dashboard.DEFAULT_BASELINE["arch"]),
                            key="sd_arch")
        epochs = int(c3.number_input("Baseline epochs", 1, 1000, dashboard.DEFAULT_BASELINE["epochs"], key="sd_bepochs"))
        return {"dataset": ds, "baseline": {"arch": arch, "epochs": epochs,
                                            "batch_size": dashboard.DEFAULT_BASELINE["batch_size"]},
                "max_train_samples": None}, []
    job = next(j for j in bases if j["id"] == choice)
    recipe = job.get("recipe") or {}
    report = None
    try:
        report = json.loads((Path(job["run_dir"]) / "report.json").read_text())
    except (OSError, ValueError):
        pass
    layers = [r.get("name") for r in ((report or {}).get("baseline") or {}).get("metrics", {}).get("layers") or []]
    own = recipe.get("baseline") or {}
    if kind_name == "forgetting" and own.get("arch"):
        baseline = dict(own)  # a population: the same recipe with other seeds (its own seed is reused as is)
    else:
        baseline = {"path": str(Path(job["run_dir"]) / "baseline.keras"), "seed": own.get("seed", 0)}
    return {"dataset": recipe.get("dataset"), "baseline": baseline,
            "max_train_samples": recipe.get("max_train_samples")}, [n for n in layers if isinstance(n, str)]


def _creator(jobs: list[dict]):
    st.subheader("New study")
    all_kinds = kinds.all_kinds()
    titles = {k.name: k.title for k in all_kinds}
    name = st.selectbox("Kind", list(titles), key="sd_kind", format_func=lambda k: titles[k])
    kind = kinds.get(name)
    st.caption(kind.help)
    base, layer_names = _baseline_choice(jobs, kind.name)
    values = _spec_widgets(kind, layer_names)
    title = st.text_input("Study name", value=kind.name, max_chars=60, key="sd_name")
    spec = {"kind": kind.name, "name": title, **base, **values}
    try:
        parsed = kinds.parse_spec(spec)
    except UserError as e:
        st.error(md(e), icon=REFUSED_ICON)
        return
    cost = kinds.cost(parsed)
    st.info(f"This study will cost {cost.text}.", icon=":material/functions:")
    if read_only():
        read_only_note("Starting studies")
        return
    if st.button("Start the study", type="primary", icon=":material/play_arrow:", key="sd_submit"):
        try:
            dashboard.refuse_if_read_only()
            study_id = studies.submit_study(parsed)
        except UserError as e:
            st.error(str(e), icon=REFUSED_ICON)
            return
        dashboard.ensure_worker()
        st.query_params["study"] = study_id
        st.rerun()


# --- the list -----------------------------------------------------------------------------------------------


def _cancel(study_id: str):
    try:
        dashboard.refuse_if_read_only()
        studies.cancel_study(study_id)
        st.session_state["sd_msg"] = ("ok", f"Cancelled {study_id} and its runs.")
    except (UserError, KeyError) as e:
        st.session_state["sd_msg"] = ("error", f"Cannot cancel {study_id}: {e}")


def _progress(study: dict):
    p = study.get("progress") or {}
    done, planned = int(p.get("done") or 0), max(1, int(p.get("planned") or 1))
    st.progress(min(1.0, done / planned), text=f"{done} of {planned} runs done · {md(study.get('message', ''))}")


def _list():
    found = studies.list_studies()
    active = any(s.get("state") == "running" for s in found)

    @st.fragment(run_every=REFRESH_S if active else None)
    @page
    def panel():
        now = studies.list_studies(move_on=True)
        if active and not any(s.get("state") == "running" for s in now):
            st.rerun()
        for s in now:
            with st.container(border=True):
                a, b, c = st.columns([5, 2, 2], vertical_alignment="center")
                a.markdown(f"**{md(s.get('name'))}** · {md(kinds.get(s['kind']).title if kinds.find(s['kind']) else s['kind'])}"
                           f"  \n`{s['id']}`")
                b.markdown(_badge(s))
                with c:
                    st.page_link(PAGES["studies"], label="Open", icon=":material/science:",
                                 query_params={"study": s["id"]})
                    if s.get("state") == "running" and not read_only():
                        st.button("Cancel", key=f"sd_cancel_{s['id']}", on_click=_cancel, args=(s["id"],),
                                  icon=":material/stop_circle:")
                if s.get("state") == "running":
                    _progress(s)
                elif s.get("state") == "failed":
                    st.error(md(s.get("error") or "failed"), icon=FAILED_ICON)

    panel()


# --- one study ----------------------------------------------------------------------------------------------


def _runs_section(study: dict):
    runs = study.get("runs") or []
    ids = [e["run"] for e in runs if e.get("state") == "succeeded" and isinstance(e.get("run"), str)
           and e["run"][:1].isdigit()]
    c1, c2 = st.columns(2)
    if ids:
        c1.page_link(PAGES["compare"], label=f"Compare its {len(ids)} runs", icon=":material/compare_arrows:",
                     query_params={"runs": ",".join(ids)})
    with st.expander(f"Its {len(runs)} runs"):
        st.dataframe(_runs_df(study), hide_index=True, width="stretch")
        for e in runs[:60]:
            if e.get("state") == "succeeded" and e["run"] in ids:
                st.page_link(PAGES["results"], label=f"{md(e.get('label'))} · {e['run']}", icon=":material/insights:",
                             query_params={"run": e["run"]})


def _runs_df(study: dict):
    from compression.studio.study_report import runs_table

    return runs_table(study)


def _downloads(study: dict):
    from compression.studio.study_report import study_report_html

    slug = "".join(c if c.isalnum() else "-" for c in str(study.get("name")))[:40] or "study"
    clean = {k: v for k, v in study.items() if k != "folder"}
    c1, c2 = st.columns(2)
    c1.download_button("study.json", json.dumps(clean, indent=2), file_name=f"{slug}-study.json",
                       mime="application/json", icon=":material/download:", key="sd_dl_json", width="stretch")
    c2.download_button("Report (HTML, works offline)", lambda: study_report_html(clean), file_name=f"{slug}-study.html",
                       mime="text/html", icon=":material/description:", key="sd_dl_html", width="stretch")


def _gallery(images, captions, columns: int = 8):
    """Small images scaled up without smoothing (an 8x8 digit stays sharp), in rows of ``columns``."""
    import numpy as np

    if images is None or not len(images):
        return
    cols = st.columns(columns)
    for i, (img, cap) in enumerate(zip(images, captions)):
        img = np.asarray(img)
        k = max(1, 72 // max(img.shape[:2]))
        big = np.kron(img, np.ones((k, k) + (1,) * (img.ndim - 2), dtype=img.dtype)) if k > 1 else img
        cols[i % columns].image(big, caption=cap, width=72)


def _extras(study: dict):
    kind = study.get("kind")
    arrays = study_record.read_arrays(study["folder"]) if study.get("folder") else {}
    if kind == "sensitivity":
        st.subheader("Suggested per-layer sparsity")
        st.caption((study.get("suggestion") or {}).get("rule", ""))
        st.dataframe(study_charts.suggestion_table(study), hide_index=True)
        from compression.studies.kinds.sensitivity import suggested_recipe

        try:
            recipe = suggested_recipe(study)
        except UserError as e:
            st.info(str(e))
            return
        st.download_button("Write the suggested recipe", json.dumps(recipe, indent=2),
                           file_name="suggested-recipe.json", mime="application/json", icon=":material/save:",
                           key="sd_recipe", help="prune's per-layer targets (final_sparsity: {layer: value}); load it "
                                                 "on the Pipeline page or run it with python -m compression run")
    elif kind == "forgetting":
        idx = arrays.get("gallery/index")
        images = arrays.get("gallery/images")
        names = study.get("class_names") or []
        for lv in study.get("levels") or []:
            key = f"level-{lv['level']:g}"
            shown = arrays.get(f"{key}/index")
            if shown is None or idx is None or images is None or not len(shown):
                continue
            st.subheader(f"PIEs at level {lv['level']:g}: {lv['pie_count']:,} of the test split")
            pos = {int(i): n for n, i in enumerate(idx)}
            pics = [images[pos[int(i)]] for i in shown if int(i) in pos]

            def name(c):
                return names[int(c)] if int(c) < len(names) else str(int(c))

            caps = [f"#{int(i)} true {name(t)} · base {name(b)} · comp {name(c)}" for i, t, b, c in
                    zip(shown, arrays[f"{key}/true"], arrays[f"{key}/baseline_modal"], arrays[f"{key}/compressed_modal"])]
            _gallery(pics, caps)
    elif kind == "robustness":
        images, labels = arrays.get("examples/images"), arrays.get("examples/labels")
        if images is not None and labels is not None:
            st.subheader("One test image under each corruption")
            _gallery(images, [str(x) for x in labels], columns=8)
    elif kind == "lottery":
        rows = [r for r in study.get("rounds") or [] if r.get("ticket_run") and str(r["ticket_run"])[:1].isdigit()]
        if rows:
            st.subheader("The winning ticket of each round")
            cols = st.columns(min(6, len(rows)))
            for i, r in enumerate(rows):
                cols[i % len(cols)].page_link(PAGES["results"], label=f"round {r['round']}: {r['remaining']:.1%} left",
                                              icon=":material/confirmation_number:", query_params={"run": r["ticket_run"]})


def _one(study_id: str):
    try:
        study = studies.get_study(study_id)
    except UserError as e:
        st.warning(f"{md(e)}. Pick a study below.")
        st.query_params.pop("study", None)
        return False
    st.page_link(PAGES["studies"], label="All studies", icon=":material/arrow_back:")
    title = kinds.get(study["kind"]).title if kinds.find(study["kind"]) else study["kind"]
    st.header(md(study.get("name")))
    st.markdown(f"{_badge(study)} · {md(title)} · `{study['id']}` · {md((study.get('cost') or {}).get('text', ''))}")

    if study.get("state") == "running":
        @st.fragment(run_every=REFRESH_S)
        @page
        def live():
            now = studies.get_study(study_id)
            if now.get("state") != "running":
                st.rerun()
            _progress(now)
            if not read_only():
                st.button("Cancel the study", key="sd_cancel_one", on_click=_cancel, args=(study_id,),
                          icon=":material/stop_circle:", help="cancels its queued and running runs")

        live()
    elif study.get("state") == "failed":
        st.error(md(study.get("error") or "The study failed."), icon=FAILED_ICON)
    elif study.get("state") == "cancelled":
        st.warning(md(study.get("message") or "cancelled"), icon=":material/block:")
    _downloads(study)
    for fig in study_charts.figures(study):
        st.subheader(fig.title)
        if fig.caption:
            st.caption(fig.caption)
        st.altair_chart(fig.chart, width="content")
        st.dataframe(fig.table, hide_index=True)
    if study.get("state") == "succeeded":
        _extras(study)
    _runs_section(study)
    return True


@page
def main():
    st.title("Studies")
    msg = st.session_state.pop("sd_msg", None)
    if msg:
        (st.success if msg[0] == "ok" else st.error)(msg[1], icon=None if msg[0] == "ok" else REFUSED_ICON)
    wanted = st.query_params.get("study")
    if wanted and _one(wanted):
        return
    st.markdown("A study is an experiment over many ordinary runs: a sweep of strengths with its redundancy "
                "threshold, layer sensitivity, the lottery ticket, what compression forgets, robustness. Its runs "
                "appear on the Runs page too; identical runs are shared between studies.")
    jobs = jobs_or_stop()
    if studies.list_studies():
        st.subheader("Studies")
        _list()
    _creator(jobs)


main()
