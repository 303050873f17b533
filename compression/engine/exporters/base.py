"""The exporter protocol: one artifact format per module.

An exporter writes one file of the run folder from the final model (or from an artifact
an earlier exporter wrote, e.g. the Deep Compression container is made from the TFLite
file) and says how to measure it. The pipeline runs every registered exporter in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class ExportContext:
    model: Any  # the final Keras model
    ds: Any  # the dataset (representative samples, the test split)
    mode: Any  # ExportMode of the recipe
    kernel_names: list[str]  # the baseline's layers with weights, in model order
    latency_runs: int
    artifacts: dict[str, bytes] = field(default_factory=dict)  # key -> bytes of exporters run so far
    reuse: dict[str, bytes] = field(default_factory=dict)  # key -> bytes already made (e.g. the QAT stage's file)
    measured: dict[str, Any] = field(default_factory=dict)  # key -> what measure() returned, for later exporters
    # For the studio's own baselines the exported file takes raw pixel values: the model is
    # exported behind a Rescaling by ``input_scale`` and ``ds`` then holds the raw values.
    input_scale: float | None = None


class Exporter:
    key: ClassVar[str]  # the artifact's key in report["artifacts"]
    file_name: ClassVar[str]  # the file in the run folder
    title: ClassVar[str]
    help: ClassVar[str]
    rank: ClassVar[int] = 50  # exporters run in rank order (a derived artifact after its source)
    primary: ClassVar[bool] = False  # its measurement is the run's "final" figures

    def write(self, ctx: ExportContext) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def measure(self, blob: bytes, ctx: ExportContext) -> dict:
        """Figures merged into report["final"] (the primary exporter's are the whole of it)."""
        return {f"{self.key}_bytes": len(blob)}

    def describe(self) -> dict:
        return {"key": self.key, "file_name": self.file_name, "title": self.title, "help": self.help,
                "primary": self.primary}
