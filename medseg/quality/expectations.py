"""great-expectations suites over an ingested dataset (ephemeral context, pandas, offline).

Each named check is one or more GX expectations on one derived table (see ``tables.py``); results
come back per check with the failing values as examples."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medseg.data.slice_dataset import MANIFEST_COLUMNS
from medseg.quality.tables import split_detail

DETAILS: dict[str, Callable[[Any], str]] = {"split_fractions": split_detail}  # plainer than GX's wording


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    examples: list[Any]


def _expectations(settings: dict[str, Any]) -> dict[str, tuple[str, list[Any]]]:
    """Check name -> (table, expectations), from the validation settings."""
    import great_expectations as gx

    e = gx.expectations
    size, labels = int(settings["image_size"]), sorted(settings["labels"])
    checks: dict[str, tuple[str, list[Any]]] = {
        "manifest_schema": ("manifest", [
            e.ExpectTableColumnsToMatchSet(column_set=list(MANIFEST_COLUMNS), exact_match=True),
            e.ExpectColumnValuesToBeUnique(column="row")]),
        "image_size": ("slices", [e.ExpectColumnValuesToBeInSet(column=c, value_set=[size])
                                  for c in ("height", "width", "array_height", "array_width")]),
        "image_dtype": ("slices", [e.ExpectColumnValuesToBeInSet(column=c, value_set=["uint8"])
                                   for c in ("image_dtype", "mask_dtype")]),
        "value_range": ("slices", [e.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=255)
                                   for c in ("image_min", "image_max")]),
        "mask_labels": ("labels", [e.ExpectColumnValuesToBeInSet(column="label_value", value_set=labels)]),
        "no_patient_in_two_splits": ("patient_splits", [e.ExpectColumnValuesToBeUnique(column="patient")]),
        "no_duplicate_images_across_splits": ("hash_splits", [e.ExpectColumnValuesToBeUnique(column="image_hash")]),
        "split_fractions": ("splits", [e.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="allowed", column_B="deviation", or_equal=True)]),
        "min_slices_per_split": ("splits", [e.ExpectColumnValuesToBeBetween(
            column="slices", min_value=int(settings["min_slices_per_split"]))]),
        "source_files_exist": ("sources", [e.ExpectColumnValuesToBeInSet(column="exists", value_set=[True])]),
        "array_lengths": ("arrays", [e.ExpectColumnValuesToBeInSet(column="consistent", value_set=[True])]),
    }
    if settings["expect_nonempty_masks"]:
        checks["no_empty_masks"] = ("slices", [e.ExpectColumnValuesToBeInSet(column="mask_empty", value_set=[False])])
    return checks


def _context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _describe(result: Any, table: Any) -> tuple[str, list[Any]]:
    config, outcome = result.expectation_config, result.result or {}
    column = config.kwargs.get("column", "table")
    if "unexpected_count" in outcome:
        examples = outcome.get("partial_unexpected_list") or []
        indices = outcome.get("partial_unexpected_index_list") or []
        rows = table.iloc[[i for i in indices if isinstance(i, int)][:3]].to_dict("records") if len(table) else []
        return f"{outcome['unexpected_count']} unexpected value(s) in '{column}'", (rows or examples)[:3]
    observed = outcome.get("observed_value")
    return f"{config.type} on '{column}': observed {observed}", [observed] if observed is not None else []


def run_checks(tables: dict[str, Any], settings: dict[str, Any],
               selected: Callable[[str], bool] = lambda _: True) -> list[CheckResult]:
    """Run every (selected) check; a check passes when all its expectations pass."""
    import great_expectations as gx

    context = _context()
    source = context.data_sources.add_pandas("medseg")
    results = []
    for name, (table_name, expectations) in _expectations(settings).items():
        if not selected(name):
            continue
        table = tables[table_name]
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        outcome = definition.run(batch_parameters={"dataframe": table})
        failed = [r for r in outcome.results if not r.success]
        detail, examples = _describe(failed[0], table) if failed else (f"{len(table)} rows checked", [])
        if failed and name in DETAILS:
            detail = DETAILS[name](table)
        results.append(CheckResult(name, not failed, detail, examples))
    return results
