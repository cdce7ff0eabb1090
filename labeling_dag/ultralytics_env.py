"""Keep ultralytics off the network and out of the user's home directory.

Ultralytics reads ``YOLO_CONFIG_DIR`` once, at import, and on first use downloads
Arial.ttf for its plots and may sync settings or check for updates. None of that may
happen here: the machine running the pipeline may have no internet at all. This module
must be called before the first ``import ultralytics`` of the process.
"""

from __future__ import annotations

import os
from pathlib import Path

from labeling_dag import atomic

CONFIG_DIR_ENV = "LABELING_DAG_CONFIG_DIR"
_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")
# Telemetry and experiment-tracker callbacks: each would phone home or write outside the workdir.
_INTEGRATIONS = ("sync", "hub", "clearml", "comet", "dvc", "mlflow", "neptune", "raytune", "tensorboard", "wandb")


def config_dir() -> Path:
    """The project's own config folder (``$LABELING_DAG_CONFIG_DIR``, else ``~/.config/labeling-dag``)."""
    configured = os.environ.get(CONFIG_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".config" / "labeling-dag"


def configure_offline() -> Path:
    """Point ultralytics at ``config_dir()/Ultralytics`` with a local font, offline and sync off.

    Returns the ultralytics config folder. Safe to call repeatedly; once ultralytics is
    imported its settings location is fixed, so later calls only re-assert the settings.
    """
    # Ultralytics appends "Ultralytics" to YOLO_CONFIG_DIR for its settings and fonts.
    os.environ["YOLO_CONFIG_DIR"] = os.environ.get("YOLO_CONFIG_DIR") or str(config_dir())
    yolo_dir = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    yolo_dir.mkdir(parents=True, exist_ok=True)
    _install_fonts(yolo_dir)
    from ultralytics import settings

    settings.update({key: False for key in _INTEGRATIONS if key in settings})
    return yolo_dir


def _install_fonts(yolo_dir: Path) -> None:
    # Ultralytics looks for its fonts in its config dir before downloading them; matplotlib
    # (an ultralytics dependency) ships DejaVuSans, which covers the same glyphs for labels.
    missing = [name for name in _FONTS if not (yolo_dir / name).exists()]
    if not missing:
        return
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in missing:
        # Atomic: parallel step processes may install the fonts at the same moment.
        atomic.copy_file(dejavu, yolo_dir / name)
