"""What ships next to the exported TFLite file: clean file names, the input contract,
labels.txt and a short MODEL.md, zipped together. Pure functions; no Streamlit, no TensorFlow.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
import zipfile

DASH = "–"


def slug(name: str | None, fallback: str = "model", max_len: int = 60) -> str:
    """A file-name-safe version of a run name: 'quick demo on digits (offline)' -> 'quick-demo-on-digits-offline'."""
    text = unicodedata.normalize("NFKD", str(name or "")).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    text = text[:max_len].rstrip("-")
    return text or fallback


def input_contract(report: dict) -> dict:
    """The exported file's input contract as display strings; a dash where the report does not say.

    Reads ``report["input"]`` (shape, dtype, value_range, scaling, output, class_names), falling back
    to the dataset's class names and input shape for older runs.
    """
    inp = report.get("input") if isinstance(report.get("input"), dict) else {}
    ds = report.get("dataset") or {}
    shape = inp.get("shape")
    rng = inp.get("value_range")
    names = inp.get("class_names") or ds.get("class_names")
    return {
        "shape": "×".join(str(d) for d in shape) if isinstance(shape, (list, tuple)) and shape else DASH,
        "dtype": str(inp.get("dtype")) if inp.get("dtype") else DASH,
        "value_range": f"{rng[0]:g} to {rng[1]:g}" if isinstance(rng, (list, tuple)) and len(rng) == 2
        and all(isinstance(v, (int, float)) for v in rng) else DASH,
        "scaling": str(inp.get("scaling")) if inp.get("scaling") else DASH,
        "output": str(inp.get("output")) if inp.get("output") else DASH,
        "class_names": [str(c) for c in names] if names else [],
        "known": bool(inp),
    }


def labels_txt(report: dict) -> str:
    """One class name per line, in output order (the usual TFLite labels file)."""
    names = input_contract(report)["class_names"]
    if not names:
        k = int((report.get("dataset") or {}).get("num_classes") or 0)
        names = [str(i) for i in range(k)]
    return "".join(f"{n}\n" for n in names)


def _pct(x) -> str:
    return f"{x:.2%}" if isinstance(x, (int, float)) and not isinstance(x, bool) else DASH


def _bytes(x) -> str:
    return f"{int(x):,} B" if isinstance(x, (int, float)) and not isinstance(x, bool) else DASH


def model_card(report: dict, recipe: dict | None = None, file_name: str = "model.tflite") -> str:
    """MODEL.md: what the file is, what it expects, accuracy per class, how it was made, the recipe."""
    recipe = recipe or report.get("recipe") or {}
    ds = report.get("dataset") or {}
    final = report.get("final") or {}
    base = (report.get("baseline") or {}).get("metrics") or {}
    c = input_contract(report)
    steps = " → ".join(s.get("method", "?") for s in recipe.get("steps") or []) or "none (the baseline itself)"
    lines = [
        f"# {recipe.get('name') or 'model'}", "",
        f"`{file_name}` is a TensorFlow Lite classifier for the `{ds.get('name', DASH)}` dataset "
        f"({ds.get('num_classes', DASH)} classes), exported as `{final.get('export', DASH)}`.", "",
        "## Input and output", "",
        f"- input shape: {c['shape']} (one sample; add a leading batch dimension of 1)",
        f"- dtype: {c['dtype']}",
        f"- value range: {c['value_range']}",
        f"- scaling: {c['scaling']}",
        f"- output: {c['output']}",
        "- labels: `labels.txt`, one class name per line, in output order", "",
        "## Accuracy", "",
        f"Test accuracy of this file: {_pct(final.get('accuracy'))} on {ds.get('n_test', DASH)} test samples "
        f"(its baseline: {_pct(base.get('accuracy'))}).", "",
        f"File size: {_bytes(final.get('tflite_bytes'))} ({_bytes(final.get('tflite_zip_bytes'))} zipped).", "",
    ]
    recall, base_recall = final.get("per_class_recall") or [], base.get("per_class_recall") or []
    if recall:
        names = c["class_names"] or [str(i) for i in range(len(recall))]
        lines += ["| class | recall (this file) | recall (baseline) |", "| --- | --- | --- |"]
        for i, r in enumerate(recall):
            b = base_recall[i] if i < len(base_recall) else None
            lines.append(f"| {names[i] if i < len(names) else i} | {_pct(r)} | {_pct(b)} |")
        lines.append("")
    lines += ["## How it was made", "", f"Compression steps: {steps}.", ""]
    for i, st in enumerate(report.get("stages") or [], start=1):
        m = st.get("metrics") or {}
        lines.append(f"{i}. {st.get('method')} ({st.get('variant') or st.get('method')}): accuracy "
                     f"{_pct(m.get('accuracy'))}, sparsity {_pct(m.get('sparsity'))}")
    versions = report.get("versions") or {}
    if versions:
        lines += ["", "Made with " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    lines += ["", "## Recipe", "", "```json", json.dumps(recipe, indent=2), "```", ""]
    return "\n".join(lines)


def bundle_zip(report: dict, recipe: dict | None = None, tflite: bytes | None = None, name: str | None = None) -> bytes:
    """One zip: <slug>.tflite (when given), labels.txt, MODEL.md and recipe.json."""
    recipe = recipe or report.get("recipe") or {}
    file_name = f"{slug(name or recipe.get('name'))}.tflite"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        if tflite is not None:
            z.writestr(file_name, tflite)
        z.writestr("labels.txt", labels_txt(report))
        z.writestr("MODEL.md", model_card(report, recipe, file_name))
        z.writestr("recipe.json", json.dumps(recipe, indent=2) + "\n")
    return buf.getvalue()
