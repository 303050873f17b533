"""The exporter protocol, writing half: one artifact format per module.

A writer makes one file of the run folder from the final model, or from an artifact an
earlier writer made (the Deep Compression container is made from the TFLite file), and
measures it. Its declaration (file name, sizes, when it applies) is
compression/recipe/exporters/<key>.py. The pipeline runs the writers of the exporters that
apply to the recipe, in rank order, each seeing what the earlier ones wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Written:
    """A written artifact: its bytes and what writing it found out (e.g. model.dc's bit accounting)."""

    blob: bytes
    facts: dict = field(default_factory=dict)


@dataclass
class Figures:
    """What measuring an artifact gives: figures for report["final"] and, for the primary artifact,
    the measurement itself (weights and predictions, for the histograms and the gallery)."""

    metrics: dict
    measured: Any = None


@dataclass
class ExportContext:
    model: Any  # the final Keras model
    ds: Any  # the dataset (representative samples, the test split)
    mode: Any  # ExportMode of the recipe
    kernel_names: list[str]  # the final model's layers with weights, in model order
    latency_runs: int
    reference: dict | None = None  # layer -> the float kernel the file is made from (pruned vs rounded zeros)
    written: dict[str, Written] = field(default_factory=dict)  # key -> what the writers so far made
    reuse: dict[str, bytes] = field(default_factory=dict)  # key -> bytes already made (e.g. the QAT stage's file)
    # For the studio's own baselines the exported file takes raw pixel values: the model is
    # exported behind a Rescaling by ``input_scale`` and ``ds`` then holds the raw values.
    input_scale: float | None = None
    recipe: Any = None  # the recipe that ran (what its steps asked for, e.g. their weight bits)


class Writer:
    key: ClassVar[str]  # the declared exporter's key

    def write(self, ctx: ExportContext) -> Written:  # pragma: no cover
        raise NotImplementedError

    def measure(self, written: Written, ctx: ExportContext) -> Figures:
        """Figures merged into report["final"] (the primary exporter's are the whole of it)."""
        return Figures({f"{self.key}_bytes": len(written.blob)})


__all__ = ["ExportContext", "Figures", "Writer", "Written"]
