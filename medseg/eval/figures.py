"""The report's figures (PNG, matplotlib), in the spirit of the study's Figures 4, 6-8 and 9-10.

- ``strategies_vs_baselines.png``: mean Dice of each automated model over the datasets run, beside the
  paper's mean over the same datasets (Figure 4); datasets the study did not use have no paper bar
  unless the report compares them with its Average row (``--compare-average``).
- ``init_differences.png``: Dice with another initialisation minus Dice from SAM's weights, per
  dataset and strategy, ours beside the paper's (Figures 6-8); drawn when both were run (any backbone:
  the paper's side has values for its ViT-B strategies on its datasets only).
- ``fewshot_and_prompts.png``: 5-shot and point/box results beside the paper (Figures 9-10).
- ``overlays_<dataset>_<init>_<profile>_<mode>_<strategy>.png``: image, ground truth and prediction of a few test
  slices (volumes in the radiological view, prompts drawn), from each run's evaluation.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medseg.eval.reference import entries, run_name

Figure = tuple[str, str]  # (path relative to the report, title)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(row: pd.Series) -> str:
    text = row["model"] if row["init"] in ("", "sam") else f"{row['model']}\n({row['init']})"
    return text + (f" {row['selection']}" if row["selection"] else "")


def _bars(path: Path, summary: pd.DataFrame, title: str) -> None:
    """Grouped bars: ours vs the paper's average, one group per label (no paper bar where it has no value)."""
    plt = pyplot()
    positions = np.arange(len(summary))
    figure, axis = plt.subplots(figsize=(max(6.5, 1.1 * len(summary) + 2), 4.2))
    known = summary["paper"].notna().to_numpy()
    axis.bar(positions - (0.2 if known.any() else 0.0), summary["ours"], 0.4, label="ours", color="#3b75af")
    if known.any():
        label = "paper, same datasets" + (" (its Average row for\ndatasets it did not use)" if summary["average"].any()
                                          else "")
        axis.bar(positions[known] + 0.2, summary["paper"][known], 0.4, label=label, color="#c9c9c9")
    axis.set_xlim(-0.7, len(summary) - 0.3)
    if not known.all():
        axis.text(0.99, 0.97, "no paper bar: datasets the study did not use", transform=axis.transAxes,
                  ha="right", va="top", fontsize=7, color="#555555")
    axis.set_xticks(positions, summary["label"], rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("Dice %")
    axis.set_ylim(0, 100)
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _summary(part: pd.DataFrame) -> pd.DataFrame:
    """Mean of ours and of the paper's values over the same datasets, per table column."""
    rows = []
    for (_, _, _, _, mode, shots), group in part.groupby(["table", "model", "init", "selection", "mode", "shots"],
                                                          sort=False):
        tags = [text for text, shown in ((mode, mode != "automated"), ("5-shot", shots == "5")) if shown]
        label = _label(group.iloc[0]) + (f"\n[{', '.join(tags)}]" if tags else "")
        rows.append({"label": label, "ours": group["ours"].mean(), "paper": group["paper"].mean(),
                     "average": bool(group["paper_is_average"].astype(bool).any())})
    return pd.DataFrame(rows, columns=["label", "ours", "paper", "average"])


def _flags(part: pd.DataFrame) -> str:
    """What the bars include that is not a real result: synthetic data, random-init models."""
    flags = [text for column, text in (("synthetic", "synthetic data"), ("random_init", "random-init models"))
             if part[column].astype(bool).any()]
    return f"; includes {' and '.join(flags)}" if flags else ""


def _strategies_figure(folder: Path, compared: pd.DataFrame) -> list[Figure]:
    part = compared[compared["table"].isin([4, 5, 6, 7])].dropna(subset=["ours"])
    if part.empty:
        return []
    _bars(folder / "strategies_vs_baselines.png", _summary(part),
          f"Automated mode: strategies and baselines\n(mean over the datasets run{_flags(part)})")
    return [("figures/strategies_vs_baselines.png", "Strategies vs baselines")]


def _differences(compared: pd.DataFrame, column: str) -> pd.DataFrame:
    automated = compared[(compared["mode"] == "automated") & (compared["shots"] == "all")].dropna(subset=[column])
    base = automated[automated["init"] == "sam"].set_index(["dataset", "model"])[column]
    rows = []
    for (init, dataset, model), group in automated[automated["init"] != "sam"].groupby(["init", "dataset", "model"]):
        if (dataset, model) in base.index and init:
            rows.append({"init": init, "dataset": dataset, "model": model,
                         "difference": float(group[column].iloc[0]) - float(base.loc[(dataset, model)])})
    return pd.DataFrame(rows, columns=["init", "dataset", "model", "difference"])


def _heatmap(axis: Any, table: pd.DataFrame, title: str) -> None:
    if table.empty:
        axis.set_axis_off()
        axis.text(0.5, 0.5, f"{title}:\nno values for these datasets and strategies", ha="center", va="center",
                  fontsize=9, transform=axis.transAxes)
        return
    grid = table.pivot(index="dataset", columns="model", values="difference")
    limit = max(1.0, float(np.nanmax(np.abs(grid.to_numpy()))) if grid.size else 1.0)
    image = axis.imshow(grid.to_numpy(dtype=float), cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    axis.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right", fontsize=7)
    axis.set_yticks(range(grid.shape[0]), grid.index, fontsize=7)
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if not np.isnan(value):
            axis.text(j, i, f"{value:+.1f}", ha="center", va="center", fontsize=7)
    axis.set_title(title, fontsize=9)
    axis.figure.colorbar(image, ax=axis, fraction=0.04)


def _ours(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Our runs' primary results keyed like the paper's cells (whether or not a study table holds them)."""
    columns = ["dataset", "model", "init", "mode", "shots", "selection", "ours", "synthetic", "random_init"]
    rows = [(e.dataset, e.model, e.init, e.mode, e.shots, e.selection, e.dice, e.synthetic, e.random_init)
            for e in entries(runs) if e.selection in ("", "highest")]
    return pd.DataFrame(rows, columns=columns)


def _init_figure(folder: Path, runs: list[dict[str, Any]], compared: pd.DataFrame) -> list[Figure]:
    table = _ours(runs)
    ours = _differences(table, "ours")
    if ours.empty:
        return []
    paper = _differences(compared.assign(paper=compared["paper"].where(~compared["paper_is_average"])), "paper")
    plt = pyplot()
    inits = sorted(set(ours["init"]))
    figure, axes = plt.subplots(len(inits), 2, figsize=(11, 3 + 0.4 * ours["dataset"].nunique()), squeeze=False)
    for row, init in enumerate(inits):
        _heatmap(axes[row, 0], ours[ours["init"] == init], f"ours: {init} init minus SAM init (Dice %)")
        _heatmap(axes[row, 1], paper[paper["init"] == init], f"paper: {init} minus SAM")
    flags = _flags(table[table["dataset"].isin(ours["dataset"]) & table["model"].isin(ours["model"])])
    if flags:
        figure.suptitle(f"Ours {flags.removeprefix('; ')}", fontsize=9, color="#a00000")
    figure.tight_layout()
    figure.savefig(folder / "init_differences.png", dpi=90)
    plt.close(figure)
    return [("figures/init_differences.png", "Other initialisations minus SAM's")]


def _fewshot_prompt_figure(folder: Path, compared: pd.DataFrame) -> list[Figure]:
    part = compared[(compared["shots"] == "5") | (compared["mode"] != "automated")].dropna(subset=["ours"])
    if part.empty:
        return []
    _bars(folder / "fewshot_and_prompts.png", _summary(part), f"5-shot and prompt modes{_flags(part)}")
    return [("figures/fewshot_and_prompts.png", "5-shot and point/box prompts")]


def _overlays(folder: Path, runs: list[dict[str, Any]]) -> list[Figure]:
    figures = []
    for run in runs:
        source = run.get("_overlays")
        if source is not None and Path(source).is_file():
            run_folder = run_name(run)  # <dataset>/<init>/<profile>/<mode>/<strategy>
            name = f"overlays_{run_folder.replace('/', '_')}.png"
            shutil.copyfile(source, folder / name)
            figures.append((f"figures/{name}", f"{run_folder.replace('/', ' / ')}: test slices"))
    return figures


def write_figures(folder: Path, runs: list[dict[str, Any]], compared: pd.DataFrame) -> list[Figure]:
    """Draw every figure the runs allow into ``folder``; returns (relative path, title) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    return [*_strategies_figure(folder, compared), *_init_figure(folder, runs, compared),
            *_fewshot_prompt_figure(folder, compared), *_overlays(folder, runs)]
