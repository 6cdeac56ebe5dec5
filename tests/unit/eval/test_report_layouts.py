"""The report beside the paper: study table layouts, differences, figures and the HTML page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from medseg.errors import MedsegError
from medseg.eval.report import write_report


def _run(root: Path, dataset: str, mode: str, strategy: str, dice: float, **extra: Any) -> Path:
    """An evaluated run in evaluate's layout, ``<dataset>/<init>/<profile>/<mode>/<strategy>/eval``."""
    metrics = {"dataset": dataset, "strategy": strategy, "mode": mode, "selection": "argmax", "init": "sam",
               "fewshot": False, "dice_mean": dice, "dice_ci_low": dice - 0.05, "dice_ci_high": dice + 0.05,
               "dice_volume_mean": dice + 0.01, "iou_mean": dice - 0.1, "hd95_mean": 4.0, "nsd_mean": dice,
               "num_slices": 40, "num_patients": 5, **extra}
    metrics.setdefault("profile", "fewshot" if metrics["fewshot"] else "full")
    folder = root / dataset / metrics["init"] / metrics["profile"] / mode / strategy / "eval"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder / "metrics.json"


@pytest.fixture()
def report(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    _run(runs, "mri_prostate", "automated", "vit_b_endec_lora", 0.80)
    _run(runs, "mri_prostate", "automated", "vit_b_dec_adapter", 0.70)
    _run(runs, "mri_prostate", "automated", "vit_b_endec_lora_medsam", 0.85)  # not a study column
    _run(runs, "mri_heart", "automated", "nnunet", 0.88, init="scratch")
    _run(runs, "mri_prostate", "box", "vit_b_zeroshot", 0.60, selection="highest",
         oracle={"dice_mean": 0.70, "num_slices": 40, "num_patients": 5})
    _run(runs, "mri_heart", "point", "vit_b_dec_lora", 0.75)
    _run(runs, "mri_heart", "automated", "vit_b_endec_vanilla", 0.50, fewshot=True)
    write_report(runs, tmp_path / "report")
    return tmp_path / "report"


def test_cells_sit_in_the_study_tables_with_paper_values_and_differences(report: Path) -> None:
    text = (report / "report.md").read_text()
    for table in (5, 7, 11, 15, 17):
        assert f"### Table {table}\n" in text
    assert "**80.00** / 89.37 (-9.37)" in text  # Table 5, MRI-Prost., En/Decoder LoRA
    assert "**70.00** / 83.44 (-13.44)" in text  # Table 5, Decoder Adapter
    assert "· / 82.77" in text  # Decoder Vanilla was not run
    compared = pd.read_csv(report / "comparison.csv", keep_default_na=False)
    box = compared[(compared["model"] == "vit_b_zeroshot")]
    assert set(box["selection"]) == {"highest", "oracle"} and set(box["table"]) == {17}
    fewshot = compared[compared["shots"].astype(str) == "5"]
    assert list(fewshot["table"]) == [11] and float(fewshot["paper"].iloc[0]) == pytest.approx(72.34)
    assert ("Runs without a counterpart in the study's tables: mri_prostate/sam/full/automated/"
            "vit_b_endec_lora_medsam") in text
    assert set(compared.loc[compared["model"] == "nnunet", "run"]) == {"mri_heart/scratch/full/automated/nnunet"}
    assert set(fewshot["run"]) == {"mri_heart/sam/fewshot/automated/vit_b_endec_vanilla"}


def test_figures_render_and_the_html_page_inlines_them(report: Path) -> None:
    from PIL import Image

    figures = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert {"strategies_vs_baselines.png", "fewshot_and_prompts.png"} <= set(figures)
    for name in figures:
        with Image.open(report / "figures" / name) as image:
            assert image.width > 400 and len(image.getcolors(2**24)) > 10
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(figures) and "<table>" in page


def test_other_initialisations_are_drawn_as_differences(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs, "mri_prostate", "automated", "vit_b_endec_lora", 0.80)
    path = _run(runs, "mri_prostate", "automated", "vit_b_endec_lora", 0.86, init="medsam")
    assert path == runs / "mri_prostate/medsam/full/automated/vit_b_endec_lora/eval/metrics.json"  # beside sam/
    write_report(runs, tmp_path / "report")
    text = (tmp_path / "report/report.md").read_text()
    assert "### Table 9" in text and "**86.00** / 89.02 (-3.02)" in text
    assert (tmp_path / "report/figures/init_differences.png").is_file()


def test_init_differences_are_drawn_for_runs_outside_the_study_tables(tmp_path: Path) -> None:
    """The demo's ViT-T runs from SSLSAM and SupSAM have no cell in Tables 8-10 (ViT-B there), yet their
    difference to the SAM-init run is ours to draw; the paper's side says it has no values."""
    runs = tmp_path / "runs"
    _run(runs, "sample", "automated", "vit_t_dec_vanilla", 0.50)
    _run(runs, "sample", "automated", "vit_t_dec_vanilla", 0.56, init="sslsam")
    _run(runs, "sample", "automated", "vit_t_dec_vanilla", 0.47, init="supsam")
    write_report(runs, tmp_path / "report")
    text = (tmp_path / "report/report.md").read_text()
    assert "init_differences.png" in text and "sample/sslsam/full/automated/vit_t_dec_vanilla" in text
    from medseg.eval.figures import _differences, _ours
    from medseg.eval.report import collect_runs

    differences = _differences(_ours(collect_runs(runs)), "ours").set_index("init")["difference"]
    assert differences.to_dict() == pytest.approx({"sslsam": 6.0, "supsam": -3.0})


def test_report_without_runs_says_so(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    with pytest.raises(MedsegError, match="no evaluated runs"):
        write_report(tmp_path / "runs", tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_report_names_a_corrupt_metrics_file(tmp_path: Path) -> None:
    bad = tmp_path / "runs/sample/sam/full/automated/x/eval/metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("[1, 2]")
    with pytest.raises(MedsegError, match=r"x/eval/metrics\.json: corrupt metrics file \(not a JSON object\)"):
        write_report(tmp_path / "runs", tmp_path / "report")


def test_report_names_a_metrics_file_with_a_non_numeric_dice(tmp_path: Path) -> None:
    path = _run(tmp_path / "runs", "sample", "automated", "vit_t_dec_vanilla", 0.5)
    path.write_text(path.read_text().replace('"dice_mean": 0.5', '"dice_mean": "high"'))
    with pytest.raises(MedsegError, match=r"vit_t_dec_vanilla/eval/metrics\.json: dice_mean is not a number"):
        write_report(tmp_path / "runs", tmp_path / "report")


def test_pretrained_inits_sit_in_tables_8_to_10_and_5_shot_runs_in_11_and_12(tmp_path: Path) -> None:
    """SupSAM, MedSAM and SSLSAM runs (their own init folders) fill the study's Tables 8, 9 and 10; 5-shot runs
    (the fewshot profile's folders) fill Table 11 (SAM strategies) and 12 (baselines), each beside its full-data
    run."""
    runs = tmp_path / "runs"
    for init, dice in (("supsam", 0.61), ("medsam", 0.62), ("sslsam", 0.63)):
        _run(runs, "mri_prostate", "automated", "vit_b_endec_lora", dice, init=init)
    _run(runs, "mri_prostate", "automated", "vit_b_dec_vanilla", 0.50)
    for strategy, dice in (("vit_b_dec_vanilla", 0.40), ("unet", 0.20)):  # 5-shot: mode automated, profile fewshot
        _run(runs, "mri_prostate", "automated", strategy, dice, fewshot=True,
             init="scratch" if strategy == "unet" else "sam")
    assert sorted(str(p.relative_to(runs).parent.parent) for p in runs.glob("*/*/fewshot/*/*/eval/metrics.json")) == [
        "mri_prostate/sam/fewshot/automated/vit_b_dec_vanilla", "mri_prostate/scratch/fewshot/automated/unet"]
    write_report(runs, tmp_path / "report")
    compared = pd.read_csv(tmp_path / "report/comparison.csv", keep_default_na=False)
    tables = {(row.model, row.init, str(row.shots)): int(row.table) for row in compared.itertuples()}
    assert tables[("vit_b_endec_lora", "supsam", "all")] == 8
    assert tables[("vit_b_endec_lora", "medsam", "all")] == 9
    assert tables[("vit_b_endec_lora", "sslsam", "all")] == 10
    assert tables[("vit_b_dec_vanilla", "sam", "5")] == 11 and tables[("unet", "", "5")] == 12
    assert (compared[compared["model"] == "vit_b_dec_vanilla"]["table"].astype(int) != 11).any()  # full data too
    text = (tmp_path / "report/report.md").read_text()
    assert "Runs without a counterpart" not in text
