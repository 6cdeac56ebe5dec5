"""The study's Dice tables (4-20) as reference values, and our runs as entries keyed like them.

``medseg/reference/study_dice.csv`` holds every printed cell (source and transcription notes in its
header). A run's key is (model, init, mode, shots, selection); the tables that hold that key are the
ones the run belongs to, so the layout of the report follows the file, not code.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import pandas as pd

KEY = ["model", "init", "mode", "shots", "selection"]


def load_reference() -> pd.DataFrame:
    """All printed cells: table, dataset, paper_dataset, model, ..., dice (%)."""
    with resources.files("medseg.reference").joinpath("study_dice.csv").open() as handle:
        table = pd.read_csv(handle, comment="#", dtype={"shots": str}, keep_default_na=False)
    table["dice"] = table["dice"].astype(float)
    return table


@dataclass(frozen=True)
class Entry:
    """One evaluated run under one selection rule, keyed like the reference."""

    dataset: str
    model: str
    init: str
    mode: str
    shots: str
    selection: str
    dice: float | None  # % (slice protocol, the study's)
    synthetic: bool
    random_init: bool
    run: str  # <dataset>/<init>/<profile>/<mode>/<strategy>: the run's folder

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.model, self.init, self.mode, self.shots, self.selection)


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * float(value)


BASELINES = ("unet", "nnunet", "swinunet")


def run_folder(run: dict[str, Any]) -> str:
    """``<init>/<profile>/<mode>`` of a run (its summary or model metadata): ``scratch`` is a baseline's init,
    ``fewshot`` the 5-shot profile."""
    init = "scratch" if run["strategy"] in BASELINES else run.get("init") or "sam"
    profile = run.get("profile") or ("fewshot" if run.get("fewshot") else "full")
    return f"{init}/{profile}/{run.get('mode') or 'automated'}"


def run_name(run: dict[str, Any]) -> str:
    """``<dataset>/<init>/<profile>/<mode>/<strategy>``: the run's folder under models/ and results/runs/."""
    return f"{run['dataset']}/{run_folder(run)}/{run['strategy']}"


def _entry(run: dict[str, Any], block: dict[str, Any], selection: str) -> Entry:
    baseline = run["strategy"] in BASELINES
    return Entry(
        dataset=run["dataset"], model=run["strategy"], init="" if baseline else run.get("init", "sam"),
        mode=run["mode"], shots="5" if run.get("fewshot") else "all", selection=selection,
        dice=_percent(block.get("dice_mean")), synthetic=bool(run.get("synthetic_data")),
        random_init=bool(run.get("random_init")), run=run_name(run),
    )


def entries(runs: list[dict[str, Any]]) -> list[Entry]:
    """Every run's primary result, plus its oracle result for candidate-mask models."""
    found = []
    for run in runs:
        primary = run.get("selection", "argmax")
        found.append(_entry(run, run, "" if primary == "argmax" else primary))
        if isinstance(run.get("oracle"), dict):
            found.append(_entry(run, run["oracle"], "oracle"))
    return found


def paper_value(reference: pd.DataFrame, table: int, dataset: str, model: str) -> tuple[float | None, bool]:
    """The paper's value for a cell; for datasets the study did not use, its Average row (flag True)."""
    cells = reference[(reference["table"] == table) & (reference["model"] == model)]
    for name, is_average in ((dataset, False), ("average", True)):
        match = cells[cells["dataset"] == name]
        if len(match):
            return float(match["dice"].iloc[0]), is_average
    return None, False


def tables_for(reference: pd.DataFrame, entry: Entry) -> list[int]:
    """The reference tables whose columns include this entry's key."""
    matches = reference
    for column, value in zip(KEY, entry.key, strict=True):
        matches = matches[matches[column] == value]
    return sorted(set(matches["table"].astype(int)))
