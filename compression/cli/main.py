"""Command line: python -m compression --help.

Everything the dashboard does can be done here: train a baseline, check and run a
recipe in the foreground, and (with the job commands) submit recipes to background
workers and follow them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import compression  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from compression.recipe.choices import Arch, DatasetName, ExportMode, options
from compression.errors import Cancelled, ContainerError, RecipeError, UserError
from compression.recipe import Recipe, training_epochs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _fail(message: str) -> int:
    """One line on stderr, control characters escaped (a path may hold ANSI sequences); exit status 2."""
    print(f"error: {_esc(message)}", file=sys.stderr)
    return 2


class ProgressBar:
    """One line on stderr, redrawn at most ten times a second."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width, self.last = stream, width, 0.0
        self.tty = stream.isatty()
        self.last_message = ""

    def __call__(self, event: dict) -> None:
        now = time.monotonic()
        message = event.get("message") or ""
        stage_changed = message.endswith("starting") or event.get("phase") != "train"
        if now - self.last < 0.1 and not stage_changed:
            return
        self.last = now
        frac = float(event.get("fraction") or 0.0)
        filled = int(round(frac * self.width))
        extra = ""
        if event.get("loss") is not None:
            extra = f" loss {event['loss']:.3f}"
            if event.get("accuracy") is not None:
                extra += f" acc {event['accuracy']:.3f}"
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {frac:6.1%} {message}{extra}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
        elif stage_changed and message != self.last_message:
            self.stream.write(line + "\n")
        self.last_message = message
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _esc(value) -> str:
    """A value for the terminal: control characters (and with them ANSI escapes) written as escapes."""
    from compression.inputs.paths import escaped

    return escaped(value)


def _fig(d, key: str, spec: str) -> str:
    """One figure of a report formatted, or "?" where the report lacks it (a report from another version)."""
    from compression.recipe import figures

    value = figures.number(d.get(key)) if isinstance(d, dict) else None
    return "?" if value is None else format(value, spec)


def _summary(report: dict) -> str:
    """The run in a few lines; sizes from the declared size figures (compression.recipe.figures). A figure the
    report lacks is shown as "?", never a traceback."""
    from compression.recipe import figures

    b = (report.get("baseline") or {}).get("metrics") or {}
    f = report.get("final") if isinstance(report.get("final"), dict) else {}
    base_sizes = ", ".join(f"{fig.label} {int(b[fig.field]):,} B" for fig in figures.size_figures()
                           if figures.number(b.get(fig.field)) is not None and fig.stages)
    lines = [f"baseline: accuracy {_fig(b, 'accuracy', '.4f')}, {_fig(b, 'params_total', ',.0f')} parameters, "
             f"{base_sizes}, {_fig(b, 'latency_ms', '.3f')} ms"]
    for s in report.get("stages") or []:
        if not isinstance(s, dict):
            continue
        m = s.get("metrics") or {}
        lines.append(
            f"{_esc(s.get('method'))} ({_esc(s.get('variant'))}): accuracy {_fig(m, 'accuracy', '.4f')}, sparsity "
            f"{_fig(m, 'sparsity', '.1%')}, at most {figures.max_distinct(m) or 0} distinct values per layer, "
            f"{_fig(s, 'wall_s', '.1f')} s"
        )
    sizes = []
    for fig in figures.size_figures(exported_only=True):
        value, ref = figures.number(f.get(fig.field)), figures.number(b.get(fig.ratio_to))
        if value is not None:
            sizes.append(f"{fig.label} {int(value):,} B" + (f" ({ref / value:.1f}x smaller than the baseline's "
                                                             f"{fig.ratio_to.replace('_bytes', '').replace('_', ' ')})"
                                                             if ref and value else ""))
    lines.append(
        f"exported {_esc(f.get('export'))}: accuracy {_fig(f, 'accuracy', '.4f')}, sparsity {_fig(f, 'sparsity', '.1%')}, "
        f"at most {figures.max_distinct(f) or 0} distinct values per layer, {_fig(f, 'latency_ms', '.3f')} ms; "
        + "; ".join(sizes)
    )
    for sentence in report.get("undone") or []:
        lines.append(f"undone: {_esc(sentence)}")
    return "\n".join(lines)


def preflight(recipe: Recipe) -> None:
    """Cheap checks of the files a recipe names, before anything is written."""
    if recipe.dataset.npz:
        from compression.inputs import data

        data.load_npz(recipe.dataset.npz)
    if recipe.baseline.path:
        from compression.inputs import modelfile  # the engine's own inspector, without importing TensorFlow

        modelfile.inspect(recipe.baseline.path)
    from compression.recipe.layers import check_layer_names

    check_layer_names(recipe)  # layer names the baseline lacks: refused before anything trains


def run_foreground(recipe: Recipe, out: Path, quiet: bool = False) -> int:
    from compression.cli.outdir import commit_staged, prepare_out_dir, run_folder, undo_out_dir

    try:
        out, before, created_top = prepare_out_dir(out)  # refuse a folder that is not ours
        preflight(recipe)
    except UserError as e:
        return _fail(str(e))
    folder = run_folder(out, before)  # an earlier run in ``out`` stays whole until this one succeeded
    from compression.engine.pipeline import run_recipe  # TensorFlow loads here, after the cheap checks
    bar = None if quiet else ProgressBar()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("compression")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        report = run_recipe(recipe, folder, progress=bar)
        commit_staged(out, folder)
    except BaseException as e:
        if bar:
            bar.close()
        undo_out_dir(out, before, created_top)  # only what this run created
        if isinstance(e, (KeyboardInterrupt, Cancelled)):
            print("cancelled", file=sys.stderr)
            return 130
        if isinstance(e, UserError):
            return _fail(str(e))
        raise
    finally:
        log.removeHandler(handler)
    if bar:
        bar.close()
    print(_summary(report))
    from compression.recipe import exporters

    shown = {"report"} | {e.key for e in exporters.all_exporters()}
    files = ", ".join(str(out / name) for key, name in report.get("artifacts", {}).items() if key in shown)
    print(f"wrote {_esc(files)}")
    return 0


# --- commands ----------------------------------------------------------------------------------


def cmd_run(args) -> int:
    from compression.store.workspace import resolve_recipe_paths

    try:
        recipe = resolve_recipe_paths(Recipe.load(args.recipe), Path(args.recipe).resolve().parent)
    except RecipeError as e:
        return _fail(str(e))
    return run_foreground(recipe, Path(args.out), args.quiet)


def cmd_check(args) -> int:
    from compression.recipe.ordering import plan
    from compression.store.workspace import resolve_recipe_paths

    try:
        recipe = Recipe.load(args.recipe)
        preflight(resolve_recipe_paths(recipe, Path(args.recipe).resolve().parent))
    except UserError as e:
        return _fail(str(e))
    notes = {}
    from compression.recipe import methods

    needs_kernels = [(i, s) for i, s in enumerate(recipe.steps) if methods.get(s.method).needs_kernels(s)]
    if needs_kernels:  # settings that depend on the kernels' shapes: build (or load) the baseline, untrained
        from compression.engine.selection import recipe_kernels  # TensorFlow loads here

        try:
            kernels = recipe_kernels(recipe)
            for i, step in needs_kernels:
                notes[i] = methods.get(step.method).check_kernels(step, kernels, f"steps[{i}]")
        except UserError as e:
            return _fail(str(e))
    print(f"{recipe.name}: {len(recipe.steps)} steps, {training_epochs(recipe)} training epochs, export {recipe.export.value}")
    for i, p in enumerate(plan(recipe)):
        print(f"  {i + 1}. {p.method} -> {p.variant}: {p.description}")
        for w in p.warnings:
            print(f"     warning: {w}")
        for n in notes.get(i, []):
            print(f"     note: {_esc(n)}")
    return 0


def cmd_train(args) -> int:
    data = {"npz": args.dataset} if args.dataset.lower().endswith(".npz") else args.dataset
    try:
        recipe = Recipe.from_dict({
            "name": args.name or f"baseline-{args.arch}",
            "dataset": data,
            "baseline": {"arch": args.arch, "epochs": args.epochs, "batch_size": args.batch_size,
                         "seed": args.seed},
            "steps": [],
            "export": args.export,
            "max_train_samples": args.max_train_samples,
            "latency_runs": args.latency_runs,
        })
    except RecipeError as e:
        return _fail(str(e))
    return run_foreground(recipe, Path(args.out), args.quiet)


def methods_catalogue() -> dict:
    """Every registered method and exporter, with its parameters, from the registries."""
    from compression.recipe import exporters, methods

    return {"methods": [m.describe_params() for m in methods.all_methods()],
            "exporters": [e.describe() for e in exporters.all_exporters()]}


def param_line(name: str, p: dict) -> str:
    """One declared parameter (``Param.describe()`` plus its default) as a line of ``methods`` and ``studies``."""
    import json

    bounds = ""
    if "choices" in p:
        bounds = " one of " + ", ".join(p["choices"])
    elif "min" in p or "max" in p:
        lo = ("(" if p.get("min_open") else "[") + (f"{p['min']:g}" if "min" in p else "-inf")
        hi = (f"{p['max']:g}" if "max" in p else "inf") + (")" if p.get("max_open") else "]")
        bounds = f" in {lo}, {hi}"
    unit = f" {p['unit']}" if p.get("unit") else ""
    return f"    {name} ({p['kind']}{unit}, default {json.dumps(p['default'])}{bounds}): {p['help']}"


def cmd_methods(args) -> int:
    import json

    catalogue = methods_catalogue()
    if args.json:
        print(json.dumps(catalogue, indent=2))
        return 0
    for m in catalogue["methods"]:
        print(f"{m['name']}: {m['title']}")
        print(f"  {m['help']}")
        if len(m["variants"]) > 1:
            print("  variants: " + "; ".join(f"{k} ({v})" for k, v in m["variants"].items()))
        for name, p in m["params"].items():
            print(param_line(name, p))
        print()
    print("exporters (the files a run writes, where they apply):")
    for e in catalogue["exporters"]:
        print(f"  {e['file_name']} ({e['key']}): {e['help']}")
    return 0


def cmd_examples(args) -> int:
    for path in sorted(EXAMPLES.glob("*.json")):
        try:
            recipe = Recipe.load(path)
            print(f"{path.name}: {recipe.name} ({len(recipe.steps)} steps, {training_epochs(recipe)} epochs)")
        except RecipeError as e:
            print(f"{path.name}: invalid ({e})")
    return 0


MAX_CONTAINER_BYTES = 1 << 31  # a model.dc is smaller than the TFLite file it holds (at most 2 GB)


def cmd_unpack(args) -> int:
    """model.dc -> model.tflite, byte-identical (TensorFlow-free)."""
    from compression.dc import decode
    from compression.inputs.paths import read_regular_file, shown, user_path

    try:
        src, out = user_path(args.container, "container"), user_path(args.out, "--out")
        if out.exists() and not args.force:
            return _fail(f"{shown(out)} exists; pass --force to overwrite it")
        blob = read_regular_file(src, MAX_CONTAINER_BYTES, "container")
        if len(blob) > MAX_CONTAINER_BYTES:
            return _fail(f"container {shown(src)} is larger than {MAX_CONTAINER_BYTES:,} bytes; no model.dc is")
        tflite = decode(blob)
    except UserError as e:
        return _fail(f"{src.name}: {e}" if "src" in locals() and isinstance(e, ContainerError) else str(e))
    try:
        out.write_bytes(tflite)
    except OSError as e:
        return _fail(f"cannot write {shown(out)}: {e.strerror or e}")
    print(f"wrote {_esc(out)} ({len(tflite):,} B from {len(blob):,} B)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compression",
        description="Model-compression studio: prune, cluster and quantize Keras models, export TFLite, "
        "and measure what each step cost and saved.",
        epilog="Recipes are JSON; see examples/ and docs/ARCHITECTURE.md. Exit status 2 means bad input "
        "(the message names the field and the allowed values).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run a recipe in the foreground with a progress bar")
    p.add_argument("recipe", help="recipe JSON file")
    p.add_argument("--out", required=True, help="run folder to write (report.json, model.tflite, ...)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train a baseline model and measure it (a recipe with no steps)")
    p.add_argument("--dataset", default=DatasetName.DIGITS.value,
                   help=f"one of {', '.join(options(DatasetName))}, or a .npz file (default digits)")
    p.add_argument("--arch", default=Arch.LENET_300_100.value, choices=options(Arch))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train-samples", type=int, default=None, help="cap the training split")
    p.add_argument("--export", default=ExportMode.FLOAT32.value, choices=options(ExportMode))
    p.add_argument("--latency-runs", type=int, default=50)
    p.add_argument("--name", default=None)
    p.add_argument("--out", required=True, help="run folder to write (baseline.keras, report.json, ...)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("check", help="validate a recipe and explain its steps without running it")
    p.add_argument("recipe")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("methods", help="list the compression methods and exporters with their parameters")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("unpack", help="restore model.tflite from a Deep Compression container (model.dc)")
    p.add_argument("container", help="the model.dc file")
    p.add_argument("--out", required=True, help="the .tflite file to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=cmd_unpack)

    p = sub.add_parser("examples", help="list the ready recipes under examples/")
    p.set_defaults(func=cmd_examples)

    try:
        from compression.cli.jobs import add_job_commands
    except ImportError:
        add_job_commands = None
    if add_job_commands is not None:
        add_job_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # The reader went away (python -m compression jobs | head -1): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush cannot raise again.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as e:  # a read-only or full disk, a name too long: one line, not a traceback
        from compression.inputs.paths import shown

        where = f" {shown(e.filename)}" if getattr(e, "filename", None) else ""
        print(f"error: cannot read or write{where}: {_esc(e.strerror or e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
