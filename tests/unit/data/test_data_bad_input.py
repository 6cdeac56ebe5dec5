"""Bad raw input fails with a MedsegError naming the file, and leaves no output behind."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from medseg.data.cases import resolve_inside
from medseg.data.ingest import ingest_dataset
from medseg.data.msd import read_msd_pairs
from medseg.data.volumes import read_volume
from medseg.errors import MedsegError

pytest_plugins = ["data_fixtures"]

Mutation = Callable[[Path], tuple[Path, str]]
LPS = np.diag([-1.5, -1.5, 5.0, 1.0])


def _nifti(path: Path) -> nib.Nifti1Image:
    return nib.load(str(path))


def _rewrite(path: Path, array: np.ndarray) -> None:
    """Replace a volume's voxels, keeping its affine."""
    nib.save(nib.Nifti1Image(array, _nifti(path).affine), path)


def _listing(raw: Path) -> dict[str, Any]:
    return json.loads((raw / "dataset.json").read_text())


def truncated_image(raw: Path) -> tuple[Path, str]:
    path = raw / "imagesTr" / "phantom_003.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "cannot read"


def missing_label(raw: Path) -> tuple[Path, str]:
    path = raw / "labelsTr" / "phantom_004.nii.gz"
    path.unlink()
    return path, "missing"


def label_shape_differs(raw: Path) -> tuple[Path, str]:
    path = raw / "labelsTr" / "phantom_002.nii.gz"
    _rewrite(path, np.zeros((32, 32, 7), dtype=np.uint8))
    return path, "shape"


def nan_in_image(raw: Path) -> tuple[Path, str]:
    path = raw / "imagesTr" / "phantom_005.nii.gz"
    data = np.asarray(_nifti(path).dataobj).astype(np.float32)
    data[3, 4, 5] = np.nan
    _rewrite(path, data)
    return path, "NaN"


def label_value_not_in_map(raw: Path) -> tuple[Path, str]:
    path = raw / "labelsTr" / "phantom_006.nii.gz"
    data = np.asarray(_nifti(path).dataobj).copy()
    data[data == 1] = 3
    _rewrite(path, data)
    return path, "[3]"


def escaping_path(raw: Path) -> tuple[Path, str]:
    (raw.parent / "outside.nii.gz").write_bytes((raw / "imagesTr" / "phantom_001.nii.gz").read_bytes())
    meta = _listing(raw)
    meta["training"][1]["image"] = "../outside.nii.gz"
    (raw / "dataset.json").write_text(json.dumps(meta))
    return raw / "dataset.json", "../outside.nii.gz"


def huge_header(raw: Path) -> tuple[Path, str]:
    """A header-only file claiming 30000 x 30000 x 1 voxels (no voxel data follows)."""
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 1))
    header.set_data_dtype(np.uint8)
    header.set_qform(LPS, code=1)
    header.set_sform(LPS, code=1)
    header["vox_offset"] = 352
    path = raw / "imagesTr" / "phantom_002.nii.gz"
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))
    return path, "exceeds the limit"


def missing_listing(raw: Path) -> tuple[Path, str]:
    path = raw / "dataset.json"
    path.unlink()
    return path, "missing dataset.json"


def corrupt_listing(raw: Path) -> tuple[Path, str]:
    path = raw / "dataset.json"
    path.write_text(path.read_text()[:40])
    return path, "not valid JSON"


def listing_without_labels(raw: Path) -> tuple[Path, str]:
    meta = _listing(raw)
    del meta["labels"]
    (raw / "dataset.json").write_text(json.dumps(meta))
    return raw / "dataset.json", "labels"


def empty_training_list(raw: Path) -> tuple[Path, str]:
    meta = _listing(raw)
    meta["training"] = []
    (raw / "dataset.json").write_text(json.dumps(meta))
    return raw / "dataset.json", "no training cases"


def negative_label(raw: Path) -> tuple[Path, str]:
    path = raw / "labelsTr" / "phantom_001.nii.gz"
    data = np.asarray(_nifti(path).dataobj).astype(np.int16)
    data[0, 0, 0] = -1
    _rewrite(path, data)
    return path, "negative"


MUTATIONS: list[Mutation] = [
    truncated_image, missing_label, label_shape_differs, nan_in_image, label_value_not_in_map,
    escaping_path, huge_header, missing_listing, corrupt_listing, listing_without_labels,
    empty_training_list, negative_label,
]


def _ingest_error(raw: Path, out: Path, ingest_params: dict[str, Any]) -> MedsegError:
    with pytest.raises(MedsegError) as caught:
        ingest_dataset("sample", raw, out, ingest_params, seed=0)
    return caught.value


@pytest.mark.parametrize("mutate", MUTATIONS, ids=lambda m: m.__name__)
def test_bad_input_names_the_file_and_writes_nothing(
    mutate: Mutation, raw_copy: Path, tmp_path: Path, params_dict: dict[str, Any],
    assert_no_output: Callable[[Path], None],
) -> None:
    named, hint = mutate(raw_copy)
    out = tmp_path / "processed"
    error = _ingest_error(raw_copy, out, params_dict["ingest"])
    assert error.path is not None
    assert Path(error.path).resolve() == named.resolve()
    assert str(named.name) in str(error) and hint in str(error)
    assert "\n" not in error.one_line()
    assert_no_output(out)


def test_volume_above_max_voxels_is_refused(
    raw_copy: Path, tmp_path: Path, params_dict: dict[str, Any], assert_no_output: Callable[[Path], None]
) -> None:
    params = {**params_dict["ingest"], "max_voxels": 32 * 32 * 8 - 1}
    error = _ingest_error(raw_copy, tmp_path / "processed", params)
    assert Path(error.path or "").name == "phantom_001.nii.gz"
    assert "exceeds the limit" in str(error)
    assert_no_output(tmp_path / "processed")


def test_missing_raw_directory(tmp_path: Path, params_dict: dict[str, Any],
                               assert_no_output: Callable[[Path], None]) -> None:
    error = _ingest_error(tmp_path / "missing", tmp_path / "processed", params_dict["ingest"])
    assert error.path == str(tmp_path / "missing")
    assert_no_output(tmp_path / "processed")


def test_failed_ingest_keeps_previous_output(
    raw_copy: Path, tmp_path: Path, params_dict: dict[str, Any]
) -> None:
    out = tmp_path / "processed"
    out.mkdir()
    (out / "previous.txt").write_text("kept")
    truncated_image(raw_copy)
    _ingest_error(raw_copy, out, params_dict["ingest"])
    assert (out / "previous.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.glob(".processed.tmp-*")) == []


def test_huge_header_is_refused_before_reading_voxels(
    raw_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, _ = huge_header(raw_copy)

    def no_voxel_reads(*_: object, **__: object) -> None:
        raise AssertionError("voxels were read before the size check")

    monkeypatch.setattr("nibabel.as_closest_canonical", no_voxel_reads)  # NIfTI voxels are read there
    with pytest.raises(MedsegError, match="exceeds the limit"):
        read_volume(image, max_voxels=2**28)


def test_resolve_inside_accepts_paths_under_root(tmp_path: Path) -> None:
    (tmp_path / "imagesTr").mkdir()
    resolved = resolve_inside(tmp_path, "./imagesTr/a.nii.gz", tmp_path / "dataset.json")
    assert resolved == (tmp_path / "imagesTr" / "a.nii.gz").resolve()


@pytest.mark.parametrize("relative", ["../outside.nii.gz", "imagesTr/../../x.nii.gz", "/etc/hostname"])
def test_resolve_inside_refuses_escapes(tmp_path: Path, relative: str) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    with pytest.raises(MedsegError, match="escapes") as caught:
        resolve_inside(root, relative, root / "dataset.json")
    assert caught.value.path == str(root / "dataset.json")


def test_resolve_inside_refuses_symlink_out_of_root(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    (tmp_path / "secret.nii.gz").write_bytes(b"x")
    (root / "link.nii.gz").symlink_to(tmp_path / "secret.nii.gz")
    with pytest.raises(MedsegError, match="escapes"):
        resolve_inside(root, "link.nii.gz", root / "dataset.json")


def test_read_msd_pairs(phantom_raw: Path) -> None:
    pairs, labels = read_msd_pairs(phantom_raw)
    assert labels == {0: "background", 1: "lesion"}
    assert [p.case_id for p in pairs] == [f"phantom_{i:03d}" for i in range(1, 7)]
    assert all(p.patient_id == p.case_id for p in pairs)
    assert all(p.image.is_file() and p.label.is_file() for p in pairs)
    assert all(p.image.parent.name == "imagesTr" and p.label.parent.name == "labelsTr" for p in pairs)


def test_error_message_format() -> None:
    error = MedsegError("bad\nthing", "/data/x.nii.gz")
    assert str(error) == "/data/x.nii.gz: bad\nthing"
    assert error.one_line() == "/data/x.nii.gz: bad thing"
    assert str(MedsegError("no path")) == "no path"
