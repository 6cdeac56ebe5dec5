"""The study's Dice tables (4-20) in medseg/reference/study_dice.csv: shape, keys and spot-checked cells."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from medseg.data.registry import load_registry

COLUMNS = ["table", "dataset", "paper_dataset", "model", "backbone", "component", "method", "init", "mode", "shots",
           "selection", "dice"]
KEY = ["dataset", "model", "init", "mode", "shots", "selection"]
# datasets (incl. Average) x printed columns; Table 4's rendering has no US-Breast row.
ROWS_PER_TABLE = {4: 17 * 7, 5: 18 * 6, 6: 18 * 6, 7: 18 * 3, 8: 18 * 6, 9: 18 * 6, 10: 18 * 6, 11: 10 * 12,
                  12: 10 * 3, 13: 10 * 6, 14: 10 * 6, 15: 10 * 6, 16: 10 * 6, 17: 10 * 9, 18: 10 * 6, 19: 10 * 6,
                  20: 10 * 6}
PAPER = Path(__file__).resolve().parents[4] / "shared/paper/finetune-sam-study.md"

# (table, dataset, model, init, mode, shots, selection, printed label, printed value), read off the paper text.
SPOT_CHECKS: list[tuple[int, str, str, str, str, str, str, str, str]] = [
    (4, "mri_brain_duke", "vit_h_endec_adapter", "sam", "automated", "all", "", "MRI-Brain", "80.53"),
    (4, "mri_prostate", "vit_h_endec_adapterall", "sam", "automated", "all", "", "MRI-Prost.", "88.80"),
    (5, "mri_brain_duke", "vit_b_endec_adapter", "sam", "automated", "all", "", "MRI-Brain", "81.21"),
    (5, "us_breast", "vit_b_endec_lora", "sam", "automated", "all", "", "US-Breast", "77.97"),
    (6, "ct_colon", "vit_t_dec_vanilla", "sam", "automated", "all", "", "CT-Colon", "14.97"),
    (7, "mri_brain_sclerosis", "unet", "", "automated", "all", "", "MRI-Scler.", "2.95"),
    (7, "average", "nnunet", "", "automated", "all", "", "Average", "76.94"),
    (8, "ct_colon", "vit_b_endec_lora", "supsam", "automated", "all", "", "CT-Colone", "35.86"),
    (9, "ct_hepatic_vessel", "vit_b_dec_adapter", "medsam", "automated", "all", "", "CT-Vessel", "44.54"),
    (10, "mri_brain_duke", "vit_b_endec_adapter", "sslsam", "automated", "all", "", "MRI-Brain", "83.31"),
    (11, "average", "vit_b_endec_vanilla", "sam", "automated", "5", "", "Average", "55.00"),
    (11, "mri_hippocampus", "vit_b_endec_adapter", "sslsam", "automated", "5", "", "MRI-Hippo.", "0.00"),
    (12, "average", "nnunet", "", "automated", "5", "", "Average", "54.18"),
    (13, "mri_prostate", "vit_h_zeroshot", "sam", "point", "all", "highest", "MRI-Prost.", "52.63"),
    (13, "mri_prostate", "vit_h_zeroshot", "sam", "point", "all", "oracle", "MRI-Prost.", "67.65"),
    (13, "mri_breast_duke", "vit_t_zeroshot", "sam", "point", "all", "highest", "MRI-Breast", "5.00"),
    (16, "average", "vit_t_endec_adapter", "sam", "point", "all", "", "Average", "83.83"),
    (17, "mri_prostate", "vit_b_zeroshot", "medsam", "box", "all", "oracle", "MRI-Prost.", "92.51"),
    (17, "mri_prostate", "vit_b_zeroshot", "supsam", "box", "all", "", "MRI-Prost.", "91.82"),
    (20, "average", "vit_t_endec_adapter", "sam", "box", "all", "", "Average", "88.17"),
]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    path = resources.files("medseg.reference").joinpath("study_dice.csv")
    with resources.as_file(path) as csv_path:
        return pd.read_csv(csv_path, comment="#", dtype={"dice": str}, keep_default_na=False)


def test_columns_rows_and_values(table: pd.DataFrame) -> None:
    assert list(table.columns) == COLUMNS
    assert table["table"].value_counts().sort_index().to_dict() == ROWS_PER_TABLE
    assert table["dice"].str.fullmatch(r"\d{1,3}\.\d\d").all()
    assert table["dice"].astype(float).between(0, 100).all()
    assert set(table["mode"]) == {"automated", "point", "box"}
    assert set(table["shots"].astype(str)) == {"all", "5"}
    assert set(table["init"]) == {"", "sam", "supsam", "medsam", "sslsam"}
    assert set(table["selection"]) == {"", "highest", "oracle"}


def test_keys_are_unique_per_table(table: pd.DataFrame) -> None:
    keys = table[["table", *KEY]].astype(str)
    assert not keys.duplicated().any()


def test_models_split_into_their_parts(table: pd.DataFrame) -> None:
    for row in table.itertuples():
        if row.model in ("unet", "nnunet", "swinunet"):
            assert (row.backbone, row.component, row.method, row.init) == ("", "", "", "")
        elif row.model.endswith("_zeroshot"):
            assert row.model == f"{row.backbone}_zeroshot" and row.table in (13, 17)
            assert row.component == row.method == ""
        else:
            assert row.model == f"{row.backbone}_{row.component}_{row.method}"
            assert re.fullmatch(r"vit_[hbt]_(dec|endec)_(vanilla|adapter|lora|adapterall)", row.model)


def test_datasets_are_finetune_registry_aliases(table: pd.DataFrame) -> None:
    finetune = {a for a, spec in load_registry().items() if spec.use == "finetune" and not spec.synthetic}
    assert len(finetune) == 17
    assert set(table["dataset"]) - {"average"} <= finetune
    for number in range(5, 11):
        assert set(table.loc[table["table"] == number, "dataset"]) == finetune | {"average"}


@pytest.mark.parametrize("check", SPOT_CHECKS, ids=lambda c: f"t{c[0]}-{c[1]}-{c[2]}-{c[3]}-{c[6] or 'na'}")
def test_spot_checked_cells(table: pd.DataFrame, check: tuple[str | int, ...]) -> None:
    number, *key, label, value = check
    match = table[(table["table"] == number) & (table[KEY].astype(str) == [str(k) for k in key]).all(axis=1)]
    assert len(match) == 1
    assert match.iloc[0]["paper_dataset"] == label
    assert match.iloc[0]["dice"] == value


@pytest.mark.parametrize("check", SPOT_CHECKS, ids=lambda c: f"t{c[0]}-{c[1]}-{c[2]}-{c[3]}-{c[6] or 'na'}")
def test_spot_checks_match_the_paper_text(check: tuple[str | int, ...]) -> None:
    if not PAPER.is_file():
        pytest.skip(f"paper text not available at {PAPER}")
    label, value = check[-2], check[-1]
    cells = [line.split("\t") for line in PAPER.read_text(encoding="utf-8").splitlines()]
    assert any(row[0] == label and value in row[1:] for row in cells)
