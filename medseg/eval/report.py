"""``medseg report``: every evaluated run -> Markdown, CSV, HTML and figures, beside the paper.

The report holds (1) all runs with their secondary metrics, (2) the study's table layouts (Tables 4-20
of the paper) with only the cells that were run filled, each as ``ours / paper (difference)``, and
(3) figures (``figures/*.png``), and per-class Dice by class name. Each run's ``metrics.json`` is read
with its ``metrics_details.json`` when present (per-class means, why an interval is blank). Datasets the
study did not use (e.g. the synthetic sample) get no paper value, unless ``compare_average`` (``medseg
report --compare-average``) sets them beside the paper's Average row of the same column, marked "avg".
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medseg.errors import MedsegError
from medseg.eval.details import DETAILS_FILE, with_details
from medseg.eval.layout import CARRIED_RUNS, evaluation_files
from medseg.eval.reference import Entry, entries, load_reference, paper_value, run_name, tables_for
from medseg.names import check_name
from medseg.outputs import output_dir

REQUIRED = ("dataset", "strategy", "mode", "dice_mean", "num_slices", "num_patients")




def _read_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedsegError(f"corrupt {what} file ({exc})", path) from exc
    if not isinstance(data, dict):
        raise MedsegError(f"corrupt {what} file (not a JSON object)", path)
    return data


def collect_runs(runs_dirs: str | Path | Sequence[str | Path]) -> list[dict[str, Any]]:
    """Metrics of every run under ``<runs_dir>/<dataset>/<init>/<profile>/<mode>/<strategy>/eval/metrics.json``,
    over one runs folder or several (a Kubeflow grid's collected evaluations); a run found twice is an error."""
    roots = [Path(runs_dirs)] if isinstance(runs_dirs, str | Path) else [Path(p) for p in runs_dirs]
    return [{**_read_run(path), "_key": str(path.parent.relative_to(root))}
            for root, path in evaluation_files(roots)]


def _carry(runs: list[dict[str, Any]], folder: Path) -> None:
    """Copy each run's evaluation summary (metrics, details, overlays, provenance) under ``folder``, so a
    later report can read this report as a runs root."""
    for run in runs:
        source, target = run["_overlays"].parent, folder / run["_key"]
        target.mkdir(parents=True)
        for name in ("metrics.json", DETAILS_FILE, "overlays.png", "provenance.json"):
            if (source / name).is_file():
                shutil.copy2(source / name, target / name)


def _read_run(path: Path) -> dict[str, Any]:
    """One evaluation's metrics (with its details when present), checked."""
    metrics = _read_object(path, "metrics")
    missing = [c for c in REQUIRED if c not in metrics]
    if missing:
        raise MedsegError(f"metrics file lacks {missing}", path)
    if not (metrics["dice_mean"] is None or isinstance(metrics["dice_mean"], int | float)):
        raise MedsegError(f"dice_mean is not a number ({metrics['dice_mean']!r})", path)
    _check_names(metrics, path)
    details = path.parent / DETAILS_FILE
    if details.is_file():
        metrics = with_details(metrics, _read_object(details, "metrics details"))
    return {**metrics, "_overlays": path.parent / "overlays.png"}


def _check_names(metrics: dict[str, Any], path: Path) -> None:
    """Names end up in tables, file names and HTML: each must be a plain identifier."""
    for key in ("dataset", "strategy", "mode", "init", "profile"):
        if key in metrics:
            try:
                check_name(metrics[key], key)
            except MedsegError as exc:
                raise MedsegError(exc.problem, path) from None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def runs_table(runs: list[dict[str, Any]]) -> str:
    """All runs: Dice (per slice, with patient-bootstrap 95 % interval or why there is none), per-volume
    Dice, IoU, HD95, NSD, test counts and epochs run."""
    lines = ["| dataset | mode | model | init | shots | Dice % (95% CI) | Dice % 3-D | IoU % | HD95 px | NSD % | "
             "test slices / patients | epochs run (best) |", "|---" * 12 + "|"]
    for run in runs:
        for block, label in _blocks(run):
            flags = " (synthetic)" if run.get("synthetic_data") else ""
            flags += " (random init)" if run.get("random_init") else ""
            lines.append(
                f"| {run['dataset']}{flags} | {run['mode']}{label} | {run['strategy']} | {run.get('init', 'sam')} | "
                f"{'5' if run.get('fewshot') else 'all'} | {_pct(block.get('dice_mean'))}{_interval(block)} | "
                f"{_pct(block.get('dice_volume_mean'))} | {_pct(block.get('iou_mean'))} | "
                f"{_fmt(block.get('hd95_mean'), 1)} | {_pct(block.get('nsd_mean'))} | "
                f"{block['num_slices']} / {block['num_patients']} | {_epochs(run)} |")
    return "\n".join(lines) + "\n"


def _interval(block: dict[str, Any]) -> str:
    """`` (low–high)``, or why the interval is blank (older runs: inferred from the patient count)."""
    if block.get("dice_ci_low") is not None:
        return f" ({_pct(block.get('dice_ci_low'))}–{_pct(block.get('dice_ci_high'))})"
    note = block.get("dice_ci_note")
    if note is None and block.get("dice_mean") is not None and block.get("num_patients") == 1:
        note = "one test patient: no interval"
    return f" ({note})" if note else ""


def _epochs(run: dict[str, Any]) -> str:
    """Epochs run and the exported epoch (numbered from 0, as in the training log)."""
    if run.get("zeroshot"):
        return "not fine-tuned"
    best = run.get("best_epoch")
    if run.get("epochs_run") is None:
        return "–" if best is None else f"? (best {best})"
    return f"{run['epochs_run']}" + ("" if best is None else f" (best {best})")


def class_table(runs: list[dict[str, Any]]) -> str:
    """Dice, 3-D Dice, IoU and HD95 of each foreground class, by class name, for the runs that recorded them."""
    lines = ["| dataset | mode | model | init | shots | class | Dice % | Dice % 3-D | IoU % | HD95 px | "
             "scored slices |", "|---" * 11 + "|"]
    for run in runs:
        for block, label in _blocks(run):
            for name, entry in (block.get("per_class") or {}).items():
                lines.append(f"| {run['dataset']} | {run['mode']}{label} | {run['strategy']} | "
                             f"{run.get('init', 'sam')} | {'5' if run.get('fewshot') else 'all'} | {name} | "
                             f"{_pct(entry.get('dice_mean'))} | {_pct(entry.get('dice_volume_mean'))} | "
                             f"{_pct(entry.get('iou_mean'))} | {_fmt(entry.get('hd95_mean'), 1)} | "
                             f"{entry.get('num_scored_slices', '–')} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _blocks(run: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    selection = run.get("selection", "argmax")
    blocks = [(run, "" if selection == "argmax" else f" ({selection})")]
    if isinstance(run.get("oracle"), dict):
        blocks.append(({**run["oracle"], "num_slices": run["num_slices"], "num_patients": run["num_patients"]},
                       " (oracle)"))
    return blocks


def _paper(reference: pd.DataFrame, table: int, dataset: str, model: str,
           compare_average: bool) -> tuple[float | None, bool]:
    """The paper's value of a cell; its Average row stands in for a dataset it lacks only when asked."""
    paper, is_average = paper_value(reference, table, dataset, model)
    return (paper, is_average) if compare_average or not is_average else (None, False)


def comparison_rows(found: list[Entry], reference: pd.DataFrame, compare_average: bool = False) -> pd.DataFrame:
    """One row per (table, entry): ours, the paper's value and the difference, in Dice % (no paper value
    for datasets the study did not use, unless ``compare_average``)."""
    rows = []
    for entry in found:
        for table in tables_for(reference, entry):
            paper, is_average = _paper(reference, table, entry.dataset, entry.model, compare_average)
            difference = None if entry.dice is None or paper is None else entry.dice - paper
            rows.append({"table": table, "dataset": entry.dataset, "model": entry.model, "init": entry.init,
                         "mode": entry.mode, "shots": entry.shots, "selection": entry.selection, "ours": entry.dice,
                         "paper": paper, "paper_is_average": is_average, "difference": difference,
                         "synthetic": entry.synthetic, "random_init": entry.random_init, "run": entry.run})
    columns = ["table", "dataset", "model", "init", "mode", "shots", "selection", "ours", "paper",
               "paper_is_average", "difference", "synthetic", "random_init", "run"]
    return pd.DataFrame(rows, columns=columns)


def _column_label(cells: pd.DataFrame) -> str:
    first = cells.iloc[0]
    label = first["model"] if first["init"] in ("", "sam") else f"{first['model']} ({first['init']})"
    return label + (f" {first['selection'][0].upper()}" if first["selection"] else "")


def layout_table(table: int, reference: pd.DataFrame, compared: pd.DataFrame, compare_average: bool = False) -> str:
    """One study table with our cells filled: rows = datasets we ran, columns = the table's columns."""
    cells = reference[reference["table"] == table]
    columns = list(dict.fromkeys(zip(cells["model"], cells["init"], cells["selection"], strict=True)))
    ours = compared[compared["table"] == table]
    order = [d for d in dict.fromkeys(cells["dataset"]) if d in set(ours["dataset"])]
    order += sorted(set(ours["dataset"]) - set(order))
    header = [_column_label(cells[(cells["model"] == m) & (cells["init"] == i) & (cells["selection"] == s)])
              for m, i, s in columns]
    lines = ["| dataset | " + " | ".join(header) + " |", "|---" * (len(columns) + 1) + "|"]
    for dataset in order:
        row = [_cell(ours, reference, (table, dataset, compare_average), column) for column in columns]
        lines.append(f"| {dataset} | " + " | ".join(row) + " |")
    average = [_fmt(paper_value(reference, table, "average", m)[0]) for m, _, _ in columns]
    lines.append("| *paper average* | " + " | ".join(average) + " |")
    return "\n".join(lines) + "\n"


def _cell(ours: pd.DataFrame, reference: pd.DataFrame, where: tuple[int, str, bool], column: tuple[str, ...]) -> str:
    """``where``: (table, dataset, compare_average)."""
    (table, dataset, compare_average), (model, init, selection) = where, column
    match = ours[(ours["dataset"] == dataset) & (ours["model"] == model) & (ours["init"] == init)
                 & (ours["selection"] == selection)]
    paper, is_average = _paper(reference, table, dataset, model, compare_average)
    reference_text = "–" if paper is None else ("avg " if is_average else "") + _fmt(paper)
    if not len(match) or pd.isna(match["ours"].iloc[0]):
        return f"· / {reference_text}"
    ours_value = float(match["ours"].iloc[0])
    difference = "" if paper is None else f" ({ours_value - paper:+.2f})"
    return f"**{ours_value:.2f}** / {reference_text}{difference}"


def write_report(runs_dir: str | Path | Sequence[str | Path], out_dir: str | Path, compare_average: bool = False,
                 datasets: Sequence[str] | None = None, carry_runs: bool = False) -> Path:
    """Write ``report.md``, ``report.csv`` (all runs), ``comparison.csv`` (beside the paper), ``report.html``
    and ``figures/``; returns the Markdown path. ``compare_average``: set datasets the study did not use
    beside its Average row; ``datasets``: report only runs of these (e.g. ``ingest.datasets``), and name
    the datasets left out."""
    from medseg.eval.figures import write_figures
    from medseg.eval.report_html import markdown_to_html

    found = collect_runs(runs_dir)
    runs = [r for r in found if datasets is None or r["dataset"] in datasets]
    left_out = sorted({r["dataset"] for r in found} - {r["dataset"] for r in runs})
    if not runs:
        wanted = ", ".join(datasets) if datasets is not None else "any dataset"
        raise MedsegError("no evaluated runs found (expected <dataset>/<init>/<profile>/<mode>/<strategy>/eval/"
                          f"metrics.json for {wanted}; run `medseg evaluate` first)",
                          runs_dir if isinstance(runs_dir, str | Path) else ", ".join(map(str, runs_dir)))
    reference = load_reference()
    compared = comparison_rows(entries(runs), reference, compare_average)
    inputs = [runs_dir] if isinstance(runs_dir, str | Path) else list(runs_dir)
    with output_dir("report", out_dir, inputs) as tmp:
        figures = write_figures(tmp / "figures", runs, compared)
        body = _markdown(runs, compared, (reference, compare_average), figures)
        if left_out:
            body += (f"\nLeft out: runs of {', '.join(left_out)} (not in `ingest.datasets`; "
                     "`medseg report --all-datasets` includes them).\n")
        (tmp / "report.md").write_text(body)
        (tmp / "report.html").write_text(markdown_to_html(body, tmp))
        pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_") and not isinstance(v, dict)}
                      for r in runs]).to_csv(tmp / "report.csv", index=False)
        compared.to_csv(tmp / "comparison.csv", index=False)
        if carry_runs:
            _carry(runs, tmp / CARRIED_RUNS)
    return Path(out_dir) / "report.md"


def _markdown(runs: list[dict[str, Any]], compared: pd.DataFrame, reference: tuple[pd.DataFrame, bool],
              figures: list[tuple[str, str]]) -> str:
    """``reference``: the paper's values and whether non-study datasets are set beside its Average row."""
    (reference, compare_average), per_class = reference, class_table(runs)
    parts = ["# medseg results\n",
             "Test split; Dice per slice (the study's protocol; empty-vs-empty excluded), 95 % intervals from a "
             "patient-level bootstrap, 3-D Dice per volume, IoU, HD95 and NSD in pixels of the ingested slices.\n",
             "## All runs\n", runs_table(runs)]
    if any(r.get("synthetic_data") for r in runs):
        parts.append("> Rows marked (synthetic) use the embedded phantom, not patient data; (random init) runs "
                     "started from random weights, not SAM.\n")
    parts.append("Epochs run (best): epochs trained, and the exported epoch numbered from 0 as in the training "
                 "log. An interval is blank where it cannot be drawn, with the reason.\n")
    if per_class:
        parts += ["## Dice per class\n", "Foreground classes by their names in the dataset's label map "
                  "(`ingest.json`); point and box models: their prompted objects, grouped by the prompted object's "
                  "class.\n", per_class]
    parts.append("## Beside the paper\n")
    average = ("avg = the paper's Average row, set beside datasets the study did not use (`--compare-average`)"
               if compare_average else "– = no paper value (datasets the study did not use are not compared with "
               "its Average row; `medseg report --compare-average` does)")
    parts.append(f"Cells: **ours** / paper (ours − paper), Dice %. · = not run; {average}. "
                 "Source: `medseg/reference/study_dice.csv`.\n")
    for table in sorted(set(compared["table"])):
        parts += [f"### Table {table}\n", layout_table(int(table), reference, compared, compare_average)]
    placed = set(compared["run"])
    every_run = {run_name(r) for r in runs}
    if missing := sorted(every_run - placed):
        parts.append("Runs without a counterpart in the study's tables: " + ", ".join(missing) + "\n")
    if figures:
        parts.append("## Figures\n")
        parts += [f"![{title}]({path})\n" for path, title in figures]
    return "\n".join(parts)
