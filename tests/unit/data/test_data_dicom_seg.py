"""DICOM-SEG read onto a series' grid (``dicom_masks.seg_mask``, highdicom underneath): binary, fractional and
label-map segmentations, overlapping segments, frames placed by source reference or by their own position,
and the checks medseg adds (source references, spatial locations, frame size, grid)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from medseg.data.dicom_masks import scan_series, seg_mask
from medseg.data.volumes import Volume, read_dicom_series
from medseg.errors import MedsegError

pytest_plugins = ["dicom_fixtures"]


def _series(folder: Path, labels: np.ndarray, orientation: Any = None) -> list[Any]:
    from dicom_fixtures import AXIAL, write_series

    return write_series(folder, 10 + 100 * labels.astype(np.int16), orientation=orientation or AXIAL,
                        descending=True)


def _write(path: Path, sources: list[Any], pixels: np.ndarray, kind: str, segments: int, **extra: Any) -> Path:
    from dicom_fixtures import write_seg

    write_seg(path, sources, pixels, [f"segment {n}" for n in range(1, segments + 1)], kind, **extra)
    return path


def _read(folder: Path, seg: Path) -> tuple[np.ndarray, np.ndarray]:
    """(segment numbers read from ``seg``, the image's own classes) on the series' RAS+ grid."""
    from dicom_fixtures import classes_of

    headers = scan_series(folder, folder)
    image, _ = read_dicom_series(folder, 2**27, [h.path for h in headers])
    return seg_mask(seg, headers, image), classes_of(image.array)


def _refused(folder: Path, seg: Path, words: str) -> None:
    with pytest.raises(MedsegError) as error:
        _read(folder, seg)
    assert error.value.path == str(seg) and words in error.value.problem, str(error.value)


@pytest.fixture
def labels() -> np.ndarray:
    from dicom_fixtures import phantom

    return phantom(1, 3)


def test_binary_segments_by_reference_in_any_orientation(labels: np.ndarray, tmp_path: Path) -> None:
    from dicom_fixtures import TRANSPOSED

    sources = _series(tmp_path / "MR", labels, TRANSPOSED)
    mask, classes = _read(tmp_path / "MR", _write(tmp_path / "seg.dcm", sources, labels, "BINARY", 3))
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(mask, classes)


def test_label_map_segmentation(labels: np.ndarray, tmp_path: Path) -> None:
    sources = _series(tmp_path / "MR", labels)
    mask, classes = _read(tmp_path / "MR", _write(tmp_path / "seg.dcm", sources, labels, "LABELMAP", 3))
    np.testing.assert_array_equal(mask, classes)


def test_fractional_segments_count_above_one_half(labels: np.ndarray, tmp_path: Path) -> None:
    sources = _series(tmp_path / "MR", labels)
    fractions = np.stack([(labels == n) * 0.9 for n in (1, 2, 3)], axis=-1).astype(np.float32)
    fractions[..., 0] += (labels == 0) * 0.4  # faint everywhere else: below one half, background
    seg = _write(tmp_path / "seg.dcm", sources, fractions, "FRACTIONAL", 3, max_fractional_value=100)
    mask, classes = _read(tmp_path / "MR", seg)
    np.testing.assert_array_equal(mask, classes)


def test_the_higher_segment_wins_where_segments_overlap(labels: np.ndarray, tmp_path: Path) -> None:
    sources = _series(tmp_path / "MR", labels)
    everywhere = labels > 0
    pixels = np.stack([everywhere, labels == 2], axis=-1)  # segment 2 lies inside segment 1
    mask, _ = _read(tmp_path / "MR", _write(tmp_path / "seg.dcm", sources, pixels, "BINARY", 2))
    assert int((mask == 2).sum()) == int((labels == 2).sum()) > 0
    assert int((mask == 1).sum()) == int((everywhere & (labels != 2)).sum()) > 0


def _edit(path: Path, edit: Any) -> Path:
    seg = pydicom.dcmread(path)
    edit(seg)
    seg.save_as(path)
    return path


def _sources_of(seg: Any) -> list[Any]:
    return [d.SourceImageSequence[0] for item in seg.PerFrameFunctionalGroupsSequence
            for d in item.DerivationImageSequence]


def test_frames_that_do_not_preserve_spatial_locations(labels: np.ndarray, tmp_path: Path) -> None:
    seg = _write(tmp_path / "seg.dcm", _series(tmp_path / "MR", labels), labels, "BINARY", 3)
    _edit(seg, lambda ds: setattr(_sources_of(ds)[1], "SpatialLocationsPreserved", "NO"))
    _refused(tmp_path / "MR", seg, "does not preserve its source image's spatial locations")


def test_frames_without_the_attribute_are_still_read(labels: np.ndarray, tmp_path: Path) -> None:
    seg = _write(tmp_path / "seg.dcm", _series(tmp_path / "MR", labels), labels, "BINARY", 3)
    _edit(seg, lambda ds: [delattr(s, "SpatialLocationsPreserved") for s in _sources_of(ds)])
    mask, classes = _read(tmp_path / "MR", seg)
    np.testing.assert_array_equal(mask, classes)


def test_frames_placed_by_position_must_lie_on_the_image_grid(labels: np.ndarray, tmp_path: Path) -> None:
    seg = _write(tmp_path / "seg.dcm", _series(tmp_path / "MR", labels), labels, "BINARY", 3)

    def shift(ds: Any) -> None:
        for item in ds.PerFrameFunctionalGroupsSequence:
            del item.DerivationImageSequence
            position = item.PlanePositionSequence[0]
            position.ImagePositionPatient = [float(v) + (0.5 if i == 0 else 0) for i, v in
                                             enumerate(position.ImagePositionPatient)]

    _edit(seg, shift)
    _refused(tmp_path / "MR", seg, "does not lie on the image grid")


def test_frames_of_another_size_than_their_source(labels: np.ndarray, tmp_path: Path) -> None:
    sources = _series(tmp_path / "MR", labels)
    small = _series(tmp_path / "small", labels[:, :8, :8])
    seg = _write(tmp_path / "seg.dcm", small, labels[:, :8, :8], "BINARY", 3)
    uids = {s.SOPInstanceUID: t.SOPInstanceUID for s, t in zip(small, sources, strict=True)}
    _edit(seg, lambda ds: [setattr(s, "ReferencedSOPInstanceUID", uids[s.ReferencedSOPInstanceUID])
                           for s in _sources_of(ds)])
    _refused(tmp_path / "MR", seg, "segmentation frame size (8, 8) differs from its source image")


def test_a_dicom_file_that_is_not_a_segmentation(labels: np.ndarray, tmp_path: Path) -> None:
    _series(tmp_path / "MR", labels)
    _refused(tmp_path / "MR", next((tmp_path / "MR").glob("*.dcm")), "not a DICOM-SEG file")


def test_a_segmentation_highdicom_cannot_parse(labels: np.ndarray, tmp_path: Path) -> None:
    seg = _write(tmp_path / "seg.dcm", _series(tmp_path / "MR", labels), labels, "BINARY", 3)
    _edit(seg, lambda ds: delattr(ds, "SegmentSequence"))
    _refused(tmp_path / "MR", seg, "cannot read DICOM-SEG file")


def test_frames_outside_the_image_volume(labels: np.ndarray, tmp_path: Path) -> None:
    """Frames outside the image volume are refused (a SEG of a longer series read against a shorter one)."""
    headers_folder = tmp_path / "MR"
    sources = _series(headers_folder, labels)
    seg = _write(tmp_path / "seg.dcm", sources, labels, "BINARY", 3)
    headers = scan_series(headers_folder, headers_folder)
    image, _ = read_dicom_series(headers_folder, 2**27, [h.path for h in headers])
    cropped = Volume(image.array[:, :, 1:], image.affine)
    with pytest.raises(MedsegError, match="lies outside the image volume"):
        seg_mask(seg, headers, cropped)


def _without_references_and_positions(ds: Any) -> None:
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
        del item.PlanePositionSequence


@pytest.mark.parametrize(("edit", "words"), [
    (_without_references_and_positions, "lacks PlanePositionSequence"),
    (lambda ds: [delattr(item, "SegmentIdentificationSequence") for item in ds.PerFrameFunctionalGroupsSequence],
     "lacks SegmentIdentificationSequence"),
    (lambda ds: setattr(ds, "PixelData", ds.PixelData[:10]), "pixel data is incomplete (10 of"),
])
def test_missing_attributes_and_truncated_frames_are_named(labels: np.ndarray, tmp_path: Path, edit: Any,
                                                           words: str) -> None:
    seg = _write(tmp_path / "seg.dcm", _series(tmp_path / "MR", labels), labels, "BINARY", 3)
    _refused(tmp_path / "MR", _edit(seg, edit), words)
