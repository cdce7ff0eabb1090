"""When and how the loop retrains and promotes models."""

import dagster as dg


class LoopPolicy(dg.ConfigurableResource):
    """Retraining trigger, training settings and the promotion rule.

    Fine-tuning uses ``lr0=1e-4, mosaic=0, warmup_epochs=0``: with ultralytics' defaults
    (lr0=0.01, mosaic on, warm-up) fine-tuning on a few hundred boxes was measured to wipe
    out ~20 points of mAP50-95 that these settings keep.
    """

    validation_dataset: str  # a YOLO data.yaml whose val split is held out for evaluation
    retrain_min_new_boxes: int = 50
    promotion_tolerance: float = 0.02  # mAP50 a new model may lose against the current one
    cold_start_epochs: int = 30
    fine_tune_epochs: int = 10
    fine_tune_lr0: float = 1e-4
