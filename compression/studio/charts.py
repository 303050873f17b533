"""Tables and charts for the dashboard: pure functions, no Streamlit, no TensorFlow.

Two kinds of functions live here:

* table builders (``*_df``, ``stage_table``): report.json / weights.json / predictions.npz
  data in, a small pandas DataFrame out. They aggregate first (histograms are 60 bins per
  layer per stage, already binned by the engine, ``compression.engine.metrics.histogram``), so a model with
  10 million weights gives the browser as many rows as a model with ten thousand.
* chart builders (``*_chart``): DataFrame in, Altair chart out, every mark with a tooltip.
  Tests call ``chart.to_dict()`` on them.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import altair as alt
import numpy as np
import pandas as pd

from compression.recipe import exporters, figures, methods
from compression.store.runs import tidy_report

KB = 1000.0
HIST_BINS = 60
SHIFT_THRESHOLD = 0.02  # a per-class recall change below this is noise, not a shift

STAGE_COLORS = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d", "#bab0ac"]


def measure_labels() -> dict[str, str]:
    """Size field -> its label, for every declared size figure (the stage's Keras file, then each exporter's)."""
    return {f.field: f.label for f in figures.size_figures()}


def measure_label(field: str) -> str:
    fig = figures.size_figure(field)
    return fig.label if fig else field


def _short(field: str) -> str:
    """A size figure's column stem: "tflite_zip_bytes" -> "tflite_zip"."""
    return field[:-len("_bytes")] if field.endswith("_bytes") else field


# --- small helpers ------------------------------------------------------------------------


def human_bytes(n: float | int | None) -> str:
    if n is None or (isinstance(n, float) and not np.isfinite(n)):
        return "–"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _stage_label(i: int, key: str, variant: str | None = None) -> str:
    if key == "baseline":
        return "0 baseline"
    if key == "final":
        return "final TFLite"
    label = methods.variant_label(key, variant)
    return f"{i} {key} ({label})" if label else f"{i} {key}"


def stage_metrics(report: dict) -> list[tuple[str, str, str | None, dict]]:
    """(key, label, variant, METRICS) for baseline, every stage, and the final TFLite file."""
    report = tidy_report(report)
    out = [("baseline", "0 baseline", None, (report.get("baseline") or {}).get("metrics") or {})]
    for i, st in enumerate(report.get("stages") or [], start=1):
        out.append((st.get("method", f"stage{i}"), _stage_label(i, st.get("method", f"stage{i}"), st.get("variant")),
                    st.get("variant"), st.get("metrics") or {}))
    final = report.get("final")
    if final:
        export = final.get("export")
        out.append(("final", f"final TFLite ({export})" if export else "final TFLite", None, final))
    return out


def _max_unique(metrics: dict) -> float:
    """The most distinct kernel values in any one layer, as clustering sees them (figures.distinct_values)."""
    value = figures.max_distinct(metrics if isinstance(metrics, dict) else {})
    return float(value) if value is not None else np.nan


def _num(x) -> float:
    value = figures.number(x)
    return np.nan if value is None else value


# --- report tables -------------------------------------------------------------------------


def stage_table(report: dict) -> pd.DataFrame:
    """One row per stage: accuracy, parameters, sparsity, distinct values, sizes, latency,
    and each size / latency as a ratio to the baseline (0.25 = a quarter of the baseline)."""
    rows = []
    stages = stage_metrics(report)
    base = stages[0][3]
    for order, (key, label, variant, m) in enumerate(stages):
        row = {
            "order": order, "stage": label, "accuracy": _num(m.get("accuracy")),
            "accuracy_delta": _num(m.get("accuracy")) - _num(base.get("accuracy")),
            "params_nonzero": _num(m.get("params_nonzero")), "sparsity": _num(m.get("sparsity")),
            "unique_values": _max_unique(m),
        }
        for fig in figures.size_figures():  # each ratio is taken against what its declaration says
            value, ref = _num(m.get(fig.field)), _num(base.get(fig.ratio_to))
            row[f"{_short(fig.field)}_kb"] = value / KB
            row[f"{_short(fig.field)}_ratio"] = value / ref if ref and ref > 0 else np.nan
        value, ref = _num(m.get("latency_ms")), _num(base.get("latency_ms"))
        row["latency_ms"], row["latency_ratio"] = value, (value / ref if ref and ref > 0 else np.nan)
        row["latency_spread_ms"] = _num(m.get("latency_spread_ms"))
        row["latency_quiet"] = m.get("latency_quiet") if isinstance(m.get("latency_quiet"), bool) else None
        rows.append(row)
    return pd.DataFrame(rows)


def architecture_df(report: dict) -> pd.DataFrame:
    arch = (tidy_report(report).get("baseline") or {}).get("architecture") or []
    rows = []
    for layer in arch:
        shape = layer.get("output_shape")
        rows.append({"layer": layer.get("name"), "type": layer.get("type"),
                     "output shape": "×".join("?" if d is None else str(d) for d in shape) if isinstance(shape, list)
                     else str(shape), "parameters": int(figures.number(layer.get("params")) or 0)})
    return pd.DataFrame(rows, columns=["layer", "type", "output shape", "parameters"])


def sparsity_df(report: dict) -> pd.DataFrame:
    rows = []
    for order, (key, label, _v, m) in enumerate(stage_metrics(report)):
        for layer in m.get("layers") or []:
            if not isinstance(layer, dict):
                continue
            rows.append({"order": order, "stage": label, "layer": str(layer.get("name")),
                         "sparsity": _num(layer.get("sparsity")), "nonzero": _num(layer.get("nonzero")),
                         "params": _num(layer.get("params")), "unique_values": _num(figures.distinct_values(layer))})
    return pd.DataFrame(rows, columns=["order", "stage", "layer", "sparsity", "nonzero", "params", "unique_values"])


def sizes_df(report: dict) -> pd.DataFrame:
    """Long table: stage x size measure, with the ratio to the baseline."""
    rows = []
    stages = stage_metrics(report)
    base = stages[0][3]
    for order, (key, label, _v, m) in enumerate(stages):
        for fig in figures.size_figures():
            value = _num(m.get(fig.field))
            if np.isnan(value):
                continue
            ref = _num(base.get(fig.ratio_to))
            rows.append({"order": order, "stage": label, "measure": fig.label, "bytes": value, "kb": value / KB,
                         "size": human_bytes(value), "ratio": value / ref if ref else np.nan})
    return pd.DataFrame(rows, columns=["order", "stage", "measure", "bytes", "kb", "size", "ratio"])


def latency_df(report: dict) -> pd.DataFrame:
    rows = []
    stages = stage_metrics(report)
    ref = _num(stages[0][3].get("latency_ms"))
    for order, (key, label, _v, m) in enumerate(stages):
        value = _num(m.get("latency_ms"))
        if not np.isnan(value):
            half = _num(m.get("latency_spread_ms")) / 2
            half = half if np.isfinite(half) else 0.0
            rows.append({"order": order, "stage": label, "latency_ms": value, "ratio": value / ref if ref else np.nan,
                         "low_ms": max(0.0, value - half), "high_ms": value + half})
    return pd.DataFrame(rows, columns=["order", "stage", "latency_ms", "ratio", "low_ms", "high_ms"])


def recall_df(report: dict, predictions: dict | None = None) -> pd.DataFrame:
    """Per-class recall of the baseline and of the final TFLite model, and the shift."""
    report = tidy_report(report)
    names = (report.get("dataset") or {}).get("class_names")
    base = ((report.get("baseline") or {}).get("metrics") or {}).get("per_class_recall")
    final = (report.get("final") or {}).get("per_class_recall")
    if (base is None or final is None) and predictions and {"y_true", "baseline_pred", "final_pred"} <= set(predictions):
        y, b, f = (np.asarray(predictions[k]) for k in ("y_true", "baseline_pred", "final_pred"))
        classes = range(int(max(y.max(), b.max(), f.max())) + 1) if y.size else range(0)
        base = [float(np.mean(b[y == c] == c)) if np.any(y == c) else np.nan for c in classes]
        final = [float(np.mean(f[y == c] == c)) if np.any(y == c) else np.nan for c in classes]
    if not base or not final:
        return pd.DataFrame(columns=["class", "baseline", "compressed", "shift", "direction"])
    n = min(len(base), len(final))
    names = list(names) if names is not None and len(names) >= n else [str(i) for i in range(n)]
    df = pd.DataFrame({"class": [str(c) for c in names[:n]], "baseline": [_num(x) for x in base[:n]],
                       "compressed": [_num(x) for x in final[:n]]})
    df["shift"] = df["compressed"] - df["baseline"]
    df["direction"] = np.where(df["shift"] <= -SHIFT_THRESHOLD, "worse",
                               np.where(df["shift"] >= SHIFT_THRESHOLD, "better", "unchanged"))
    return df


def flip_counts(predictions: dict | None) -> dict:
    """How many test samples changed prediction, over the whole test split (not just the gallery)."""
    if not predictions:
        return {"total": 0, "changed": 0, "now_wrong": 0, "now_right": 0, "still_wrong": 0}
    y, b, f = (np.asarray(predictions.get(k, [])) for k in ("y_true", "baseline_pred", "final_pred"))
    if not (len(y) == len(b) == len(f)):
        return {"total": 0, "changed": 0, "now_wrong": 0, "now_right": 0, "still_wrong": 0}
    changed = b != f
    return {"total": int(len(y)), "changed": int(changed.sum()),
            "now_wrong": int((changed & (b == y)).sum()), "now_right": int((changed & (f == y)).sum()),
            "still_wrong": int((changed & (b != y) & (f != y)).sum())}


def changed_samples(predictions: dict | None, class_names: Sequence[str] | None = None, scale: int = 12,
                    limit: int = 64) -> list[dict]:
    """Test samples whose prediction changed, as nearest-neighbour upscaled uint8 images with captions."""
    if not predictions or "changed_index" not in predictions:
        return []
    idx = np.asarray(predictions["changed_index"]).astype(int)[:limit]
    images = predictions.get("changed_images")
    y, b, f = (np.asarray(predictions.get(k, [])) for k in ("y_true", "baseline_pred", "final_pred"))
    names = [str(c) for c in (class_names if class_names is not None else predictions.get("class_names", []))]

    def name(c):
        c = int(c)
        return names[c] if 0 <= c < len(names) else str(c)

    out = []
    for j, i in enumerate(idx):
        if not (0 <= i < len(y) and i < len(b) and i < len(f)):
            continue
        img = None
        if images is not None and j < len(images):
            img = np.asarray(images[j])
            if img.ndim == 3 and img.shape[-1] == 1:
                img = img[..., 0]
            if img.dtype != np.uint8:
                lo, hi = float(img.min()), float(img.max())
                img = ((img - lo) / (hi - lo + 1e-9) * 255).astype(np.uint8)
            s = max(1, scale if max(img.shape[:2]) <= 16 else scale // 4)
            img = np.kron(img, np.ones((s, s) + (1,) * (img.ndim - 2), dtype=np.uint8)) if s > 1 else img
        truth, before, after = int(y[i]), int(b[i]), int(f[i])
        kind = "now wrong" if before == truth else ("now right" if after == truth else "still wrong")
        out.append({"index": int(i), "image": img, "true": name(truth), "baseline": name(before),
                    "compressed": name(after), "kind": kind,
                    "caption": f"#{i}: true {name(truth)}, baseline {name(before)} → compressed {name(after)}"})
    return out


# --- weights.json tables ------------------------------------------------------------------


def weight_stage_labels(weights: dict) -> list[str]:
    stages = weights.get("stages") or []
    return [_stage_label(i, s.get("stage", f"stage{i}")) for i, s in enumerate(stages)]


def weight_layers(weights: dict) -> list[str]:
    names: list[str] = []
    for stage in weights.get("stages") or []:
        for layer in stage.get("layers") or []:
            if layer.get("name") not in names:
                names.append(layer.get("name"))
    return names


def _layer_entries(weights: dict, layer: str, stages: Iterable[str] | None):
    wanted = set(stages) if stages is not None else None
    for i, (label, stage) in enumerate(zip(weight_stage_labels(weights), weights.get("stages") or [])):
        if wanted is not None and label not in wanted and stage.get("stage") not in wanted:
            continue
        for entry in stage.get("layers") or []:
            if entry.get("name") == layer:
                yield i, label, entry


def histogram_df(weights: dict, layer: str, stages: Iterable[str] | None = None) -> pd.DataFrame:
    """60 bins per stage for one layer (nonzero weights only), long format."""
    rows = []
    for order, label, e in _layer_entries(weights, layer, stages):
        edges, counts = e.get("bin_edges") or [], e.get("counts") or []
        total = max(1, int(e.get("total") or sum(counts) + int(e.get("zeros") or 0)))
        for k, c in enumerate(counts[: max(0, len(edges) - 1)]):
            rows.append({"order": order, "stage": label, "bin_start": float(edges[k]), "bin_end": float(edges[k + 1]),
                         "count": int(c), "share": int(c) / total})
    return pd.DataFrame(rows, columns=["order", "stage", "bin_start", "bin_end", "count", "share"])


def zeros_df(weights: dict, layer: str, stages: Iterable[str] | None = None) -> pd.DataFrame:
    rows = []
    for order, label, e in _layer_entries(weights, layer, stages):
        total = int(e.get("total") or 0)
        zeros = int(e.get("zeros") or 0)
        rows.append({"order": order, "stage": label, "zeros": zeros, "total": total,
                     "share": zeros / total if total else 0.0,
                     "label": f"{zeros / total:.0%}" if total else "0%"})
    return pd.DataFrame(rows, columns=["order", "stage", "zeros", "total", "share", "label"])


def centroids_df(weights: dict, layer: str, stage: str) -> pd.DataFrame:
    """Distinct values of one layer at one stage (the centroids of a clustered layer), with counts."""
    for _o, _label, e in _layer_entries(weights, layer, [stage]):
        values, counts = e.get("values"), e.get("value_counts")
        if not values or not counts:
            break
        total = max(1, int(e.get("total") or sum(counts)))
        df = pd.DataFrame({"value": [float(v) for v in values], "count": [int(c) for c in counts]})
        df["share"] = df["count"] / total
        df["kind"] = np.where(df["value"] == 0, "zero (pruned)", "centroid")
        return df
    return pd.DataFrame(columns=["value", "count", "share", "kind"])


def clustered_stages(weights: dict, layer: str) -> list[str]:
    """Stage labels where the layer has few distinct values (clustered or quantized)."""
    return [label for _o, label, e in _layer_entries(weights, layer, None) if e.get("values")]


# --- charts ---------------------------------------------------------------------------------


def _stage_scale(labels: Sequence[str]) -> alt.Scale:
    return alt.Scale(domain=list(labels), range=[STAGE_COLORS[i % len(STAGE_COLORS)] for i in range(len(labels))])


def _ordered(df: pd.DataFrame, col: str = "stage") -> list[str]:
    if df.empty:
        return []
    return list(df.sort_values("order")[col].drop_duplicates())


def weight_histogram_chart(hist: pd.DataFrame, zeros: pd.DataFrame, log_scale: bool = False,
                           title: str = "Weight distribution") -> alt.HConcatChart:
    """Layered histograms of the nonzero weights per stage, plus a bar per stage for the exact zeros."""
    stages = _ordered(hist) or _ordered(zeros)
    color = alt.Color("stage:N", scale=_stage_scale(stages), title="stage", legend=alt.Legend(orient="top"))
    data = hist[hist["count"] > 0] if log_scale else hist
    y_scale = alt.Scale(type="log") if log_scale else alt.Scale()
    bars = alt.Chart(data, title=alt.Title(title, subtitle="nonzero weights, 60 bins; overlapping stages are see-through")).mark_bar(
        opacity=0.55, binSpacing=0).encode(
        x=alt.X("bin_start:Q", title="weight value"), x2="bin_end:Q",
        y=alt.Y("count:Q", stack=None, scale=y_scale, title="weights per bin" + (" (log)" if log_scale else "")),
        y2=alt.datum(0.7 if log_scale else 0),
        color=color,
        tooltip=[alt.Tooltip("stage:N"), alt.Tooltip("bin_start:Q", title="from", format=".4f"),
                 alt.Tooltip("bin_end:Q", title="to", format=".4f"), alt.Tooltip("count:Q", title="weights", format=","),
                 alt.Tooltip("share:Q", title="share of layer", format=".2%")],
    ).properties(width=520, height=300)
    zero_base = alt.Chart(zeros, title=alt.Title("Exact zeros", subtitle="pruned weights")).encode(
        x=alt.X("stage:N", sort=stages, title=None, axis=alt.Axis(labelAngle=-40)),
        y=alt.Y("share:Q", title="share of weights that are 0", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        tooltip=[alt.Tooltip("stage:N"), alt.Tooltip("zeros:Q", title="zero weights", format=","),
                 alt.Tooltip("total:Q", title="all weights", format=","),
                 alt.Tooltip("share:Q", title="share", format=".1%")],
    )
    zero_chart = (zero_base.mark_bar().encode(color=alt.Color("stage:N", scale=_stage_scale(stages), legend=None))
                  + zero_base.mark_text(dy=-6, fontSize=11).encode(text="label:N")).properties(width=max(90, 45 * len(stages)), height=300)
    return alt.hconcat(bars, zero_chart).resolve_scale(color="shared")


def centroid_chart(hist: pd.DataFrame, centroids: pd.DataFrame, title: str = "Cluster centroids") -> alt.LayerChart:
    """The weight histogram of one stage in grey with a rule per distinct value (centroid);
    the rule's thickness and the tooltip give how many weights share that value."""
    base = alt.Chart(hist).mark_bar(color="#c7c7c7", binSpacing=0).encode(
        x=alt.X("bin_start:Q", title="weight value"), x2="bin_end:Q",
        y=alt.Y("count:Q", title="weights per bin"), y2=alt.datum(0),
        tooltip=[alt.Tooltip("bin_start:Q", title="from", format=".4f"), alt.Tooltip("bin_end:Q", title="to", format=".4f"),
                 alt.Tooltip("count:Q", title="weights", format=",")],
    )
    rules = alt.Chart(centroids).mark_rule(opacity=0.85).encode(
        x="value:Q",
        color=alt.Color("kind:N", scale=alt.Scale(domain=["centroid", "zero (pruned)"], range=["#e45756", "#4c78a8"]),
                        title=None, legend=alt.Legend(orient="top")),
        strokeWidth=alt.StrokeWidth("count:Q", scale=alt.Scale(range=[1.5, 6]), legend=None),
        tooltip=[alt.Tooltip("value:Q", title="centroid", format=".5f"), alt.Tooltip("count:Q", title="weights", format=","),
                 alt.Tooltip("share:Q", title="share of layer", format=".2%"), alt.Tooltip("kind:N")],
    )
    n = int((centroids["kind"] == "centroid").sum()) if not centroids.empty else 0
    return alt.layer(base, rules, title=alt.Title(title, subtitle=f"{n} distinct nonzero values (red lines; thicker = more weights)")
                     ).properties(width=620, height=320)


def sparsity_chart(df: pd.DataFrame) -> alt.Chart:
    stages = _ordered(df)
    layers = list(dict.fromkeys(df["layer"]))
    return alt.Chart(df, title=alt.Title("Sparsity per layer", subtitle="share of each layer's kernel that is exactly zero, after each stage")).mark_bar().encode(
        y=alt.Y("layer:N", title=None, sort=layers),
        yOffset=alt.YOffset("stage:N", sort=stages),
        x=alt.X("sparsity:Q", title="sparsity (share of zero weights)", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        color=alt.Color("stage:N", scale=_stage_scale(stages), title=None, legend=alt.Legend(orient="bottom", columns=3, labelLimit=260)),
        tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("stage:N"), alt.Tooltip("sparsity:Q", format=".1%"),
                 alt.Tooltip("nonzero:Q", title="nonzero params", format=","),
                 alt.Tooltip("params:Q", title="params", format=","),
                 alt.Tooltip("unique_values:Q", title="distinct kernel values", format=",")],
    ).properties(height=alt.Step(9), width=520)


def size_chart(df: pd.DataFrame, title: str = "Model size per stage") -> alt.Chart:
    stages = _ordered(df)
    measures = [f.label for f in figures.size_figures()]
    colors = [f.color for f in figures.size_figures()]
    return alt.Chart(df, title=alt.Title(title, subtitle="zipped sizes show what pruning and clustering save on disk")).mark_bar().encode(
        y=alt.Y("stage:N", sort=stages, title=None, axis=alt.Axis(labelLimit=260)),
        yOffset=alt.YOffset("measure:N", sort=measures),
        x=alt.X("kb:Q", title="size (KB)"),
        color=alt.Color("measure:N", sort=measures, title=None,
                        scale=alt.Scale(domain=measures, range=colors),
                        legend=alt.Legend(orient="bottom", labelLimit=0)),
        tooltip=[alt.Tooltip("stage:N"), alt.Tooltip("measure:N", title="file"), alt.Tooltip("size:N"),
                 alt.Tooltip("bytes:Q", format=","), alt.Tooltip("ratio:Q", title="× baseline", format=".2f")],
    ).properties(height=alt.Step(10))


def latency_chart(df: pd.DataFrame, title: str = "Latency per stage") -> alt.LayerChart:
    stages = _ordered(df)
    if "low_ms" not in df:
        df = df.assign(low_ms=df["latency_ms"], high_ms=df["latency_ms"])
    base = alt.Chart(df).encode(
        y=alt.Y("stage:N", sort=stages, title=None, axis=alt.Axis(labelLimit=260)),
        x=alt.X("latency_ms:Q", title="latency (ms)"),
        tooltip=[alt.Tooltip("stage:N"), alt.Tooltip("latency_ms:Q", title="ms", format=".3f"),
                 alt.Tooltip("ratio:Q", title="× baseline", format=".2f")])
    bars = base.mark_bar(color="#54a24b")
    spread = base.mark_rule(color="#1f2430", strokeWidth=1.5).encode(x="low_ms:Q", x2="high_ms:Q")
    text = base.mark_text(align="left", dx=4, fontSize=11).encode(x="high_ms:Q", text=alt.Text("latency_ms:Q", format=".3f"))
    return alt.layer(bars, spread, text, title=alt.Title(
        title, subtitle="median TFLite inference time, batch of 1; the black line spans the timing's interquartile range")
    ).properties(height=alt.Step(30))


def recall_shift_chart(df: pd.DataFrame, title: str = "Per-class recall: baseline vs compressed") -> alt.LayerChart:
    """A dumbbell per class: grey dot the baseline, coloured dot the compressed model; the line
    between them is red where the class lost recall and green where it gained."""
    classes = list(df["class"])
    long = df.melt(id_vars=["class", "shift", "direction"], value_vars=["baseline", "compressed"],
                   var_name="model", value_name="recall")
    shift_color = alt.Scale(domain=["worse", "unchanged", "better"], range=["#d62728", "#bbbbbb", "#2ca02c"])
    tooltip = [alt.Tooltip("class:N"), alt.Tooltip("baseline:Q", format=".1%"), alt.Tooltip("compressed:Q", format=".1%"),
               alt.Tooltip("shift:Q", title="change", format="+.1%")]
    y = alt.Y("class:N", sort=classes, title="class")
    lo, x_title = recall_axis(df)
    lines = alt.Chart(df).mark_rule(strokeWidth=4).encode(
        y=y, x=alt.X("baseline:Q", title=x_title, axis=alt.Axis(format="%"), scale=alt.Scale(domain=[lo, 1.0])),
        x2="compressed:Q", color=alt.Color("direction:N", scale=shift_color, title="recall change",
                                           legend=alt.Legend(orient="bottom")), tooltip=tooltip)
    dots = alt.Chart(long).mark_point(filled=True, size=90).encode(
        y=y, x="recall:Q",
        shape=alt.Shape("model:N", scale=alt.Scale(domain=["baseline", "compressed"], range=["circle", "diamond"]), title="model",
                        legend=alt.Legend(orient="bottom")),
        fill=alt.Fill("model:N", scale=alt.Scale(domain=["baseline", "compressed"], range=["#7f7f7f", "#1f77b4"]),
                      title="model", legend=alt.Legend(orient="bottom")),  # one legend with the shape's
        stroke=alt.value("white"),
        tooltip=[alt.Tooltip("class:N"), alt.Tooltip("model:N"), alt.Tooltip("recall:Q", format=".1%"),
                 alt.Tooltip("shift:Q", title="change", format="+.1%")])
    worst = df[df["direction"] != "unchanged"]
    labels = alt.Chart(worst).mark_text(align="left", dx=10, fontSize=11).encode(
        y=y, x=alt.X("max_recall:Q"), text=alt.Text("shift:Q", format="+.1%"),
        color=alt.condition("datum.direction == 'worse'", alt.value("#d62728"), alt.value("#2ca02c")), tooltip=tooltip,
    ).transform_calculate(max_recall="max(datum.baseline, datum.compressed)")
    return alt.layer(lines, dots, *([labels] if not worst.empty else []), title=alt.Title(
        title, subtitle=f"red: the compressed model finds the class less often (by ≥{SHIFT_THRESHOLD:.0%}); green: more often")
    ).resolve_scale(color="independent").properties(height=alt.Step(26), width=520,
                                                    padding={"left": 5, "top": 5, "bottom": 5, "right": 60})


def recall_axis(df: pd.DataFrame) -> tuple[float, str]:
    """The recall axis' lower end (a multiple of 10%, below every dot) and a title that says where it starts."""
    values = pd.concat([df["baseline"], df["compressed"]]).dropna() if not df.empty else pd.Series(dtype=float)
    low = float(values.min()) if len(values) else 0.0
    lo = max(0.0, np.floor((low - 0.02) * 10) / 10)
    title = "recall (share of the class found)"
    return lo, title if lo <= 0 else f"{title}; axis starts at {lo:.0%}"


# --- display tables (strings, a dash where a figure does not exist) ------------------------

DASH = "–"


def _fmt(value, fmt: str) -> str:
    v = _num(value) if not isinstance(value, (np.floating, np.integer)) else float(value)
    return DASH if v is None or not np.isfinite(v) else format(v, fmt)


def _size_cell(kb, ratio, show_ratio: bool) -> str:
    if not np.isfinite(_num(kb) if _num(kb) is not None else np.nan):
        return DASH
    text = human_bytes(float(kb) * KB)
    r = _num(ratio)
    return f"{text} · {r:.2f}×" if show_ratio and r is not None and np.isfinite(r) else text


def latency_same(ms, spread, ref_ms, ref_spread) -> bool:
    """Whether two latencies differ by no more than their timings' own spread (interquartile ranges):
    then the difference is noise and is shown as "same", never as a saving."""
    v, sp, ref, ref_sp = _num(ms), _num(spread), _num(ref_ms), _num(ref_spread)
    if not (np.isfinite(v) and np.isfinite(ref) and np.isfinite(sp)):
        return False
    return abs(v - ref) <= sp + (ref_sp if np.isfinite(ref_sp) else 0.0)


def latency_cell(ms, spread, ratio, ref_ms, ref_spread, first: bool, versus: str = "") -> str:
    """Latency with its spread; against the baseline a ratio only where the difference is larger
    than the two timings' own spread, else "same"."""
    v = _num(ms)
    if not np.isfinite(v):
        return DASH
    sp = _num(spread)
    text = f"{v:.3f} ms" + (f" ±{sp / 2:.3f}" if np.isfinite(sp) else "")
    if first:
        return text
    r = _num(ratio)
    if latency_same(ms, spread, ref_ms, ref_spread):
        return f"{text} · same{versus}"
    return f"{text} · {r:.2f}×{versus}" if np.isfinite(r) else text


STAGE_QUALITY_COLUMNS = ["stage", "accuracy", "accuracy_delta", "params_nonzero", "sparsity", "unique_values", "latency"]


def stage_size_columns() -> list[str]:
    """The stage table's size columns (one per declared size figure), after the stage: the second of the two
    tables the Results page shows, so that each fits a laptop screen whole."""
    return ["stage"] + [_short(f.field) for f in figures.size_figures()]


COMPARE_RESULT_COLUMNS = ["alarm", "run", "accuracy", "baseline_accuracy", "latency", "sparsity", "unique_values",
                          "pareto"]


def compare_size_columns() -> list[str]:
    """The Compare table's second half: how each run was made and its sizes, the shipped file first."""
    return ["run", "steps", "export"] + [_short(f.field) for f in compare_figures()]


def stage_columns() -> list[str]:
    """stage_display's columns: the fixed ones, then one per declared size figure, then latency."""
    return (["stage", "accuracy", "accuracy_delta", "params_nonzero", "sparsity", "unique_values"]
            + [_short(f.field) for f in figures.size_figures()] + ["latency"])


def stage_display(table: pd.DataFrame) -> pd.DataFrame:
    """stage_table as text for st.dataframe: no 'None'/'nan' (a dash), sizes and latency with
    their ratio to the baseline in the same cell, so every column fits a laptop screen."""
    rows = []
    table = table.reset_index(drop=True)
    base = table.iloc[0] if len(table) else None
    for i, r in table.iterrows():
        first = i == 0
        row = {
            "stage": r["stage"], "accuracy": _fmt(r["accuracy"], ".2%"),
            "accuracy_delta": DASH if first else _fmt(r["accuracy_delta"] * 100, "+.2f"),
            "params_nonzero": _fmt(r["params_nonzero"], ",.0f"), "sparsity": _fmt(r["sparsity"], ".1%"),
            "unique_values": _fmt(r["unique_values"], ",.0f"),
        }
        for fig in figures.size_figures():
            key = _short(fig.field)
            # a figure of the exported file only is compared with the baseline on every row (the paper's way)
            row[key] = _size_cell(r.get(f"{key}_kb", np.nan), r.get(f"{key}_ratio", np.nan), not first or not fig.stages)
        row["latency"] = latency_cell(r.get("latency_ms"), r.get("latency_spread_ms"), r.get("latency_ratio"),
                                      base.get("latency_ms") if base is not None else None,
                                      base.get("latency_spread_ms") if base is not None else None, first)
        rows.append(row)
    return pd.DataFrame(rows, columns=stage_columns())


def short_label(name: str, max_len: int = 22) -> str:
    """A run name short enough for an axis or a point label; the full name goes in the tooltip."""
    name = str(name)
    return name if len(name) <= max_len else name[: max_len - 1].rstrip() + "…"


# --- comparing runs --------------------------------------------------------------------------


def run_summary(label: str, report: dict) -> dict:
    """One run's final numbers (the exported file) with the baseline's for reference; the sizes are
    every declared size figure (a stage-level one, the Keras file, from the last stage)."""
    report = tidy_report(report)
    base = (report.get("baseline") or {}).get("metrics") or {}
    final = report.get("final") or {}
    stages = [s for s in report.get("stages") or [] if isinstance(s, dict)]
    last = (stages[-1].get("metrics") if stages else base) or {}
    recipe = report.get("recipe") or {}
    steps = [s.get("method", "?") if isinstance(s, dict) else "?" for s in recipe.get("steps") or []]
    out = {
        "run": label, "steps": " → ".join(str(s) for s in steps) or "baseline only",
        "export": final.get("export") or recipe.get("export"),
        "accuracy": _num(final.get("accuracy")), "baseline_accuracy": _num(base.get("accuracy")),
        "latency_ms": _num(final.get("latency_ms")), "latency_spread_ms": _num(final.get("latency_spread_ms")),
        "baseline_latency_ms": _num(base.get("latency_ms")),
        "baseline_latency_spread_ms": _num(base.get("latency_spread_ms")),
        "sparsity": _num(final.get("sparsity")), "unique_values": _max_unique(final),
    }
    exported = {f.field for f in figures.size_figures(exported_only=True)}
    for fig in figures.size_figures():
        out[fig.field] = _num((final if fig.field in exported else last).get(fig.field))
    return out


def compare_df(runs: Sequence[tuple[str, dict]]) -> pd.DataFrame:
    df = pd.DataFrame([run_summary(label, rep) for label, rep in runs])
    if df.empty:
        return df
    df["label"] = _unique_short(df["run"].tolist())
    df["pareto"] = pareto_mask(df[PARETO_SIZE].to_numpy(float), df["accuracy"].to_numpy(float))
    return df


PARETO_SIZE = "tflite_zip_bytes"  # the default size the frontier is drawn against


def compare_columns() -> list[str]:
    """compare_display's columns: the run, the shipped file's sizes first (exporters in rank order), the
    stage's Keras file last."""
    sizes = [_short(f.field) for f in figures.size_figures(exported_only=True)] + [_short(figures.KERAS_ZIP.field)]
    return (["alarm", "run", "steps", "export", "accuracy", "baseline_accuracy"] + sizes
            + ["latency", "sparsity", "unique_values", "pareto"])


def compare_display(df: pd.DataFrame, marks: Sequence[str] | None = None) -> pd.DataFrame:
    """compare_df as text for st.dataframe: a dash where a run has no such figure (a baseline-only
    run has no Keras file of a last stage), and the health mark of each run first."""
    out = {
        "alarm": list(marks) if marks is not None else [""] * len(df),
        "run": df["run"], "steps": df["steps"], "export": df["export"].fillna(DASH),
        "accuracy": [_fmt(v, ".2%") for v in df["accuracy"]],
        "baseline_accuracy": [_fmt(v, ".2%") for v in df["baseline_accuracy"]],
    }
    for fig in figures.size_figures():
        out[_short(fig.field)] = [human_bytes(v) for v in df[fig.field]] if fig.field in df else [DASH] * len(df)
    out.update({
        "latency": [latency_cell(r["latency_ms"], r.get("latency_spread_ms"),
                                 _num(r["latency_ms"]) / _num(r.get("baseline_latency_ms"))
                                 if _num(r.get("baseline_latency_ms")) else np.nan,
                                 r.get("baseline_latency_ms"), r.get("baseline_latency_spread_ms"), False)
                    for _, r in df.iterrows()],
        "sparsity": [_fmt(v, ".1%") for v in df["sparsity"]],
        "unique_values": [_fmt(v, ",.0f") for v in df["unique_values"]],
        "pareto": df["pareto"].astype(bool),
    })
    return pd.DataFrame(out, columns=compare_columns())


def _unique_short(names: list[str]) -> list[str]:
    out, seen = [], {}
    for n in names:
        s = short_label(n)
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s} #{seen[s]}")
    return out


def pareto_mask(size: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """True where no other run is both at least as small and at least as accurate (and better in one)."""
    size, accuracy = np.asarray(size, float), np.asarray(accuracy, float)
    ok = np.isfinite(size) & np.isfinite(accuracy)
    mask = np.zeros(len(size), dtype=bool)
    for i in np.where(ok)[0]:
        dominated = ok & (size <= size[i]) & (accuracy >= accuracy[i]) & ((size < size[i]) | (accuracy > accuracy[i]))
        mask[i] = not dominated.any()
    return mask


def compare_figures() -> list:
    """The size figures Compare shows, the shipped file first and the stage's Keras file last."""
    return figures.size_figures(exported_only=True) + [figures.KERAS_ZIP]


def compare_sizes_df(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in df.iterrows():
        for fig in compare_figures():
            v = r.get(fig.field)
            if v is not None and np.isfinite(v):
                rows.append({"run": r["run"], "label": r.get("label", short_label(r["run"])), "measure": fig.label,
                             "bytes": float(v), "kb": float(v) / KB, "size": human_bytes(v)})
    return pd.DataFrame(rows, columns=["run", "label", "measure", "bytes", "kb", "size"])


def compare_size_chart(sizes: pd.DataFrame) -> alt.Chart:
    if "label" not in sizes:
        sizes = sizes.assign(label=[short_label(r) for r in sizes["run"]])
    runs = list(dict.fromkeys(sizes["label"]))
    measures = [f.label for f in compare_figures()]
    colors = [f.color for f in compare_figures()]
    subtitle = "the shipped file (" + ", ".join(measures[:-1]) + "), then the last stage's Keras file zipped"
    return alt.Chart(sizes, title=alt.Title("Size per run", subtitle=subtitle)).mark_bar().encode(
        y=alt.Y("label:N", sort=runs, title=None, axis=alt.Axis(labelLimit=170)),
        yOffset=alt.YOffset("measure:N", sort=measures),
        x=alt.X("kb:Q", title="size (KB)"),
        color=alt.Color("measure:N", title=None, scale=alt.Scale(domain=measures, range=colors),
                        legend=alt.Legend(orient="top", direction="horizontal", labelLimit=0)),
        tooltip=[alt.Tooltip("run:N"), alt.Tooltip("measure:N", title="file"), alt.Tooltip("size:N"),
                 alt.Tooltip("bytes:Q", format=",")],
    ).properties(height=alt.Step(10))


def compare_latency_chart(df: pd.DataFrame) -> alt.LayerChart:
    if "label" not in df:
        df = df.assign(label=[short_label(r) for r in df["run"]])
    half = (df["latency_spread_ms"] / 2).fillna(0.0) if "latency_spread_ms" in df else 0.0
    df = df[df["latency_ms"].notna()].assign(low_ms=(df["latency_ms"] - half).clip(lower=0),
                                             high_ms=df["latency_ms"] + half)
    base = alt.Chart(df).encode(
        y=alt.Y("label:N", sort=list(df["label"]), title=None, axis=alt.Axis(labelLimit=170)),
        x=alt.X("latency_ms:Q", title="latency (ms)"),
        tooltip=[alt.Tooltip("run:N"), alt.Tooltip("latency_ms:Q", title="ms", format=".3f"), alt.Tooltip("steps:N")])
    return alt.layer(base.mark_bar(color="#54a24b"),
                     base.mark_rule(color="#1f2430", strokeWidth=1.5).encode(x="low_ms:Q", x2="high_ms:Q"),
                     base.mark_text(align="left", dx=4, fontSize=11).encode(x="high_ms:Q",
                                                                            text=alt.Text("latency_ms:Q", format=".3f")),
                     title=alt.Title("Latency per run", subtitle="median TFLite inference time, batch of 1; the black "
                                                                 "line spans the timing's interquartile range")
                     ).properties(height=alt.Step(30))


PARETO_W, PARETO_H = 560, 320
LABEL_CHAR_PX, LABEL_H_PX = 6.6, 13  # an 11 px label's average character width and its height


def pareto_label_layout(kb: np.ndarray, acc: np.ndarray, labels: Sequence[str], x_dom: tuple[float, float],
                        y_dom: tuple[float, float], width: int = PARETO_W, height: int = PARETO_H) -> tuple[list, list]:
    """Where each point's label goes so that no two labels overlap and none leaves the plot: (the label's
    accuracy, 'left' or 'right' of its point) per point. Points are placed in pixels through the chart's own
    (fixed) scales, then each label takes the first free slot above or below its point."""
    lx0, lx1 = np.log10(x_dom[0]), np.log10(x_dom[1])
    px = (np.log10(np.maximum(kb, x_dom[0])) - lx0) / (lx1 - lx0) * width
    py = (1 - (acc - y_dom[0]) / (y_dom[1] - y_dom[0])) * height
    placed: list[tuple[float, float, float, float]] = []
    points = [(x - 6, y - 6, x + 6, y + 6) for x, y in zip(px, py) if np.isfinite(x) and np.isfinite(y)]
    out_y, out_side = [np.nan] * len(kb), ["left"] * len(kb)
    for i in np.argsort(py, kind="stable"):
        if not (np.isfinite(px[i]) and np.isfinite(py[i])):
            continue
        w = LABEL_CHAR_PX * len(str(labels[i])) + 4
        side = "right" if px[i] + 9 + w > width else "left"  # a label that would leave on the right goes left
        x0 = px[i] - 9 - w if side == "right" else px[i] + 9
        for off in [-6] + [d for k in range(1, 12) for d in (-6 - k * LABEL_H_PX, -6 + k * LABEL_H_PX)]:
            box = (x0, py[i] + off - LABEL_H_PX / 2, x0 + w, py[i] + off + LABEL_H_PX / 2)
            if box[1] < 0 or box[3] > height:
                continue
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed + points):
                break
        placed.append(box)
        out_y[i] = y_dom[0] + (1 - (box[1] + box[3]) / 2 / height) * (y_dom[1] - y_dom[0])
        out_side[i] = side
    return out_y, out_side


def pareto_chart(df: pd.DataFrame, size_field: str = PARETO_SIZE) -> alt.LayerChart:
    """Accuracy against compressed size; the runs no other run beats on both are joined by the frontier.
    Labels are laid out so that none overlaps another or a point (``pareto_label_layout``)."""
    data = df.assign(kb=df[size_field] / KB, size=[human_bytes(v) for v in df[size_field]],
                     status=np.where(df["pareto"], "on the frontier", "dominated"))
    if "label" not in data:
        data = data.assign(label=[short_label(r) for r in data["run"]])
    ok = data[(data["kb"] > 0) & data["accuracy"].notna()]
    kb, acc = ok["kb"].to_numpy(float), ok["accuracy"].to_numpy(float)
    x_dom = (float(kb.min()) / 1.25, float(kb.max()) * 1.25) if len(ok) else (1.0, 10.0)
    lo, hi = (float(acc.min()), float(acc.max())) if len(ok) else (0.0, 1.0)
    pad = max(0.01, (hi - lo) * 0.15)
    y_dom = (max(0.0, lo - pad), min(1.0, hi + pad) if hi + pad <= 1.0 else hi + pad)
    tooltip = [alt.Tooltip("run:N"), alt.Tooltip("steps:N"), alt.Tooltip("accuracy:Q", format=".2%"),
               alt.Tooltip("size:N", title=measure_label(size_field)),
               alt.Tooltip("latency_ms:Q", title="latency (ms)", format=".3f"), alt.Tooltip("status:N")]
    x = alt.X("kb:Q", title=f"{measure_label(size_field)} size (KB, log)",
              scale=alt.Scale(type="log", domain=list(x_dom), nice=False))
    y_scale = alt.Scale(domain=list(y_dom), nice=False, zero=False)
    y = alt.Y("accuracy:Q", title="test accuracy", scale=y_scale, axis=alt.Axis(format="%"))
    layers = [alt.Chart(ok[ok["pareto"]].sort_values("kb")).mark_line(strokeDash=[6, 3], color="#e45756").encode(
        x=x, y=y, order="kb:Q", tooltip=tooltip)] if ok["pareto"].any() else []
    layers.append(alt.Chart(ok).mark_circle(size=140, opacity=0.9).encode(
        x=x, y=y, color=alt.Color("status:N", scale=alt.Scale(domain=["on the frontier", "dominated"],
                                                             range=["#e45756", "#9e9e9e"]),
                                  title=None, legend=alt.Legend(orient="top")), tooltip=tooltip))
    label_y, side = pareto_label_layout(kb, acc, list(ok["label"]), x_dom, y_dom)
    labelled = ok.assign(label_y=label_y, side=side)
    for where, align, dx in (("left", "left", 9), ("right", "right", -9)):
        part = labelled[labelled["side"] == where]
        if not part.empty:
            layers.append(alt.Chart(part).mark_text(align=align, dx=dx, baseline="middle", fontSize=11).encode(
                x=x, y=alt.Y("label_y:Q", scale=y_scale), text="label:N", tooltip=tooltip))
    return alt.layer(*layers, title=alt.Title(
        "Accuracy against compressed size", subtitle="up and to the left is better; the dashed line is the Pareto frontier")
    ).properties(height=PARETO_H, width=PARETO_W,
                 autosize=alt.AutoSizeParams(type="pad"))  # the plot itself is 560x320: the label layout counts on it


def recall_matrix_df(runs: Sequence[tuple[str, dict]]) -> pd.DataFrame:
    rows = []
    for label, report in runs:
        rec = recall_df(report)
        for _, r in rec.iterrows():
            rows.append({"run": label, "class": r["class"], "recall": r["compressed"], "baseline": r["baseline"],
                         "shift": r["shift"]})
    return pd.DataFrame(rows, columns=["run", "class", "recall", "baseline", "shift"])


def recall_heatmap(df: pd.DataFrame) -> alt.LayerChart:
    runs = list(dict.fromkeys(df["run"]))
    classes = list(dict.fromkeys(df["class"]))
    tooltip = [alt.Tooltip("run:N"), alt.Tooltip("class:N"), alt.Tooltip("recall:Q", format=".1%"),
               alt.Tooltip("baseline:Q", title="its baseline", format=".1%"), alt.Tooltip("shift:Q", title="change", format="+.1%")]
    if "label" not in df:
        df = df.assign(label=[short_label(r) for r in df["run"]])
    runs = list(dict.fromkeys(df["label"]))
    base = alt.Chart(df).encode(x=alt.X("class:N", sort=classes, title="class", axis=alt.Axis(labelAngle=0)),
                                y=alt.Y("label:N", sort=runs, title=None, axis=alt.Axis(labelLimit=170)), tooltip=tooltip)
    cells = base.mark_rect(stroke="white").encode(color=alt.Color(
        "shift:Q", title="change vs its baseline", legend=alt.Legend(format="+.0%", orient="bottom", gradientLength=220),
        scale=alt.Scale(scheme="redblue", domainMid=0, domain=[-0.2, 0.2], clamp=True)))
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("recall:Q", format=".0%"),
        color=alt.condition("abs(datum.shift) > 0.12", alt.value("white"), alt.value("#1f2430")))
    return alt.layer(cells, text, title=alt.Title("Per-class recall across runs",
                                                  subtitle="number: recall of the exported model; colour: change against its own baseline (red = worse)")
                     ).properties(height=alt.Step(34), width=alt.Step(56))


# --- an exporter's own size accounting: where the bits go -----------------------------------------


def accountings(report: dict) -> list[tuple]:
    """(exporter declaration, its accounting dict) for every exporter that declares an accounting and
    whose accounting this report holds, in rank order."""
    final = tidy_report(report).get("final")
    out = []
    for e in exporters.all_exporters():
        acc = (final or {}).get(e.accounting.field) if e.accounting else None
        if isinstance(acc, dict) and isinstance(acc.get("tensors"), list) and acc["tensors"]:
            out.append((e, acc))
    return out


def accounting_table(spec, accounting: dict) -> pd.DataFrame:
    """One row per kernel tensor (as in Deep Compression's Tables 2-3) plus one for the rest of the file.

    Columns: layer, the declared columns, each part's bytes, bytes, raw_bytes and ratio. ``layer`` is
    the Keras layer the one matcher found, else the tensor's name.
    """
    extra = [field for _label, field, _fmt in spec.columns]
    parts = [field for _label, field, _color in spec.parts]
    cols = ["layer", *extra, *parts, "bytes", "raw_bytes", "ratio"]
    rows = []
    for t in accounting.get("tensors") or []:
        if not isinstance(t, dict):
            continue
        row = {c: t.get(c) for c in cols}
        row["layer"] = str(t.get("layer") or t.get("tensor") or "?")
        raw, size = _num(t.get("raw_bytes")), _num(t.get("bytes"))
        row["ratio"] = raw / size if np.isfinite(raw) and np.isfinite(size) and size > 0 else None
        rows.append(row)
    rest_label, rest_field, _color = spec.rest
    rest = _num(accounting.get(rest_field))
    rest_raw = _num(accounting.get(f"{rest_field[:-len('_bytes')]}_raw_bytes" if rest_field.endswith("_bytes") else ""))
    rest_row = {c: None for c in cols}
    rest_row.update({"layer": rest_label, "bytes": None if np.isnan(rest) else rest,
                     "raw_bytes": None if np.isnan(rest_raw) else rest_raw,
                     "ratio": rest_raw / rest if np.isfinite(rest_raw) and np.isfinite(rest) and rest > 0 else None})
    for field in parts:
        rest_row[field] = 0
    if "encoding" in extra:
        rest_row["encoding"] = accounting.get("graph_codec")
    rows.append(rest_row)
    return pd.DataFrame(rows, columns=cols)


def accounting_chart(spec, accounting: dict, file_label: str = "") -> alt.Chart:
    """Stacked horizontal bars: each layer's parts (declared by the exporter), and one bar for the rest
    of the file. Aggregated per layer: a few rows whatever the model's size."""
    table = accounting_table(spec, accounting)
    order = list(table["layer"])
    rest_label, _f, rest_color = spec.rest
    kinds = [label for label, _f, _c in spec.parts] + [rest_label]
    colors = [c for _l, _f, c in spec.parts] + [rest_color]
    rows = []
    for _, r in table.iterrows():
        if r["layer"] == rest_label:
            rows.append({"layer": r["layer"], "kind": rest_label, "bytes": int(_num(r["bytes"]) or 0)
                         if np.isfinite(_num(r["bytes"])) else 0})
            continue
        for label, field, _c in spec.parts:
            v = _num(r[field])
            rows.append({"layer": r["layer"], "kind": label, "bytes": int(v) if np.isfinite(v) else 0})
    df = pd.DataFrame(rows, columns=["layer", "kind", "bytes"])
    df["order"] = df["kind"].map({k: i for i, k in enumerate(kinds)})
    total = _num(accounting.get(spec.file_field)) if spec.file_field else np.nan
    source = _num(accounting.get("tflite_bytes"))
    subtitle = (f"{file_label or 'the file'}: {human_bytes(total)}"
                + (f" from a {human_bytes(source)} TFLite file" if np.isfinite(source) else "")
                + f"; '{rest_label}' is everything but the layers' kernels") if np.isfinite(total) else \
        f"'{rest_label}' is everything but the layers' kernels"
    return alt.Chart(df).mark_bar().encode(
        y=alt.Y("layer:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),
        x=alt.X("sum(bytes):Q", title=f"bytes in {file_label or 'the file'}", stack="zero"),
        color=alt.Color("kind:N", title=None, scale=alt.Scale(domain=kinds, range=colors),
                        legend=alt.Legend(orient="top")),
        order=alt.Order("order:Q"),
        tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("kind:N"), alt.Tooltip("bytes:Q", format=",")],
    ).properties(title=alt.Title(spec.title, subtitle=subtitle), height=alt.Step(28), width=520)


def _fmt_declared(value, fmt: str) -> str:
    if fmt == "s":
        return DASH if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    if fmt.endswith("%"):
        text = _fmt(value, fmt[:-1])
        return text + "%" if text != DASH else text
    return _fmt(value, fmt)


def accounting_display(spec, accounting: dict) -> pd.DataFrame:
    """accounting_table as text for st.dataframe: the declared columns, bytes and ratio, a dash where a
    figure does not apply (the rest of the file has no weights)."""
    table = accounting_table(spec, accounting)
    out = {"layer": table["layer"]}
    for label, field, fmt in spec.columns:
        out[label] = [_fmt_declared(v, fmt) for v in table[field]]
    out["bytes"] = [_fmt(v, ",.0f") for v in table["bytes"]]
    out["ratio"] = [_fmt(v, ".1f") + ("×" if _fmt(v, ".1f") != DASH else "") for v in table["ratio"]]
    return pd.DataFrame(out)


# --- the frontier against published results ---------------------------------------------------------

FRONTIER_KINDS = {"published": "#9e9e9e", "studio preset": "#e45756", "studio run": "#4c78a8", "peer": "#f58518"}


def frontier_df(runs: Sequence[tuple[str, dict]], size_field: str = "dc_bytes", kind: str = "studio run",
                arch: str | None = None, dataset: str = "mnist") -> pd.DataFrame:
    """Test error (%) against compression ratio for runs (ratio: the run's own float baseline file over
    ``size_field`` of its exported file, as the paper counts) and the published rows for the same network
    (compression.studio.published, all on MNIST). Runs on another dataset, or of another network than
    ``arch`` when given, are left out."""
    from compression.studio import published

    rows = []
    archs = set()
    for label, report in runs:
        recipe = report.get("recipe") if isinstance(report, dict) else None
        run_arch = ((recipe or {}).get("baseline") or {}).get("arch")
        if (arch is not None and run_arch != arch) or (recipe or {}).get("dataset") != dataset:
            continue
        base = ((report.get("baseline") or {}).get("metrics") or {})
        final = report.get("final") or {}
        ratio = figures.ratio(base.get("tflite_bytes"), final.get(size_field))
        acc = _num(final.get("accuracy"))
        if ratio is None or not np.isfinite(acc):
            continue
        archs.add(run_arch)
        rows.append({"label": short_label(label), "name": str(label), "kind": kind, "ratio": float(ratio),
                     "error_pct": 100.0 * (1.0 - acc), "spread_pct": np.nan})
    for a in sorted(a for a in archs | ({arch} if arch else set()) if a):
        for p in published.for_arch(a):
            rows.append({"label": p.method, "name": p.label, "kind": "published", "ratio": float(p.ratio),
                         "error_pct": p.error_pct, "spread_pct": np.nan})
    return pd.DataFrame(rows, columns=["label", "name", "kind", "ratio", "error_pct", "spread_pct"])


def frontier_chart(df: pd.DataFrame, title: str = "Error against compression, with the published results",
                   size_label: str = "model.dc") -> alt.LayerChart:
    """Test error against compression ratio (log): down and to the right is better; published results in
    grey. Error bars where a point is a mean over seeds (``spread_pct``: its half-width)."""
    kinds = [k for k in FRONTIER_KINDS if k in set(df["kind"])] or list(FRONTIER_KINDS)
    x = alt.X("ratio:Q", title=f"compression ratio ({size_label} against the float model, log)",
              scale=alt.Scale(type="log", zero=False))
    y = alt.Y("error_pct:Q", title="test error (%)", scale=alt.Scale(zero=False))
    tooltip = [alt.Tooltip("name:N", title="row"), alt.Tooltip("kind:N"), alt.Tooltip("ratio:Q", format=".1f"),
               alt.Tooltip("error_pct:Q", title="error %", format=".2f"),
               alt.Tooltip("spread_pct:Q", title="± (seeds)", format=".2f")]
    color = alt.Color("kind:N", title=None, scale=alt.Scale(domain=kinds, range=[FRONTIER_KINDS[k] for k in kinds]),
                      legend=alt.Legend(orient="top"))
    points = alt.Chart(df).mark_point(filled=True, size=110).encode(
        x=x, y=y, color=color, shape=alt.Shape("kind:N", scale=alt.Scale(
            domain=kinds, range=["diamond" if k == "published" else "circle" for k in kinds]), legend=None),
        tooltip=tooltip)
    bars = alt.Chart(df[df["spread_pct"].notna()]).mark_rule().encode(
        x=x, y=alt.Y("low:Q"), y2="high:Q", color=color, tooltip=tooltip
    ).transform_calculate(low="datum.error_pct - datum.spread_pct", high="datum.error_pct + datum.spread_pct")
    width, height = 560, 320
    placed = df.assign(below=label_below(df, width, height))
    labels = [alt.Chart(placed[placed["below"] == below]).mark_text(
        align="left", dx=8, dy=12 if below else -7, fontSize=10).encode(x=x, y=y, text="label:N", color=color,
                                                                         tooltip=tooltip)
        for below in (False, True)]
    return alt.layer(bars, points, *labels, title=alt.Title(
        title, subtitle="down and to the right is better: smaller and more accurate")).properties(width=width, height=height)


def label_below(df: pd.DataFrame, width: int, height: int, char_px: float = 5.6, line_px: float = 13) -> list[bool]:
    """For each point of a log-x frontier chart, whether its label goes below the point rather than above
    it: a label that would overlap one already placed above (same pixel rows, overlapping text) goes
    below, from left to right; the pixels are estimated from the data's ranges as the chart's scales set them."""
    if df.empty:
        return []
    lx = np.log10(df["ratio"].astype(float).clip(lower=1e-9).to_numpy())
    ys = df["error_pct"].astype(float).to_numpy()
    x_span = max(lx.max() - lx.min(), 0.3) * 1.15  # the log scale's domain, padded to nice values
    y_span = max(ys.max() - ys.min(), 1e-6) * 1.15
    px_x = (lx - lx.min()) / x_span * width
    px_y = (ys.max() - ys) / y_span * height
    lengths = df["label"].astype(str).str.len().to_numpy() * char_px
    out = [False] * len(df)
    boxes = {False: [], True: []}
    for i in np.argsort(px_x, kind="stable"):
        for below in (False, True):
            top = px_y[i] + (4 if below else -7 - line_px)
            box = (px_x[i] + 8, px_x[i] + 8 + lengths[i], top, top + line_px)
            if not any(b[0] < box[1] and box[0] < b[1] and b[2] < box[3] and box[2] < b[3] for b in boxes[below]):
                break
        out[i] = below
        boxes[below].append(box)
    return out
