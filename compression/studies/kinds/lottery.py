"""Lottery ticket: iterative magnitude pruning with rewinding, and its two controls, round by round.

A dense baseline trained from known initial weights, then ``rounds`` rounds. Round r's ticket is a
``lottery`` step (compression/recipe/methods/lottery.py) on round r-1's ticket (the baseline for
round 1): it prunes ``rate`` of each layer's survivors (the output layer at half the rate), rewinds
the survivors and trains. The controls of round r start from the same model: ``reinit`` keeps the
ticket's mask with fresh random weights, ``random_mask`` draws a mask of the same size per layer.
Round r+1 is planned when round r's ticket has ended, so the rounds go on across worker restarts;
a round's three runs are independent of each other. Every accuracy is the exported file's; the
remaining weights are read from the ticket's file; the early-stopping iteration is where the
ticket's validation loss was lowest.
"""

from __future__ import annotations

from dataclasses import dataclass

from compression.errors import RecipeError
from compression.recipe.methods.lottery import Control, Rewind
from compression.recipe.params import param
from compression.studies.kind import (
    Aggregate, Cost, Planned, Results, StudyKind, StudySpec, baseline_epochs, check_recipe, number,
)

METHOD = "lottery"
CONTROLS = {Control.TICKET: "ticket", Control.REINIT: "reinit", Control.RANDOM_MASK: "random"}


@dataclass(frozen=True)
class LotterySpec(StudySpec):
    kind = "lottery"

    rounds: int = param(5, "pruning rounds; after r rounds a fully connected layer keeps (1 - rate)^r of its "
                        "weights", lo=1, hi=30, unit="rounds")
    rate: float = param(0.2, "share of each layer's surviving weights pruned per round (the paper: 20%)", lo=0, hi=1,
                        lo_open=True, hi_open=True, unit="fraction", label="Pruned per round")
    output_rate: float | None = param(None, "the output layer's rate per round; null: half of rate, as in the paper",
                                      kind="float", lo=0, hi=1, lo_open=True, hi_open=True, nullable=True,
                                      unit="fraction", advanced=True)
    rewind: Rewind = param(Rewind.INIT, "init: the survivors restart from the baseline's initial weights; "
                           "iteration: from their values after rewind_iteration iterations (late rewinding)")
    rewind_iteration: int = param(500, "late rewinding: the training iteration whose weights the survivors "
                                  "restart from", lo=1, hi=10**7, unit="iterations", show_if=("rewind", "iteration"))
    epochs: int = param(2, "training epochs of each round's runs (the baseline trains as its own spec says; give "
                        "it as many for a fair round 0)", lo=1, hi=1000, unit="epochs", label="Epochs per round")
    batch_size: int = param(60, "samples per optimizer step (the paper: 60)", lo=1, hi=65536, unit="samples")
    learning_rate: float = param(1.2e-3, "Adam's learning rate (the paper: 0.0012)", lo=0, hi=1, lo_open=True)
    controls: bool = param(True, "train the reinit and random-mask controls at every round (3 runs a round "
                           "instead of 1)")
    eval_every: int = param(100, "iterations between validation-loss checks (the early-stopping iteration)", lo=1,
                            hi=10**6, unit="iterations", advanced=True)

    def check(self) -> None:
        if not self.trains_baseline and self.rewind == Rewind.INIT:
            from pathlib import Path

            init = Path(self.baseline.path).with_name("baseline_init.npz")
            if not init.is_file():
                raise RecipeError("baseline.path", "a lottery study rewinds to the baseline's initial weights: give "
                                                   "a baseline the studio trained (baseline_init.npz beside it), or "
                                                   "{\"arch\": ...} to train one")

    def step(self, control: Control) -> dict:
        return {"method": METHOD, "rate": self.rate, "output_rate": self.output_rate, "rewind": self.rewind.value,
                "rewind_iteration": self.rewind_iteration, "control": control.value, "eval_every": self.eval_every,
                "epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate}

    @property
    def controls_run(self) -> list[Control]:
        return list(CONTROLS) if self.controls else [Control.TICKET]


def key(control: Control, r: int) -> str:
    return f"{CONTROLS[control]}/{r}"


class Lottery(StudyKind):
    name = "lottery"
    rank = 30
    title = "Lottery ticket"
    help = ("Iterative magnitude pruning for N rounds with the survivors rewound to their initial weights (or to "
            "an early iteration), against two controls at every round: the same mask with fresh random weights, "
            "and a random mask of the same size. Does the ticket train to the dense accuracy where the controls "
            "do not?")
    spec_type = LotterySpec

    def cost(self, spec: LotterySpec) -> Cost:
        per = len(spec.controls_run)
        runs = 1 + spec.rounds * per
        epochs = baseline_epochs(spec) + spec.rounds * per * spec.epochs
        return Cost(runs, epochs, f"{runs} runs (a baseline, then {spec.rounds} rounds of {per}), {epochs} training "
                                  "epochs; each round starts when the previous round's ticket has ended")

    def plan(self, spec: LotterySpec, results: Results) -> list[Planned]:
        out = [Planned("baseline", spec.recipe("dense baseline", []), "dense baseline", {"round": 0})]
        start = "baseline"
        for r in range(1, spec.rounds + 1):
            if not results.done(start):
                break
            base = results.loaded_baseline(start, "baseline" if start == "baseline" else "keras")
            for control in spec.controls_run:
                recipe = spec.recipe(f"round {r} {CONTROLS[control]}", [spec.step(control)], base, spec.seed)
                check_recipe(recipe, "rounds")
                out.append(Planned(key(control, r), recipe, f"round {r} {CONTROLS[control]}",
                                   {"round": r, "control": control.value}))
            start = key(Control.TICKET, r)
        return out

    def aggregate(self, spec: LotterySpec, results: Results) -> Aggregate:
        base_acc = results.accuracy("baseline")
        rows = [{"round": 0, "remaining": remaining(results.final("baseline")), "ticket_accuracy": base_acc,
                 "reinit_accuracy": base_acc, "random_mask_accuracy": base_acc, "early_stop_iteration": None,
                 "ticket_run": results.ref("baseline")}]
        for r in range(1, spec.rounds + 1):
            row = {"round": r, "remaining": remaining(results.final(key(Control.TICKET, r)))}
            for control in CONTROLS:
                name = {Control.TICKET: "ticket", Control.REINIT: "reinit", Control.RANDOM_MASK: "random_mask"}[control]
                k = key(control, r)
                if control in spec.controls_run:
                    stop = early_stop(results.report(k))
                    row[f"{name}_accuracy"] = results.accuracy(k)
                    row[f"{name}_early_stop_iteration"] = stop.get("iteration")
                    row[f"{name}_run"] = results.ref(k)
                else:
                    row[f"{name}_accuracy"] = None
            row["early_stop_iteration"] = row.pop("ticket_early_stop_iteration")
            row["iterations"] = early_stop(results.report(key(Control.TICKET, r))).get("iterations")
            rows.append(row)
        return Aggregate({"baseline": {"accuracy": base_acc, "run": results.ref("baseline")},
                          "remaining_measured": "share of the kernel weights that are nonzero in the ticket's "
                                                "exported file",
                          "rounds": rows})


def remaining(final: dict) -> float | None:
    """Share of the kernel weights still there, read from the exported file."""
    sparsity = number(final.get("sparsity"))
    return None if sparsity is None else round(1.0 - sparsity, 6)


def early_stop(report: dict) -> dict:
    for stage in report.get("stages") or []:
        stop = (stage.get("stats") or {}).get("early_stop")
        if isinstance(stop, dict):
            return stop
    return {}


STUDY = Lottery()

__all__ = ["Lottery", "LotterySpec", "STUDY", "early_stop", "remaining"]
