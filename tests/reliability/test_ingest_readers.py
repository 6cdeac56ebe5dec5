"""Reliability battery, `medseg ingest` readers: links out of the dataset root, broken DICOM slices, bad
``dataset.json`` entries, file names that are not UTF-8 and registry mistakes all fail with one line
that names the file and the problem, and leave no output behind."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, tiny_params
from medseg.cli import main
from medseg.data.ingest import ingest_dataset
from medseg.errors import MedsegError

DATA_TESTS = Path(__file__).resolve().parents[1] / "unit" / "data"  # layouts and DICOM fixtures live there
if str(DATA_TESTS) not in sys.path:
    sys.path.insert(0, str(DATA_TESTS))
pytest_plugins = ["data_fixtures", "dicom_fixtures"]

TEST_REGISTRY = DATA_TESTS / "registry"


def _params(*extra_registries: Path) -> dict[str, Any]:
    return {**tiny_params()["ingest"], "image_size": 16, "workers": 1, "intensity_window": None,
            "percentile_clip": None, "extra_registries": [str(TEST_REGISTRY), *map(str, extra_registries)]}


def _refused(alias: str, raw: Path, out: Path, params: dict[str, Any] | None = None) -> MedsegError:
    """The error of a failed ingest, after checking that it is one line and that nothing was written."""
    with pytest.raises(MedsegError) as caught:
        ingest_dataset(alias, raw, out, params or _params(), seed=0)
    assert "\n" not in caught.value.one_line()
    assert not out.exists(), f"{out} was created"
    assert not list(out.parent.glob(f".{out.name}.tmp-*")), "temporary output left behind"
    return caught.value


def _layout(name: str, root: Path) -> Path:
    from layouts import LAYOUTS

    root.mkdir(parents=True)
    LAYOUTS[name](root)
    return root


def _outside(tmp_path: Path, source: Path) -> Path:
    """A copy of ``source`` outside every dataset root."""
    target = tmp_path / "elsewhere" / source.name
    target.parent.mkdir(exist_ok=True)
    shutil.copy(source, target)
    return target


def _link_out(tmp_path: Path, path: Path) -> Path:
    """Replace ``path`` by a link to a copy of it outside the dataset root."""
    target = _outside(tmp_path, path)
    path.unlink()
    path.symlink_to(target)
    return path


# ---------------------------------------------------------------- 1. links out of the dataset root


def _suffix_mask(tmp_path: Path, _: pytest.FixtureRequest) -> tuple[Path, Path, str]:
    raw = _layout("us_breast", tmp_path / "raw")
    return raw, _link_out(tmp_path, raw / "Dataset_BUSI_with_GT/benign/benign (4)_mask_1.png"), "us_breast"


def _first_rule_mask(tmp_path: Path, _: pytest.FixtureRequest) -> tuple[Path, Path, str]:
    raw = _layout("xray_chest", tmp_path / "raw")
    return raw, _link_out(tmp_path, raw / "MontgomerySet/ManualMask/rightMask/MCUCXR_0104_1.png"), "xray_chest"


def _dicom_slice(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, Path, str]:
    raw = request.getfixturevalue("chaos_raw")
    return raw, _link_out(tmp_path, raw / "Train_Sets/MR/2/T2SPIR/DICOM_anon/IMG-0002-00003.dcm"), "mri_chaos"


def _png_stack_file(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, Path, str]:
    raw = request.getfixturevalue("chaos_raw")
    return raw, _link_out(tmp_path, raw / "Train_Sets/MR/5/T2SPIR/Ground/IMG-0002-00002.png"), "mri_chaos"


def _seg_folder_file(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, Path, str]:
    raw = request.getfixturevalue("seg_raw")
    return raw, _link_out(tmp_path, raw / "P3/SEG/seg.dcm"), "dicomseg_mini"


def _msd_task_folder(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, Path, str]:
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copytree(request.getfixturevalue("phantom_raw"), tmp_path / "elsewhere" / "Task01_Phantom")
    (raw / "Task01_Phantom").symlink_to(tmp_path / "elsewhere" / "Task01_Phantom")
    return raw, raw / "Task01_Phantom", "sample"


LINKS_OUT = {setup.__name__.lstrip("_"): setup for setup in (
    _suffix_mask, _first_rule_mask, _dicom_slice, _png_stack_file, _seg_folder_file, _msd_task_folder)}


@pytest.mark.parametrize("where", sorted(LINKS_OUT))
def test_symlink_out_of_the_dataset_root(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    raw, link, alias = LINKS_OUT[where](tmp_path, request)
    error = _refused(alias, raw, tmp_path / "out")
    assert error.path == str(link) and "escapes the dataset root" in error.problem, str(error)


def test_symlink_inside_the_dataset_root_is_read(tmp_path: Path) -> None:
    raw = _layout("us_breast", tmp_path / "raw")
    mask = raw / "Dataset_BUSI_with_GT/benign/benign (4)_mask_1.png"
    shutil.move(mask, raw / "stored_mask.png")
    mask.symlink_to(raw / "stored_mask.png")
    assert ingest_dataset("us_breast", raw, tmp_path / "out", _params(), seed=0)["num_slices"] == 5


# ---------------------------------------------------------------- 2. broken or missing DICOM slices


def _add_notes(folder: Path) -> None:
    """Files that are not DICOM, which a series folder may hold."""
    (folder / "README.txt").write_text("acquired 2020\n")
    (folder / "thumbnail.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))


def _duke_series(duke_raw: Path) -> Path:
    return next((duke_raw / "manifest-1654812109500/Duke-Breast-Cancer-MRI/Breast_MRI_002").glob("*/3.*"))


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("damage", ["truncated_with_seg_nrrd", "truncated_with_dicom_seg", "header_cut",
                                    "zero_byte", "deleted_from_the_middle"])
def test_truncated_or_missing_dicom_slice(damage: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if damage == "truncated_with_dicom_seg":
        raw, alias = request.getfixturevalue("seg_raw"), "dicomseg_mini"
        series = raw / "P2/MR"
        named = series / "IMG-0002-00002.dcm"
    else:
        raw, alias = request.getfixturevalue("duke_raw"), "mri_breast_duke"
        series = _duke_series(raw)
        named = series / "1-002.dcm"
    _add_notes(series)
    words: tuple[str, ...] = ("pixel data is incomplete",)
    if damage == "header_cut":
        _truncate(named, 300)
        words = ("DICOM",)
    elif damage == "zero_byte":
        _truncate(named, 0)
        words = ("empty",)
    elif damage == "deleted_from_the_middle":
        named.unlink()
        named, words = series, ("gap", "between slices 1-001.dcm and 1-003.dcm")
    else:
        _truncate(named, named.stat().st_size - 100)
    error = _refused(alias, raw, tmp_path / "out")
    assert error.path == str(named), str(error)
    assert all(word in error.problem for word in words), str(error)


def test_non_dicom_files_in_a_series_folder_are_passed_over(duke_raw: Path, tmp_path: Path) -> None:
    _add_notes(_duke_series(duke_raw))
    assert ingest_dataset("mri_breast_duke", duke_raw, tmp_path / "out", _params(), seed=0)["num_slices"] == 9


# ---------------------------------------------------------------- 3. bad dataset.json entries


def _edit_listing(raw: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    listing = raw / "dataset.json"
    meta = json.loads(listing.read_text())
    edit(meta)
    listing.write_text(json.dumps(meta))
    return listing


def _same_name_elsewhere(raw: Path) -> Callable[[dict[str, Any]], None]:
    (raw / "imagesTr2").mkdir()
    shutil.copy(raw / "imagesTr/phantom_001.nii.gz", raw / "imagesTr2/phantom_001.nii.gz")
    return lambda meta: meta["training"][1].update(image="./imagesTr2/phantom_001.nii.gz")


LISTING_EDITS: dict[str, tuple[Callable[[Path], Callable[[dict[str, Any]], None]], str]] = {
    "label_key_not_a_number": (lambda raw: lambda m: m.update(labels={"0": "background", "one": "lesion"}),
                               "'one'"),
    "image_as_a_number": (lambda raw: lambda m: m["training"][0].update(image=5), "not 5"),
    "label_as_a_list": (lambda raw: lambda m: m["training"][0].update(label=["a.nii.gz"]), "'label' must be"),
    "image_listed_twice": (lambda raw: lambda m: m["training"].append(dict(m["training"][0])),
                           "image file 'imagesTr/phantom_001.nii.gz' is listed twice"),
    "label_listed_twice": (lambda raw: lambda m: m["training"][2].update(label=m["training"][1]["label"]),
                           "label file 'labelsTr/phantom_002.nii.gz' is listed twice"),
    "case_id_twice": (_same_name_elsewhere, "case id 'phantom_001' is listed twice"),
}


@pytest.mark.parametrize("mistake", sorted(LISTING_EDITS))
def test_msd_dataset_json_bad_entries(mistake: str, raw_copy: Path, tmp_path: Path) -> None:
    make_edit, words = LISTING_EDITS[mistake]
    listing = _edit_listing(raw_copy, make_edit(raw_copy))
    error = _refused("sample", raw_copy, tmp_path / "out")
    assert error.path == str(listing) and words in error.problem, str(error)


# ---------------------------------------------------------------- 4. file names that are not UTF-8


def test_non_utf8_file_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = _layout("us_kidney", tmp_path / "raw")
    for folder in ("slice/slice", "mask/mask"):
        with open(os.fsencode(raw / folder) + b"/kid\xffney.png", "wb") as handle:
            handle.write((raw / folder / "kidney_0001.png").read_bytes())
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**tiny_params(), "ingest": _params()}))
    out = tmp_path / "out"
    code = main(["ingest", "--dataset", "us_kidney", "--raw", str(raw), "--out", str(out), "--params", str(params)])
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert code == 2 and len(errors) == 1, errors
    assert "slice/slice/kid\\xffney.png" in errors[0] and "not valid UTF-8" in errors[0], errors
    assert not out.exists()


# ---------------------------------------------------------------- 5. registry settings with wrong keys


def _extra_entry(folder: Path, alias: str, edit: Callable[[dict[str, Any]], None], base: str = "us_breast") -> Path:
    entry = yaml.safe_load((REPO / "medseg/data/registry" / f"{base}.yaml").read_text())
    entry["alias"] = alias
    edit(entry)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{alias}.yaml"
    path.write_text(yaml.safe_dump(entry))
    return path


def _rename(key: str, new: str) -> Callable[[dict[str, Any]], None]:
    return lambda entry: entry["settings"].update({new: entry["settings"].pop(key)})


SETTINGS_TYPOS: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    "required_key": (_rename("masks", "mask"), ("unknown key 'mask'", "missing key 'masks'", "known keys: ")),
    "optional_key": (_rename("exclude", "exlude"), ("unknown key 'exlude'", "exclude, images, masks")),
    "rule_key": (lambda e: e["settings"].update(masks={"sufix": "_mask"}), ("settings.masks: unknown key 'sufix'",
                                                                            "{suffix}")),
}


@pytest.mark.parametrize("typo", sorted(SETTINGS_TYPOS))
def test_registry_settings_key_typo(typo: str, tmp_path: Path) -> None:
    edit, words = SETTINGS_TYPOS[typo]
    entry = _extra_entry(tmp_path / "registry", "busi_copy", edit)
    raw = _layout("us_breast", tmp_path / "raw")
    error = _refused("busi_copy", raw, tmp_path / "out", _params(tmp_path / "registry"))
    assert error.path == str(entry), str(error)
    assert all(word in error.problem for word in words), str(error)


# ---------------------------------------------------------------- 6. extra registry aliases that collide


@pytest.mark.parametrize("collision", ["built_in_alias", "two_extra_entries"])
def test_extra_registry_alias_collision(collision: str, tmp_path: Path) -> None:
    raw = _layout("us_breast", tmp_path / "raw")
    if collision == "built_in_alias":
        folders = [tmp_path / "mine"]
        named, alias, words = _extra_entry(folders[0], "us_breast", lambda _: None), "us_breast", "a built-in dataset"
    else:
        folders = [tmp_path / "first", tmp_path / "second"]
        first = _extra_entry(folders[0], "busi_copy", lambda _: None)
        named, alias, words = _extra_entry(folders[1], "busi_copy", lambda _: None), "busi_copy", str(first)
    error = _refused(alias, raw, tmp_path / "out", _params(*folders))
    assert error.path == str(named), str(error)
    assert f"alias '{alias}' is already taken" in error.problem and words in error.problem, str(error)
