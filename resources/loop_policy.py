"""When and how the loop retrains and promotes models."""

from pathlib import Path

import dagster as dg
from pydantic import Field, field_validator


class LoopPolicy(dg.ConfigurableResource):
    """Retraining trigger, training settings and the promotion rule.

    Fine-tuning turns mosaic and warm-up off: with them, fine-tuning on a few hundred boxes was
    measured to wipe out ~20 points of mAP50-95. The optimizer is ultralytics' ``auto``, which for
    trainings this short is AdamW at 0.002 * 5 / (4 + classes), 0.0014 for three classes, and
    ignores ``lr0``; a tenth of that, set explicitly, learnt too slowly to open the auto-accept
    gate (1 000-image warm pool: round-1 mAP50 0.965 against 0.990; bench/RESULTS.md).

    Out-of-range values are refused when the resource is built (a ``ValidationError`` naming
    the field), not discovered rounds later: a tolerance of 1.5 would promote any model, a
    trigger of 0 boxes would retrain after every merge.
    """

    validation_dataset: str  # a YOLO data.yaml whose val split is held out for evaluation
    retrain_min_new_boxes: int = Field(default=50, ge=1)
    # mAP50 a new model may lose against the current one; negative: the gain it must show.
    # mAP50 lies in [0, 1], so anything outside [-1, 1] is a typo; the bounds also refuse NaN.
    promotion_tolerance: float = Field(default=0.02, ge=-1.0, le=1.0)
    cold_start_epochs: int = Field(default=30, ge=1)
    fine_tune_epochs: int = Field(default=10, ge=1)
    # The optimizer steps a fine-tune takes at least, in more epochs where few images are verified
    # yet (labeling_dag.fine_tuning).
    fine_tune_min_steps: int = Field(default=100, ge=0)
    # A local ultralytics detector of any classes (COCO-pretrained, another project's model) that
    # the first model trains from, for cold_start_epochs: ultralytics keeps its tensors whose shapes
    # fit and builds a new class head. "" trains the first model from the detector's YAML.
    pretrained_weights: str = ""

    @field_validator("pretrained_weights", mode="before")
    @classmethod
    def _pretrained_detector(cls, value: object) -> object:
        # Before pydantic's own coercion, which turns an EnvVar into its name: an EnvVar is
        # checked here again with its value when a run builds the resource.
        if value and not isinstance(value, dg.EnvVar):
            from labeling_dag.resources.detector import detector_classes

            detector_classes(Path(str(value)), role="pretrained_weights")
        return value
