"""What every benchmark writes beside its figures: the machine it ran on, and the JSON file.

Figures mean nothing without the machine (docs/results.md quotes absolute times only with
it), so every report names the CPU model, not just the architecture.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 9R14", "Intel(R) Xeon(R) ..."), or what the platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(**extra) -> dict:
    """The machine a benchmark ran on; ``extra`` adds what that benchmark depends on
    (torch threads, library versions)."""
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform()} | extra


def write_report(path: str | Path, report: dict) -> Path:
    """Write ``report`` as indented JSON (parents created; values JSON cannot hold, such as
    paths, written as text) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path
