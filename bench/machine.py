"""What every benchmark writes beside its table: the machine it ran on and how busy it was."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> dict:
    """CPU model, cores, Python, system and the load average (1, 5, 15 minutes) now."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}", "load": load()}


def load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return [float("nan")] * 3
