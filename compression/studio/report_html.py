"""One self-contained HTML report, viewable offline with no server.

Headline figures, the health findings, the stage table, every chart as interactive
Vega-Lite (Vega, Vega-Lite and vega-embed inlined from ``vl-convert-python``'s bundle),
and the recipe. Pure functions: report in, HTML text out.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
from pathlib import Path

import altair as alt
import pandas as pd

from compression.recipe import figures
from compression.store.runs import tidy_recipe, tidy_report
from compression.studio import bundle, charts, health


CACHE_ENV = "COMPRESSION_CACHE_DIR"


def _vega_cache_file() -> Path:
    """Where the built bundle is kept between processes: ``$COMPRESSION_CACHE_DIR``, else the user's cache
    folder; keyed by the vl-convert and Vega-Lite versions."""
    import vl_convert as vlc

    base = os.environ.get(CACHE_ENV) or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "compression-studio")
    key = re.sub(r"[^0-9A-Za-z.]+", "-", f"{getattr(vlc, '__version__', 'x')}-{alt.SCHEMA_VERSION}")
    return Path(base).expanduser() / f"vega-{key}.js"


@functools.lru_cache(maxsize=1)
def vega_js() -> str:
    """Vega + Vega-Lite + vega-embed as one script (about 0.9 MB). Building it starts a JavaScript runtime
    (about 3 s), so it is built once per machine and kept in a cache file; in memory after the first read."""
    import vl_convert as vlc

    cache = _vega_cache_file()
    try:
        text = cache.read_text(encoding="utf-8")
        if text.startswith(BUNDLE_MARK):
            return text[len(BUNDLE_MARK):]
    except OSError:
        pass
    version = re.match(r"v?(\d+\.\d+)", alt.SCHEMA_VERSION)
    wanted = version.group(1) if version else None
    kw = {"vl_version": wanted} if wanted in vlc.get_vegalite_versions() else {}
    js = vlc.javascript_bundle(**kw).replace("</script", "<\\/script")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        tmp.write_text(BUNDLE_MARK + js, encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:  # a read-only home: built again by the next process
        pass
    return js


BUNDLE_MARK = "// vega bundle for compression-studio reports\n"


def warm_up() -> None:
    """Build (or read) the bundle in a background thread, so that the first report download is quick."""
    import threading

    if vega_js.cache_info().currsize:
        return
    threading.Thread(target=lambda: _quietly(vega_js), name="vega-warm-up", daemon=True).start()


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001  (the download builds it again and says what went wrong)
        pass


def _cell(value) -> str:
    """A table cell: escaped; a figure and its ratio ("52.5 KB · 0.28×") on two lines, so tables fit the page."""
    parts = [html.escape(p) for p in str(value).split(" · ")]
    return parts[0] + "".join(f"<br><small>{p}</small>" for p in parts[1:])


def _table(df: pd.DataFrame, headers: dict[str, str] | None = None, text_columns: tuple[str, ...] = ()) -> str:
    headers = headers or {}
    head = "".join(f"<th>{html.escape(headers.get(c, c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f'<td class="{"text" if c in text_columns else "num"}">{_cell(v)}</td>'
                                    for c, v in zip(df.columns, row)) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2430;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:8px;padding:.6rem 1rem;min-width:10rem}
.card b{display:block;font-size:1.5rem}
.alarm{background:#fde8e8;border:1px solid #e45756;border-radius:8px;padding:.5rem 1rem;margin:1rem 0}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0;width:100%}
th,td{border-bottom:1px solid #e5e5e5;padding:.3rem .4rem;text-align:right;vertical-align:top}
th{font-weight:600;white-space:normal}
td.num{white-space:nowrap} td.text{text-align:left;overflow-wrap:break-word;min-width:4.5rem;max-width:16rem}
th:first-child,td:first-child{text-align:left}
td small{color:#666}
p,li,h1,h3{overflow-wrap:anywhere}
pre{background:#f6f6f6;padding:1rem;overflow:auto;font-size:.8rem}
.chart{margin:1.2rem 0}
"""


def _findings_html(findings: list[health.Finding]) -> str:
    if not findings:
        return ""
    parts = []
    for f in findings:
        items = "".join(f"<li>{html.escape(c)}</li>" for c in f.causes)
        fixes = "".join(f"<li>{html.escape(x)}</li>" for x in f.fixes)
        parts.append(f"<p><b>{html.escape(f.message)}</b></p>"
                     + (f"<p>Likely causes:</p><ul>{items}</ul>" if items else "")
                     + (f"<p>What to change:</p><ul>{fixes}</ul>" if fixes else ""))
    return f'<div class="alarm">{"".join(parts)}</div>'


def script_json(value) -> str:
    """JSON that is safe inside an HTML <script> block: '<', '>' and '&' written as unicode escapes,
    so no value (a run name, a class name) can close the block or open a comment."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(title: str, body: str, specs: list[dict]) -> str:
    script = "\n".join(
        f'vegaEmbed("#chart{i}", {script_json(spec)}, {{"actions": false, "renderer": "svg"}});'
        for i, spec in enumerate(specs))
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{vega_js()}</script></head><body>{body}"
            f"<script>{script}</script></body></html>")


def _charts_html(chart_list: list[alt.TopLevelMixin]) -> tuple[str, list[dict]]:
    specs = [c.to_dict(validate=False) for c in chart_list]  # the builders are tested against the schema
    return "".join(f'<div class="chart" id="chart{i}"></div>' for i in range(len(specs))), specs


def run_report_html(report: dict, recipe: dict | None = None, name: str | None = None) -> str:
    """The HTML report of one run."""
    report = tidy_report(report)
    recipe = tidy_recipe(recipe or report.get("recipe"))
    name = name or recipe.get("name") or "run"
    table = charts.stage_table(report)
    final, base = table.iloc[-1], table.iloc[0]
    ds = report.get("dataset") or {}
    steps = " → ".join(str(s.get("method", "?")) for s in recipe.get("steps") or []) or "baseline only"
    c = bundle.input_contract(report)
    cards = [("Accuracy (exported file)", f"{final['accuracy']:.2%}" if final["accuracy"] == final["accuracy"] else "–"),
             ("Baseline accuracy", f"{base['accuracy']:.2%}" if base["accuracy"] == base["accuracy"] else "–"),
             ("TFLite file, zipped", charts.human_bytes(final["tflite_zip_kb"] * charts.KB)),
             ("Sparsity", f"{final['sparsity']:.0%}" if final["sparsity"] == final["sparsity"] else "–")]
    chart_list = []  # only charts with data: an empty chart is a blank box (and a Vega warning)
    sizes, latency = charts.sizes_df(report), charts.latency_df(report)
    if not sizes.empty:
        chart_list.append(charts.size_chart(sizes))
    if not latency.empty:
        chart_list.append(charts.latency_chart(latency))
    sp = charts.sparsity_df(report)
    if not sp.empty:
        chart_list.append(charts.sparsity_chart(sp))
    rec = charts.recall_df(report)
    if not rec.empty:
        chart_list.append(charts.recall_shift_chart(rec))
    for exporter, accounting in charts.accountings(report):
        chart_list.append(charts.accounting_chart(exporter.accounting, accounting, exporter.file_name))
    chart_divs, specs = _charts_html(chart_list)
    headers = {"stage": "Stage", "accuracy": "Accuracy", "accuracy_delta": "Δ acc. (pts)", "params_nonzero": "Nonzero params",
               "sparsity": "Sparsity", "unique_values": "Distinct values", "latency": "Latency",
               **{charts._short(f.field): f.label for f in figures.size_figures()}}
    body = (f"<h1>{html.escape(str(name))}</h1><p class=\"sub\">{html.escape(steps)} · export "
            f"{html.escape(str((report.get('final') or {}).get('export')))} · dataset {html.escape(str(ds.get('name')))} "
            f"({html.escape(str(ds.get('n_test')))} test samples)</p>"
            + _findings_html(health.assess(report))
            + '<div class="cards">' + "".join(f'<div class="card">{html.escape(k)}<b>{html.escape(v)}</b></div>'
                                              for k, v in cards) + "</div>"
            + "<h2>The exported file</h2>"
            + f"<p>Input shape {html.escape(c['shape'])}, dtype {html.escape(c['dtype'])}, values {html.escape(c['value_range'])}. "
              f"Scaling: {html.escape(c['scaling'])}. Output: {html.escape(c['output'])}. Classes: "
              f"{html.escape(', '.join(c['class_names']) or '–')}.</p>"
            + "<h2>Stage by stage</h2>"
            + f"<p>Accuracy is measured on the test split: {html.escape(bundle.test_split_text(report))}.</p>"
            + _table(charts.stage_display(table), headers, ("stage",))
            + "<p>– : the figure does not exist for that row (the exported file has no Keras file; some artifacts "
              "are made from the exported file only).</p>"
            + "<h2>Charts</h2>" + chart_divs
            + "<h2>Recipe</h2><pre>" + html.escape(json.dumps(bundle.portable_recipe(recipe), indent=2)) + "</pre>")
    return _page(f"{name}: compression report", body, specs)


def compare_report_html(runs: list[tuple[str, dict]], size_field: str = charts.PARETO_SIZE) -> str:
    """The HTML report of several runs side by side."""
    runs = [(str(label), tidy_report(rep)) for label, rep in runs]
    df = charts.compare_df(runs)
    marks = [health.short_mark(health.assess(rep)) for _label, rep in runs]
    chart_list = [charts.pareto_chart(df, size_field), charts.compare_size_chart(charts.compare_sizes_df(df)),
                  charts.compare_latency_chart(df)]
    rec = charts.recall_matrix_df(runs)
    if not rec.empty:
        chart_list.append(charts.recall_heatmap(rec))
    chart_divs, specs = _charts_html(chart_list)
    shown = charts.compare_display(df, marks).assign(pareto=lambda d: d["pareto"].map({True: "yes", False: ""}))
    headers = {"alarm": "⚠", "run": "Run", "steps": "Steps", "export": "Export", "accuracy": "Accuracy",
               "baseline_accuracy": "Its baseline", "latency": "Latency", "sparsity": "Sparsity",
               "unique_values": "Distinct values", "pareto": "Pareto",
               **{charts._short(f.field): f.label for f in figures.size_figures()}}
    recipes = "".join(f"<h3>{html.escape(label)}</h3><pre>"
                      f"{html.escape(json.dumps(bundle.portable_recipe(rep.get('recipe') or {}), indent=2))}</pre>"
                      for label, rep in runs)
    body = (f"<h1>Comparison of {len(runs)} runs</h1>"
            + _table(shown, headers, ("alarm", "run", "steps", "export")) + "<h2>Charts</h2>" + chart_divs
            + "<h2>Recipes</h2>" + recipes)
    return _page("Compression runs compared", body, specs)
