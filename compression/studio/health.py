"""Is a finished run any good? Alarms for the Results, Runs and Compare pages.

``assess(report)`` reads a run's report.json (and the recipe inside it) and returns findings:
the exported model is no better than guessing, it lost more than a threshold against its
baseline, or one class lost most of its recall. Each finding carries the likely causes the
report shows (too little training, a pruning mask that jumped in one update, a high learning
rate, ...) and what to change. TensorFlow-free and Streamlit-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compression.errors import UserError
from compression.recipe import Recipe, methods
from compression.recipe.figures import number
from compression.recipe.params import declared_default
from compression.recipe.training import steps_per_epoch
from compression.store.runs import tidy_report

CHANCE_MARGIN = 0.05  # "at chance" = at most 1/num_classes + this
WEAK_BASELINE_MARGIN = 0.25  # a baseline at most 1/num_classes + this (35% for 10 classes) is too weak to compress
DEFAULT_THRESHOLD_PTS = 5.0
CLASS_LOSS_SHARE = 0.5  # a class "loses most of its recall" when it keeps less than half of it
MIN_SAMPLES = 1000  # fewer training samples than this is "few" for the built-in models
MIN_STEPS = 300  # fewer optimizer steps than this is "little training"
HIGH_LR = 1e-2


@dataclass
class Finding:
    kind: str  # "chance", "loss", "class", "weak_baseline"
    message: str  # one line
    causes: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    def to_markdown(self, escape=lambda text: text) -> str:
        """The finding as markdown; ``escape`` makes each sentence safe for the renderer (class names in it
        come from the run's files)."""
        lines = [f"**{escape(self.message)}**"]
        if self.causes:
            lines.append("\nLikely causes:\n" + "\n".join(f"- {escape(_cap(c))}" for c in self.causes))
        if self.fixes:
            lines.append("\nWhat to change:\n" + "\n".join(f"- {escape(_cap(f))}" for f in self.fixes))
        return "\n".join(lines)


def _cap(text: str) -> str:
    text = text.strip().rstrip(".")
    return (text[:1].upper() + text[1:] + ".") if text else text


_num = number


def _recipe(report: dict) -> Recipe | None:
    try:
        return Recipe.from_dict(report.get("recipe") or {})
    except (UserError, TypeError, ValueError):
        return None


def _causes(report: dict, recipe: Recipe | None, compressed: bool) -> tuple[list[str], list[str]]:
    """What the report shows that explains a bad model, and what to change."""
    causes, fixes = [], []
    ds = report.get("dataset") or {}
    n_train = _num(ds.get("n_train"))
    cap = recipe.max_train_samples if recipe else (report.get("recipe") or {}).get("max_train_samples")
    used = min(n_train, cap) if n_train and cap else (n_train or cap)
    if used and used < MIN_SAMPLES:
        causes.append(f"it trained on only {int(used):,} samples" + (f" (capped by max_train_samples = {cap})" if cap else ""))
        fixes.append("turn off the quick-demo cap (max_train_samples) or use more data")
    if recipe is not None and recipe.baseline.path is None and n_train:
        b = recipe.baseline
        steps = (steps_per_epoch(int(n_train), b.batch_size, cap) or 0) * b.epochs
        if steps < MIN_STEPS:
            causes.append(f"the baseline trained for only {steps} optimizer steps ({b.epochs} epochs at batch "
                          f"{b.batch_size})")
            fixes.append(f"train the baseline longer or with smaller batches (e.g. 15 epochs at batch 32 gives "
                         f"{(steps_per_epoch(int(n_train), 32, cap) or 0) * 15} steps)")
        if b.learning_rate >= HIGH_LR:
            causes.append(f"the baseline's learning rate {b.learning_rate:g} is high")
            fixes.append("use a learning rate of 1e-3 for the baseline")
    if compressed and recipe is not None:
        for i, step in enumerate(recipe.steps, start=1):
            method = methods.find(step.method)
            if method is None:
                continue
            spe = steps_per_epoch(int(n_train), step.batch_size, cap) if n_train else None
            hints = method.health_hints(step, spe)
            for hint in hints[:2]:
                causes.append(f"step {i} ({step.method}): {hint.cause}".rstrip("."))
            fixes.extend(dict.fromkeys(h.fix for h in hints))
            if step.learning_rate >= HIGH_LR:
                usual = declared_default(method.step_type, "learning_rate")
                causes.append(f"step {i} ({step.method}) fine-tunes at a high learning rate {step.learning_rate:g}")
                fixes.append(f"lower step {i}'s learning rate (the method's default is {usual:g})")
    if compressed:
        drop = _worst_stage(report)
        if drop:
            causes.append(drop)
    return causes, fixes


def _worst_stage(report: dict) -> str | None:
    prev = _num(((report.get("baseline") or {}).get("metrics") or {}).get("accuracy"))
    worst, text = 0.0, None
    for st in report.get("stages") or []:
        acc = _num((st.get("metrics") or {}).get("accuracy"))
        if prev is not None and acc is not None and prev - acc > worst:
            worst = prev - acc
            text = f"most of the loss came at the {st.get('method')} step ({prev:.1%} → {acc:.1%})"
        prev = acc if acc is not None else prev
    final = _num((report.get("final") or {}).get("accuracy"))
    if prev is not None and final is not None and prev - final > worst:
        text = f"most of the loss came at the export ({prev:.1%} → {final:.1%}); try another export mode"
    return text if worst > 0.01 or text and "export" in text else None


def assess(report: dict, threshold_pts: float = DEFAULT_THRESHOLD_PTS) -> list[Finding]:
    """Findings about a finished run, worst first; an empty list means nothing alarming."""
    if not isinstance(report, dict):
        return []
    report = tidy_report(report)
    recipe = _recipe(report)
    compressed = bool((report.get("recipe") or {}).get("steps") or report.get("stages"))
    ds = report.get("dataset") or {}
    base_m = (report.get("baseline") or {}).get("metrics") or {}
    final = report.get("final") or {}
    base_acc, final_acc = _num(base_m.get("accuracy")), _num(final.get("accuracy"))
    k = int(_num(ds.get("num_classes")) or len(final.get("per_class_recall") or []) or 0)
    chance = 1.0 / k + CHANCE_MARGIN if k >= 2 else None
    out: list[Finding] = []
    causes, fixes = _causes(report, recipe, compressed)

    if k >= 2 and base_acc is not None and base_acc <= 1.0 / k + WEAK_BASELINE_MARGIN:
        out.append(Finding("weak_baseline", f"The baseline scores {base_acc:.1%} among {k} classes (guessing: "
                                            f"{1 / k:.0%}): it is too weak to be worth compressing.",
                           [c for c in causes if "baseline" in c or "samples" in c] or causes,
                           [f for f in fixes if "baseline" in f or "cap" in f] or fixes))
    if compressed and chance is not None and final_acc is not None and final_acc <= chance:
        out.append(Finding("chance", f"The exported model scores {final_acc:.1%}: no better than guessing among "
                                     f"{k} classes ({1 / k:.0%}). Do not ship this file.", causes, fixes))
    elif compressed and base_acc is not None and final_acc is not None and (base_acc - final_acc) * 100 > threshold_pts:
        out.append(Finding("loss", f"The exported model lost {(base_acc - final_acc) * 100:.1f} points against its "
                                   f"baseline ({base_acc:.1%} → {final_acc:.1%}), more than the {threshold_pts:g}-point "
                                   "limit.", causes, fixes))
    if compressed:
        names = ds.get("class_names") or []
        base_r = base_m.get("per_class_recall") or []
        final_r = final.get("per_class_recall") or []
        lost = []
        for c, (b, f) in enumerate(zip(base_r, final_r)):
            b, f = _num(b), _num(f)
            if b is not None and f is not None and b >= 0.2 and f < b * (1 - CLASS_LOSS_SHARE):
                lost.append((str(names[c]) if c < len(names) else str(c), b, f))
        if lost and not any(x.kind == "chance" for x in out):
            shown = ", ".join(f"{n} ({b:.0%} → {f:.0%})" for n, b, f in lost[:5])
            more = f" and {len(lost) - 5} more" if len(lost) > 5 else ""
            out.append(Finding("class", f"{'Class' if len(lost) == 1 else 'Classes'} {shown}{more} lost most of "
                                        "their recall: the overall accuracy hides it.",
                               causes, fixes or ["prune less (lower final sparsity) or fine-tune longer"]))
    order = {"chance": 0, "loss": 1, "class": 2, "weak_baseline": 3}
    return sorted(out, key=lambda f: order.get(f.kind, 9))


def is_alarming(report: dict, threshold_pts: float = DEFAULT_THRESHOLD_PTS) -> bool:
    return bool(assess(report, threshold_pts))


def short_mark(findings: list[Finding]) -> str:
    """A table cell: '' for a healthy run, else '⚠ ' and the first finding's kind in words."""
    if not findings:
        return ""
    words = {"chance": "at chance", "loss": "lost accuracy", "class": "a class collapsed",
             "weak_baseline": "weak baseline"}
    return "⚠ " + ", ".join(dict.fromkeys(words.get(f.kind, f.kind) for f in findings))
