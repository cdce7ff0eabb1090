"""A text classifier's evaluation figures, in the shape ultralytics gives a detector's
(:class:`~labeling_dag.evaluation.ModelEvaluation`), so promotion compares either alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labeling_dag.evaluation import BACKGROUND, ClassQuality, ConfusionMatrix, ModelEvaluation


def evaluation_figures(
    true_ids: Sequence[int], predicted_ids: Sequence[int], class_names: Sequence[str]
) -> ModelEvaluation:
    """The figures of predicted against true class ids.

    ``map50`` and ``map50_95`` are both the accuracy (top-1), as ultralytics reports for a
    classifier: a text has one whole-item region, so there is no localisation to grade. Per class
    present among ``true_ids`` (in class order): its instances, precision and recall, and its
    recall as its map50 and map50_95. The confusion matrix counts ``[predicted][true]`` over the
    class names and ``background``, whose row and column stay zero: every text gets one class.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    true = np.asarray(true_ids, dtype=np.int64)
    predicted = np.asarray(predicted_ids, dtype=np.int64)
    accuracy = float(np.mean(true == predicted))
    present = sorted({int(class_id) for class_id in true})
    precision, recall, _, support = precision_recall_fscore_support(true, predicted, labels=present, zero_division=0)
    per_class = tuple(
        ClassQuality(
            class_name=class_names[class_id],
            instances=int(count),
            precision=float(p),
            recall=float(r),
            map50=float(r),
            map50_95=float(r),
        )
        for class_id, p, r, count in zip(present, precision, recall, support)
    )
    n_classes = len(class_names)
    by_true = confusion_matrix(true, predicted, labels=list(range(n_classes)))
    counts = [[*(int(n) for n in row), 0] for row in by_true.T] + [[0] * (n_classes + 1)]
    confusion = ConfusionMatrix(labels=(*class_names, BACKGROUND), counts=tuple(map(tuple, counts)), conf=0.0)
    return ModelEvaluation(map50=accuracy, map50_95=accuracy, per_class=per_class, confusion=confusion)
