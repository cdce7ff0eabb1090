"""The ultralytics model behind pre-labelling and training.

torch and ultralytics are imported inside the methods: the code location must load in
seconds, and only runs that predict or train pay for them. ``Results`` objects are turned
into ``ImagePrediction`` records here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from labeling_dag.resources.item_model import ItemModel

from labeling_dag import atomic
from labeling_dag.checkpoints import write_reproducible
from labeling_dag.evaluation import BACKGROUND, ClassQuality, ConfusionMatrix, ModelEvaluation
from labeling_dag.model_registry import file_sha256
from labeling_dag.records import ImagePrediction
from labeling_dag.training_cache import cached_weights, store_weights, training_key
from labeling_dag.ultralytics_env import configure_offline


class Detector(ItemModel):
    """Ultralytics YOLO inference and training with settings suited to small CPU runs: the
    detection modality's :class:`~labeling_dag.resources.item_model.ItemModel`.

    ``batch=16, nbs=16`` because with the default nominal batch size of 64 a few hundred
    images give too few optimiser steps to learn anything.

    ``iou=0.5`` for the non-maximum suppression of pre-labels, the value of torchvision's and
    Detectron2's detectors, where ultralytics predicts with 0.7: mAP hardly penalises a second,
    less confident box on an object, but a reviewer pays a deletion for it, and one such box keeps
    its whole image from being auto-accepted. Measured on a warm benchmark model's predictions of
    its 1 000-image pool (bench/RESULTS.md): 0.7 leaves 83 duplicate boxes and 76.6 % of images
    fully right, 0.5 leaves 4 and 82.1 %.
    """

    modality: ClassVar[str] = "detection"
    architecture: str = "yolov8n.yaml"
    imgsz: int = 160
    conf: float = 0.25
    iou: float = 0.5
    device: str = "cpu"
    epochs: int = 15
    # A folder of weights keyed by what each training read (labeling_dag.training_cache):
    # an identical request takes the stored result. "" = off, every request trains.
    training_cache: str = ""

    def predict(self, weights: Path, images: Sequence[Path]) -> Iterator[ImagePrediction]:
        """Stream predictions for ``images`` in batches of ``batch``, one record per image, in order."""
        if not images:
            return
        model = _load_model(weights)
        predictor = _probability_predictor_class(model.task)
        # ultralytics groups a list source into batches only through its own loader; feed it
        # chunks so memory stays bounded by one batch whatever the pool size.
        for start in range(0, len(images), self.batch):
            chunk = [str(path) for path in images[start : start + self.batch]]
            results = model.predict(
                source=chunk,
                stream=True,
                imgsz=self.imgsz,
                batch=self.batch,
                conf=self.conf,
                iou=self.iou,
                device=self.device,
                verbose=False,
                predictor=predictor,
            )
            for result in results:
                yield _to_record(result, model.task)

    def train(
        self,
        data_yaml: Path,
        out_dir: Path,
        *,
        base_weights: Path | None = None,
        **overrides: Any,
    ) -> Path:
        """Train on a YOLO dataset and return the best checkpoint, written reproducibly
        (``weights/model.pt``: the same weights give the same bytes, hence the same version).

        Without ``base_weights`` the model is built from ``architecture`` (cold start). With them,
        training starts from their tensors: a parent of the same classes (fine-tuning), or pretrained
        weights of other classes, where ultralytics keeps every tensor whose shape fits and builds a
        new class head for the dataset's classes. ``overrides`` are passed to ultralytics' trainer
        (e.g. ``lr0``, ``mosaic`` for fine-tuning).
        """
        configure_offline()
        from ultralytics import YOLO

        # A relative project folder would be put under ultralytics' own runs dir.
        out_dir = Path(out_dir).resolve()
        args: dict[str, Any] = {
            "data": str(data_yaml),
            "epochs": self.epochs,
            "imgsz": self.imgsz,
            "batch": self.batch,
            "nbs": self.batch,
            "workers": 0,
            "device": self.device,
            "seed": self.seed,
            "deterministic": True,
            "plots": False,
            "amp": False,
            "verbose": False,
            "project": str(out_dir.parent),
            "name": out_dir.name,
            "exist_ok": True,
        }
        args |= overrides
        target = out_dir / "weights" / "model.pt"
        key = self._training_key(data_yaml, base_weights, args) if self.training_cache else None
        if key and (stored := cached_weights(Path(self.training_cache), key)):
            atomic.copy_file(stored, target)
            return target
        model = YOLO(str(base_weights) if base_weights else self.architecture)
        model.train(**args)
        best = out_dir / "weights" / "best.pt"
        if not best.exists():
            raise RuntimeError(f"{best}: training finished without writing a checkpoint")
        write_reproducible(best, target)
        if key:
            store_weights(Path(self.training_cache), key, target)
        return target

    def _training_key(self, data_yaml: Path, base_weights: Path | None, args: dict[str, Any]) -> str:
        import torch
        import ultralytics
        from ultralytics.utils import NUM_THREADS

        base = file_sha256(Path(base_weights)) if base_weights else self.architecture
        # On CPU ultralytics trains with NUM_THREADS torch threads, whatever was set before.
        environment = {
            "ultralytics": ultralytics.__version__,
            "torch": torch.__version__,
            "device": self.device,
            "threads": NUM_THREADS,
        }
        return training_key(Path(data_yaml), base, args, environment=environment)

    def describe(self, weights: Path) -> tuple[str, tuple[str, ...]]:
        """The ultralytics task and class names of ``weights`` (:func:`model_info`)."""
        return model_info(weights)

    def card_parameters(self, *, from_scratch: bool) -> dict[str, Any]:
        """``imgsz``, ``batch`` (and ``nbs``, equal to it) and ``seed``; ``architecture`` for a model
        built from its YAML config."""
        built = {"architecture": self.architecture} if from_scratch else {}
        return built | {"imgsz": self.imgsz, "batch": self.batch, "nbs": self.batch, "seed": self.seed}

    def evaluate(self, weights: Path, data_yaml: Path, out_dir: Path) -> ModelEvaluation:
        """mAP50 and mAP50-95 of ``weights`` on the dataset's val split, overall and per class, and
        the confusion matrix of its boxes at confidence ``conf``, by ultralytics' own validator.

        ``out_dir`` receives the validator's files (it would write under ./runs otherwise).
        """
        model = _load_model(weights)
        out_dir = Path(out_dir).resolve()
        metrics = model.val(
            validator=_confusion_validator_class(self.conf),
            data=str(data_yaml),
            split="val",
            imgsz=self.imgsz,
            batch=self.batch,
            device=self.device,
            workers=0,
            plots=False,
            verbose=False,
            save_json=False,
            project=str(out_dir.parent),
            name=out_dir.name,
            exist_ok=True,
        )
        return _to_evaluation(metrics, self.conf)


def _confusion_validator_class(conf: float) -> type:
    """ultralytics' detection validator, also filling its confusion matrix at confidence ``conf``.

    ultralytics fills the matrix only when it draws plots, and then at the validation
    confidence (0.001), where nearly every box is background noise; ``conf`` is the confidence
    pre-labels are made at, so the matrix shows the confusions reviewers will see.
    """
    from ultralytics.models.yolo.detect import DetectionValidator

    class ConfusionValidator(DetectionValidator):  # type: ignore[misc, valid-type]
        def update_metrics(self, preds: list[dict[str, Any]], batch: dict[str, Any]) -> None:
            super().update_metrics(preds, batch)
            for index, pred in enumerate(preds):
                truth = self._prepare_batch(index, batch)
                self.confusion_matrix.process_batch(self._prepare_pred(pred), truth, conf=conf)

    return ConfusionValidator


def _to_evaluation(metrics: Any, conf: float) -> ModelEvaluation:
    """ultralytics' ``DetMetrics`` as a :class:`ModelEvaluation` (per class: the classes with
    boxes in the split, ``metrics.box.ap_class_index``)."""
    names = metrics.names
    box = metrics.box
    per_class = tuple(
        ClassQuality(
            class_name=names[int(class_index)],
            instances=int(metrics.nt_per_class[int(class_index)]),
            precision=float(box.p[row]),
            recall=float(box.r[row]),
            map50=float(box.ap50[row]),
            map50_95=float(box.ap[row]),
        )
        for row, class_index in enumerate(box.ap_class_index)
    )
    labels = (*(names[i] for i in sorted(names)), BACKGROUND)
    confusion = ConfusionMatrix(
        labels=labels,
        counts=tuple(tuple(int(n) for n in row) for row in metrics.confusion_matrix.matrix),
        conf=conf,
    )
    return ModelEvaluation(map50=float(box.map50), map50_95=float(box.map), per_class=per_class, confusion=confusion)


def _load_model(weights: Path) -> Any:
    configure_offline()
    from ultralytics import YOLO

    return YOLO(str(weights))


def model_info(weights: Path) -> tuple[str, tuple[str, ...]]:
    """The task (``detect`` / ``classify``) and class names stored in a weights file."""
    model = _load_model(weights)
    names = model.names
    return model.task, tuple(names[i] for i in sorted(names))


class NotADetectorError(ValueError):
    """A weights file that is missing or holds no ultralytics detection model."""


def detector_classes(weights: Path, *, role: str) -> tuple[str, ...]:
    """The class names of the ultralytics detector in ``weights``.

    Raises :class:`NotADetectorError` naming the file and its ``role`` (e.g. ``"seed model"``) when
    it is missing, is no ultralytics model or is one of another task. Loading runs pickle: call
    this only on a file its owner trusts.
    """
    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise NotADetectorError(f"{weights}: {role} does not exist")
    try:
        task, names = model_info(weights)
    except Exception as error:  # pickle, torch and ultralytics each raise their own errors
        raise NotADetectorError(
            f"{weights}: {role} is not an ultralytics model ({type(error).__name__}: {error})"
        ) from error
    if task != "detect":
        raise NotADetectorError(f"{weights}: {role} is a {task} model, not a detector")
    return names


def _probability_predictor_class(task: str) -> type:
    """A predictor that also keeps each box's class-score vector and an image embedding.

    ``Results`` drops the per-class scores after NMS; ``non_max_suppression`` can return the
    anchor index of every kept box, which lets us gather the full vector from the raw head
    output. The embedding is the global average of the feature maps the head reads.
    """
    if task == "classify":
        from ultralytics.models.yolo.classify import ClassificationPredictor as Base
    elif task == "detect":
        from ultralytics.models.yolo.detect import DetectionPredictor as Base
    else:
        raise ValueError(f"unsupported ultralytics task {task!r}: use a detect or classify model")
    import torch
    from ultralytics.utils import nms, ops

    class ProbabilityPredictor(Base):  # type: ignore[misc, valid-type]
        def setup_model(self, model: Any, verbose: bool = False) -> None:
            super().setup_model(model, verbose)
            self._pooled: list[torch.Tensor] = []
            layers = self.model.model.model  # AutoBackend -> DetectionModel -> Sequential
            head = layers[-1]
            if task == "classify":
                sources = [head.pool]
            else:
                if getattr(head, "end2end", False):
                    raise ValueError(
                        "end-to-end (NMS-free) detection heads do not expose per-box class vectors; "
                        "use a model with an NMS head (e.g. YOLOv8/YOLO11)"
                    )
                sources = [layers[i] for i in head.f]
            for layer in sources:
                layer.register_forward_hook(lambda _m, _i, out: self._pooled.append(out.float().mean(dim=(2, 3))))

        def inference(self, im: Any, *args: Any, **kwargs: Any) -> Any:
            # Warm-up passes also fire the hooks; only this batch's features may remain.
            self._pooled.clear()
            return super().inference(im, *args, **kwargs)

        def postprocess(self, preds: Any, img: Any, orig_imgs: Any, **kwargs: Any) -> list:
            embedding = torch.cat(self._pooled, dim=1).cpu().numpy()
            if task == "classify":
                results = super().postprocess(preds, img, orig_imgs, **kwargs)
            else:
                raw = preds[0] if isinstance(preds, (list, tuple)) else preds
                n_classes = len(self.model.names)
                kept, keep_idx = nms.non_max_suppression(
                    preds,
                    self.args.conf,
                    self.args.iou,
                    self.args.classes,
                    self.args.agnostic_nms,
                    max_det=self.args.max_det,
                    nc=n_classes,
                    return_idxs=True,
                )
                if not isinstance(orig_imgs, list):
                    orig_imgs = ops.convert_torch2numpy_batch(orig_imgs)[..., ::-1]
                results = self.construct_results(kept, img, orig_imgs)
                for index, (result, idx) in enumerate(zip(results, keep_idx)):
                    scores = raw[index, 4 : 4 + n_classes, idx.long().view(-1)]
                    result.class_probs = scores.T.float().cpu().numpy()
            for result, vector in zip(results, embedding):
                result.embedding = vector
            return results

    return ProbabilityPredictor


def _to_record(result: Any, task: str) -> ImagePrediction:
    height, width = result.orig_shape
    if task == "classify":
        probs = result.probs.data.float().cpu().numpy()
        top = int(probs.argmax())
        return ImagePrediction(
            path=result.path,
            width=int(width),
            height=int(height),
            boxes_xywhn=np.array([[0.5, 0.5, 1.0, 1.0]], dtype=np.float32),
            class_ids=np.array([top]),
            confidences=np.array([probs[top]], dtype=np.float32),
            class_probs=probs[None, :].astype(np.float32),
            embedding=result.embedding.astype(np.float32),
        )
    boxes = result.boxes
    return ImagePrediction(
        path=result.path,
        width=int(width),
        height=int(height),
        boxes_xywhn=boxes.xywhn.float().cpu().numpy().reshape(-1, 4),
        class_ids=boxes.cls.cpu().numpy().astype(np.int64),
        confidences=boxes.conf.float().cpu().numpy(),
        class_probs=result.class_probs.reshape(len(boxes), len(result.names)).astype(np.float32),
        embedding=result.embedding.astype(np.float32),
    )
