"""One round of iterative magnitude pruning with rewinding (the lottery ticket), declared.

Frankle and Carbin (2019), as in google-research/lottery-ticket-hypothesis: train, prune a share
of each layer's surviving weights by magnitude (fully connected layers 20% a round, the output
layer half that), rewind the survivors to their initial values, train again under the mask. One
step is one round: the model it starts from is the previous round's trained ticket (a dense
trained baseline for round 1), whose zeros are the mask so far, and the weights it rewinds to are
the baseline's initial weights (``baseline_init.npz``), or, with late rewinding, the dense
network's weights after ``rewind_iteration`` training iterations from them. Two controls train
under the same budget: ``reinit`` (the same mask, freshly drawn random weights) and
``random_mask`` (a random mask with the same number of weights per layer, rewound like the
ticket). The lottery study chains rounds; a single step on the Pipeline page is one round.

The executor is compression/engine/methods/lottery.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from compression.errors import RecipeError
from compression.recipe.method import Method, StepConfig
from compression.recipe.params import LayerSelection, param


class Rewind(StrEnum):
    INIT = "init"  # the baseline's initial weights (Frankle and Carbin 2019)
    ITERATION = "iteration"  # their values after rewind_iteration iterations (Frankle et al. 2019, "late rewinding")


class Control(StrEnum):
    TICKET = "ticket"  # the winning ticket: the magnitude mask, rewound weights
    REINIT = "reinit"  # the same mask, fresh random weights
    RANDOM_MASK = "random_mask"  # a random mask of the same size per layer, rewound weights


RATE = dict(lo=0, hi=1, lo_open=True, hi_open=True, unit="fraction")


@dataclass(frozen=True)
class LotteryStep(StepConfig):
    method = "lottery"

    rate: float = param(0.2, "share of each layer's surviving weights pruned this round (the paper: 20% for "
                        "fully connected layers)", **RATE, label="Pruned per round")
    output_rate: float | None = param(None, "share of the output layer's surviving weights pruned this round; "
                                      "null: half of rate, as in the paper", kind="float", nullable=True, **RATE,
                                      label="Output layer per round")
    rewind: Rewind = param(Rewind.INIT, "what the surviving weights restart from: init (the baseline's initial "
                           "weights) or iteration (their values after rewind_iteration training iterations, "
                           "late rewinding)", label="Rewind to")
    rewind_iteration: int = param(500, "late rewinding: the dense network's training iteration whose weights "
                                  "the survivors restart from", lo=1, hi=10**7, unit="iterations",
                                  show_if=("rewind", "iteration"))
    control: Control = param(Control.TICKET, "ticket (the magnitude mask, rewound weights); reinit (the same "
                             "mask, fresh random weights); random_mask (a random mask of the same size per layer, "
                             "rewound weights)", label="Network")
    eval_every: int = param(100, "training iterations between validation-loss checks; the early-stopping "
                            "iteration is the one with the lowest validation loss", lo=1, hi=10**6,
                            unit="iterations", advanced=True)
    layers: LayerSelection = param(LayerSelection(), "which layers with weights to prune", kind="layers")
    epochs: int = param(2, "training epochs of this round, from the rewound weights", lo=1, hi=1000, unit="epochs")
    batch_size: int = param(60, "samples per optimizer step (the paper: 60 for LeNet-300-100)", lo=1, hi=65536,
                            unit="samples")
    learning_rate: float = param(1.2e-3, "Adam's learning rate (the paper: 0.0012 for LeNet-300-100)", lo=0, hi=1,
                                 lo_open=True)

    def rate_for(self, output: bool) -> float:
        if output:
            return self.output_rate if self.output_rate is not None else self.rate / 2
        return self.rate

    def check(self, where: str) -> None:
        if self.rewind == Rewind.ITERATION and self.control == Control.REINIT:
            raise RecipeError(f"{where}.rewind", "reinit draws fresh weights: it has nothing to rewind; "
                                                 "use rewind init with control reinit")

    @property
    def target_text(self) -> str:
        return f"{self.rate:.0%} of the surviving weights per layer ({self.rate_for(True):.0%} in the output layer)"


class Lottery(Method):
    name = "lottery"
    rank = 15
    title = "Lottery ticket round"
    help = ("One round of iterative magnitude pruning (Frankle and Carbin, 2019): prune a share of each layer's "
            "surviving weights by magnitude, rewind the survivors to their initial values and train again under "
            "the mask. Start it from a trained baseline (or the previous round's ticket) trained in the studio, so "
            "that its initial weights are known. The controls draw fresh weights (reinit) or a random mask.")
    step_type = LotteryStep
    undoes = {
        "clusters": "a lottery round rewinds and retrains the weights, so the clusters are lost",
        "qat_ranges": "a lottery round rewinds and retrains the weights and drops the ranges QAT learned",
    }
    variants = {"lottery": "Lottery ticket round"}
    establishes = ("sparsity",)
    strength = "rate"

    def describe(self, step: LotteryStep, variant: str, kept: list[str]) -> str:
        what = {Control.TICKET: "the winning ticket", Control.REINIT: "reinit control (same mask, fresh weights)",
                Control.RANDOM_MASK: "random-mask control"}[step.control]
        to = "initial weights" if step.rewind == Rewind.INIT else f"iteration {step.rewind_iteration}"
        return f"Lottery round, {what}: prune {step.target_text}, rewind to the {to}, train {step.epochs} epochs"


METHOD = Lottery()

__all__ = ["Control", "Lottery", "LotteryStep", "METHOD", "Rewind"]
