"""Several reviewers on one image: how well they agree, and the labels they agree on.

A review batch can send a share of its images to ``k`` annotators (``overlap_rate``,
``annotators_per_item``). Their answers are merged by consensus, not "latest wins": boxes are
fused with weighted box fusion (``ensemble-boxes``, Solovyev et al., 2021), each fused box is
kept with the class a strict majority of the ``k`` reviewers gave it, dropped where a strict
majority drew nothing there, and otherwise the image is *disputed*: it goes back to review as one
task that shows every fused box, for one annotator to settle. Agreement
(:func:`~.agreement.agreement`) is
Cohen's kappa on matched boxes, their mean IoU and the share of boxes both sides drew, per
reviewer and per batch.

Pure functions over :class:`~labeling_dag.formats.label_studio_export.TaskAnnotation` records;
``ensemble_boxes`` (which loads numba) is imported only where boxes are fused.

Modules: :mod:`.fusion` (one image's boxes fused and voted on), :mod:`.merging` (a batch's
annotations merged, by consensus where several reviewers answered), :mod:`.agreement` (how well
reviewers agree), :mod:`.disputes` (what an unsettled image's adjudication task shows) and
:mod:`.latest` (each reviewer's latest annotation).
"""
