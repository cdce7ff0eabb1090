"""The benchmarks' ``--quick`` modes: each one runs to the end and prints its headline figure last."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEADLINE = re.compile(r"^[a-z ]+ [0-9.]+$")
# --quick is meant to finish in under 2 minutes; the margin is for a loaded CI machine.
TIMEOUT_S = 600


@pytest.mark.slow
@pytest.mark.parametrize("name", ["throughput", "memory", "sensor_latency"])
def test_quick_benchmark_ends_with_its_headline(name: str, tmp_path: Path) -> None:
    out = tmp_path / f"{name}.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    last = completed.stdout.strip().splitlines()[-1]
    assert HEADLINE.match(last), f"last stdout line {last!r} is not '<words> <number>'"
    assert json.loads(out.read_text())["benchmark"] == name
