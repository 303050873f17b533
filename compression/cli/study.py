"""The study commands of ``python -m compression``: ``study`` (foreground) and ``studies`` (the kinds).

``python -m compression study SPEC.json --out DIR`` runs a study in this process with a progress
bar: its runs are run folders under ``DIR/runs/``, its record ``DIR/study.json``. Running the same
command again on the same folder goes on where it stopped (finished runs are reused: same
resolved recipe, same run). ``submit``, ``jobs``, ``status``, ``cancel`` and ``logs`` take studies
on the background workers (compression/cli/jobs.py). Exit codes: 0 the study succeeded, 1 it
failed, 2 a bad spec (one line naming the field), 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from compression.errors import Cancelled, UserError
from compression.studies import record as rec

RUNS = "runs"
LATENCY_WAIT_ENV = "COMPRESSION_LATENCY_WAIT_S"  # the engine's wait for a quiet machine before timing latency


def add_study_commands(subparsers) -> None:
    p = subparsers.add_parser("study", help="run a study (sweep, sensitivity, lottery, forgetting, robustness) in "
                                            "the foreground with a progress bar")
    p.add_argument("spec", help="study spec JSON file (see examples/studies/ and: python -m compression studies)")
    p.add_argument("--out", required=True, help="folder for study.json and the run folders (runs/...); the same "
                                                "folder again goes on where it stopped")
    p.add_argument("--write-recipe", metavar="FILE", default=None,
                   help="sensitivity: write a recipe with the suggested per-layer sparsities to FILE")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_study)

    p = subparsers.add_parser("studies", help="list the study kinds with their spec fields")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_studies)


def _esc(value) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {_esc(message)}", file=sys.stderr)
    return code


def slug(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)


# --- the foreground backend --------------------------------------------------------------------------


class LocalBackend:
    """Runs a study's runs one after the other in this process, into ``out/runs/<key>``."""

    def __init__(self, out: Path, progress, total: callable):
        from compression.studies.kind import Outcome

        self.out, self.progress, self.total = out, progress, total
        self.Outcome = Outcome
        self.failed: dict[str, str] = {}
        self.done = 0

    def _folder(self, ref: str) -> Path:
        return self.out / ref

    def start(self, key: str, recipe: dict, study_id: str) -> tuple[str, bool]:
        from compression.recipe import Recipe
        from compression.store.workspace import read_json

        ref = f"{RUNS}/{slug(key)}"
        folder = self._folder(ref)
        if (folder / "report.json").is_file():
            old = read_json(folder / "recipe.json")
            if isinstance(old, dict) and rec.recipe_hash(old) == rec.recipe_hash(recipe):
                self.done += 1
                return ref, True
        if folder.exists():
            shutil.rmtree(folder)  # a run of ours that did not finish, or of another recipe
        folder.mkdir(parents=True)
        from compression.engine.pipeline import run_recipe  # TensorFlow: only in this command

        index = self.done + 1
        label = recipe.get("name", key)

        def progress(event: dict) -> None:
            if self.progress is None:
                return
            total = max(1, self.total())
            frac = float(event.get("fraction") or 0.0)
            self.progress(dict(event, fraction=min(1.0, (self.done + frac) / total),
                               message=f"run {index}/{total} {label}: {event.get('message') or ''}"))

        rec.log(self.out, f"running {ref} ({_esc(label)})")
        t0, c0 = time.monotonic(), time.process_time()
        try:
            run_recipe(Recipe.from_dict(recipe), folder, progress)
            rec.log(self.out, f"finished {ref} in {time.monotonic() - t0:.0f} s ({time.process_time() - c0:.0f} s CPU)")
        except (KeyboardInterrupt, Cancelled):
            raise
        except UserError as e:
            self.failed[ref] = str(e)
        except Exception as e:  # noqa: BLE001 - the study fails with the reason; the traceback stays in the run
            first = (str(e).strip().splitlines() or [""])[0]
            self.failed[ref] = f"{type(e).__name__}: {first}" if first else type(e).__name__
            (folder / "log.txt").write_text(traceback.format_exc())
        self.done += 1
        return ref, False

    def outcome(self, ref: str):
        folder = self._folder(ref)
        if ref in self.failed:
            return self.Outcome("", "failed", folder, self.failed[ref], ref)
        if (folder / "report.json").is_file():
            return self.Outcome("", "succeeded", folder, None, ref)
        return self.Outcome("", "failed", folder if folder.is_dir() else None, "it did not finish", ref)

    def run_dir(self, ref: str) -> Path | None:
        folder = self._folder(ref)
        return folder if folder.is_dir() else None

    def cancel(self, ref: str, study_id: str) -> None:
        pass  # nothing runs in the background


# --- commands ------------------------------------------------------------------------------------------


def _prepare(out: Path, spec) -> dict | None:
    """The record to go on from (None: a new study); UserError for a folder that is not this study's."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    record, _problem = rec.read_record(out)
    if record is None:
        if any(out.iterdir()):
            raise UserError(f"--out {out} is not empty and holds no study (study.json); give a new folder")
        return None
    if record.get("spec") != spec.to_dict():
        raise UserError(f"--out {out} holds another study ({_esc(record.get('kind'))} "
                        f"{_esc(record.get('name'))}); give a new folder")
    return record


def cmd_study(args) -> int:
    from compression import studies
    from compression.cli.main import ProgressBar
    from compression.studies.driver import advance

    try:
        spec = studies.load_spec(args.spec)
        if args.write_recipe and spec.kind != "sensitivity":
            raise UserError(f"--write-recipe: only a sensitivity study suggests a recipe, not a {spec.kind} study")
        out = Path(args.out).expanduser().absolute()
        record = _prepare(out, spec)
    except UserError as e:
        return _fail(str(e))
    cost = studies.cost(spec)
    # a study compares accuracy and size: its runs time latency at once instead of waiting for a quiet machine
    os.environ.setdefault(LATENCY_WAIT_ENV, "0")
    if record is None:
        out.mkdir(parents=True, exist_ok=True)
        record = rec.new_record(rec.new_study_id(), spec, cost)
        rec.write_record(out, record)
        rec.log(out, f"{spec.kind} study {_esc(spec.name)}: {cost.text}")
    elif record["state"] != "succeeded":
        record.update(state="running", finished_at=None, error=None)
        rec.log(out, "going on where it stopped")
    print(f"{spec.kind} study {_esc(spec.name)}: {cost.text}", file=sys.stderr)
    bar = None if args.quiet else ProgressBar()
    backend = LocalBackend(out, bar, lambda: (record.get("progress") or {}).get("planned") or 1)
    log = logging.getLogger("compression")
    level, log.level = log.level, logging.WARNING  # the bar says what runs; warnings still show
    try:
        while record["state"] == "running":
            step = advance(record, backend)
            record = step.record
            if step.arrays:
                rec.write_arrays(out, step.arrays)
            rec.write_record(out, record)
            for line in step.events:
                rec.log(out, line)
            if record["state"] == "running" and not step.started:
                record.update(state="failed", error="nothing left to run, yet not finished", message="failed")
                rec.write_record(out, record)
    except (KeyboardInterrupt, Cancelled):
        if bar:
            bar.close()
        record.update(state="cancelled", message="interrupted; run the same command again to go on (finished runs "
                                                 "are reused)")
        rec.write_record(out, record)
        print("interrupted: run the same command again to go on", file=sys.stderr)
        return 130
    finally:
        log.setLevel(level)
    if bar:
        bar.close()
    print(summary(record))
    if record["state"] != "succeeded":
        return _fail(f"the study {record['state']}: {record.get('error') or record.get('message')}", 1)
    print(f"wrote {_esc(out / rec.STUDY_FILE)} and {len(record['runs'])} run folders under {_esc(out / RUNS)}")
    if args.write_recipe:
        return write_recipe(record, Path(args.write_recipe))
    return 0


def write_recipe(record: dict, path: Path) -> int:
    from compression.recipe import Recipe
    from compression.studies.kinds.sensitivity import suggested_recipe

    try:
        recipe = Recipe.from_dict(suggested_recipe(record))
    except UserError as e:
        return _fail(str(e), 1)
    path.write_text(recipe.to_json() + "\n")
    print(f"wrote {_esc(path)}: prune {', '.join(f'{_esc(k)} {v:g}' for k, v in record['suggested'].items())}")
    return 0


def summary(record: dict) -> str:
    """The study's result in a few lines (the numbers; study.json has them all)."""
    kind = record.get("kind")
    lines = [f"{_esc(record.get('name'))} ({kind}): {record.get('state')}, {rec.summary(record)}"]
    if record.get("state") != "succeeded":
        return lines[0]
    if kind == "sweep":
        for p in record["points"]:
            m = "" if p["measured"] is None else f" (measured {p['measured']:.4g})"
            lines.append(f"  {record['parameter']} {p['level']:g}{m}: accuracy {p['accuracy']:.2%}, "
                         f"zipped TFLite {p['tflite_zip_bytes'] or 0:,.0f} B")
        t = record["threshold"]
        lines.append(f"  redundancy threshold: {record['parameter']} {t['level']:g}" if t["level"] is not None
                     else "  redundancy threshold: none of the levels stays within the tolerance")
    elif kind == "sensitivity":
        for layer in record["layers"]:
            pts = ", ".join(f"{p['sparsity']:g}: {p['accuracy']:.2%}" for p in layer["points"])
            lines.append(f"  {_esc(layer['name'])}: {pts}")
        lines.append("  suggested: " + (", ".join(f"{_esc(k)} {v:g}" for k, v in record["suggested"].items()) or "none"))
    elif kind == "lottery":
        for r in record["rounds"]:
            ctl = "".join(f", {n} {r[f'{n}_accuracy']:.2%}" for n in ("reinit", "random_mask")
                          if r.get(f"{n}_accuracy") is not None and r["round"])
            lines.append(f"  round {r['round']}: {r['remaining']:.1%} of the weights, ticket {r['ticket_accuracy']:.2%}"
                         f"{ctl}, early stop at iteration {r['early_stop_iteration']}")
    elif kind == "forgetting":
        t = record["test"]
        lines.append(f"  baseline population: accuracy {record['baseline']['accuracy_mean']:.2%}; test: p < "
                     f"{t['p_threshold']:g} after {t['correction']} correction")
        for lv in record["levels"]:
            hit = ", ".join(_esc(c) for c in lv["significant_classes"]) or "none"
            lines.append(f"  level {lv['level']:g}: accuracy {lv['accuracy_mean']:.2%}, significantly impacted: {hit}; "
                         f"{lv['pie_count']} PIEs")
    elif kind == "robustness":
        for r in record["corruptions"]:
            lines.append(f"  {_esc(r['setting']):>22}: baseline {r['baseline_accuracy']:.2%}, compressed "
                         f"{r['compressed_accuracy']:.2%} (gap {r['gap'] * 100:+.1f} pts)")
    return "\n".join(lines)


def cmd_studies(args) -> int:
    from compression import studies
    from compression.cli.main import param_line

    catalogue = studies.catalogue()
    if args.json:
        print(json.dumps(catalogue, indent=2))
        return 0
    for k in catalogue["kinds"]:
        print(f"{k['kind']}: {k['title']}")
        print(f"  {k['help']}")
        print("  every spec: kind, name, dataset, baseline, max_train_samples (as in recipes)")
        for name, p in k["params"].items():
            print(param_line(name, p))
        print()
    return 0


__all__ = ["LocalBackend", "add_study_commands", "cmd_studies", "cmd_study", "summary", "write_recipe"]
