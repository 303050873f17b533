"""Pipeline: compose, order and tune the compression steps, check them live, run them."""

import os
from pathlib import Path

import streamlit as st

from compression import limits
from compression.studio import dashboard, uploads
from compression.choices import Arch, CentroidInit, DatasetName, ExportMode, LayerScope, Method, Schedule, options
from compression.errors import RecipeError, UserError
from compression.ordering import plan
from compression.recipe import Recipe, training_epochs
from compression.store.runs import try_load_run
from views._ui import PAGES, jobs_or_stop, page

OWN = "__own__"
METHOD_TITLES = {"prune": "Prune", "cluster": "Cluster", "quantize": "Quantize (QAT)"}
METHOD_HELP = {
    "prune": "Magnitude pruning sets the smallest weights to exactly zero while fine-tuning.",
    "cluster": "Weight clustering replaces each layer's weights by a few shared values (centroids).",
    "quantize": "Quantization-aware training prepares the weights and activations for int8.",
}
EXPORT_HELP = {
    "float32": "no quantization: the reference size",
    "float16": "half-precision weights: about half the size",
    "int8_dynamic": "int8 weights, float activations: about a quarter of the size",
    "int8_full": "int8 weights and activations (calibrated on training samples)",
}
MN_CHOICES = ["off", "2:4", "1:4", "4:8", "1:2"]


# --- state -------------------------------------------------------------------------------


def _state():
    ss = st.session_state
    if "pl_steps" not in ss:
        ss.pl_uid = 0
        ss.pl_steps = []
        ss.pl_preset = "prune → cluster → QAT"
        preset = dashboard.presets()[ss.pl_preset]
        _load_steps(preset["steps"])
        ss.pl_export = preset["export"]
        ss.pl_name = preset["name"]
        ss.pl_fallback = {"dataset": "digits", "max_train_samples": 600,
                          "baseline": {"arch": "dense_redundant", "epochs": 2, "batch_size": 128, "seed": 0}}
        ss.pl_unsafe = False
    return ss


def _load_steps(steps: list[dict]):
    ss = st.session_state
    new = []
    for s in steps:
        ss.pl_uid += 1
        new.append(dict(s, _uid=ss.pl_uid))
    ss.pl_steps = new


def _apply_preset():
    ss = st.session_state
    preset = dashboard.presets().get(ss.get("pl_preset"))
    if preset:
        _load_steps(preset["steps"])
        ss.pl_export = preset["export"]
        ss.pl_name = preset["name"]
        ss.pl_unsafe = False


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
        ss.pl_json_msg = ("error", f"{up.name} is {limits.human(len(raw))}; a recipe may be at most "
                                   f"{limits.human(limits.MAX_RECIPE_BYTES)}")
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        ss.pl_json_msg = ("error", f"{up.name} is not a text file")
        return
    try:
        # Files named by a recipe from the browser must lie in the workspace (uploads/, runs/).
        recipe = uploads.confine_recipe_paths(Recipe.from_json(text))
    except UserError as e:
        ss.pl_json_msg = ("error", f"{up.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return
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
    ss.pl_json_msg = ("ok", f"Loaded {up.name}: {len(d['steps'])} steps, export {d['export']}.")


# --- widgets per step ----------------------------------------------------------------------


def _layers_widget(step: dict, uid: int, layer_names: list[str], layer_types: list[str]):
    current = step.get("layers", "all")
    scope = current if isinstance(current, str) else next(iter(current))
    values = [] if isinstance(current, str) else list(next(iter(current.values())))
    scope = st.selectbox("Which layers", options(LayerScope), index=options(LayerScope).index(scope), key=f"s{uid}_scope",
                         format_func=lambda s: {"all": "all layers with weights", "all_but_first_last":
                                                "all but the first and last", "types": "layers of these types",
                                                "names": "these layers"}[s])
    if scope in ("types", "names"):
        known = layer_types if scope == "types" else layer_names
        if known:
            values = st.multiselect("Layers" if scope == "names" else "Types", sorted(set(known) | set(values)),
                                    default=[v for v in values if v], key=f"s{uid}_{scope}_vals")
        else:
            text = st.text_input("Comma-separated " + scope, value=", ".join(values), key=f"s{uid}_{scope}_text",
                                 help="The baseline is trained in this run, so its layer names are not known yet.")
            values = [v.strip() for v in text.split(",") if v.strip()]
        step["layers"] = {scope: values}
    else:
        step["layers"] = scope


def _training_widgets(step: dict, uid: int):
    c1, c2, c3 = st.columns(3)
    step["epochs"] = int(c1.number_input("Fine-tuning epochs", 1, 100, int(step["epochs"]), key=f"s{uid}_epochs"))
    sizes = sorted({16, 32, 64, 128, 256, 500, 512, 1024, int(step["batch_size"])})
    step["batch_size"] = int(c2.select_slider("Batch size", sizes, value=int(step["batch_size"]), key=f"s{uid}_batch"))
    lrs = sorted({1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, float(step["learning_rate"])})
    step["learning_rate"] = float(c3.select_slider("Learning rate", lrs, value=float(step["learning_rate"]),
                                                   key=f"s{uid}_lr", format_func=lambda v: f"{v:g}"))


def _prune_widgets(step: dict, uid: int, steps_per_epoch: int | None):
    c1, c2 = st.columns(2)
    step["schedule"] = c1.selectbox("Sparsity schedule", options(Schedule), index=options(Schedule).index(step["schedule"]),
                                    key=f"s{uid}_schedule",
                                    help="polynomial_decay raises sparsity gradually; constant_sparsity holds one target")
    mn = step.get("sparsity_m_by_n")
    mn_text = f"{mn[0]}:{mn[1]}" if mn else "off"
    choices = MN_CHOICES if mn_text in MN_CHOICES else MN_CHOICES + [mn_text]
    mn_text = c2.selectbox("Structured M:N sparsity", choices, index=choices.index(mn_text), key=f"s{uid}_mn",
                           help="e.g. 2:4 keeps 2 of every 4 weights (hardware-friendly); replaces the schedule's target")
    step["sparsity_m_by_n"] = None if mn_text == "off" else [int(x) for x in mn_text.split(":")]
    if step["schedule"] == "polynomial_decay":
        lo, hi = st.slider("Sparsity from → to", 0.0, 0.99, (float(step["initial_sparsity"]), float(step["final_sparsity"])),
                           step=0.01, key=f"s{uid}_range", format="%.2f",
                           help="initial_sparsity at begin_step, rising to final_sparsity at end_step")
        step["initial_sparsity"], step["final_sparsity"] = lo, hi
    else:
        step["target_sparsity"] = st.slider("Target sparsity", 0.0, 0.99, float(step["target_sparsity"]), step=0.01,
                                            key=f"s{uid}_target", format="%.2f")
    c1, c2, c3 = st.columns(3)
    step["begin_step"] = int(c1.number_input("Begin step", 0, 10**7, int(step["begin_step"]), key=f"s{uid}_begin"))
    end = c2.number_input("End step (0 = end of training)", 0, 10**7, int(step["end_step"] or 0), key=f"s{uid}_end")
    step["end_step"] = int(end) or None
    step["frequency"] = int(c3.number_input("Update every (steps)", 1, 10**6, int(step["frequency"]), key=f"s{uid}_freq"))
    if step["end_step"] is None and steps_per_epoch:
        st.caption(f"End step computed from the data: {steps_per_epoch} steps per epoch × {step['epochs']} epochs "
                   f"= {steps_per_epoch * step['epochs']}.")


def _cluster_widgets(step: dict, uid: int):
    c1, c2 = st.columns(2)
    step["number_of_clusters"] = int(c1.slider("Clusters per layer", 2, 256, int(step["number_of_clusters"]), key=f"s{uid}_k",
                                               help="16 clusters: every weight becomes one of 16 values (4-bit indices)"))
    step["cluster_centroids_init"] = c2.selectbox(
        "Centroid initialisation", options(CentroidInit), index=options(CentroidInit).index(step["cluster_centroids_init"]),
        key=f"s{uid}_init", help="kmeans_plus_plus is tfmot's recommended start; linear spreads centroids evenly")


def _step_editor(i: int, step: dict, n: int, layer_names, layer_types, steps_per_epoch):
    uid = step["_uid"]
    method = step["method"]
    with st.container(border=True):
        head, up, down, rm = st.columns([8, 1, 1, 1], vertical_alignment="center")
        head.markdown(f"**{i + 1}. {METHOD_TITLES.get(method, method)}** — {METHOD_HELP.get(method, '')}")
        up.button("", icon=":material/arrow_upward:", key=f"s{uid}_up", on_click=_move, args=(i, -1), disabled=i == 0,
                  help="Move up")
        down.button("", icon=":material/arrow_downward:", key=f"s{uid}_down", on_click=_move, args=(i, 1),
                    disabled=i == n - 1, help="Move down")
        rm.button("", icon=":material/delete:", key=f"s{uid}_rm", on_click=_remove, args=(i,), help="Remove this step")
        if method == "prune":
            _prune_widgets(step, uid, steps_per_epoch(step["batch_size"]) if steps_per_epoch else None)
        elif method == "cluster":
            _cluster_widgets(step, uid)
        _layers_widget(step, uid, layer_names, layer_types)
        _training_widgets(step, uid)
        if "preserve" in step and st.session_state.pl_unsafe:
            step["preserve"] = st.checkbox("Preserve earlier steps' work (preserving variant)", value=bool(step["preserve"]),
                                           key=f"s{uid}_preserve")


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
                                                  index=options(Arch).index(fb["baseline"].get("arch") or "dense_redundant"),
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
    st.title("Pipeline")
    st.markdown("Compose the compression steps, in order. Each step fine-tunes the model it gets; the checks on the "
                "right say, before anything runs, what each step will run as and what the recipe costs.")
    jobs = jobs_or_stop()

    left, right = st.columns([3, 2], gap="large")
    with left:
        job, base_run = _baseline_picker(jobs)
        arch = ((base_run.report.get("baseline") or {}).get("architecture") or []) if base_run else []
        layer_names = [a["name"] for a in arch if a.get("params")]
        layer_types = sorted({a["type"] for a in arch if a.get("params")})
        n_train = ((base_run.report.get("dataset") or {}).get("n_train")) if base_run else None
        cap = (job.get("recipe") or {}).get("max_train_samples") if job else ss.pl_fallback.get("max_train_samples")
        spe = (lambda bs: dashboard.steps_per_epoch(n_train, bs, cap)) if n_train else None

        p1, p2 = st.columns([3, 1], vertical_alignment="bottom")
        presets = dashboard.presets()
        p1.selectbox("Preset", list(presets), key="pl_preset",
                     help="Replaces the steps and the export mode; the baseline stays")
        p2.button("Load preset", on_click=_apply_preset, key="pl_load_preset", icon=":material/auto_fix_high:")
        if ss.get("pl_preset") in presets:
            st.caption(presets[ss.pl_preset]["description"])

        steps = ss.pl_steps
        if not steps:
            st.info("No steps yet: add one below or load a preset.")
        for i, step in enumerate(steps):
            _step_editor(i, step, len(steps), layer_names, layer_types, spe)
        a1, a2 = st.columns([3, 1], vertical_alignment="bottom")
        a1.selectbox("Add a step", options(Method), key="pl_add", format_func=lambda m: METHOD_TITLES[m])
        a2.button("Add step", on_click=_add_step, key="pl_add_btn", icon=":material/add:")

        st.markdown("**Export**")
        ss.setdefault("pl_export", "int8_dynamic")
        st.selectbox("TFLite export", options(ExportMode), key="pl_export",
                     format_func=lambda e: f"{e} — {EXPORT_HELP.get(e, '')}")
        c1, c2 = st.columns(2)
        c1.text_input("Run name", key="pl_name", max_chars=100)
        c2.checkbox("Allow an unsafe order (to see what it undoes)", key="pl_unsafe")

    with right:
        _live_panel(job, [{k: v for k, v in s.items() if k != "_uid"} for s in ss.pl_steps], spe)


def _live_panel(job, steps, spe):
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
        for sentence in dashboard.schedule_warnings(recipe, spe):
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
        if st.button("Run", type="primary", icon=":material/play_arrow:", key="pl_run", disabled=not planned,
                     width="stretch"):
            job_id = dashboard.submit(recipe)
            st.switch_page(PAGES["runs"], query_params={"job": job_id})
    st.file_uploader("Upload a recipe (JSON)", type=["json"], key="pl_json", on_change=_load_recipe_file)
    msg = ss.get("pl_json_msg")
    if msg:
        (st.success if msg[0] == "ok" else st.error)(msg[1])


main()
