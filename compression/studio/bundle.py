"""What ships next to the exported TFLite file: clean file names, the input contract,
labels.txt, a short MODEL.md, a recipe that runs elsewhere and a script that checks the accuracy,
zipped together. Pure functions; no Streamlit, no TensorFlow.

Everything here is meant to leave the server: a recipe names no server path (``portable_recipe``),
and every value from a run's files is escaped for the Markdown it lands in (``md``).
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import unicodedata
import zipfile
from pathlib import Path

from compression.store.runs import tidy_recipe, tidy_report

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
    report = tidy_report(report)
    inp = report.get("input") or {}
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


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what could make a link, an image, emphasis, code or a cell


def md(value) -> str:
    """A value from a run's files as Markdown text: HTML escaped and Markdown's own characters escaped
    (a run or class name never becomes a heading, a link, a table cell break or an element)."""
    text = "".join(c if c.isprintable() else " " for c in str(value))
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _fenced(text: str, lang: str = "") -> list[str]:
    """A code block whose fence is longer than any run of backticks inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, text, fence]


# --- a recipe that runs on another machine --------------------------------------------------------

BUNDLED_BASELINE = "baseline.keras"  # the baseline file a bundle carries, beside recipe.json


def _within(path: str, root: str | os.PathLike | None) -> str | None:
    if not root:
        return None
    try:
        rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
    except ValueError:
        return None
    return rel.as_posix()


def portable_recipe(recipe: dict, home: str | os.PathLike | None = None, baseline_file: str | None = None) -> dict:
    """The recipe as it may leave the server: no server path, no field its own choices ignore.

    ``baseline.path`` becomes ``baseline_file`` (a bundle's own copy, beside recipe.json) if given, else a
    path relative to the workspace ``home`` (``runs/<id>/baseline.keras``: the Pipeline page and the command
    line run it from there), else the file's name; ``dataset.npz`` likewise. Every step and the baseline lose
    the fields their schedule does not read (``target_sparsity`` beside a polynomial schedule, ``decay_rate``
    without an exponential learning-rate schedule): the recipe holds what the run used."""
    from compression.recipe import methods
    from compression.recipe.params import relevant_fields

    out = json.loads(json.dumps(tidy_recipe(recipe)))
    steps = []
    for step in out.get("steps") or []:
        method = methods.find(step.get("method"))
        steps.append(relevant_fields(method.step_type, step) if method is not None else step)
    out["steps"] = steps
    base = out.get("baseline") if isinstance(out.get("baseline"), dict) else None
    if base is not None:
        if base.get("lr_schedule") not in (None, "exponential"):
            base.pop("decay_rate", None)
        if isinstance(base.get("path"), str):
            base["path"] = baseline_file or _within(base["path"], home) or Path(base["path"]).name
            base.pop("arch", None)
    ds = out.get("dataset")
    if isinstance(ds, dict) and isinstance(ds.get("npz"), str):
        out["dataset"] = dict(ds, npz=_within(ds["npz"], home) or Path(ds["npz"]).name)
    return out


# --- how the test split was chosen, and a script that measures the file on it ------------------------

TEST_SPLITS = {
    "digits": ("scikit-learn's 8x8 digits (1,797 images): a permutation seeded with 0 (numpy's default_rng(0)), "
               "its first 20% ({n} images); the rest trained the model, 10% of it held out for validation"),
    "mnist": "the official MNIST test set ({n} images), untouched; 10% of the training set (seeded) held out for validation",
    "fashion_mnist": ("the official Fashion-MNIST test set ({n} images), untouched; 10% of the training set (seeded) "
                      "held out for validation"),
    "cifar10": "the official CIFAR-10 test batch ({n} images), untouched; 10% of the training set (seeded) held out for validation",
}

# One line that sets x (samples as the studio's loaders give them, in [0, 1]) and y, per dataset.
_LOADERS = {
    "digits": ("from sklearn.datasets import load_digits; d = load_digits()  # the test split: MODEL.md\n"
               "t = np.random.default_rng(0).permutation(len(d.target))[: len(d.target) // 5]; "
               "x, y = (d.images[t] / 16).astype(np.float32), d.target[t]"),
    "mnist": ('d = np.load(sys.argv[1] if len(sys.argv) > 1 else "mnist.npz")  # the official test set\n'
              'x, y = (d["x_test"] / 255).astype(np.float32), d["y_test"]'),
    "fashion_mnist": ('g = lambda f, o: np.frombuffer(gzip.open(os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".", f)).read(), np.uint8, offset=o)\n'
                      'x, y = (g("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28) / 255).astype(np.float32), '
                      'g("t10k-labels-idx1-ubyte.gz", 8)'),
    "cifar10": ('b = pickle.load(open(sys.argv[1] if len(sys.argv) > 1 else "cifar-10-batches-py/test_batch", "rb"), encoding="bytes")\n'
                'x, y = (b[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) / 255).astype(np.float32), np.array(b[b"labels"])'),
}


def test_split_text(report: dict) -> str:
    """How the accuracy's test samples were chosen, in one sentence."""
    report = tidy_report(report)
    ds = report.get("dataset") or {}
    source = (report.get("recipe") or {}).get("dataset")
    n = ds.get("n_test")
    n_text = f"{n:,}" if isinstance(n, int) else DASH
    name = ds.get("name")
    if isinstance(name, str) and name in TEST_SPLITS:
        return TEST_SPLITS[name].format(n=n_text)
    if isinstance(source, dict) and source.get("npz"):
        return (f"the x_test and y_test arrays of {Path(str(source['npz'])).name} ({n_text} samples), as given; "
                "10% of x_train (seeded) held out for validation")
    return f"{n_text} test samples of {name or 'the dataset'}"


def reproduce_script(report: dict, file_name: str) -> str | None:
    """A script of at most 10 lines that runs ``file_name`` on the test split with LiteRT and prints its
    accuracy, the figure MODEL.md gives; None where the samples cannot be rebuilt in so few lines (a
    user's own .npz, samples the run padded or resized to fit the model)."""
    report = tidy_report(report)
    name = (report.get("dataset") or {}).get("name")
    inp = report.get("input") or {}
    adapt = inp.get("adapt") if isinstance(inp.get("adapt"), dict) else {}
    if name not in _LOADERS or adapt.get("kind", "none") not in ("none", "reshape"):
        return None
    scale = inp.get("raw_scale")
    scale = float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0 else 1.0
    lines = [
        f"# python reproduce.py: runs {file_name} on the test split and prints its accuracy "
        "(pip install ai-edge-litert numpy scikit-learn)",
        "import gzip, os, pickle, sys; import numpy as np; from ai_edge_litert.interpreter import Interpreter",
        *_LOADERS[name].split("\n"),
        f"x = x * np.float32({scale:g})  # the values the file takes (MODEL.md: input)",
        f'm = Interpreter(model_path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "{file_name}")); '
        'm.allocate_tensors(); i, o = m.get_input_details()[0], m.get_output_details()[0]',
        'q = (lambda v: np.clip(np.round(v / i["quantization"][0] + i["quantization"][1]), -128, 127)) '
        'if i["dtype"] == np.int8 else (lambda v: v)',
        'p = [(m.set_tensor(i["index"], q(s.reshape(i["shape"])).astype(i["dtype"])), m.invoke(), '
        'm.get_tensor(o["index"]).argmax())[2] for s in x]',
        'print(f"accuracy {np.mean(np.array(p) == y):.4f} on {len(y)} test samples")',
    ]
    return "\n".join(lines) + "\n"


def model_card(report: dict, recipe: dict | None = None, file_name: str = "model.tflite") -> str:
    """MODEL.md: what the file is, what it expects, accuracy per class, how it was made, the recipe."""
    report = tidy_report(report)
    recipe = tidy_recipe(recipe or report.get("recipe"))
    ds = report.get("dataset") or {}
    final = report.get("final") or {}
    base = (report.get("baseline") or {}).get("metrics") or {}
    c = input_contract(report)
    steps = " → ".join(s.get("method", "?") for s in recipe.get("steps") or []) or "none (the baseline itself)"
    lines = [
        f"# {md(recipe.get('name') or 'model')}", "",
        f"{md(file_name)} is a TensorFlow Lite classifier for the {md(ds.get('name', DASH))} dataset "
        f"({md(ds.get('num_classes', DASH))} classes), exported as {md(final.get('export', DASH))}.", "",
        "## Input and output", "",
        f"- input shape: {md(c['shape'])} (one sample; add a leading batch dimension of 1)",
        f"- dtype: {md(c['dtype'])}",
        f"- value range: {md(c['value_range'])}",
        f"- scaling: {md(c['scaling'])}",
        f"- output: {md(c['output'])}",
        "- labels: labels.txt, one class name per line, in output order", "",
        "## Accuracy", "",
        f"Test accuracy of this file: {_pct(final.get('accuracy'))} on {md(ds.get('n_test', DASH))} test samples "
        f"(its baseline: {_pct(base.get('accuracy'))}).", "",
        f"Test split: {md(test_split_text(report))}.", "",
        f"File size: {_bytes(final.get('tflite_bytes'))} ({_bytes(final.get('tflite_zip_bytes'))} zipped).", "",
    ]
    if reproduce_script(report, file_name):
        lines += ["To check the accuracy yourself: python reproduce.py (10 lines, in this bundle: it runs the "
                  "file with LiteRT on that test split).", ""]
    recall, base_recall = final.get("per_class_recall") or [], base.get("per_class_recall") or []
    if isinstance(recall, list) and recall:
        names = c["class_names"] or [str(i) for i in range(len(recall))]
        base_recall = base_recall if isinstance(base_recall, list) else []
        lines += ["| class | recall (this file) | recall (baseline) |", "| --- | --- | --- |"]
        for i, r in enumerate(recall):
            b = base_recall[i] if i < len(base_recall) else None
            lines.append(f"| {md(names[i]) if i < len(names) else i} | {_pct(r)} | {_pct(b)} |")
        lines.append("")
    steps = " → ".join(md(s.get("method", "?")) for s in recipe.get("steps") or []) or "none (the baseline itself)"
    lines += ["## How it was made", "", f"Compression steps: {steps}.", ""]
    for i, st in enumerate(report.get("stages") or [], start=1):
        m = st.get("metrics") or {}
        lines.append(f"{i}. {md(st.get('method'))} ({md(st.get('variant') or st.get('method'))}): accuracy "
                     f"{_pct(m.get('accuracy'))}, sparsity {_pct(m.get('sparsity'))}")
    versions = report.get("versions") or {}
    if versions:
        lines += ["", "Made with " + ", ".join(f"{md(k)} {md(v)}" for k, v in versions.items()) + "."]
    lines += ["", "## Recipe", "", "recipe.json, beside this file, runs again with `python -m compression run recipe.json "
              "--out run`" + (f" (its baseline is {BUNDLED_BASELINE}, in this bundle)" if
                              (recipe.get("baseline") or {}).get("path") == BUNDLED_BASELINE else "") + ":", "",
              *_fenced(json.dumps(recipe, indent=2), "json"), ""]
    return "\n".join(lines)


def bundle_zip(report: dict, recipe: dict | None = None, tflite: bytes | None = None, name: str | None = None,
               baseline: bytes | None = None, home: str | os.PathLike | None = None) -> bytes:
    """One zip: <slug>.tflite (when given), labels.txt, MODEL.md, recipe.json (portable: no server path; its
    baseline is the bundle's baseline.keras when ``baseline`` is given) and reproduce.py (where it can be
    written in 10 lines)."""
    report = tidy_report(report)
    recipe = tidy_recipe(recipe or report.get("recipe"))
    file_name = f"{slug(name or recipe.get('name'))}.tflite"
    has_path = isinstance((recipe.get("baseline") or {}).get("path"), str)
    portable = portable_recipe(recipe, home, BUNDLED_BASELINE if baseline is not None and has_path else None)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        if tflite is not None:
            z.writestr(file_name, tflite)
        if baseline is not None and has_path:
            z.writestr(BUNDLED_BASELINE, baseline)
        z.writestr("labels.txt", labels_txt(report))
        z.writestr("MODEL.md", model_card(report, portable, file_name))
        z.writestr("recipe.json", json.dumps(portable, indent=2) + "\n")
        script = reproduce_script(report, file_name)
        if script and tflite is not None:
            z.writestr("reproduce.py", script)
    return buf.getvalue()
