"""Confidence thresholds for auto-accepting pre-labels, fitted on human review.

After a review round every reviewed pre-label box is either *correct* (the reviewer kept
it, or moved it to IoU >= 0.5 with the same class) or not; the caller works that out.
From those boxes this module fits, per class, the smallest confidence ``t`` such that the
reviewed boxes at or above ``t`` are correct at least ``target_precision`` of the time,
then auto-accepts unreviewed images whose every pre-label clears its class threshold
(SageMaker Ground Truth's automated labelling, with the target and the guards exposed).

Choosing ``t``: sort the reviewed boxes by confidence, highest first; each distinct
confidence ``c`` is a candidate, and its *tail* is every box with confidence >= ``c``. The
tail's precision is the share of correct boxes in it. The chosen threshold is the smallest
candidate whose tail reaches the target, even where a higher candidate's tail falls
short: the images accepted at ``t`` are exactly that tail's population, so only its overall
precision matters. (Equivalently: the first crossing of the monotone envelope
``max over t' <= t of precision(t')``, as in interpolated precision-recall curves.)

Guards against a few lucky boxes deciding the threshold:

* ``min_support``: a tail counts only with at least that many boxes. A class with fewer
  reviewed boxes in total falls back to the threshold fitted on all classes pooled.
* ``confidence_level``: require the one-sided Wilson score lower bound of the tail
  precision, not the raw share, to reach the target. Since ``t`` is picked as the
  loosest value that passes on the very boxes it is judged on, the raw share at ``t`` is
  an optimistic estimate; the lower bound corrects for that, and spot checks
  (:func:`~.spot_checks.sample_spot_checks`) measure the real precision on the next round.

What calibrating on boxes cannot see: objects the model missed. An image whose boxes are all
right can still lack a box the model never proposed, and box precision counts it as a success.
So a second, image-level gate (:func:`~.image_gate.image_threshold`) is fitted on the images humans judged
whose boxes all cleared their thresholds (reviewed or spot-checked): an image is *fully right*
when no box was wrong and none had to be added. Images are ranked by their least confident box,
and the gate is the smallest such confidence at which the judged images reach the target share
of fully right ones. An image with no pre-label boxes is never auto-accepted.

The rule (:mod:`.thresholds`), the per-class fit (:mod:`.class_thresholds`), the image gate
(:mod:`.image_gate`) and the spot checks (:mod:`.spot_checks`) each have their module; the checks
of their inputs are shared (:mod:`.inputs`).
"""
