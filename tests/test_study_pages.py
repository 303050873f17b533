"""The Studies page under streamlit.testing.v1.AppTest, and the study charts and HTML report, on the
records of real studies (tests/fixtures/studies/: the quick digits examples as the command line wrote
them, made by tests/fixtures/make_study_fixtures.py). No TensorFlow, no worker."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from compression.jobs import studies  # noqa: E402
from compression.studies import record as rec  # noqa: E402
from compression.studio import study_charts, study_report  # noqa: E402
from synthetic import make_workspace, page_errors, texts  # noqa: E402
import synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "studies"
KINDS = ["sweep", "sensitivity", "lottery", "forgetting", "robustness"]
REFUSED_ICON = ":material/block:"


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_HOME", str(tmp_path))
    monkeypatch.setenv("COMPRESSION_EMBEDDED_WORKER", "0")
    make_workspace(tmp_path)
    return tmp_path


def fixture(kind: str) -> dict:
    return json.loads((FIXTURES / kind / "study.json").read_text())


def install(home: Path, kind: str, study_id: str | None = None, **changes) -> str:
    """A fixture study in the workspace under a new id (its runs are folders of the example's run, not jobs)."""
    record = dict(fixture(kind), **changes)
    study_id = study_id or f"s-20260101-00000{KINDS.index(kind)}-abcde{KINDS.index(kind)}"
    record["id"] = study_id
    folder = rec.study_dir(study_id, home)
    folder.mkdir(parents=True)
    rec.write_record(folder, record)
    if (FIXTURES / kind / "study.npz").is_file():
        shutil.copy(FIXTURES / kind / "study.npz", folder / "study.npz")
    return study_id


def app(allow_errors: bool = False, **query):
    """The Studies page, with the query given."""
    return synthetic.app("views/studies.py", allow_errors=allow_errors, timeout=60, **query)


# --- charts, tables and the report, from the real records --------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_kinds_figures_are_charts_with_their_numbers_in_a_table(kind):
    study = fixture(kind)
    figs = study_charts.figures(study)
    assert figs, kind
    for fig in figs:
        spec = fig.chart.to_dict()
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
        assert not fig.table.empty and all(isinstance(v, (str, int, np.integer)) for v in fig.table.iloc[0])
    if kind == "sweep":
        assert list(figs[0].table["level"]) == ["baseline"] + [f"{p['level']:g}" for p in study["points"]]
        assert list(figs[0].table["accuracy"])[1:] == [f"{p['accuracy']:.2%}" for p in study["points"]]
    if kind == "lottery":
        assert list(figs[0].table["ticket"]) == [f"{r['ticket_accuracy']:.2%}" for r in study["rounds"]]
    if kind == "forgetting":
        assert len(figs[0].table) == sum(len(lv["classes"]) for lv in study["levels"])
    if kind == "robustness":
        assert len(figs[0].table) == len(study["corruptions"])


def test_the_html_report_escapes_every_value_and_embeds_its_charts():
    study = fixture("sweep")
    study["name"] = "<script>alert(1)</script>"
    study["spec"]["name"] = "</script><b>x</b>"
    page = study_report.study_report_html(study)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "</script><b>x</b>" not in page
    assert page.count("vegaEmbed(") == len(study_charts.figures(study))


# --- the page ----------------------------------------------------------------------------------------------


def test_the_page_creates_a_study_showing_its_cost_first(ws):
    at = app()
    assert at.selectbox(key="sd_kind").options == ["Sweep", "Layer sensitivity", "Lottery ticket",
                                                   "What compression forgets", "Robustness"]
    at.selectbox(key="sd_base").set_value("A new baseline, trained by the study").run()
    at.text_input(key="sd_sweep_levels").set_value("0.5, 0.9").run()
    assert "3 runs (a baseline and 2 levels)" in texts(at)
    at.button(key="sd_submit").click().run()
    assert not at.exception and not page_errors(at)
    [study] = studies.list_studies(ws)
    assert study["kind"] == "sweep" and study["spec"]["levels"] == [0.5, 0.9]
    assert at.query_params["study"] == study["id"]
    # the workspace's digits baseline job is the same recipe (digits, lenet_300_100, 15 epochs, int8): reused
    base, *levels = study["runs"]  # the page showed the study: reading it moved it on
    assert base["key"] == "baseline" and base["reused"] and base["run"] == "20260101-000000-0000b1"
    assert [(e["key"], e["state"], e["reused"]) for e in levels] == [("level-0.5", "queued", False),
                                                                     ("level-0.9", "queued", False)]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kinds_widgets_come_from_its_declarations_and_say_the_cost(ws, kind):
    at = app()
    titles = dict(zip(KINDS, at.selectbox(key="sd_kind").options))
    at.selectbox(key="sd_kind").set_value(kind).run()
    assert not page_errors(at)
    assert "This study will cost" in texts(at), titles[kind]
    from compression import studies as registry

    shown = {w.key for w in [*at.selectbox, *at.text_input, *at.number_input, *at.checkbox, *at.multiselect,
                             *at.text_area] if w.key}
    for name, p in registry.get(kind).spec_type.own_params().items():
        if not p.show_if:
            assert f"sd_{kind}_{name}" in shown, name


def test_a_bad_value_is_refused_in_one_line_and_nothing_starts(ws):
    at = app()
    at.selectbox(key="sd_base").set_value("A new baseline, trained by the study").run()
    at.text_input(key="sd_sweep_levels").set_value("0.5, 1.5").run()
    refused = [e.value for e in at.error if e.proto.icon == REFUSED_ICON]
    assert [r.replace("\\", "") for r in refused] == [
        "levels[1]: prune refuses it: step.final_sparsity: 1.5 is outside [0, 1)"]  # shown with Markdown escaped
    assert not [b for b in at.button if b.key == "sd_submit"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kinds_result_shows_charts_tables_and_downloads(ws, kind):
    study_id = install(ws, kind)
    at = app(study=study_id)
    assert at.header[0].value == fixture(kind)["name"]
    charts = at.get("vega_lite_chart")
    assert len(charts) == len(study_charts.figures(fixture(kind)))
    assert len(at.dataframe) >= len(charts)
    labels = [b.proto.label for b in at.get("download_button")]
    assert "study.json" in labels and "Report (HTML, works offline)" in labels
    if kind == "sensitivity":
        assert "Write the suggested recipe" in labels
    if kind == "forgetting":
        assert "PIEs at level" in texts(at)


def test_a_running_study_shows_its_progress_and_cancels(ws):
    study_id = install(ws, "sweep", state="running", progress={"done": 2, "planned": 5, "active": 1},
                       message="2 of 5 runs done, 1 running")
    at = app(study=study_id)
    assert "2 of 5 runs done" in at.get("progress")[0].proto.text
    at.button(key="sd_cancel_one").click().run()
    assert studies.get_study(study_id, ws, move_on=False)["state"] == "cancelled"


def test_an_unknown_study_link_falls_back_to_the_list(ws):
    install(ws, "lottery")
    at = app(study="s-20990101-000000-ffffff")
    assert "no study s-20990101-000000-ffffff" in texts(at)
    assert "quick lottery" in texts(at)
