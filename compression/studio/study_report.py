"""A study as one self-contained HTML page, viewable offline: the same charts and tables as the
Studies page (compression/studio/study_charts.py), the spec, the runs and the test it used.
Every value is escaped; chart specs go through ``report_html.script_json``. Pure: study in, HTML out.
"""

from __future__ import annotations

import html
import json

from compression.studio import report_html, study_charts


def _p(text) -> str:
    return f"<p>{html.escape(str(text))}</p>" if text else ""


def runs_table(study: dict):
    import pandas as pd

    runs = study.get("runs") or []
    return pd.DataFrame({"key": [e.get("key", "") for e in runs], "run": [e.get("label", "") for e in runs],
                         "id": [e.get("run", "") for e in runs], "state": [e.get("state", "") for e in runs],
                         "reused": ["yes" if e.get("reused") else "" for e in runs]})


def study_report_html(study: dict) -> str:
    """The HTML report of a study (any state; charts once it has succeeded)."""
    name = str(study.get("name") or "study")
    figs = study_charts.figures(study)
    chart_divs, specs = [], []
    for i, fig in enumerate(figs):
        chart_divs.append(f"<h2>{html.escape(fig.title)}</h2>" + _p(fig.caption)
                          + f'<div class="chart" id="chart{i}"></div>' + report_html._table(fig.table))
        specs.append(fig.chart.to_dict())
    p = study.get("progress") or {}
    cards = [("Kind", str(study.get("kind"))), ("State", str(study.get("state"))),
             ("Runs", f"{p.get('done', 0)} of {p.get('planned', '?')}")]
    extra = ""
    if study.get("kind") == "sensitivity" and study.get("state") == "succeeded":
        extra = "<h2>Suggested per-layer sparsity</h2>" + _p((study.get("suggestion") or {}).get("rule")) + \
                report_html._table(study_charts.suggestion_table(study))
    error = f'<div class="alarm">{html.escape(str(study.get("error")))}</div>' if study.get("error") else ""
    body = (f"<h1>{html.escape(name)}</h1><p class=\"sub\">{html.escape(str(study.get('id', '')))} · "
            f"{html.escape(str(study.get('message', '')))}</p>" + error
            + '<div class="cards">' + "".join(f'<div class="card">{html.escape(k)}<b>{html.escape(v)}</b></div>'
                                              for k, v in cards) + "</div>"
            + _p("Cost: " + str((study.get("cost") or {}).get("text", "–")))
            + "".join(chart_divs) + extra
            + "<h2>Runs</h2>" + report_html._table(runs_table(study))
            + "<h2>Spec</h2><pre>" + html.escape(json.dumps(study.get("spec") or {}, indent=2)) + "</pre>")
    return report_html._page(f"{name}: {study.get('kind')} study", body, specs)


__all__ = ["runs_table", "study_report_html"]
