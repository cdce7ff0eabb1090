"""Runs a suite of Great Expectations 1.x rules on a dataframe and returns a :class:`GateResult`.

``great_expectations`` takes seconds to import, so it is imported only inside functions
and the ephemeral Data Context, its pandas data source and each suite are built once per
process (:func:`functools.cache`). Each validation then only binds a new dataframe to a
whole-dataframe batch definition and runs the suite, which takes milliseconds.

Every expectation carries a short, unique ``description`` (e.g. ``"x between 0 and 1"``).
It names the rule in :attr:`ExpectationOutcome.detail` and in the check metadata, and it is
how results are matched back to rules, because GX does not return them in suite order.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from labeling_dag.quality_gates.results import ExpectationOutcome, GateResult

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.datasource.fluent import PandasDatasource
    from great_expectations.expectations.expectation import Expectation

# A suite's rules, built when the suite is first used (building imports great_expectations).
SuiteBuilder = Callable[[], "list[Expectation]"]

# One batch id per data asset: GX keys a dataframe batch by asset, so two concurrent
# validations of the same suite would overwrite each other's data in the shared engine.
_LOCK = threading.Lock()


def validate(
    suite_name: str, build: SuiteBuilder, frame: pd.DataFrame, *, expectation_parameters: dict[str, Any]
) -> GateResult:
    """Validate ``frame`` against the suite ``suite_name`` whose rules ``build`` makes (built once per process)."""
    with _LOCK:
        gate = _gate(suite_name, build)
        batch = gate.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        # BASIC still reports unexpected_count but skips SUMMARY's value histograms.
        suite_result = batch.validate(gate.suite, result_format="BASIC", expectation_parameters=expectation_parameters)

    by_detail = {r.expectation_config.description: r for r in suite_result.results}
    outcomes = []
    for expectation in gate.suite.expectations:
        result = by_detail[expectation.description]
        # Every rule here is a column-map expectation, which always reports unexpected_count
        # once evaluated; without it GX failed to evaluate the rule rather than the data failing.
        if "unexpected_count" not in result.result:
            errors = _exception_messages(result.exception_info or {})
            raise RuntimeError(f"{suite_name}: GX could not evaluate {expectation.description!r}: {errors}")
        outcomes.append(
            ExpectationOutcome(
                expectation=result.expectation_config.type,
                column=result.expectation_config.kwargs.get("column"),
                success=bool(result.success),
                unexpected_count=int(result.result["unexpected_count"]),
                detail=str(expectation.description),
            )
        )
    return GateResult(
        suite=suite_name,
        success=all(o.success for o in outcomes),
        evaluated_rows=len(frame),
        outcomes=tuple(outcomes),
    )


def project(table: pd.DataFrame, columns: tuple[str, ...], suite: str) -> pd.DataFrame:
    """A copy of ``table`` holding exactly ``columns``, so that extra columns never reach GX."""
    missing = [c for c in columns if c not in table.columns]
    if missing and len(table) > 0:
        raise ValueError(f"{suite} table lacks columns {missing}; it has {list(table.columns)}")
    # ``pd.DataFrame([])`` from an empty record list has no columns; with no rows there is
    # nothing to be wrong, so the absent columns are simply added empty.
    return table.reindex(columns=list(columns))


@dataclass(frozen=True)
class _Gate:
    batch_definition: BatchDefinition
    suite: ExpectationSuite


@functools.cache
def _datasource() -> PandasDatasource:
    """The pandas data source of this process's one ephemeral Data Context."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # GX draws a tqdm "Calculating Metrics" bar on stderr for every validation otherwise.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context.data_sources.add_pandas("labeling_dag")


@functools.cache
def _gate(suite_name: str, build: SuiteBuilder) -> _Gate:
    import great_expectations as gx

    asset = _datasource().add_dataframe_asset(suite_name)
    suite = gx.ExpectationSuite(name=suite_name)
    for expectation in build():
        suite.add_expectation(expectation)
    return _Gate(batch_definition=asset.add_batch_definition_whole_dataframe("whole"), suite=suite)


def _exception_messages(exception_info: Mapping[str, Any]) -> list[str]:
    # GX reports a failed expectation flat, but a failed metric nested under its metric id.
    entries = [exception_info, *(v for v in exception_info.values() if isinstance(v, Mapping))]
    return sorted({str(e.get("exception_message")) for e in entries if e.get("raised_exception")})
