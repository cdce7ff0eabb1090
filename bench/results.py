"""The result file every benchmark writes: its figures, plus what machine and command made them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def write_result(out: Path, benchmark: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Write ``figures`` as ``out`` (JSON) with the benchmark's name, the machine's CPU count and
    the command line that ran it; return what was written."""
    result = {
        "benchmark": benchmark,
        **figures,
        "cpus": os.cpu_count(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result
