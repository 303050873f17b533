"""Published compression results on the two LeNets the studio's presets target, for the frontier
charts (Compare, the HTML report, bench/deep_compression.py). TensorFlow-free data.

Each row: the network (the studio's architecture name), the method and its paper, the compression
rate of the stored weights the paper reports, and its test error on MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    arch: str  # the studio's architecture name (compression.recipe.choices.Arch)
    method: str
    cite: str
    ratio: float  # compression rate of the stored weights, as the paper counts it
    error_pct: float  # test error on MNIST
    baseline_error_pct: float | None = None

    @property
    def label(self) -> str:
        return f"{self.method} ({self.cite})"


ROWS = (
    Published("lenet_300_100", "Deep Compression", "Han et al. 2016", 40, 1.58, 1.64),
    Published("lenet_300_100", "Dynamic Network Surgery", "Guo et al. 2016", 56, 1.99, 2.28),
    Published("lenet_300_100", "Soft weight-sharing", "Ullrich et al. 2017", 64, 1.94, 1.89),
    Published("lenet_5_caffe", "Deep Compression", "Han et al. 2016", 39, 0.74, 0.80),
    Published("lenet_5_caffe", "Dynamic Network Surgery", "Guo et al. 2016", 108, 0.91, 0.91),
    Published("lenet_5_caffe", "Soft weight-sharing", "Ullrich et al. 2017", 162, 0.97, 0.88),
)


def for_arch(arch: str | None) -> list[Published]:
    return [r for r in ROWS if r.arch == arch]


def dominated_by(arch: str, ratio: float, error_pct: float) -> list[Published]:
    """The published rows a result beats on both axes at once: at least as small (a higher or equal
    ratio) and at least as accurate, better in one."""
    return [p for p in for_arch(arch) if ratio >= p.ratio and error_pct <= p.error_pct
            and (ratio > p.ratio or error_pct < p.error_pct)]


__all__ = ["Published", "ROWS", "dominated_by", "for_arch"]
