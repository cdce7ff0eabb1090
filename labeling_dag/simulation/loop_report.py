"""The simulated loop's report: the JSON file, its learning-curve PNG and the terminal lines."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from labeling_dag.simulation.loop_measures import RoundRecord
from labeling_dag.simulation.loop_settings import LoopSettings


def write_report(records: list[RoundRecord], report: Path, settings: LoopSettings, dataset: dict[str, object]) -> Path:
    """Write the JSON report and a PNG of human seconds against images labelled and mAP50 beside
    it; return the PNG path."""
    from labeling_dag import atomic

    payload = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "rounds": [asdict(r) for r in records],
        "dataset": dataset,
    }
    atomic.write_json(report, payload)
    png = report.with_suffix(".png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = [r.human_seconds for r in records]
    figure, (labelled, quality) = plt.subplots(1, 2, figsize=(10, 4))
    labelled.plot(seconds, [r.images_labelled for r in records], marker="o", label="this loop")
    labelled.axhline(dataset["pool_images"], color="grey", linestyle=":", label="pool")
    labelled.axvline(dataset["hand_label_seconds"], color="red", linestyle="--", label="hand labelling, whole pool")
    labelled.set_xlabel("human seconds")
    labelled.set_ylabel("images labelled")
    quality.plot(seconds, [r.map50 for r in records], marker="o", label="mAP50")
    quality.plot(seconds, [r.map50_95 for r in records], marker="s", label="mAP50-95")
    quality.set_xlabel("human seconds")
    quality.set_ylabel("validation mAP")
    for axis in (labelled, quality):
        axis.grid(alpha=0.3)
        axis.legend()
    if settings.modality == "text":
        labelled.set_ylabel("texts labelled")
        quality.set_ylabel("held-out accuracy")
    figure.suptitle(f"labeling-dag ({settings.strategy}): human time {dataset['human_time_ratio']} x hand labelling")
    figure.tight_layout()
    with atomic.atomic_path(png) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return png


def format_round(record: RoundRecord, modality: str = "detection") -> str:
    """One terminal line per round, as it finishes, in the words of the modality."""
    if modality == "text":
        return (
            f"round {record.round}: {record.images_reviewed} texts reviewed, {record.auto_accepted} auto-accepted, "
            f"{record.images_labelled} labelled, {record.human_seconds:.0f} human s, "
            f"held-out accuracy {record.map50:.3f}"
        )
    return (
        f"round {record.round}: {record.images_reviewed} images reviewed, {record.auto_accepted} boxes auto-accepted, "
        f"{record.images_labelled} labelled, {record.human_seconds:.0f} human s, mAP50 {record.map50:.3f}"
    )


def format_dataset(dataset: dict[str, object]) -> str:
    """The closing lines: the dataset's quality and its human time against hand labelling."""

    def figure(value: object) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    cost = (
        f"human time: {dataset['human_seconds']:.0f} s against {dataset['hand_label_seconds']:.0f} s by hand "
        f"= {figure(dataset['human_time_ratio'])} x"
    )
    if "accuracy" in dataset:  # a text pool: one class per item
        return (
            f"dataset: {dataset['items_labelled']} of {dataset['pool_items']} texts labelled, "
            f"accuracy {figure(dataset['accuracy'])}\n{cost}"
        )
    return (
        f"dataset: {dataset['images_labelled']} of {dataset['pool_images']} images labelled, "
        f"precision {figure(dataset['precision'])}, recall {figure(dataset['recall'])} (IoU 0.5)\n"
        f"human time: {dataset['human_seconds']:.0f} s against {dataset['hand_label_seconds']:.0f} s by hand "
        f"= {figure(dataset['human_time_ratio'])} x"
    )


def format_table(records: list[RoundRecord]) -> str:
    """The per-round table printed by the CLI and the demo."""
    frame = pd.DataFrame([asdict(r) for r in records]).drop(columns=["batch_id"])
    frame["model_version"] = frame["model_version"].str[:12]
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}")
