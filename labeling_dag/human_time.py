"""Human seconds: what a review costs, in the unit the people paying for labels count.

Every review action has a price in seconds (:class:`ReviewCosts`). The defaults come from
published measurements of box annotation:

* verifying a box: 1.6 s (Papadopoulos, Uijlings, Keller, Ferrari, "We don't need no
  bounding-boxes: training object class detectors using only human verification", CVPR 2016);
* drawing a box: 7.0 s with extreme clicking (Papadopoulos et al., "Extreme clicking for
  efficient object annotation", ICCV 2017). The classic drag protocol measured 25-42 s per
  box (Su, Deng, Fei-Fei 2012; the same ICCV paper), so 7.0 s is the conservative choice: it
  makes hand labelling, the baseline everything is compared with, as cheap as it gets;
* adjusting (moving or resizing) a box 4.0 s, changing its class 3.0 s, deleting it 2.0 s,
  and 1.0 s per image looked at: the costs of small edits in the same studies' tooling.

A text classification is priced by :data:`TEXT_REVIEW_COSTS`: its one region is the whole text,
so the price of an item is reading it, then confirming the proposed class or choosing one.

An action takes one kind per box (:func:`labeling_dag.agreement.classify_edits`): accepted,
moved, relabelled, deleted or added. Hand labelling an image means looking at it and drawing
every object in it. Measured time (Label Studio's ``lead_time`` per annotation) is kept beside
the modelled time where an export carries it; this module only prices what was done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import pandas as pd

from labeling_dag.agreement import EDIT_KINDS

# The edit kinds a review produces (classify_edits' own list), each priced by one field of ReviewCosts.
from labeling_dag.contracts import EFFORT_COLUMNS


@dataclass(frozen=True)
class ReviewCosts:
    """Seconds per review action; every value is finite and >= 0."""

    verify_box: float = 1.6
    adjust_box: float = 4.0
    relabel_box: float = 3.0
    delete_box: float = 2.0
    draw_box: float = 7.0
    per_image: float = 1.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < float("inf"):
                raise ValueError(f"ReviewCosts.{field.name} must be a finite number >= 0 seconds, got {value!r}")

    @property
    def per_edit(self) -> Mapping[str, float]:
        """Seconds for one box by edit kind (the keys of :data:`EDIT_KINDS`)."""
        return {
            "accepted": self.verify_box,
            "moved": self.adjust_box,
            "relabelled": self.relabel_box,
            "deleted": self.delete_box,
            "added": self.draw_box,
        }


def review_seconds(
    images: Sequence[str],
    edit_images: pd.Series,
    edit_kinds: pd.Series,
    costs: ReviewCosts,
    looks: Mapping[str, int] | None = None,
) -> pd.Series:
    """Modelled seconds per reviewed image: looking at it plus its boxes' actions.

    Args:
        images: every reviewed image, each once; one with no edit row (reviewed, nothing
            there) costs ``per_image`` alone.
        edit_images: the image of each box edit.
        edit_kinds: the action on each box (values of :data:`EDIT_KINDS`), aligned with
            ``edit_images``.
        costs: the prices.
        looks: how many annotators looked at each image (1 where missing): each look costs
            ``per_image``, and ``edit_images`` carries every annotator's edits.

    Returns:
        Seconds (float64) indexed by image id, in ``images`` order.

    Raises:
        ValueError: on an edit kind the cost model does not know, or an edit of an image
            not in ``images``.
    """
    unknown = sorted(set(edit_kinds) - set(EDIT_KINDS))
    if unknown:
        raise ValueError(f"edit kinds {unknown} have no price; known: {list(EDIT_KINDS)}")
    index = pd.Index(list(images), dtype="object")
    strays = sorted(set(edit_images) - set(index))
    if strays:
        raise ValueError(f"edits of images that were not reviewed: {strays[:5]}")
    per_box = edit_kinds.map(costs.per_edit).astype("float64").to_numpy()
    boxes = pd.Series(per_box, index=edit_images.to_numpy()).groupby(level=0).sum()
    seen = pd.Series([max(1, (looks or {}).get(image_id, 1)) for image_id in index], index=index, dtype="float64")
    return (boxes.reindex(index, fill_value=0.0) + costs.per_image * seen).astype("float64")


def hand_label_seconds(images: int, boxes: int, costs: ReviewCosts) -> float:
    """Seconds to label ``images`` images holding ``boxes`` objects by hand: look, then draw each."""
    if images < 0 or boxes < 0:
        raise ValueError(f"images and boxes must be >= 0, got {images} and {boxes}")
    return float(images * costs.per_image + boxes * costs.draw_box)


def edit_mix(edit_kinds: pd.Series) -> dict[str, int]:
    """How many boxes took each action, every kind of :data:`EDIT_KINDS` present (0 where none)."""
    counts = edit_kinds.value_counts()
    return {kind: int(counts.get(kind, 0)) for kind in EDIT_KINDS}


def effort_rows(
    batch_id: str,
    reviewed: Sequence[str],
    edits: pd.DataFrame,
    measured: Mapping[str, float],
    *,
    gold_ids: set[str],
    costs: ReviewCosts,
    looks: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """The human time one returned batch took, one row per reviewed image.

    Args:
        batch_id: the batch or revision.
        reviewed: every image it answered, each once.
        edits: its box edits (``image_id`` and ``edit_kind`` columns).
        measured: seconds the labelling tool measured per image, where it did.
        gold_ids: the batch's gold items (reviewed like the rest, so they cost the same).
        costs: the prices.
        looks: annotators per image, where several labelled it (:func:`review_seconds`).
    """
    modelled = review_seconds(reviewed, edits["image_id"], edits["edit_kind"], costs, looks)
    frame = pd.DataFrame(
        {
            "batch_id": batch_id,
            "image_id": list(reviewed),
            "is_gold": [image_id in gold_ids for image_id in reviewed],
            "modelled_seconds": modelled.to_numpy(),
            "measured_seconds": [measured.get(image_id, float("nan")) for image_id in reviewed],
        },
        columns=list(EFFORT_COLUMNS),
    )
    return frame.astype(EFFORT_COLUMNS)


# A text's price, whatever the tool. Reading dominates: 10 s per text is the first 40 words at
# 238 words per minute, the mean silent reading rate of English non-fiction (Brysbaert, "How many
# words do we read per minute?", Journal of Memory and Language, 2019), enough to tell a news
# topic; a reviewer who had to read a whole 400-word article would take 100 s, so 10 s is again the
# conservative choice that makes hand labelling as cheap as it gets. Confirming a proposed class
# costs one click (1.0 s); choosing one among a handful ("added", or "relabelled" when a proposal
# was wrong) 2.5 s, the verify-to-adjust span of the box study above. A text has no geometry to
# adjust; a deleted proposal is one click.
TEXT_REVIEW_COSTS = ReviewCosts(
    verify_box=1.0, adjust_box=0.0, relabel_box=2.5, delete_box=1.0, draw_box=2.5, per_image=10.0
)
