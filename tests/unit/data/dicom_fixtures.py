"""Miniature DICOM datasets written by the tests (loaded with ``pytest_plugins``): CHAOS-like
(DICOM + PNG stack), Duke-breast-like (DICOM + cropped ``.seg.nrrd`` + file-path mapping CSV),
ProstateX-like (DICOM + NIfTI + ``image_list.csv``), DICOM-SEG and ground-truth-series datasets.

Every phantom slice k (in position order) of patient p holds a rectangle of one class; slice 0 is
empty. Image voxels are ``10 + 100 * class``, so the class of every voxel can be read back from the
image itself: a loaded mask is aligned when it equals ``round((image - 10) / 100)``."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SLICES, ROWS, COLS = 4, 16, 16
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
TRANSPOSED = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0)  # rows along y, columns along x; slice normal -z
FLIPPED = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # columns towards -y; slice normal -z


def phantom(patient: int, classes: int) -> np.ndarray:
    """Labels (slices, rows, cols): slice k > 0 has one off-centre rectangle of one class."""
    labels = np.zeros((SLICES, ROWS, COLS), dtype=np.uint8)
    for k in range(1, SLICES):
        labels[k, 2 + k : 7 + k, 3 : 9 + patient] = (k + patient) % classes + 1
    return labels


def classes_of(image: np.ndarray) -> np.ndarray:
    """The classes encoded in a phantom image (any orientation)."""
    return np.rint((image - 10) / 100).astype(np.uint8)


def _dataset(pixels: np.ndarray, position: np.ndarray, orientation: Sequence[float], instance: int,
             shared: dict[str, Any]) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for key, value in shared.items():
        setattr(ds, key, value)
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = list(orientation)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = pixels.astype("<i2").tobytes()
    return ds


def write_series(folder: Path, pixels: np.ndarray, *, patient: str = "P", orientation: Sequence[float] = AXIAL,
                 origin: Sequence[float] = (-8.0, -8.0, 0.0), spacing: float = 1.0, thickness: float = 2.0,
                 descending: bool = False, name: str = "IMG-0002-{:05d}.dcm", series_number: int = 2) -> list[Any]:
    """A single-frame MR series (slice k at ``origin + k * thickness * normal``); instance numbers
    run against the positions when ``descending``. Returns the datasets in position order."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    normal = np.cross(orientation[:3], orientation[3:])
    shared = {
        "PatientID": patient, "PatientName": f"Test^{patient}", "PatientBirthDate": "", "PatientSex": "O",
        "StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(),
        "StudyDate": "20200101", "StudyTime": "120000", "AccessionNumber": "", "ReferringPhysicianName": "",
        "StudyID": "1", "SeriesNumber": series_number, "Modality": "MR", "Manufacturer": "test",
        "PixelSpacing": [spacing, spacing], "SliceThickness": thickness,
    }
    datasets = []
    for k, plane in enumerate(pixels):
        instance = len(pixels) - k if descending else k + 1
        ds = _dataset(plane, np.asarray(origin) + k * thickness * normal, orientation, instance, shared)
        ds.save_as(folder / name.format(instance), enforce_file_format=True)
        datasets.append(ds)
    return datasets


def write_png(path: Path, array: np.ndarray) -> None:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint8)), str(path))


def write_label_volume(series: Path, path: Path, crop: tuple[slice, slice, slice] | None = None,
                       shift: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
    """The phantom classes of a written series as a label volume (NRRD/NIfTI by suffix), on the
    series' grid cropped to ``crop`` (SimpleITK x, y, z slices) and moved by ``shift`` (LPS mm)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series)))
    image = reader.Execute()
    label = sitk.GetImageFromArray(classes_of(sitk.GetArrayFromImage(image).astype(np.float32)))
    label.CopyInformation(image)
    if crop is not None:
        label = label[crop]
    label.SetOrigin([o + s for o, s in zip(label.GetOrigin(), shift, strict=True)])
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(label, str(path))


def write_seg(path: Path, sources: list[Any], labels: np.ndarray, names: Sequence[str], kind: str = "BINARY",
              **extra: Any) -> None:
    """A DICOM-SEG (highdicom; ``kind`` BINARY, FRACTIONAL or LABELMAP) of ``labels`` (values = segment numbers,
    or one plane per segment on the last axis) over ``sources``; ``extra`` goes to ``Segmentation``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    segments = [hd.seg.SegmentDescription(
        segment_number=i + 1, segment_label=name, segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Organ, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    ) for i, name in enumerate(names)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues[kind],
            segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=100,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
            software_versions="0", device_serial_number="0", **extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)


def _image(labels: np.ndarray) -> np.ndarray:
    return 10 + 100 * labels.astype(np.int16)


@pytest.fixture
def chaos_raw(tmp_path: Path) -> Path:
    """CHAOS MR layout, patients 1, 2 (transposed axes) and 5; instance 1 is the top slice."""
    raw = tmp_path / "chaos"
    for p, orientation in ((1, AXIAL), (2, TRANSPOSED), (5, AXIAL)):
        labels = phantom(p, 4)
        sequence = raw / f"Train_Sets/MR/{p}/T2SPIR"
        write_series(sequence / "DICOM_anon", _image(labels), patient=str(p), orientation=orientation, descending=True)
        for k in range(SLICES):
            write_png(sequence / f"Ground/IMG-0002-{SLICES - k:05d}.png", labels[k] * 63)
        write_series(raw / f"Train_Sets/MR/{p}/T1DUAL/DICOM_anon/InPhase", _image(labels), patient=str(p))
    return raw


def _duke_mapping_rows(patient: str, series: Path, phase: str, style: int) -> list[dict[str, str]]:
    descriptive = "/".join(series.parts[-4:])
    if style == 1:
        descriptive = descriptive.replace("Breast_MRI_", "BreastMRI")
    elif style == 2:
        descriptive = descriptive.replace("/", "//")
    return [{"original_path_and_filename": f"DICOM_Images/{patient}/{phase}/{patient}_{phase}_{i:03d}.dcm",
             "classic_path": "unused", "descriptive_path": f"{descriptive}/{f.name}"}
            for i, f in enumerate(sorted(series.iterdir()), start=1)]


@pytest.fixture
def duke_raw(tmp_path: Path) -> Path:
    """Duke breast layout: a pre-contrast and a post-contrast series per patient, masks as cropped
    ``.seg.nrrd`` for patients 001-003 (none for 004), and the file-path mapping CSV."""
    raw = tmp_path / "duke"
    rows: list[dict[str, str]] = []
    for p in range(1, 5):
        patient = f"Breast_MRI_{p:03d}"
        study = raw / f"manifest-1654812109500/Duke-Breast-Cancer-MRI/{patient}/01-01-1990-NA-MRI BREAST-9753{p}"
        labels = phantom(p, 1)
        pre, post = study / f"3.000000-ax dyn pre-9387{p}", study / f"4.000000-ax dyn 1st pass-5551{p}"
        write_series(pre, _image(labels), patient=patient, name="1-{:03d}.dcm", series_number=3)
        write_series(post, _image(labels) + 5, patient=patient, name="1-{:03d}.dcm", series_number=4)
        rows += _duke_mapping_rows(patient, pre, "pre", p % 3) + _duke_mapping_rows(patient, post, "post_1", 0)
        if p < 4:
            mask = raw / f"Segmentation_Masks_NRRD/{patient}/Segmentation_{patient}_Breast.seg.nrrd"
            write_label_volume(pre, mask, crop=(slice(2, 14), slice(1, 13), slice(1, 4)))
    with (raw / "Breast-Cancer-MRI-filepath_filename-mapping.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return raw


@pytest.fixture
def prostatex_raw(tmp_path: Path) -> Path:
    """ProstateX layout: two T2 series per patient (``image_list.csv`` names one), NIfTI gland masks."""
    raw = tmp_path / "prostatex"
    listed = []
    for p, number in ((0, 4), (1, 5), (2, 4)):
        patient = f"ProstateX-{p:04d}"
        study = raw / f"PROSTATEx/{patient}/07-07-2011-MR prostaat kanker detectie-0571{p}"
        labels = phantom(p, 1)
        chosen = study / f"{number}.000000-t2tsetra-0070{p}"
        write_series(chosen, _image(labels), patient=patient, orientation=FLIPPED, name="1-{:02d}.dcm",
                     series_number=number)
        write_series(study / f"7.000000-t2tsetra-0090{p}", _image(labels), patient=patient, name="1-{:02d}.dcm",
                     origin=(-8.0, -8.0, 30.0), series_number=7)
        write_label_volume(chosen, raw / f"PROSTATEx_masks/Files/prostate/mask_prostate/{patient}.nii.gz")
        listed.append(f"{patient}_t2_tse_tra_{number}")
    (raw / "PROSTATEx_masks/Files/prostate/image_list.csv").write_text("T2\n" + "\n".join(listed) + "\n")
    return raw


@pytest.fixture
def seg_raw(tmp_path: Path) -> Path:
    """``P<n>/MR`` series with a two-segment DICOM-SEG in ``P<n>/SEG/``; P2 has transposed axes."""
    raw = tmp_path / "seg"
    for p, orientation in ((1, AXIAL), (2, TRANSPOSED), (3, AXIAL)):
        labels = phantom(p, 2)
        sources = write_series(raw / f"P{p}/MR", _image(labels), patient=f"P{p}", orientation=orientation,
                               descending=True)
        write_seg(raw / f"P{p}/SEG/seg.dcm", sources, labels, ["liver", "spleen"])
    return raw


@pytest.fixture
def gt_raw(tmp_path: Path) -> Path:
    """``P<n>/image`` series with the classes as a second series ``P<n>/ground_truth``."""
    raw = tmp_path / "gt"
    for p in (1, 2, 3):
        labels = phantom(p, 2)
        write_series(raw / f"P{p}/image", _image(labels), patient=f"P{p}")
        write_series(raw / f"P{p}/ground_truth", labels, patient=f"P{p}")
    return raw
