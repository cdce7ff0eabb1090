"""Shared set-up of the benchmark scripts."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def stay_offline() -> None:
    """Point ultralytics at the project's config dir and DVC at .tools/, before ultralytics is imported.

    Ultralytics reads its config dir once, at import; the benchmarks must never reach the network.
    """
    os.environ["PATH"] = f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    os.environ.setdefault("LABELING_DAG_CONFIG_DIR", str(REPO / ".labeling-dag"))
    os.environ.setdefault("YOLO_CONFIG_DIR", os.environ["LABELING_DAG_CONFIG_DIR"])
    os.environ["YOLO_OFFLINE"] = "1"
