"""The exporter protocol, declaration half: what the studio says about an artifact.

An exporter writes one file of the run folder (``model.tflite``, ``model.dc``) and is
declared once, in ``compression/recipe/exporters/<key>.py``: its key in report.json's
``artifacts``, its file name, the artifact it is made from, when it applies to a recipe,
and the size figures it adds to report.json's ``final`` (each with its label, colour, help
and what its ratio is taken against). Charts, tables, pages, the HTML report and the command
line iterate over these declarations; none of them names an artifact. The writing half
(``write`` and ``measure``) is ``compression/engine/exporters/<key>.py``. No TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class SizeFigure:
    """One size figure of a METRICS dict (report.json), and how to show it."""

    field: str  # the key in METRICS, e.g. "tflite_zip_bytes" (bytes)
    label: str  # a short column or legend label, e.g. "TFLite zip"
    help: str  # one sentence for a tooltip
    color: str  # its colour in every chart
    ratio_to: str  # the baseline METRICS field its ratio is taken against (the paper: the float TFLite file)
    stages: bool = True  # measured at every stage (True) or on the exported file only (False)

    @property
    def ratio_text(self) -> str:
        return f"ratio to the baseline's {self.ratio_to.replace('_bytes', '').replace('_', ' ')} size"


@dataclass(frozen=True)
class Accounting:
    """Where an exporter's per-layer size accounting lives in report["final"] and how to show it.

    The accounting is a dict with ``tensors`` (one row per kernel tensor, each with ``layer``,
    ``bytes``, ``raw_bytes`` and the part fields) and the remainder of the file under ``rest_field``.
    """

    field: str  # its key in report["final"]
    title: str  # e.g. "Where the bits go"
    caption: str  # what the parts mean, for the page and the HTML report
    parts: tuple[tuple[str, str, str], ...]  # (label, row field in bytes, colour), stacked in this order
    rest: tuple[str, str, str]  # (label, accounting field in bytes, colour) for everything but the layers
    columns: tuple[tuple[str, str, str], ...] = ()  # (label, row field, format) shown beside the bytes
    file_field: str = ""  # the accounting field holding the whole file's bytes


class Exporter:
    key: ClassVar[str]  # the artifact's key in report["artifacts"]
    file_name: ClassVar[str]  # the file in the run folder
    title: ClassVar[str]
    help: ClassVar[str]
    rank: ClassVar[int] = 50  # exporters run in rank order (a derived artifact after its source)
    primary: ClassVar[bool] = False  # its measurement is the run's "final" figures (the shipped file)
    source: ClassVar[str | None] = None  # the artifact it is made from; skipped when that one did not run
    sizes: ClassVar[tuple[SizeFigure, ...]] = ()  # the size figures it adds to report["final"]
    accounting: ClassVar[Accounting | None] = None  # its per-layer size accounting, where it has one

    def applies(self, recipe) -> bool:
        """Whether a run of ``recipe`` writes this artifact."""
        return True

    def describe(self) -> dict:
        return {"key": self.key, "file_name": self.file_name, "title": self.title, "help": self.help,
                "primary": self.primary, "source": self.source,
                "sizes": [{"field": s.field, "label": s.label, "help": s.help, "ratio_to": s.ratio_to,
                           "stages": s.stages} for s in self.sizes]}


__all__ = ["Accounting", "Exporter", "SizeFigure"]
