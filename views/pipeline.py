"""Pipeline: compose, order and tune the compression steps, check them live, run them."""

import os
from pathlib import Path

import streamlit as st

from compression.inputs import limits
from compression.studio import dashboard, uploads
from compression.recipe.choices import Arch, DatasetName, ExportMode, LayerScope, options
from compression.recipe import methods
from compression.recipe.method import ordered_params
from compression.recipe.params import declared_default, per_layer_maps
from compression.studio.schedules import schedule_warnings
from compression.errors import RecipeError, UserError
from compression.recipe.layers import check_layer_names, report_layers
from compression.recipe.ordering import plan
from compression.recipe import Recipe, training_epochs
from compression.store.runs import try_load_run
from views._ui import PAGES, jobs_or_stop, md, page, read_only, read_only_note

OWN = "__own__"
EXPORT_HELP = {
    "float32": "no quantization: the reference size",
    "float16": "half-precision weights: about half the size",
    "int8_dynamic": "int8 weights, float activations: about a quarter of the size",
    "int8_full": "int8 weights and activations (calibrated on training samples)",
}
MN_CHOICES = ["off", "2:4", "1:4", "4:8", "1:2"]  # the common structured-sparsity patterns
LR_CHOICES = (1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # a log ladder inside the declared bounds
UPLOADED = "(uploaded recipe)"


# --- state -------------------------------------------------------------------------------


def _state():
    ss = st.session_state
    if "pl_steps" not in ss:
        ss.pl_uid = 0
        ss.pl_steps = []
        ss.pl_preset = dashboard.DEFAULT_PRESET
        ss.pl_presets_now = dashboard.presets()
        ss.pl_fit = (None, None)
        ss.pl_fallback = {"dataset": dashboard.DEFAULT_DATASET, "max_train_samples": dashboard.DEFAULT_MAX_TRAIN_SAMPLES,
                          "baseline": dict(dashboard.DEFAULT_BASELINE)}
        ss.pl_unsafe = False
        ss.pl_need_preset = True  # loaded once the baseline (and so its data) is known
    return ss


def _load_steps(steps: list[dict]):
    ss = st.session_state
    new = []
    for s in steps:
        ss.pl_uid += 1
        new.append(dict(s, _uid=ss.pl_uid))
    ss.pl_steps = new


def _apply_preset(announce: bool = True):
    """Load the chosen preset (fitted to the current baseline's data) in place of the steps."""
    ss = st.session_state
    preset = ss.pl_presets_now.get(ss.get("pl_preset"))
    if not preset:
        return
    if "recipe" in st.query_params and announce:  # a preset chosen: the uploaded recipe is no longer on the page
        del st.query_params["recipe"]
        ss.pl_recipe_key = None
    _load_steps(preset["steps"])
    ss.pl_export = preset["export"]
    ss.pl_name = preset["name"]
    ss.pl_unsafe = False
    ss.pl_loaded_steps = [dict(s) for s in preset["steps"]]
    ss.pl_fit_loaded = ss.get("pl_fit")
    if "baseline" in preset and ss.get("pl_base_id", OWN) == OWN:
        # a recipe made for one architecture and dataset: the baseline built in this run follows it
        ss.pl_fallback = {"dataset": preset["dataset"], "max_train_samples": None, "baseline": dict(preset["baseline"])}
        ss["pl_fb_ds"] = preset["dataset"]
        ss["pl_fb_arch"] = preset["baseline"]["arch"]
        ss["pl_fb_epochs"] = int(preset["baseline"]["epochs"])
        ss["pl_fb_cap"] = 0
    if announce:
        ss.pl_json_msg = None
        ss.pl_preset_msg = (f"Loaded preset “{ss.pl_preset}”: {len(preset['steps'])} "
                            f"step{'s' if len(preset['steps']) != 1 else ''}, export {preset['export']}.")


def _unedited(ss) -> bool:
    steps = [{k: v for k, v in s.items() if k != "_uid"} for s in ss.get("pl_steps", [])]
    return steps == ss.get("pl_loaded_steps")


def _add_step():
    ss = st.session_state
    ss.pl_uid += 1
    ss.pl_steps = ss.pl_steps + [dict(dashboard.new_step(ss.pl_add), _uid=ss.pl_uid)]


def _move(i: int, delta: int):
    steps = list(st.session_state.pl_steps)
    j = i + delta
    if 0 <= j < len(steps):
        steps[i], steps[j] = steps[j], steps[i]
        st.session_state.pl_steps = steps


def _remove(i: int):
    steps = list(st.session_state.pl_steps)
    del steps[i]
    st.session_state.pl_steps = steps


def _load_recipe_file():
    ss = st.session_state
    up = ss.get("pl_json")
    ss.pl_json_msg = None
    if up is None:
        return
    raw = up.getvalue()
    if len(raw) > limits.MAX_RECIPE_BYTES:
        ss.pl_json_msg = ("error", f"{md(up.name)} is {limits.human(len(raw))}; a recipe may be at most "
                                   f"{limits.human(limits.MAX_RECIPE_BYTES)}")
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        ss.pl_json_msg = ("error", f"{md(up.name)} is not a text file")
        return
    try:
        # Files named by a recipe from the browser must lie in the workspace (uploads/, runs/).
        recipe = uploads.confine_recipe_paths(Recipe.from_json(text))
        key = uploads.save_recipe(recipe)  # kept in the workspace: a reload of the page finds it again
    except UserError as e:
        ss.pl_json_msg = ("error", f"{md(up.name)}: {md(str(e).splitlines()[0] if str(e) else type(e).__name__)}")
        return
    _load_recipe(recipe)
    st.query_params["recipe"] = key
    ss.pl_recipe_key = key
    ss.pl_json_msg = ("ok", f"Loaded {md(up.name)}: {len(recipe.steps)} steps, export {recipe.export.value}.")


def _load_recipe(recipe: Recipe):
    """Put an uploaded recipe in the page: its steps, export, name and baseline."""
    ss = st.session_state
    d = recipe.to_dict()
    _load_steps(d["steps"])
    ss.pl_export, ss.pl_name, ss.pl_unsafe = d["export"], d["name"], d["allow_unsafe_order"]
    ss.pl_fallback = {"dataset": d["dataset"], "max_train_samples": d["max_train_samples"], "baseline": d["baseline"]}
    match = None
    if recipe.baseline.path:
        for job in dashboard.baselines(dashboard.list_jobs()):
            if os.path.realpath(Path(job["run_dir"]) / "baseline.keras") == os.path.realpath(recipe.baseline.path):
                match = job["id"]
    ss.pl_base_id = match or OWN
    ss.pl_preset = UPLOADED  # the preset box no longer describes what is loaded
    ss.pl_loaded_steps = [dict(s) for s in d["steps"]]
    ss.pl_need_preset = False


def _restore_uploaded():
    """A reload (a new session) with ?recipe=KEY: the recipe uploaded before, from the workspace."""
    ss = st.session_state
    key = st.query_params.get("recipe")
    if not key or ss.get("pl_recipe_key") == key:
        return
    ss.pl_recipe_key = key
    try:
        recipe = uploads.load_saved_recipe(key)
    except UserError as e:
        ss.pl_json_msg = ("error", f"The recipe uploaded before cannot be loaded again: {md(e)}")
        return
    _load_recipe(recipe)


# --- widgets per step, generated from each method's declared parameters -----------------------


def _label(name: str, p) -> str:
    if p.label:
        return p.label
    text = name.replace("_", " ").capitalize()
    return f"{text} ({p.unit})" if p.unit and p.unit not in ("fraction",) and p.unit not in name else text


def _float_widget(where, name: str, p, value: float, key: str):
    if p.unit == "fraction":  # a share of the weights: a slider over the declared range
        hi = p.hi - 0.01 if p.hi_open else p.hi
        return float(where.slider(_label(name, p), float(p.lo or 0.0), float(hi), float(value), step=0.01,
                                  key=key, format="%.2f", help=p.help))
    if name == "learning_rate":
        lo = p.lo if p.lo is not None else 0.0
        ladder = sorted({v for v in LR_CHOICES if v > lo and (p.hi is None or v <= p.hi)} | {float(value)})
        return float(where.select_slider(_label(name, p), ladder, value=float(value), key=key,
                                         format_func=lambda v: f"{v:g}", help=p.help))
    lo = None if p.lo is None else float(p.lo + 1e-9 if p.lo_open else p.lo)
    hi = None if p.hi is None else float(p.hi - 1e-9 if p.hi_open else p.hi)
    return float(where.number_input(_label(name, p), min_value=lo, max_value=hi, value=float(value), format="%g",
                                    key=key, help=p.help))


def _int_widget(where, name: str, p, value, key: str):
    if p.nullable:  # 0 stands for "not set" (null): the help says what that means
        v = where.number_input(_label(name, p) + " (0 = automatic)", min_value=0,
                               max_value=int(p.hi) if p.hi is not None else None, value=int(value or 0), key=key,
                               help=p.help)
        return int(v) or None
    if p.lo is not None and p.hi is not None and p.hi - p.lo <= 300 and name != "epochs":
        return int(where.slider(_label(name, p), int(p.lo), int(p.hi), int(value), key=key, help=p.help))
    return int(where.number_input(_label(name, p), min_value=int(p.lo) if p.lo is not None else None,
                                  max_value=int(p.hi) if p.hi is not None else None, value=int(value), step=1,
                                  key=key, help=p.help))


def _per_layer_number(where, method: str, name: str, p, value, key: str):
    """The value every layer takes (the per-layer table, drawn after the step's columns, sets some apart)."""
    base = value if not isinstance(value, dict) else declared_default(methods.step_type(method), name)
    return (_float_widget if p.kind == "per_layer_float" else _int_widget)(where, name, p, base, key)


def _per_layer_table(name: str, p, value, one, key: str, layer_names: list[str]):
    """A per-layer table (the paper sets targets per layer); returns a number or {layer: number}."""
    where = st
    per_layer = value if isinstance(value, dict) else {}
    if not layer_names:
        if per_layer:
            where.caption(f"{_label(name, p)} per layer: {', '.join(f'{k} {v:g}' for k, v in per_layer.items())}; "
                          f"other layers {one:g}. Pick a trained baseline to edit them in a table.")
        return per_layer or one
    import pandas as pd

    title = _label(name, p) if _label(name, p).endswith("per layer") else f"{_label(name, p)} per layer"
    with where.expander(f"{title}: set layers apart", expanded=bool(per_layer)):
        table = pd.DataFrame({"layer": layer_names,
                              "value": [float(per_layer.get(n, one)) for n in layer_names]})
        edited = st.data_editor(table, key=f"{key}_table", hide_index=True, width="stretch",
                                disabled=["layer"],
                                column_config={"value": st.column_config.NumberColumn(
                                    _label(name, p), min_value=None if p.lo is None else float(p.lo),
                                    max_value=None if p.hi is None else float(p.hi),
                                    step=0.01 if p.kind == "per_layer_float" else 1, help=p.help)})
        values = {row["layer"]: row["value"] for row in edited.to_dict("records")}
        differing = {k: (float(v) if p.kind == "per_layer_float" else int(v)) for k, v in values.items()
                     if v is not None and float(v) != float(one)}
        # names this baseline does not have stay in the map: the checks on the right say so, nothing is dropped
        differing.update({k: v for k, v in per_layer.items() if k not in values})
        st.caption("Layers left at the value above take it; change a row to set that layer apart.")
    return differing if differing else one


def _pair_widget(where, name: str, p, value, key: str):
    text = f"{value[0]}:{value[1]}" if value else "off"
    choices = MN_CHOICES if text in MN_CHOICES else MN_CHOICES + [text]
    text = where.selectbox(_label(name, p), choices, index=choices.index(text), key=key, help=p.help)
    return None if text == "off" else [int(x) for x in text.split(":")]


def _layers_widget(where, step: dict, uid: int, layer_names: list[str], layer_types: list[str], help_text: str):
    current = step.get("layers", "all")
    scope = current if isinstance(current, str) else next(iter(current))
    values = [] if isinstance(current, str) else list(next(iter(current.values())))
    scope = where.selectbox("Which layers", options(LayerScope), index=options(LayerScope).index(scope),
                            key=f"s{uid}_scope", help=help_text,
                            format_func=lambda s: {"all": "all layers with weights", "all_but_first_last":
                                                   "all but the first and last", "types": "layers of these types",
                                                   "names": "these layers"}[s])
    if scope in ("types", "names"):
        known = layer_types if scope == "types" else layer_names
        if known:
            values = where.multiselect("Layers" if scope == "names" else "Types", sorted(set(known) | set(values)),
                                       default=[v for v in values if v], key=f"s{uid}_{scope}_vals")
        else:
            text = where.text_input("Comma-separated " + scope, value=", ".join(values), key=f"s{uid}_{scope}_text",
                                    help="The baseline is trained in this run, so its layer names are not known yet.")
            values = [v.strip() for v in text.split(",") if v.strip()]
        return {scope: values}
    return scope


def _param_widget(where, step: dict, uid: int, name: str, p, layer_names, layer_types):
    key = f"s{uid}_{name}"
    value = step.get(name)
    if p.kind == "float":
        return _float_widget(where, name, p, value, key)
    if p.kind == "int":
        return _int_widget(where, name, p, value, key)
    if p.kind == "bool":
        return bool(where.checkbox(_label(name, p), value=bool(value), key=key, help=p.help))
    if p.kind == "enum":
        opts = options(p.enum)
        return where.selectbox(_label(name, p), opts, index=opts.index(value) if value in opts else 0, key=key,
                               help=p.help)
    if p.kind in ("per_layer_float", "per_layer_int"):
        return _per_layer_number(where, step["method"], name, p, value, key)
    if p.kind == "pair":
        return _pair_widget(where, name, p, value, key)
    if p.kind == "layers":
        return _layers_widget(where, step, uid, layer_names, layer_types, p.help)
    raise ValueError(f"no widget for parameter kind {p.kind}")


def _relevant(step: dict, p) -> bool:
    return p.show_if is None or str(step.get(p.show_if[0])) == p.show_if[1]


def _step_editor(i: int, step: dict, n: int, layer_names, layer_types, steps_per_epoch):
    uid = step["_uid"]
    method = methods.get(step["method"])
    with st.container(border=True):
        head, up, down, rm = st.columns([8, 1, 1, 1], vertical_alignment="center")
        head.markdown(f"**{i + 1}. {method.title}**", help=method.help)
        up.button("", icon=":material/arrow_upward:", key=f"s{uid}_up", on_click=_move, args=(i, -1), disabled=i == 0,
                  help="Move up")
        down.button("", icon=":material/arrow_downward:", key=f"s{uid}_down", on_click=_move, args=(i, 1),
                    disabled=i == n - 1, help="Move down")
        rm.button("", icon=":material/delete:", key=f"s{uid}_rm", on_click=_remove, args=(i,), help="Remove this step")
        declared = ordered_params(method.step_type)
        main = [(k, p) for k, p in declared.items() if not p.advanced and k != "preserve"]
        advanced = [(k, p) for k, p in declared.items() if p.advanced and k != "preserve"]
        cols = st.columns(2)
        shown = 0
        per_layer = []
        for name, p in main:
            if not _relevant(step, p) or p.kind == "layers":
                continue
            before = step.get(name)
            step[name] = _param_widget(cols[shown % 2], step, uid, name, p, layer_names, layer_types)
            shown += 1
            if p.kind in ("per_layer_float", "per_layer_int"):
                per_layer.append((name, p, before))
        for name, p, before in per_layer:
            step[name] = _per_layer_table(name, p, before, step[name], f"s{uid}_{name}", layer_names)
        for name, p in main:
            if p.kind == "layers":
                step[name] = _param_widget(st, step, uid, name, p, layer_names, layer_types)
        with st.expander("Advanced: schedule steps, learning-rate schedule, weight decay, distillation, random shifts"):
            acols = st.columns(2)
            shown = 0
            for name, p in advanced:
                if not _relevant(step, p):
                    continue
                step[name] = _param_widget(acols[shown % 2], step, uid, name, p, layer_names, layer_types)
                shown += 1
        if steps_per_epoch:
            for note in method.data_notes(step, steps_per_epoch(step["batch_size"])):
                st.caption(note)
        if "preserve" in declared and st.session_state.pl_unsafe:
            step["preserve"] = st.checkbox("Preserve earlier steps' work (preserving variant)",
                                           value=bool(step["preserve"]), key=f"s{uid}_preserve",
                                           help=declared["preserve"].help)


# --- the baseline to compress ----------------------------------------------------------------


def _baseline_picker(jobs):
    ss = st.session_state
    bases = dashboard.baselines(jobs)
    ids = [j["id"] for j in bases] + [OWN]
    wanted = st.query_params.get("baseline")
    if ss.get("pl_base_id") not in ids:
        ss.pl_base_id = wanted if wanted in ids else (ids[0] if bases else OWN)
    elif wanted in ids and ss.get("pl_baseline_qp") != wanted:
        ss.pl_base_id = wanted
    ss.pl_baseline_qp = wanted

    def label(job_id):
        if job_id == OWN:
            fb = ss.pl_fallback
            b = fb["baseline"]
            what = f"load {Path(b['path']).name}" if "path" in b else f"train {b.get('arch')}"
            ds = fb["dataset"] if isinstance(fb["dataset"], str) else Path(fb["dataset"].get("npz", "?")).name
            return f"A new baseline, built inside this run ({what} on {ds})"
        job = next(j for j in bases if j["id"] == job_id)
        rep = try_load_run(job["run_dir"])
        acc = ((rep.report.get("baseline") or {}).get("metrics") or {}).get("accuracy") if rep else None
        ds = (job.get("recipe") or {}).get("dataset")
        ds = ds if isinstance(ds, str) else Path((ds or {}).get("npz", "?")).name
        return f"{job.get('name')} · {ds} · accuracy {acc:.1%} · {job_id}" if acc is not None else f"{job.get('name')} · {job_id}"

    # Options are labels (not ids with a format_func) so that the choice can be set from a
    # deep link or an uploaded recipe; pl_base_id is the source of truth.
    labels = {i: label(i) for i in ids}
    by_label = {v: k for k, v in labels.items()}
    if ss.get("pl_baseline") != labels[ss.pl_base_id]:
        ss.pl_baseline = labels[ss.pl_base_id]

    def picked():
        ss.pl_base_id = by_label.get(ss.pl_baseline, ss.pl_base_id)

    choice = by_label[st.selectbox("Baseline to compress", list(labels.values()), key="pl_baseline", on_change=picked)]
    if choice == OWN:
        if not bases:
            st.caption("No trained baseline yet: this run will build its own first. For repeated experiments, train one on "
                       "the Baseline page once and reuse it.")
        fb = ss.pl_fallback
        if "path" not in fb["baseline"]:
            c1, c2, c3 = st.columns(3)
            ds = fb["dataset"] if isinstance(fb["dataset"], str) else "digits"
            fb["dataset"] = c1.selectbox("Dataset", options(DatasetName), index=options(DatasetName).index(ds), key="pl_fb_ds")
            fb["baseline"]["arch"] = c2.selectbox("Architecture", options(Arch),
                                                  index=options(Arch).index(fb["baseline"].get("arch") or dashboard.DEFAULT_BASELINE["arch"]),
                                                  key="pl_fb_arch")
            fb["baseline"]["epochs"] = int(c3.number_input("Baseline epochs", 1, 100, int(fb["baseline"].get("epochs", 2)),
                                                           key="pl_fb_epochs"))
        cap = st.number_input("Quick demo: at most N training samples (0 = all)", 0, 10**7,
                              int(fb.get("max_train_samples") or 0), step=100, key="pl_fb_cap")
        fb["max_train_samples"] = int(cap) or None
        return None, None
    job = next(j for j in bases if j["id"] == choice)
    return job, try_load_run(job["run_dir"])


# --- the page ------------------------------------------------------------------------------


@page
def main():
    ss = _state()
    _restore_uploaded()
    st.title("Pipeline")
    st.markdown("Compose the compression steps, in order. Each step fine-tunes the model it gets; the checks on the "
                "right say, before anything runs, what each step will run as and what the recipe costs.")
    jobs = jobs_or_stop()

    left, right = st.columns([3, 2], gap="large")
    with left:
        job, base_run = _baseline_picker(jobs)
        layers = report_layers(base_run.report) if base_run else []  # the layers with kernels
        layer_names = [name for name, _cls in layers]
        layer_types = sorted({cls for _name, cls in layers})
        n_train = ((base_run.report.get("dataset") or {}).get("n_train")) if base_run else None
        cap = (job.get("recipe") or {}).get("max_train_samples") if job else ss.pl_fallback.get("max_train_samples")
        spe = (lambda bs: dashboard.steps_per_epoch(n_train, bs, cap)) if n_train else None

        data_name = ((base_run.report.get("dataset") or {}).get("name") if base_run else
                     ss.pl_fallback.get("dataset") if isinstance(ss.pl_fallback.get("dataset"), str) else None)
        presets = dashboard.presets(n_train, cap, data_name)
        ss.pl_presets_now = presets
        fit = (n_train, cap, data_name)
        if ss.pop("pl_need_preset", False):
            ss.pl_fit = fit
            _apply_preset(announce=False)
        if ss.get("pl_preset") in presets and ss.get("pl_fit_loaded") != fit and _unedited(ss):
            ss.pl_fit = fit  # another baseline: refit the untouched preset to its data
            _apply_preset(announce=False)
        ss.pl_fit = fit
        names = list(presets) + ([UPLOADED] if ss.get("pl_preset") == UPLOADED else [])
        st.selectbox("Preset", names, key="pl_preset", on_change=_apply_preset,
                     help="Choosing a preset replaces the steps and the export mode with it, fitted to the chosen "
                          "baseline's data; the baseline stays")
        if ss.get("pl_preset") in presets:
            edited = "" if _unedited(ss) else " You have edited its steps since."
            st.caption(presets[ss.pl_preset]["description"] + edited)
            if presets[ss.pl_preset].get("warning"):  # made for other data: said before the run, not after
                st.warning(presets[ss.pl_preset]["warning"], icon=":material/dataset:")
        msg = ss.pop("pl_preset_msg", None)
        if msg:
            st.success(msg, icon=":material/auto_fix_high:")

        steps = ss.pl_steps
        if not steps:
            st.info("No steps yet: add one below or load a preset.")
        for i, step in enumerate(steps):
            _step_editor(i, step, len(steps), layer_names, layer_types, spe)
        a1, a2 = st.columns([3, 1], vertical_alignment="bottom")
        a1.selectbox("Add a step", methods.names(), key="pl_add", format_func=lambda m: methods.get(m).title)
        a2.button("Add step", on_click=_add_step, key="pl_add_btn", icon=":material/add:")

        st.markdown("**Export**")
        ss.setdefault("pl_export", "int8_dynamic")
        st.selectbox("TFLite export", options(ExportMode), key="pl_export",
                     format_func=lambda e: f"{e} — {EXPORT_HELP.get(e, '')}")
        c1, c2 = st.columns(2)
        c1.text_input("Run name", key="pl_name", max_chars=100)
        c2.checkbox("Allow an unsafe order", key="pl_unsafe",
                    help="Run an order that undoes earlier work (e.g. cluster before prune), to see what it undoes")

    with right:
        _live_panel(job, [{k: v for k, v in s.items() if k != "_uid"} for s in ss.pl_steps], spe, layer_names,
                    report_layers(base_run.report) if base_run else [])


def _live_panel(job, steps, spe, layer_names=(), layers=()):
    ss = st.session_state
    st.subheader("Before you run")
    try:
        recipe = dashboard.compress_recipe(job, steps, name=(ss.pl_name or "pipeline").strip() or "pipeline",
                                           export=ss.pl_export, allow_unsafe_order=bool(ss.pl_unsafe),
                                           fallback=ss.pl_fallback)
        planned = plan(recipe)
    except RecipeError as e:
        st.error(f"This recipe cannot run: {e}", icon=":material/block:")
        recipe = None
        planned = []
    if recipe is not None:
        if not planned:
            st.info("No compression steps: this would only measure the baseline.")
        with st.container(border=True):
            st.markdown("**What each step will run as**")
            for i, p in enumerate(planned, start=1):
                st.markdown(f"{i}. {p.description}.")
                for w in p.warnings:
                    st.warning(f"Step {i} undoes earlier work: {w}.", icon=":material/warning:")
            st.markdown(f"Export: **{recipe.export.value}** — {EXPORT_HELP.get(recipe.export.value, '')}.")
        layer_problem = False
        for i, step in enumerate(recipe.steps, start=1):  # per-layer targets must name this baseline's layers
            for name, mapping in per_layer_maps(step).items():
                unknown = sorted(set(mapping) - set(layer_names)) if layer_names else []
                if unknown:
                    layer_problem = True
                    st.error(f"Step {i} ({step.method}) sets {name} for {', '.join(unknown)}, which this baseline does "
                             f"not have; its layers with weights: {', '.join(layer_names)}.", icon=":material/block:")
        try:  # layer selections too, against the chosen run's layers or the architecture's (as submit does)
            check_layer_names(recipe, layers or None, maps=False)
        except RecipeError as e:
            layer_problem = True
            st.error(f"This recipe cannot run: {e}", icon=":material/block:")
        for sentence in schedule_warnings(recipe, spe):
            st.warning(sentence, icon=":material/schedule:")
        if planned and not any(p.warnings for p in planned):
            st.success("Order check: safe. Every step keeps what the steps before it did.", icon=":material/check_circle:")
        elif planned:
            st.warning("Order check: this order undoes earlier work (allowed, to show the effect).")
        epochs = training_epochs(recipe)
        c1, c2 = st.columns(2)
        c1.metric("Training epochs", epochs,
                  help="the baseline's (when trained in this run) plus every step's fine-tuning epochs")
        if spe:
            total_steps = sum(s.epochs * spe(s.batch_size) for s in recipe.steps)
            c2.metric("Optimizer steps", f"{total_steps:,}", help="fine-tuning batches over the (capped) training split")
        st.caption("Sizes shrink only where the file is compressed: pruned zeros cost as much as any weight in a raw "
                   ".tflite file and pay off once zipped.")
        st.download_button("Download recipe (JSON)", dashboard.recipe_json(recipe), file_name=f"{recipe.name}.json",
                           mime="application/json", icon=":material/download:", key="pl_download")
        with st.expander("Recipe JSON"):
            st.code(dashboard.recipe_json(recipe), language="json")
        if read_only():
            read_only_note("Running recipes")
        elif st.button("Run", type="primary", icon=":material/play_arrow:", key="pl_run",
                       disabled=not planned or layer_problem, width="stretch",
                       help="Name only layers this baseline has (above)" if layer_problem else None):
            job_id = dashboard.submit(recipe)
            st.switch_page(PAGES["runs"], query_params={"job": job_id})
    if not read_only():
        st.file_uploader("Upload a recipe (JSON)", type=["json"], key="pl_json", on_change=_load_recipe_file)
    msg = ss.get("pl_json_msg")
    if msg:
        (st.success if msg[0] == "ok" else st.error)(msg[1], icon=None if msg[0] == "ok" else ":material/block:")


main()
