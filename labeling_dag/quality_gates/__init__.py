"""Great Expectations 1.x suites that gate the pipeline's tables, one module per suite
(:mod:`.cleaned_images`, :mod:`.pre_labels`, :mod:`.review_quality`, :mod:`.verified_labels`),
beside the rules they share (:mod:`.rules`), the validation engine (:mod:`.engine`) and what a
validation returns (:mod:`.results`).

The Dagster asset checks that block on these gates live in :mod:`labeling_dag.checks`; this
package knows nothing about Dagster and returns plain
:class:`~labeling_dag.quality_gates.results.GateResult` values.
"""
