"""``medseg report``: every evaluated run -> Markdown, CSV, HTML and figures, beside the paper.

The report holds (1) all runs with their secondary metrics, (2) the study's table layouts (Tables 4-20
of the paper) with only the cells that were run filled, each as ``ours / paper (difference)``, and
(3) figures (``figures/*.png``). Datasets the study did not use (e.g. the synthetic sample) are set
beside the paper's Average row of the same column, marked "avg".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from medseg.errors import MedsegError
from medseg.eval.reference import Entry, entries, load_reference, paper_value, tables_for
from medseg.names import check_name
from medseg.outputs import output_dir

REQUIRED = ("dataset", "strategy", "mode", "dice_mean", "num_slices", "num_patients")
RUN_GLOB = "*/*/*/eval/metrics.json"


def collect_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Metrics of every run under ``runs_dir/<dataset>/<mode>/<strategy>/eval/metrics.json``."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise MedsegError("runs directory not found", runs_dir)
    runs = []
    for path in sorted(runs_dir.glob(RUN_GLOB)):
        try:
            metrics = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MedsegError(f"corrupt metrics file ({exc})", path) from exc
        if not isinstance(metrics, dict):
            raise MedsegError("corrupt metrics file (not a JSON object)", path)
        missing = [c for c in REQUIRED if c not in metrics]
        if missing:
            raise MedsegError(f"metrics file lacks {missing}", path)
        if not (metrics["dice_mean"] is None or isinstance(metrics["dice_mean"], int | float)):
            raise MedsegError(f"dice_mean is not a number ({metrics['dice_mean']!r})", path)
        _check_names(metrics, path)
        runs.append({**metrics, "_overlays": path.parent / "overlays.png"})
    return runs


def _check_names(metrics: dict[str, Any], path: Path) -> None:
    """Names end up in tables, file names and HTML: each must be a plain identifier."""
    for key in ("dataset", "strategy", "mode", "init"):
        if key in metrics:
            try:
                check_name(metrics[key], key)
            except MedsegError as exc:
                raise MedsegError(exc.problem, path) from None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def runs_table(runs: list[dict[str, Any]]) -> str:
    """All runs: Dice (per slice, with patient-bootstrap 95 % interval), per-volume Dice, IoU, HD95, NSD."""
    lines = ["| dataset | mode | model | init | shots | Dice % (95% CI) | Dice % 3-D | IoU % | HD95 px | NSD % | "
             "test slices / patients |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for block, label in _blocks(run):
            flags = " (synthetic)" if run.get("synthetic_data") else ""
            flags += " (random init)" if run.get("random_init") else ""
            ci = f" ({_pct(block.get('dice_ci_low'))}–{_pct(block.get('dice_ci_high'))})" if block.get(
                "dice_ci_low") is not None else ""
            lines.append(
                f"| {run['dataset']}{flags} | {run['mode']}{label} | {run['strategy']} | {run.get('init', 'sam')} | "
                f"{'5' if run.get('fewshot') else 'all'} | {_pct(block.get('dice_mean'))}{ci} | "
                f"{_pct(block.get('dice_volume_mean'))} | {_pct(block.get('iou_mean'))} | "
                f"{_fmt(block.get('hd95_mean'), 1)} | {_pct(block.get('nsd_mean'))} | "
                f"{block['num_slices']} / {block['num_patients']} |")
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _blocks(run: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    selection = run.get("selection", "argmax")
    blocks = [(run, "" if selection == "argmax" else f" ({selection})")]
    if isinstance(run.get("oracle"), dict):
        blocks.append(({**run["oracle"], "num_slices": run["num_slices"], "num_patients": run["num_patients"]},
                       " (oracle)"))
    return blocks


def comparison_rows(found: list[Entry], reference: pd.DataFrame) -> pd.DataFrame:
    """One row per (table, entry): ours, the paper's value and the difference, in Dice %."""
    rows = []
    for entry in found:
        for table in tables_for(reference, entry):
            paper, is_average = paper_value(reference, table, entry.dataset, entry.model)
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


def layout_table(table: int, reference: pd.DataFrame, compared: pd.DataFrame) -> str:
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
        row = [_cell(ours, reference, table, dataset, column) for column in columns]
        lines.append(f"| {dataset} | " + " | ".join(row) + " |")
    average = [_fmt(paper_value(reference, table, "average", m)[0]) for m, _, _ in columns]
    lines.append("| *paper average* | " + " | ".join(average) + " |")
    return "\n".join(lines) + "\n"


def _cell(ours: pd.DataFrame, reference: pd.DataFrame, table: int, dataset: str, column: tuple[str, ...]) -> str:
    model, init, selection = column
    match = ours[(ours["dataset"] == dataset) & (ours["model"] == model) & (ours["init"] == init)
                 & (ours["selection"] == selection)]
    paper, is_average = paper_value(reference, table, dataset, model)
    reference_text = "–" if paper is None else ("avg " if is_average else "") + _fmt(paper)
    if not len(match) or pd.isna(match["ours"].iloc[0]):
        return f"· / {reference_text}"
    ours_value = float(match["ours"].iloc[0])
    difference = "" if paper is None else f" ({ours_value - paper:+.2f})"
    return f"**{ours_value:.2f}** / {reference_text}{difference}"


def write_report(runs_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``report.md``, ``report.csv`` (all runs), ``comparison.csv`` (beside the paper), ``report.html``
    and ``figures/``; returns the Markdown path."""
    from medseg.eval.figures import write_figures
    from medseg.eval.report_html import markdown_to_html

    runs = collect_runs(runs_dir)
    if not runs:
        raise MedsegError(f"no evaluated runs found (expected {RUN_GLOB.replace('*', '<x>', 3)}; run "
                          "`medseg evaluate` first)", runs_dir)
    reference = load_reference()
    compared = comparison_rows(entries(runs), reference)
    with output_dir("report", out_dir, [runs_dir]) as tmp:
        figures = write_figures(tmp / "figures", runs, compared)
        body = _markdown(runs, compared, reference, figures)
        (tmp / "report.md").write_text(body)
        (tmp / "report.html").write_text(markdown_to_html(body, tmp))
        pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_") and not isinstance(v, dict)}
                      for r in runs]).to_csv(tmp / "report.csv", index=False)
        compared.to_csv(tmp / "comparison.csv", index=False)
    return Path(out_dir) / "report.md"


def _markdown(runs: list[dict[str, Any]], compared: pd.DataFrame, reference: pd.DataFrame,
              figures: list[tuple[str, str]]) -> str:
    parts = ["# medseg results\n",
             "Test split; Dice per slice (the study's protocol; empty-vs-empty excluded), 95 % intervals from a "
             "patient-level bootstrap, 3-D Dice per volume, IoU, HD95 and NSD in pixels of the ingested slices.\n",
             "## All runs\n", runs_table(runs)]
    if any(r.get("synthetic_data") for r in runs):
        parts.append("> Rows marked (synthetic) use the embedded phantom, not patient data; (random init) runs "
                     "started from random weights, not SAM.\n")
    parts.append("## Beside the paper\n")
    parts.append("Cells: **ours** / paper (ours − paper), Dice %. · = not run; avg = the paper's Average row "
                 "(for datasets the study did not use). Source: `medseg/reference/study_dice.csv`.\n")
    for table in sorted(set(compared["table"])):
        parts += [f"### Table {table}\n", layout_table(int(table), reference, compared)]
    placed = set(compared["run"])
    every_run = {f"{r['dataset']}/{r['mode']}/{r['strategy']}" for r in runs}
    if missing := sorted(every_run - placed):
        parts.append("Runs without a counterpart in the study's tables: " + ", ".join(missing) + "\n")
    if figures:
        parts.append("## Figures\n")
        parts += [f"![{title}]({path})\n" for path, title in figures]
    return "\n".join(parts)
