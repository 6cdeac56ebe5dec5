"""``medseg report``: all evaluated runs -> a Markdown and CSV results table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medseg.atomic import atomic_dir
from medseg.errors import MedsegError

COLUMNS = ("dataset", "strategy", "mode", "dice_mean", "dice_std", "num_slices", "num_patients")


def collect_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Metrics of every run under ``runs_dir/<dataset>/<mode>/<strategy>/eval/metrics.json``."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise MedsegError("runs directory not found", runs_dir)
    runs = []
    for path in sorted(runs_dir.glob("*/*/*/eval/metrics.json")):
        try:
            metrics = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MedsegError(f"corrupt metrics file ({exc})", path) from exc
        missing = [c for c in COLUMNS if c not in metrics]
        if missing:
            raise MedsegError(f"metrics file lacks {missing}", path)
        runs.append(metrics)
    return runs


def markdown_table(runs: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, Dice in percent as in the study (DSC%)."""
    lines = [
        "| dataset | strategy | mode | Dice % (mean ± sd) | test slices | test patients |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        flag = " (synthetic)" if run.get("synthetic_data") else ""
        lines.append(
            f"| {run['dataset']}{flag} | {run['strategy']} | {run['mode']} | "
            f"{100 * run['dice_mean']:.2f} ± {100 * run['dice_std']:.2f} | "
            f"{run['num_slices']} | {run['num_patients']} |"
        )
    return "\n".join(lines) + "\n"


def write_report(runs_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``report.md`` and ``report.csv``; returns the Markdown path."""
    import pandas as pd

    runs = collect_runs(runs_dir)
    if not runs:
        raise MedsegError("no evaluated runs found (expected <dataset>/<mode>/<strategy>/eval/metrics.json)",
                          runs_dir)
    notes = []
    if any(r.get("synthetic_data") for r in runs):
        notes.append("> Rows marked (synthetic) use the embedded phantom, not patient data.")
    body = "# medseg results\n\nForeground Dice on the test split, per slice.\n\n"
    body += markdown_table(runs) + ("\n" + "\n".join(notes) + "\n" if notes else "")
    with atomic_dir(out_dir) as tmp:
        (tmp / "report.md").write_text(body)
        pd.DataFrame(runs).to_csv(tmp / "report.csv", index=False)
    return Path(out_dir) / "report.md"
