"""The one definition of each figure read from a METRICS dict (report.json), TensorFlow-free.

The engine measures; everything that shows or compares figures (the undone check, charts,
tables, health, the command line, the HTML report) reads them through these functions:

* ``size_figures()``: every size a report can hold, in order (the stage's Keras file, then
  what each exporter declares), with label, colour, help and what its ratio is taken against;
* ``distinct_values(row)``: a layer's distinct kernel values as clustering sees them (per
  output channel where the file quantizes per channel, else per layer);
* ``undone_sentences(...)``: what a later stage or the export measurably took back from an
  earlier one, for each fact the earlier method declared it establishes.
"""

from __future__ import annotations

import math
from typing import Iterable

from compression.recipe import exporters, methods
from compression.recipe.exporter import SizeFigure

KERAS_ZIP = SizeFigure("keras_zip_bytes", "Keras zip", "the stage's .keras file (no optimizer state) zipped; the "
                       "exported file has none", "#9ecae9", ratio_to="keras_zip_bytes")


def size_figures(exported_only: bool = False) -> list[SizeFigure]:
    """Every size figure, in order: the stage's Keras file, then each exporter's (rank order)."""
    out = [] if exported_only else [KERAS_ZIP]
    for e in exporters.all_exporters():
        out.extend(e.sizes)
    return out


def size_figure(field: str) -> SizeFigure | None:
    return next((f for f in size_figures() if f.field == field), None)


def shipped_size() -> SizeFigure:
    """The size of the file a user ships: the primary exporter's first size figure."""
    return exporters.primary().sizes[0]


def number(x) -> float | None:
    """A finite number from report.json, or None (booleans, strings, NaN and missing values are not numbers)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def distinct_values(row: dict) -> int | None:
    """Distinct kernel values of one layer row as clustering sees them: the largest count in one output
    channel where the file quantizes per channel (each channel its own scale), else in the whole layer."""
    if not isinstance(row, dict):
        return None
    per_channel = number(row.get("unique_values_per_channel"))
    whole = number(row.get("unique_values"))
    value = per_channel if per_channel is not None else whole
    return None if value is None else int(value)


def max_distinct(metrics: dict) -> int | None:
    """The most distinct values in any one layer (``distinct_values``), or None when no layer says."""
    values = [distinct_values(row) for row in (metrics or {}).get("layers") or []]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def ratio(value, reference) -> float | None:
    v, r = number(value), number(reference)
    return v / r if v is not None and r else None


# --- what later stages undid ---------------------------------------------------------------------


def _sparsity_undone(by: str, prev_name: str, prev: dict, name: str, now: dict, qat: bool) -> str | None:
    a, b = number(prev.get("sparsity")), number(now.get("sparsity"))
    if a is not None and b is not None and a - b > 0.01:
        return f"{name} undid sparsity: {a:.1%} after {prev_name}, {b:.1%} after {name}"
    return None


def _clusters_undone(by: str, prev_name: str, prev: dict, name: str, now: dict, qat: bool) -> str | None:
    a, b = max_distinct(prev), max_distinct(now)
    if a is not None and b is not None and b > a:
        return (f"{name} undid clustering: at most {a} distinct values per layer after {prev_name}, "
                f"{b} after {name}")
    return None


def _qat_undone(by: str, prev_name: str, prev: dict, name: str, now: dict, qat: bool) -> str | None:
    if qat or name == "the export":
        return None
    return f"{name} after {by} dropped the ranges QAT learned; the file is quantized after training instead"


def _codebooks_undone(by: str, prev_name: str, prev: dict, name: str, now: dict, qat: bool) -> str | None:
    a, b = max_distinct(prev), max_distinct(now)
    if a is not None and b is not None and b > a:
        return (f"{name} undid product quantization: at most {a} distinct values per layer after {prev_name} "
                f"(the codewords' weights), {b} after {name}")
    return None


FACT_CHECKS = {"sparsity": _sparsity_undone, "clusters": _clusters_undone, "qat_ranges": _qat_undone,
               "codebooks": _codebooks_undone}


def undone_sentences(stages: Iterable[dict], baseline: dict, final: dict | None) -> list[str]:
    """What later stages (or the export) measurably took back from earlier ones.

    ``stages`` are report.json's stage entries (``method`` and ``metrics``); each fact an earlier
    stage's method declares it establishes is checked at every later stage and at the file, and
    reported once, where it was first undone.
    """
    chain = [("baseline", (), False, baseline or {})]
    for st in stages:
        m = methods.find(st.get("method"))
        chain.append((str(st.get("method")), m.establishes if m else (), bool(m and m.produces_qat),
                      st.get("metrics") or {}))
    if final is not None:
        chain.append(("the export", (), True, final))
    out: list[str] = []
    intact: dict[str, str] = {}  # fact -> the stage that established it
    for i, (name, establishes, qat, now) in enumerate(chain):
        if i:
            prev_name, prev = chain[i - 1][0], chain[i - 1][3]
            for fact, by in list(intact.items()):
                check = FACT_CHECKS.get(fact)
                sentence = check(by, prev_name, prev, name, now, qat) if check else None
                if sentence:
                    out.append(sentence.replace("after the export", "in the file"))
                    del intact[fact]
        for fact in establishes:
            intact[fact] = name
    return out


__all__ = ["KERAS_ZIP", "distinct_values", "max_distinct", "number", "ratio", "shipped_size", "size_figure",
           "size_figures", "undone_sentences"]
