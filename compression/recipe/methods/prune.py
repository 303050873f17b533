"""Magnitude pruning, declared: its parameters, its schedule as it will really run, its facts.

The executor (tfmot's prune_low_magnitude, fine-tuned under the mask) is
compression/engine/methods/prune.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from compression.errors import RecipeError
from compression.recipe.choices import Schedule
from compression.recipe.method import Hint, Method, StepConfig
from compression.recipe.params import LayerSelection, PerLayer, declared_default, param, per_layer_value

SPARSITY = dict(lo=0, hi=1, hi_open=True, unit="fraction")
MASK_UPDATES = 10  # a preset's polynomial schedule reaches its target in this many mask updates


def _pct(v: float) -> str:
    """A sparsity as a percentage: whole where it is (90%), else with its tenth (98.5%)."""
    return f"{v:.0%}" if abs(v * 100 - round(v * 100)) < 1e-9 else f"{v:.1%}"


@dataclass(frozen=True)
class PruneStep(StepConfig):
    method = "prune"

    schedule: Schedule = param(Schedule.POLYNOMIAL_DECAY, "polynomial_decay raises sparsity gradually from "
                               "initial to final; constant_sparsity holds one target from begin_step on",
                               label="Sparsity schedule")
    initial_sparsity: float = param(0.5, "polynomial_decay: sparsity at begin_step", **SPARSITY,
                                    show_if=("schedule", "polynomial_decay"))
    final_sparsity: float | PerLayer = param(0.8, "polynomial_decay: sparsity reached at end_step; a number, or "
                                             "{layer name: number} per layer", kind="per_layer_float", **SPARSITY,
                                             show_if=("schedule", "polynomial_decay"))
    target_sparsity: float | PerLayer = param(0.5, "constant_sparsity: the sparsity held; a number, or "
                                              "{layer name: number} per layer", kind="per_layer_float", **SPARSITY,
                                              show_if=("schedule", "constant_sparsity"))
    begin_step: int = param(0, "optimizer step at which pruning starts", lo=0, unit="steps", advanced=True)
    end_step: int | None = param(None, "polynomial_decay: step at which final_sparsity is reached; "
                                 "null: the end of fine-tuning", kind="int", lo=1, nullable=True, unit="steps",
                                 advanced=True, show_if=("schedule", "polynomial_decay"))
    frequency: int = param(100, "optimizer steps between mask updates (lowered, with a note, when fine-tuning "
                           "is too short for it)", lo=1, unit="steps", advanced=True, label="Mask update every")
    cycles: int = param(1, "iterative pruning (prune, retrain, repeat, as Deep Compression does): the polynomial "
                        "schedule becomes this many cycles, each raising the sparsity a step (equal steps in the "
                        "share of weights kept) over its first half and retraining at it over the second; 1 is "
                        "one gradual ramp", lo=1, hi=20, unit="cycles", show_if=("schedule", "polynomial_decay"),
                        label="Prune-retrain cycles")
    sparsity_m_by_n: tuple[int, int] | None = param(None, "structured sparsity: M zeros in every N consecutive "
                                                    "weights, e.g. [2, 4]; replaces the schedule's target",
                                                    kind="pair", lo=1, hi=32, nullable=True,
                                                    label="Structured sparsity (M:N)")
    layers: LayerSelection = param(LayerSelection(), "which layers with weights to prune", kind="layers")
    epochs: int = param(2, "fine-tuning epochs under the mask", lo=1, hi=1000, unit="epochs")
    # tfmot's pruning example fine-tunes with Adam's default; 1e-4 did not recover accuracy
    learning_rate: float = param(1e-3, "Adam's learning rate while fine-tuning", lo=0, hi=1, lo_open=True)

    def check(self, where: str) -> None:
        if self.end_step is not None and self.end_step <= self.begin_step:
            raise RecipeError(f"{where}.end_step", f"{self.end_step} must be after begin_step {self.begin_step}")
        if self.schedule == Schedule.POLYNOMIAL_DECAY:
            finals = self.final_sparsity.as_dict() if isinstance(self.final_sparsity, PerLayer) else \
                {None: self.final_sparsity}
            for layer, final in finals.items():
                if final < self.initial_sparsity:
                    field = f"{where}.final_sparsity" + (f".{layer}" if layer else "")
                    raise RecipeError(field, f"{final:g} is below initial_sparsity {self.initial_sparsity:g}; "
                                             "polynomial_decay only raises sparsity")
        if self.sparsity_m_by_n is not None:
            m, n = self.sparsity_m_by_n
            if not (0 < m < n <= 32):
                raise RecipeError(f"{where}.sparsity_m_by_n", f"[{m}, {n}] needs 0 < M < N <= 32, e.g. [2, 4]")

    def target_for(self, layer: str) -> float:
        """The sparsity this step aims at in ``layer``."""
        if self.sparsity_m_by_n:
            m, n = self.sparsity_m_by_n
            return m / n
        if self.schedule == Schedule.CONSTANT_SPARSITY:
            return per_layer_value(self.target_sparsity, layer, declared_default(PruneStep, "target_sparsity"))
        return per_layer_value(self.final_sparsity, layer, declared_default(PruneStep, "final_sparsity"))

    @property
    def target(self) -> float:
        """The sparsity this step aims at (the largest, where it is set per layer)."""
        if self.sparsity_m_by_n:
            m, n = self.sparsity_m_by_n
            return m / n
        value = self.target_sparsity if self.schedule == Schedule.CONSTANT_SPARSITY else self.final_sparsity
        return max(value.as_dict().values()) if isinstance(value, PerLayer) else value

    @property
    def iterative(self) -> bool:
        return self.cycles > 1 and not self.sparsity_m_by_n and self.schedule == Schedule.POLYNOMIAL_DECAY

    @property
    def target_text(self) -> str:
        if self.sparsity_m_by_n:
            return f"{self.sparsity_m_by_n[0]}:{self.sparsity_m_by_n[1]} structured sparsity"
        value = self.target_sparsity if self.schedule == Schedule.CONSTANT_SPARSITY else self.final_sparsity
        if isinstance(value, PerLayer):
            other = declared_default(PruneStep, "target_sparsity" if self.schedule == Schedule.CONSTANT_SPARSITY
                                     else "final_sparsity")
            return ("per-layer sparsity (" + ", ".join(f"{k} {_pct(v)}" for k, v in value.items)
                    + f", other layers {_pct(other)})")
        return f"{_pct(value)} sparsity"


# --- the schedule, without TensorFlow (the dashboard checks it live) ---------------------------


@dataclass(frozen=True)
class SchedulePlan:
    begin_step: int
    end_step: int | None  # None for constant_sparsity
    frequency: int
    total_steps: int
    notes: tuple[str, ...]  # every change made to what was asked
    cycles: int = 1
    cycle_steps: int = 0  # steps per prune-retrain cycle (cycles > 1)
    ramp_steps: int = 0  # the first part of each cycle, where the sparsity rises


def cycle_targets(initial: float, final: float, cycles: int) -> list[float]:
    """The sparsity each prune-retrain cycle reaches: equal ratios in the share of weights kept, from
    ``initial`` (where the first cycle starts) to ``final`` (what the last reaches)."""
    start = min(initial, final)
    return [1.0 - (1.0 - start) * ((1.0 - final) / (1.0 - start)) ** (c / cycles) for c in range(1, cycles + 1)]


def cycles_sparsity(step: int, plan: SchedulePlan, initial: float, final: float) -> float:
    """The sparsity the cycles schedule asks for at optimizer ``step`` (what the engine's tfmot schedule
    computes in TensorFlow): within a cycle it rises like tfmot's polynomial decay (power 3) over the
    ramp, then holds; after the last cycle it holds the final sparsity."""
    targets = cycle_targets(initial, final, plan.cycles)
    starts = [min(initial, final)] + targets[:-1]
    rel = step - plan.begin_step
    if rel < 0:
        return starts[0]
    c = min(rel // plan.cycle_steps, plan.cycles - 1)
    frac = min(1.0, (rel - c * plan.cycle_steps) / plan.ramp_steps)
    return targets[c] + (starts[c] - targets[c]) * (1.0 - frac) ** 3


def schedule_plan(step: PruneStep, steps_per_epoch: int, where: str = "prune") -> SchedulePlan:
    """The schedule pruning will really run, and notes where it had to differ from what was asked.

    tfmot updates the mask only every ``frequency`` steps, so a schedule whose end_step is
    not reached by an update never arrives at final_sparsity, and one that updates once
    jumps to the target with no time to recover. The end step is moved onto the last
    update and the frequency lowered (to a quarter of the span) when fine-tuning is too
    short for it; each change is a note. The engine runs this plan; the Pipeline page
    shows the same notes before anything runs.
    """
    notes: list[str] = []
    total = max(1, steps_per_epoch) * step.epochs
    begin = step.begin_step
    if begin >= total:
        raise RecipeError(f"{where}.begin_step", f"{begin} is past the end of fine-tuning ({total} steps)")
    freq = step.frequency
    if step.schedule == Schedule.CONSTANT_SPARSITY:
        if freq > total - begin:
            freq = max(1, total - begin)
            notes.append(f"frequency lowered from {step.frequency} to {freq}: fine-tuning has only {total} steps")
        return SchedulePlan(begin, None, freq, total, tuple(notes))
    end = step.end_step if step.end_step is not None else total
    if end > total:
        notes.append(f"end_step {end} is past the end of fine-tuning ({total} steps); using {total}")
        end = total
    span = end - begin
    if freq > span // 2 and span >= 2:
        # one or two updates would jump to the target: leave steps after each update to recover
        freq = max(1, span // 4)
        notes.append(f"frequency lowered from {step.frequency} to {freq}: the sparsity would otherwise jump "
                     f"to its target in one or two mask updates over {span} steps")
    last_update = begin + (span // freq) * freq
    if last_update != end:
        if step.end_step is not None:
            notes.append(f"end_step moved from {end} to {last_update}, the last mask update, so the target is reached")
        end = last_update
    if end <= begin:
        end, freq = begin + 1, 1
    if step.cycles > 1 and not step.sparsity_m_by_n:
        return _cycles_plan(step, begin, end, freq, total, notes, where)
    return SchedulePlan(begin, end, freq, total, tuple(notes))


def _cycles_plan(step: PruneStep, begin: int, end: int, freq: int, total: int, notes: list[str],
                 where: str) -> SchedulePlan:
    """Split [begin, end] into equal cycles, each rising over its first half with at least two mask
    updates, then retraining at the reached sparsity."""
    cycle = (end - begin) // step.cycles
    if cycle < 4:
        raise RecipeError(f"{where}.cycles", f"{step.cycles} cycles need at least {4 * step.cycles} pruning steps; "
                                             f"this schedule has {end - begin}: use fewer cycles or more epochs")
    ramp = cycle // 2
    if freq > ramp // 2:
        new = max(1, ramp // 2)
        notes.append(f"frequency lowered from {freq} to {new}: each of the {step.cycles} cycles raises the sparsity "
                      f"over {ramp} steps, which needs at least two mask updates")
        freq = new
    ramp = max(freq, (ramp // freq) * freq)  # the ramp ends on a mask update
    return SchedulePlan(begin, begin + step.cycles * cycle, freq, total, tuple(notes), step.cycles, cycle, ramp)


# --- the method -------------------------------------------------------------------------------------


class Prune(Method):
    name = "prune"
    rank = 10
    title = "Prune"
    help = ("Magnitude pruning sets the smallest weights of each chosen layer to exactly zero, step by step "
            "while fine-tuning, so the rest of the network learns to do without them. Zeros compress well "
            "(zip, or the Deep Compression container) but a raw .tflite file stores them like any weight.")
    step_type = PruneStep
    undoes = {
        "clusters": "pruning after clustering zeroes weights and fine-tunes the rest freely, "
                    "so the clusters are lost (many distinct values again)",
        "qat_ranges": "pruning after quantization-aware training changes the weights QAT trained for int8 "
                      "and drops its learned quantization ranges",
        "codebooks": "pruning after product quantization zeroes weights inside the codewords, so a block is no "
                     "longer one of the codebook's",
    }
    variants = {"prune": "Pruning"}
    establishes = ("sparsity",)
    strength = "final_sparsity"

    def at_strength(self, step: dict, name: str, value) -> dict:
        out = dict(step, **{name: value})
        if name == "final_sparsity" and isinstance(value, (int, float)):  # polynomial_decay only raises sparsity
            out["initial_sparsity"] = min(float(out.get("initial_sparsity", PruneStep.initial_sparsity)), value)
        return out

    def describe(self, step: PruneStep, variant: str, kept: list[str]) -> str:
        return f"Pruning to {step.target_text}" + (f" in {step.cycles} prune-retrain cycles" if step.iterative else "")

    def plan_notes(self, step: PruneStep, steps_per_epoch: int, where: str) -> list[str]:
        return list(schedule_plan(step, steps_per_epoch, where).notes)

    def data_notes(self, step: dict, steps_per_epoch: int) -> list[str]:
        if step.get("schedule", Schedule.POLYNOMIAL_DECAY.value) != Schedule.POLYNOMIAL_DECAY.value \
                or step.get("end_step") is not None:
            return []
        epochs = int(step.get("epochs", 1))
        return [f"End step computed from the data: {steps_per_epoch} steps per epoch × {epochs} epochs "
                f"= {steps_per_epoch * epochs}."]

    def fit_to_data(self, step: dict, steps_per_epoch: int, end_fraction: float) -> dict:
        """A polynomial schedule whose ramp ends after ``end_fraction`` of the step's training (the rest
        recovers at the target) and moves in MASK_UPDATES even updates, so the mask never jumps."""
        if step.get("schedule", Schedule.POLYNOMIAL_DECAY.value) != Schedule.POLYNOMIAL_DECAY.value \
                or step.get("sparsity_m_by_n"):
            return step
        total = max(1, steps_per_epoch) * max(1, int(step.get("epochs", 1)))
        end = max(2, int(round(total * end_fraction)))
        frequency = max(1, end // MASK_UPDATES)
        if end >= MASK_UPDATES:
            end = frequency * MASK_UPDATES  # the last mask update lands on end_step: nothing for the engine to move
        return dict(step, begin_step=0, end_step=end, frequency=frequency)

    def health_hints(self, step: PruneStep, steps_per_epoch: int | None) -> list[Hint]:
        if not steps_per_epoch:
            return []
        fix = ("let sparsity rise over several mask updates: lower the pruning step's 'Update every' (frequency) "
               "or train it for more epochs; the presets fit this to the data")
        try:
            notes = schedule_plan(step, steps_per_epoch).notes
        except RecipeError as e:
            return [Hint(f"the pruning schedule cannot run on this data: {e.message}", fix)]
        return [Hint(f"the run changed the pruning schedule: {note}", fix) for note in notes]


METHOD = Prune()

__all__ = ["METHOD", "MASK_UPDATES", "Prune", "PruneStep", "SchedulePlan", "cycle_targets", "cycles_sparsity",
           "schedule_plan"]
