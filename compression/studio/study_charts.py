"""Tables and charts of a study's result: pure functions, no Streamlit, no TensorFlow.

``*_df(study)`` turn study.json into a small DataFrame; ``*_chart(df)`` turn that into an Altair
chart (tests call ``to_dict()``); ``*_table(df)`` give the figures' exact numbers as strings for
the table under each chart. ``figures(study)`` lists a study's charts with their tables, one
entry per chart, for the page and the HTML report alike. The page and the report read the kind's
name only to pick these functions; everything they show comes from study.json.
"""

from __future__ import annotations

from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd

from compression.studio.charts import human_bytes

NETWORKS = {"ticket": "winning ticket", "reinit": "reinit", "random_mask": "random mask"}
NETWORK_COLORS = ["#1f77b4", "#e45756", "#9e9e9e"]


def _pct(x, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}%}"


def _num(x, fmt: str = "{:g}") -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else fmt.format(x)


@dataclass
class Figure:
    title: str
    chart: alt.TopLevelMixin
    table: pd.DataFrame  # the chart's figures as text, for the table under it
    caption: str = ""


# --- sweep ---------------------------------------------------------------------------------------------


def sweep_df(study: dict) -> pd.DataFrame:
    t = study.get("threshold") or {}
    rows = [{"level": p["level"], "measured": p.get("measured"), "accuracy": p["accuracy"],
             "tflite_zip_bytes": p.get("tflite_zip_bytes"), "dc_bytes": p.get("dc_bytes"),
             "threshold": t.get("level") is not None and p["level"] == t.get("level"), "run": p.get("run", "")}
            for p in study.get("points") or []]
    df = pd.DataFrame(rows, columns=["level", "measured", "accuracy", "tflite_zip_bytes", "dc_bytes", "threshold", "run"])
    df["strength"] = df["measured"].where(df["measured"].notna(), df["level"])
    return df


def sweep_accuracy_chart(df: pd.DataFrame, study: dict) -> alt.LayerChart:
    t = study.get("threshold") or {}
    base = (study.get("baseline") or {}).get("accuracy")
    label = study.get("measured_label") or "strength"
    x = alt.X("strength:Q", title=f"{study.get('parameter', 'strength')}: {label}", scale=alt.Scale(zero=False))
    y = alt.Y("accuracy:Q", title="test accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False))
    tip = [alt.Tooltip("level:Q", title="level set"), alt.Tooltip("measured:Q", title="measured", format=".4g"),
           alt.Tooltip("accuracy:Q", format=".2%"), alt.Tooltip("threshold:N", title="redundancy threshold")]
    line = alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=70, filled=True)).encode(x=x, y=y, tooltip=tip)
    layers = [line]
    if base is not None:
        ref = pd.DataFrame({"accuracy": [base, t.get("min_accuracy", base)],
                            "what": ["baseline", f"baseline − {t.get('tolerance_pts', 1):g} pts"]})
        layers.append(alt.Chart(ref).mark_rule(strokeDash=[5, 4]).encode(
            y="accuracy:Q", color=alt.Color("what:N", title=None, scale=alt.Scale(range=["#7f7f7f", "#e45756"]),
                                            legend=alt.Legend(orient="bottom")),
            tooltip=[alt.Tooltip("what:N"), alt.Tooltip("accuracy:Q", format=".2%")]))
    marked = df[df["threshold"]]
    if not marked.empty:
        layers.append(alt.Chart(marked).mark_point(shape="diamond", size=260, color="#e45756", filled=True).encode(
            x=x, y=y, tooltip=tip))
        layers.append(alt.Chart(marked.assign(text="redundancy threshold")).mark_text(dy=-16, color="#e45756").encode(
            x=x, y=y, text="text:N"))
    return alt.layer(*layers).properties(height=300, width=560)


def sweep_size_df(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in df.iterrows():
        for field, label in (("tflite_zip_bytes", "TFLite, zipped"), ("dc_bytes", "model.dc")):
            if r[field] is not None and r[field] == r[field]:
                rows.append({"level": r["level"], "accuracy": r["accuracy"], "file": label, "bytes": float(r[field]),
                             "kb": float(r[field]) / 1000.0, "size": human_bytes(r[field])})
    return pd.DataFrame(rows, columns=["level", "accuracy", "file", "bytes", "kb", "size"])


def sweep_size_chart(sizes: pd.DataFrame) -> alt.Chart:
    return alt.Chart(sizes).mark_line(point=alt.OverlayMarkDef(size=60, filled=True)).encode(
        x=alt.X("kb:Q", title="size (KB, log)", scale=alt.Scale(type="log")),
        y=alt.Y("accuracy:Q", title="test accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
        color=alt.Color("file:N", title=None, legend=alt.Legend(orient="bottom")), order="kb:Q",
        tooltip=[alt.Tooltip("level:Q"), alt.Tooltip("file:N"), alt.Tooltip("size:N"),
                 alt.Tooltip("bytes:Q", format=","), alt.Tooltip("accuracy:Q", format=".2%")],
    ).properties(height=280, width=560)


def sweep_table(df: pd.DataFrame, study: dict) -> pd.DataFrame:
    """The baseline, then each level."""
    b = study.get("baseline") or {}
    return pd.DataFrame({"level": ["baseline"] + [_num(v) for v in df["level"]],
                         "measured": ["–"] + [_num(v, "{:.4g}") for v in df["measured"]],
                         "accuracy": [_pct(b.get("accuracy"))] + [_pct(v) for v in df["accuracy"]],
                         "TFLite zipped": [human_bytes(b.get("tflite_zip_bytes"))] + [human_bytes(v) for v in
                                                                                      df["tflite_zip_bytes"]],
                         "model.dc": [human_bytes(b.get("dc_bytes"))] + [human_bytes(v) for v in df["dc_bytes"]],
                         "threshold": [""] + ["◆" if v else "" for v in df["threshold"]],
                         "run": [b.get("run", "")] + list(df["run"])})


def sweep_size_table(df: pd.DataFrame, study: dict) -> pd.DataFrame:
    base = study.get("baseline") or {}

    def ratio(v, ref):
        return "–" if not v or not ref else f"{ref / v:.1f}×"

    return pd.DataFrame({"level": [_num(v) for v in df["level"]], "accuracy": [_pct(v) for v in df["accuracy"]],
                         "TFLite zipped": [human_bytes(v) for v in df["tflite_zip_bytes"]],
                         "smaller than the baseline's": [ratio(v, base.get("tflite_zip_bytes"))
                                                         for v in df["tflite_zip_bytes"]],
                         "model.dc": [human_bytes(v) for v in df["dc_bytes"]],
                         "smaller than the baseline's model.dc": [ratio(v, base.get("dc_bytes")) for v in df["dc_bytes"]]})


# --- sensitivity ------------------------------------------------------------------------------------------


def sensitivity_df(study: dict) -> pd.DataFrame:
    rows = [{"layer": layer["name"], "weights": layer.get("weights"), "sparsity": p["sparsity"],
             "measured": p.get("measured"), "accuracy": p["accuracy"],
             "suggested": (study.get("suggested") or {}).get(layer["name"]) == p["sparsity"], "run": p.get("run", "")}
            for layer in study.get("layers") or [] for p in layer["points"]]
    return pd.DataFrame(rows, columns=["layer", "weights", "sparsity", "measured", "accuracy", "suggested", "run"])


def sensitivity_chart(df: pd.DataFrame, study: dict) -> alt.LayerChart:
    base = (study.get("baseline") or {}).get("accuracy")
    layers = list(dict.fromkeys(df["layer"]))
    tip = [alt.Tooltip("layer:N"), alt.Tooltip("sparsity:Q", format=".0%"), alt.Tooltip("measured:Q", format=".1%"),
           alt.Tooltip("accuracy:Q", format=".2%"), alt.Tooltip("suggested:N")]
    x = alt.X("sparsity:Q", title="sparsity of the one pruned layer", axis=alt.Axis(format="%"),
              scale=alt.Scale(zero=False))
    y = alt.Y("accuracy:Q", title="test accuracy", axis=alt.Axis(format="%"),
              scale=alt.Scale(zero=False))
    color = alt.Color("layer:N", sort=layers, title="layer", legend=alt.Legend(orient="bottom"))
    out = [alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=60, filled=True)).encode(x=x, y=y, color=color,
                                                                                           tooltip=tip)]
    picked = df[df["suggested"]]
    if not picked.empty:
        out.append(alt.Chart(picked).mark_point(shape="diamond", size=240, filled=False, strokeWidth=2).encode(
            x=x, y=y, color=color, tooltip=tip))
    if base is not None:
        out.append(alt.Chart(pd.DataFrame({"accuracy": [base]})).mark_rule(strokeDash=[5, 4], color="#7f7f7f").encode(
            y="accuracy:Q", tooltip=[alt.Tooltip("accuracy:Q", title="baseline", format=".2%")]))
    return alt.layer(*out).properties(height=300, width=560)


def sensitivity_table(df: pd.DataFrame) -> pd.DataFrame:
    wide = df.pivot_table(index="layer", columns="sparsity", values="accuracy", sort=False)
    out = pd.DataFrame({"layer": list(wide.index)})
    for s in wide.columns:
        out[f"at {s:g}"] = [_pct(v) for v in wide[s]]
    return out


def suggestion_table(study: dict) -> pd.DataFrame:
    weights = {layer["name"]: layer.get("weights") for layer in study.get("layers") or []}
    sug = study.get("suggested") or {}
    return pd.DataFrame({"layer": list(weights), "suggested sparsity": [_num(sug.get(n)) if n in sug else "dense"
                                                                        for n in weights],
                         "weights": [_num(w, "{:,}") for w in weights.values()]})


# --- lottery ---------------------------------------------------------------------------------------------


def lottery_df(study: dict) -> pd.DataFrame:
    rows = []
    for r in study.get("rounds") or []:
        for net in NETWORKS:
            acc = r.get(f"{net}_accuracy")
            if acc is None:
                continue
            stop = r.get("early_stop_iteration") if net == "ticket" else r.get(f"{net}_early_stop_iteration")
            rows.append({"round": r["round"], "remaining": r["remaining"], "network": NETWORKS[net], "accuracy": acc,
                         "early_stop_iteration": stop, "run": r.get(f"{net}_run") or (r.get("ticket_run") if
                                                                                       r["round"] == 0 else "")})
    return pd.DataFrame(rows, columns=["round", "remaining", "network", "accuracy", "early_stop_iteration", "run"])


def _remaining_x(df: pd.DataFrame) -> alt.X:
    values = df["remaining"].dropna()
    lo = float(values.min()) if len(values) else 0.01
    return alt.X("remaining:Q", title="weights remaining (log scale; read from the ticket's file)",
                 scale=alt.Scale(type="log", reverse=True, domain=[lo * 0.9, 1.0], nice=False),
                 axis=alt.Axis(format=".0%", values=sorted(set(round(v, 3) for v in values))))


def lottery_accuracy_chart(df: pd.DataFrame) -> alt.Chart:
    nets = [v for v in NETWORKS.values() if v in set(df["network"])]
    return alt.Chart(df).mark_line(
        point=alt.OverlayMarkDef(size=60, filled=True)).encode(
        x=_remaining_x(df), y=alt.Y("accuracy:Q", title="test accuracy", axis=alt.Axis(format="%"),
                                  scale=alt.Scale(zero=False)),
        color=alt.Color("network:N", sort=nets, scale=alt.Scale(domain=list(NETWORKS.values()), range=NETWORK_COLORS),
                        title=None, legend=alt.Legend(orient="bottom", labelLimit=300)),
        tooltip=[alt.Tooltip("round:Q"), alt.Tooltip("network:N"), alt.Tooltip("remaining:Q", format=".1%"),
                 alt.Tooltip("accuracy:Q", format=".2%"), alt.Tooltip("run:N")],
    ).properties(height=300, width=560)


def lottery_stop_chart(df: pd.DataFrame) -> alt.Chart:
    data = df[df["early_stop_iteration"].notna()]
    return alt.Chart(data).mark_line(point=alt.OverlayMarkDef(size=60, filled=True)).encode(
        x=_remaining_x(data), y=alt.Y("early_stop_iteration:Q", title="early-stopping iteration"),
        color=alt.Color("network:N", scale=alt.Scale(domain=list(NETWORKS.values()), range=NETWORK_COLORS), title=None,
                        legend=alt.Legend(orient="bottom", labelLimit=300)),
        tooltip=[alt.Tooltip("round:Q"), alt.Tooltip("network:N"), alt.Tooltip("remaining:Q", format=".1%"),
                 alt.Tooltip("early_stop_iteration:Q", title="iteration")],
    ).properties(height=260, width=560)


def lottery_table(study: dict) -> pd.DataFrame:
    rows = study.get("rounds") or []
    return pd.DataFrame({"round": [r["round"] for r in rows], "remaining": [_pct(r["remaining"], 1) for r in rows],
                         "ticket": [_pct(r.get("ticket_accuracy")) for r in rows],
                         "reinit": [_pct(r.get("reinit_accuracy")) for r in rows],
                         "random mask": [_pct(r.get("random_mask_accuracy")) for r in rows],
                         "early stop (ticket)": [_num(r.get("early_stop_iteration"), "{:,}") for r in rows],
                         "ticket run": [r.get("ticket_run") or "" for r in rows]})


def lottery_stop_table(df: pd.DataFrame) -> pd.DataFrame:
    data = df[df["early_stop_iteration"].notna()]
    return pd.DataFrame({"round": list(data["round"]), "network": list(data["network"]),
                         "remaining": [_pct(v, 1) for v in data["remaining"]],
                         "early-stopping iteration": [_num(v, "{:,.0f}") for v in data["early_stop_iteration"]]})


# --- forgetting -------------------------------------------------------------------------------------------


def forgetting_df(study: dict) -> pd.DataFrame:
    rows = [{"level": lv["level"], "class": c["class"], "recall_change": c["recall_change"],
             "normalised_change": c["normalised_change"], "p_value": c["p_value"], "p_adjusted": c["p_adjusted"],
             "significant": bool(c["significant"]), "status": "significant" if c["significant"] else "not significant"}
            for lv in study.get("levels") or [] for c in lv["classes"]]
    return pd.DataFrame(rows, columns=["level", "class", "recall_change", "normalised_change", "p_value", "p_adjusted",
                                       "significant", "status"])


def forgetting_chart(df: pd.DataFrame, study: dict) -> alt.Chart:
    classes = list(dict.fromkeys(df["class"]))
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("class:N", sort=classes, title="class", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("normalised_change:Q", title="normalised recall change", axis=alt.Axis(format="+%")),
        color=alt.Color("status:N", scale=alt.Scale(domain=["significant", "not significant"],
                                                    range=["#d62728", "#c7c7c7"]), title=None,
                        legend=alt.Legend(orient="bottom")),
        column=alt.Column("level:N", title="level", header=alt.Header(labelFontWeight="bold")),
        tooltip=[alt.Tooltip("level:N"), alt.Tooltip("class:N"), alt.Tooltip("recall_change:Q", format="+.2%"),
                 alt.Tooltip("normalised_change:Q", format="+.2%"), alt.Tooltip("p_value:Q", format=".3g"),
                 alt.Tooltip("p_adjusted:Q", title="p adjusted", format=".3g"), alt.Tooltip("status:N")],
    ).properties(height=240, width=alt.Step(28))


def forgetting_table(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"level": [_num(v) for v in df["level"]], "class": list(df["class"]),
                         "recall change": [_num(v, "{:+.2%}") for v in df["recall_change"]],
                         "normalised": [_num(v, "{:+.2%}") for v in df["normalised_change"]],
                         "p": [_num(v, "{:.3g}") for v in df["p_value"]],
                         "p adjusted": [_num(v, "{:.3g}") for v in df["p_adjusted"]],
                         "significant": ["yes" if v else "" for v in df["significant"]]})


def pie_df(study: dict) -> pd.DataFrame:
    rows = []
    for lv in study.get("levels") or []:
        for subset, key in (("PIE", "pie_accuracy"), ("non-PIE", "non_pie_accuracy")):
            for pop in ("baseline", "compressed"):
                rows.append({"level": lv["level"], "subset": subset, "population": pop,
                             "accuracy": (lv.get(key) or {}).get(pop), "pie_count": lv["pie_count"]})
    return pd.DataFrame(rows, columns=["level", "subset", "population", "accuracy", "pie_count"])


def pie_chart(df: pd.DataFrame) -> alt.Chart:
    data = df[df["accuracy"].notna()]
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("subset:N", title=None, sort=["PIE", "non-PIE"]),
        xOffset=alt.XOffset("population:N", sort=["baseline", "compressed"]),
        y=alt.Y("accuracy:Q", title="mean accuracy of the population", axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("population:N", scale=alt.Scale(domain=["baseline", "compressed"],
                                                        range=["#7f7f7f", "#1f77b4"]), title=None,
                        legend=alt.Legend(orient="bottom")),
        column=alt.Column("level:N", title="level"),
        tooltip=[alt.Tooltip("level:N"), alt.Tooltip("subset:N"), alt.Tooltip("population:N"),
                 alt.Tooltip("accuracy:Q", format=".2%"), alt.Tooltip("pie_count:Q", title="PIEs")],
    ).properties(height=220, width=alt.Step(40))


def pie_table(study: dict) -> pd.DataFrame:
    levels = study.get("levels") or []
    return pd.DataFrame({
        "level": [_num(lv["level"]) for lv in levels],
        "accuracy (compressed)": [_pct(lv["accuracy_mean"]) for lv in levels],
        "significant classes": [", ".join(lv["significant_classes"]) or "none" for lv in levels],
        "PIEs": [f"{lv['pie_count']:,}" for lv in levels],
        "PIE acc. baseline / compressed": [f"{_pct(lv['pie_accuracy']['baseline'])} / "
                                           f"{_pct(lv['pie_accuracy']['compressed'])}" for lv in levels],
        "non-PIE acc. baseline / compressed": [f"{_pct(lv['non_pie_accuracy']['baseline'])} / "
                                               f"{_pct(lv['non_pie_accuracy']['compressed'])}" for lv in levels]})


# --- robustness ---------------------------------------------------------------------------------------------


def robustness_df(study: dict) -> pd.DataFrame:
    rows = []
    for r in study.get("corruptions") or []:
        for model in ("baseline", "compressed"):
            rows.append({"name": r["name"], "severity": r["severity"], "setting": r.get("setting", ""), "model": model,
                         "accuracy": r[f"{model}_accuracy"], "gap": r.get("gap")})
    return pd.DataFrame(rows, columns=["name", "severity", "setting", "model", "accuracy", "gap"])


def robustness_chart(df: pd.DataFrame) -> alt.Chart:
    names = list(dict.fromkeys(df["name"]))
    return alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=50, filled=True)
                                                                      ).encode(
        x=alt.X("severity:O", title="severity"),
        y=alt.Y("accuracy:Q", title="accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
        color=alt.Color("model:N", scale=alt.Scale(domain=["baseline", "compressed"], range=["#7f7f7f", "#1f77b4"]),
                        title=None, legend=alt.Legend(orient="bottom")),
        facet=alt.Facet("name:N", sort=names, columns=4, title=None),
        tooltip=[alt.Tooltip("setting:N"), alt.Tooltip("model:N"), alt.Tooltip("accuracy:Q", format=".2%"),
                 alt.Tooltip("gap:Q", format="+.2%")],
    ).properties(height=150, width=150)


def robustness_gap_chart(df: pd.DataFrame) -> alt.LayerChart:
    gaps = df[df["model"] == "baseline"]
    names = list(dict.fromkeys(gaps["name"]))
    base = alt.Chart(gaps).encode(x=alt.X("severity:O", title="severity"),
                                  y=alt.Y("name:N", sort=names, title=None),
                                  tooltip=[alt.Tooltip("setting:N"), alt.Tooltip("gap:Q", format="+.2%")])
    cells = base.mark_rect(stroke="white").encode(color=alt.Color(
        "gap:Q", title="baseline − compressed", scale=alt.Scale(scheme="redblue", reverse=True, domainMid=0),
        legend=alt.Legend(format="+.0%", orient="bottom")))
    text = base.mark_text(fontSize=11).encode(text=alt.Text("gap:Q", format="+.1%"))
    return alt.layer(cells, text).properties(height=alt.Step(26), width=alt.Step(56))


def robustness_table(study: dict) -> pd.DataFrame:
    rows = study.get("corruptions") or []
    return pd.DataFrame({"corruption": [r.get("setting") or r["name"] for r in rows],
                         "severity": [r["severity"] for r in rows],
                         "baseline": [_pct(r["baseline_accuracy"]) for r in rows],
                         "compressed": [_pct(r["compressed_accuracy"]) for r in rows],
                         "gap (pts)": [_num(r.get("gap", 0) * 100, "{:+.2f}") for r in rows]})


def robustness_gap_table(study: dict) -> pd.DataFrame:
    """Corruption by severity: the gap in points (baseline minus compressed)."""
    rows = study.get("corruptions") or []
    names = list(dict.fromkeys(r["name"] for r in rows))
    severities = sorted({r["severity"] for r in rows})
    gap = {(r["name"], r["severity"]): r.get("gap") for r in rows}
    out = pd.DataFrame({"corruption": names})
    for s in severities:
        out[f"severity {s}" if s else "clean"] = [_num(None if gap.get((n, s)) is None else gap[(n, s)] * 100,
                                                       "{:+.2f}") if (n, s) in gap else "" for n in names]
    return out


# --- every figure of a study -----------------------------------------------------------------------------------


def figures(study: dict) -> list[Figure]:
    """The charts of a finished study, each with a sentence on how to read it and the table of its exact
    numbers ([] until it has succeeded)."""
    if study.get("state") != "succeeded":
        return []
    kind = study.get("kind")
    if kind == "sweep":
        df = sweep_df(study)
        t = study.get("threshold") or {}
        return [Figure("Accuracy against strength", sweep_accuracy_chart(df, study), sweep_table(df, study),
                       "Red diamond: the redundancy threshold, " + t.get("rule", "")),
                Figure("Accuracy against compressed size", sweep_size_chart(sweep_size_df(df)),
                       sweep_size_table(df, study), "Each level's exported file, zipped and as a model.dc container; "
                                                    "up and to the left is better.")]
    if kind == "sensitivity":
        df = sensitivity_df(study)
        return [Figure("Sensitivity of each layer", sensitivity_chart(df, study), sensitivity_table(df),
                       "One layer pruned at a time, the others dense; the dashed line is the baseline, diamonds the "
                       "suggested sparsity of each layer.")]
    if kind == "lottery":
        df = lottery_df(study)
        return [Figure("Test accuracy against weights remaining", lottery_accuracy_chart(df), lottery_table(study),
                       "The winning ticket: magnitude mask, survivors rewound; the controls train as long: reinit keeps "
                       "the mask with new random weights, random mask keeps the size. Round 0 is the dense baseline."),
                Figure("Early-stopping iteration against weights remaining", lottery_stop_chart(df),
                       lottery_stop_table(df), "The iteration of lowest validation loss: earlier means it learns "
                                               "faster.")]
    if kind == "forgetting":
        df = forgetting_df(study)
        t = study.get("test") or {}
        return [Figure("Per-class recall change against the overall accuracy change", forgetting_chart(df, study),
                       forgetting_table(df),
                       f"Below zero: the class lost more than the model did. Red: significant, p < "
                       f"{t.get('p_threshold')} after correction ({t.get('correction_text', '')}); the test: "
                       f"{t.get('statistic', '')}."),
                Figure("Pruning-identified exemplars (PIEs)", pie_chart(pie_df(study)), pie_table(study),
                       "A PIE is a test sample whose modal label differs between the two populations ("
                       + (t.get("modal_label") or "") + ").")]
    if kind == "robustness":
        df = robustness_df(study)
        return [Figure("Accuracy per corruption and severity", robustness_chart(df), robustness_table(study),
                       (study.get("measured") or "") + "; severity 0 is the clean test split."),
                Figure("The gap: what compression costs under each corruption", robustness_gap_chart(df),
                       robustness_gap_table(study), "Baseline minus compressed accuracy, in points; red: the compressed "
                                                    "model loses more.")]
    return []


__all__ = ["Figure", "figures", "forgetting_df", "lottery_df", "pie_df", "robustness_df", "sensitivity_df", "sweep_df",
           "suggestion_table"]
