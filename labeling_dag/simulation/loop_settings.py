"""Everything one simulated run of the loop depends on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labeling_dag.human_time import ReviewCosts


@dataclass(frozen=True)
class LoopSettings:
    """Everything one simulated run depends on."""

    dataset: Path
    workdir: Path
    # What the pool's items are: a name in labeling_dag.modalities.MODALITIES.
    modality: str = "detection"
    # Rounds after the seed round, at most; None runs until the pool is labelled.
    rounds: int | None = 3
    batch_size: int = 20
    strategy: str = "hybrid"
    diversity: bool = False
    cost_aware: bool = False
    seed_labels: int = 40
    target_precision: float = 0.95
    target_image_accuracy: float = 0.9
    # Auto-accept targets must hold for the Wilson lower bound at this level; None = the raw share.
    confidence_level: float | None = None
    reviewer_error_rate: float = 0.0
    # Share of each batch's chosen images labelled by annotators_per_item simulated reviewers
    # (each with its own mistakes) and merged by consensus; 0 = one reviewer per image.
    overlap_rate: float = 0.0
    annotators_per_item: int = 2
    seed: int = 0
    gold_images: int = 4
    imgsz: int = 128
    cold_start_epochs: int = 30
    fine_tune_epochs: int = 10
    retrain_min_new_boxes: int = 1
    # A local ultralytics detector to start from (labeling_dag.simulation.loop_start): of the pool's classes, or
    # mapped to them by class_map, it pre-labels round 0 (warm start); of other classes, the first
    # model trains from its weights (pretrained start). None = cold start.
    seed_model: Path | None = None
    class_map: Mapping[str, str] = field(default_factory=dict)  # seed model class -> pool class
    # False reviews every image (model-assisted labelling without auto-accept: the baseline arm).
    auto_accept: bool = True
    # Stop once the human seconds spent reach this; None = no budget.
    max_human_seconds: float | None = None
    # Seconds per review action; None = the modality's defaults (labeling_dag.human_time).
    review_costs: ReviewCosts | None = None
    # Shared by runs that replay the same trainings (see labeling_dag.training_cache), and by text
    # runs that embed the same texts; None = off.
    training_cache: Path | None = None
    # A Python module of labeling functions (labeling_dag.labeling_functions) for a text pool; None = none.
    labeling_functions: Path | None = None
    # Text: what each class is about, for the zero-shot model of round 0 (a class's name where absent).
    class_descriptions: Mapping[str, str] = field(default_factory=dict)

    def costs(self) -> ReviewCosts:
        """The prices of review actions the run counts human time in."""
        from labeling_dag.modalities import modality_named

        return self.review_costs or modality_named(self.modality).review_costs

    def truth(self) -> dict[str, tuple]:
        """The pool's true regions by item id (only the simulated reviewer and the measures read them)."""
        from labeling_dag.modalities import modality_named
        from labeling_dag.simulation.simulated_reviewer import load_truth

        return load_truth(self.dataset, "train", modality_named(self.modality).item_suffixes)
