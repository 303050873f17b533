"""A test workspace built from real runs, without TensorFlow.

tests/fixtures/runs/ holds three ordinary runs of the engine on digits (made by
tests/fixtures/make_fixtures.py: a baseline, prune -> cluster -> QAT, prune only): their
report.json, weights.json, predictions.npz and recipe.json as the engine wrote them.
``make_workspace(home)`` installs them as succeeded jobs beside a failed and a running one; the
odd cases (a collapsed run, a high learning rate, a model with many layers) are derived from
them by changing named fields, so every page and chart test runs on what the engine writes.
Model files are placeholders: no page test runs them.
"""

from __future__ import annotations

import copy
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "runs"
APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE_ERROR_ICON = ":material/error:"  # views/_ui.PAGE_ERROR_ICON: the page itself failed


def page_errors(at) -> list[str]:
    """The error boxes of an AppTest run that say the page failed (content errors, such as a health alarm,
    a failed job's reason or a refused input, carry their own icons): a page test must see none."""
    return [str(e.value) for e in at.error if (e.proto.icon or None) in (None, PAGE_ERROR_ICON)]


def app(page: str | None = None, allow_errors: bool = False, timeout: float = 30, **query):
    """A page rendered as a browser would get it (``page``: a views/ file to switch to, with the query
    given again). Under the tests a crash in a page body raises (COMPRESSION_PAGE_RAISE), and a page
    that shows an error box of its own fails here too."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(page)
        at.query_params.update(query)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    if not allow_errors:
        assert not page_errors(at), page_errors(at)
    return at


def texts(at) -> str:
    """The page's text as a reader sees it: the escapes that keep names from files inert (views/_ui.md) undone."""
    import html
    import re

    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [w.value for w in at.warning]
    parts += [i.value for i in at.info] + [s.value for s in at.success] + [c.value for c in at.caption]
    parts += [h.value for h in at.subheader]
    return html.unescape(re.sub(r"\\([^\w\s])", r"\1", "\n".join(str(p) for p in parts)))


def fixture_report(name: str) -> dict:
    """A fresh copy of a real run's report.json."""
    return json.loads((FIXTURES / name / "report.json").read_text())


def layer_names(name: str = "compress") -> list[str]:
    return [row["name"] for row in fixture_report(name)["baseline"]["metrics"]["layers"]]


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_job(run_dir: Path, job_id: str, recipe: dict, state: str, *, progress=1.0, stage=None,
              epoch=None, epochs=None, message="", error=None, started=None, finished=None) -> dict:
    now = datetime.now(timezone.utc)
    created = now - timedelta(minutes=5)
    record = {
        "id": job_id, "name": recipe["name"], "kind": "compress" if recipe["steps"] else "baseline",
        "recipe": recipe, "state": state, "progress": progress, "stage": stage, "epoch": epoch,
        "epochs": epochs, "message": message, "created_at": _iso(created),
        "started_at": _iso(started if started is not None else (None if state == "queued" else created + timedelta(seconds=2))),
        "finished_at": _iso(finished if finished is not None else
                            (created + timedelta(seconds=64) if state in ("succeeded", "failed", "cancelled") else None)),
        "error": error, "run_dir": str(run_dir.resolve()),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.json").write_text(json.dumps(recipe, indent=2))
    (run_dir / "status.json").write_text(json.dumps(record, indent=2))
    return record


def install_run(home: Path, job_id: str, fixture: str, *, name: str | None = None, baseline_path: str | None = None,
                report_changes=None) -> dict:
    """A succeeded job holding a fixture run; ``baseline_path`` points its recipe at another run's
    baseline.keras (as the Pipeline page's recipes do), ``report_changes(report)`` derives a variant."""
    d = Path(home) / "runs" / job_id
    d.mkdir(parents=True, exist_ok=True)
    for f in ("weights.json", "predictions.npz"):
        shutil.copy(FIXTURES / fixture / f, d / f)
    report = fixture_report(fixture)
    recipe = copy.deepcopy(report["recipe"])
    if name:
        recipe["name"] = name
    if baseline_path:
        recipe["baseline"] = {"path": baseline_path, "seed": recipe["baseline"].get("seed", 0)}
    report["recipe"] = recipe
    if report_changes is not None:
        report_changes(report)
    job = write_job(d, job_id, recipe, "succeeded", stage="export", message="done")
    (d / "report.json").write_text(json.dumps(report, indent=2))
    for key, file_name in report["artifacts"].items():  # placeholders for the model files
        if not (d / file_name).exists():
            (d / file_name).write_bytes(b"TFL3" + bytes(64) if file_name.endswith(".tflite") else b"PK" + bytes(32))
    (d / "log.txt").write_text("baseline\n" + "".join(f"{s['method']}\n" for s in report["stages"]) + "export\n")
    return job


def make_workspace(home: Path) -> dict[str, dict]:
    """A baseline, prune -> cluster -> QAT and prune-only run (real), a failed and a running job."""
    runs = Path(home) / "runs"
    jobs = {}
    now = datetime.now(timezone.utc)
    jobs["baseline"] = install_run(home, "20260101-000000-0000b1", "baseline")
    base_path = str((runs / "20260101-000000-0000b1" / "baseline.keras").resolve())
    jobs["compress"] = install_run(home, "20260101-000100-0000c2", "compress", baseline_path=base_path)
    jobs["prune"] = install_run(home, "20260101-000200-0000d3", "prune", baseline_path=base_path)
    c_recipe = jobs["compress"]["recipe"]

    f_dir = runs / "20260101-000300-0000e4"
    jobs["failed"] = write_job(f_dir, f_dir.name, dict(c_recipe, name="broken-model"), "failed", progress=0.1,
                               stage="baseline", error="baseline.path: broken.keras is not a Keras model file")
    (f_dir / "log.txt").write_text("Traceback (most recent call last):\n  ...\nModelLoadError: broken.keras is not a Keras model file\n")

    r_dir = runs / "20260101-000400-0000f5"
    jobs["running"] = write_job(r_dir, r_dir.name, dict(c_recipe, name="still-running"), "running", progress=0.42,
                                stage="prune", epoch=1, epochs=2, message="prune: epoch 1/2",
                                started=now - timedelta(seconds=30))
    status = json.loads((r_dir / "status.json").read_text())
    status.update(host="synthetic-worker-host", heartbeat_at=_iso(now), phase="train", stage_index=1, stage_count=4)
    (r_dir / "status.json").write_text(json.dumps(status, indent=2))
    jobs["running"] = dict(jobs["running"], **status)
    (r_dir / "progress.json").write_text(json.dumps({"phase": "train", "stage": "prune", "stage_index": 1,
                                                     "stage_count": 4, "epoch": 1, "epochs": 2, "fraction": 0.42,
                                                     "message": "prune: epoch 1/2"}))
    return jobs


def add_collapsed_run(home: Path, name: str = "collapsed-demo") -> dict:
    """The compress run as issue 9 found such runs: a weak baseline (29.5%) on 600 samples, an exported
    file at 8.9% that predicts one class, its pruning mask having jumped in one update (frequency 100
    on 5 optimizer steps per epoch)."""

    def collapse(report):
        recipe = report["recipe"]
        recipe.update(max_train_samples=600)
        recipe["baseline"] = {"arch": "dense_redundant", "epochs": 2, "batch_size": 128, "seed": 0,
                              "learning_rate": 0.001}
        recipe["steps"][0].update(batch_size=128, epochs=1, frequency=100, end_step=None)
        report["baseline"]["metrics"]["accuracy"] = 0.295
        for st in report["stages"]:
            st["metrics"]["accuracy"] = 0.12
        report["final"]["accuracy"] = 0.089
        report["final"]["per_class_recall"] = [1.0] + [0.0] * 9
        report["dataset"]["n_train"] = 1294

    d = Path(home) / "runs" / "20260101-000500-0000a6"
    return install_run(home, d.name, "compress", name=name, baseline_path=str(d / "baseline.keras"),
                       report_changes=collapse)


def add_high_lr_run(home: Path, learning_rate: float = 0.5, name: str = "high-lr") -> dict:
    """The prune-only run as if its pruning step had fine-tuned at ``learning_rate`` and lost most of
    its accuracy (issue 14: such a run took down Results, Runs and Compare)."""

    def high(report):
        report["recipe"]["steps"][0]["learning_rate"] = learning_rate
        for st in report["stages"]:
            st["metrics"]["accuracy"] = 0.31
        report["final"]["accuracy"] = 0.31

    return install_run(home, "20260101-000700-0000c8", "prune", name=name, report_changes=high)


def add_big_run(home: Path, copies: int = 13, name: str = "big-model") -> dict:
    """The compress run with every layer repeated ``copies`` times (40 layers): the page-speed bench's
    stand-in for a model with millions of weights (60 bins per layer per stage, whatever the size)."""
    d = Path(home) / "runs" / "20260101-000600-0000b7"

    def widen(report):
        def rows(m):
            m["layers"] = [dict(row, name=f"{row['name']}_{i}") for i in range(copies) for row in m["layers"]]
        rows(report["baseline"]["metrics"])
        for st in report["stages"]:
            rows(st["metrics"])
        rows(report["final"])

    job = install_run(home, d.name, "compress", name=name, report_changes=widen)
    weights = json.loads((d / "weights.json").read_text())
    for stage in weights["stages"]:
        stage["layers"] = [dict(e, name=f"{e['name']}_{i}") for i in range(copies) for e in stage["layers"]]
    (d / "weights.json").write_text(json.dumps(weights))
    return job


def add_many_runs(home: Path, n: int) -> list[dict]:
    """n more succeeded runs (copies of the prune-only run under new ids and names) for page-speed benchmarks."""
    runs = Path(home) / "runs"
    src = runs / "20260101-000200-0000d3"
    out = []
    for i in range(n):
        job_id = f"20260102-{i // 3600:02d}{(i // 60) % 60:02d}{i % 60:02d}-{i:06x}"
        d = runs / job_id
        shutil.copytree(src, d)
        status = json.loads((d / "status.json").read_text())
        status.update(id=job_id, name=f"sweep run {i:02d} with a rather long descriptive name", run_dir=str(d.resolve()))
        status["recipe"] = dict(status["recipe"], name=status["name"])
        (d / "status.json").write_text(json.dumps(status, indent=2))
        (d / "recipe.json").write_text(json.dumps(status["recipe"], indent=2))
        out.append(status)
    return out


def recall_from_predictions(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-class recall of the baseline and the final file, recomputed from predictions.npz (a check
    that does not go through the charts)."""
    with np.load(Path(run_dir) / "predictions.npz") as z:
        y, b, f = z["y_true"], z["baseline_pred"], z["final_pred"]
    classes = range(int(y.max()) + 1)
    return (np.array([np.mean(b[y == c] == c) for c in classes]), np.array([np.mean(f[y == c] == c) for c in classes]))
