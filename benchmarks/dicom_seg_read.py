"""Reading a DICOM-SEG onto its series' voxel grid (``medseg.data.dicom_masks.seg_mask``, what ingestion and
``--prompt-mask`` use) against the baseline of decoding the same file's frames with pydicom alone
(``pixel_array``, no placement), measured in the same run on the same files.

A synthetic CT series of ``--shape`` (rows, columns, slices) is written with a BINARY DICOM-SEG (highdicom)
of ``--segments`` segments, empty frames omitted as most tools write them. Nothing is downloaded.

    .venv/bin/python benchmarks/dicom_seg_read.py --shape 256 256 64 --segments 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _series(folder: Path, shape: tuple[int, int, int]) -> list[Any]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rows, cols, slices = shape
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    datasets = []
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "BENCH", "Bench^Synthetic", "", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "20200101", "120000", "", ""
        ds.StudyID, ds.SeriesNumber, ds.Modality, ds.Manufacturer = "1", 1, "CT", "synthetic"
        ds.InstanceNumber, ds.ImagePositionPatient = k + 1, [-100.0, -100.0, 2.0 * k]
        ds.ImageOrientationPatient, ds.PixelSpacing, ds.SliceThickness = [1.0, 0, 0, 0, 1.0, 0], [0.8, 0.8], 2.0
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.zeros((rows, cols), dtype="<i2").tobytes()
        ds.save_as(folder / f"{k + 1:04d}.dcm", enforce_file_format=True)
        datasets.append(ds)
    return datasets


def _seg(path: Path, sources: list[Any], shape: tuple[int, int, int], segments: int) -> None:
    """Segment s: a ball per segment, in the middle half of the slices (the rest are empty frames)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    rows, cols, slices = shape
    z, y, x = np.ogrid[:slices, :rows, :cols]
    labels = np.zeros((slices, rows, cols), dtype=np.uint8)
    for s in range(1, segments + 1):
        centre = (slices / 2, rows * s / (segments + 1), cols / 2)
        radius = min(rows / (2 * segments + 2), slices / 4)
        labels[((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) < radius**2] = s
    descriptions = [hd.seg.SegmentDescription(
        segment_number=s, segment_label=f"segment {s}", segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for s in range(1, segments + 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=2,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="synthetic", manufacturer_model_name="bench",
            software_versions="0", device_serial_number="0")
    seg.save_as(path)


def _best(run: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 64), help="rows, columns, slices")
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (the best counts)")
    args = parser.parse_args()
    import pydicom

    from medseg.data.dicom_masks import scan_series, seg_mask
    from medseg.data.volumes import read_dicom_series

    with tempfile.TemporaryDirectory(prefix="medseg-bench-seg-") as scratch:
        folder = Path(scratch) / "series"
        folder.mkdir()
        shape = tuple(args.shape)
        sources = _series(folder, shape)
        path = Path(scratch) / "seg.dcm"
        _seg(path, sources, shape, args.segments)
        headers = scan_series(folder, folder)
        image, _ = read_dicom_series(folder, 2**31, [h.path for h in headers])
        frames = int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames)
        baseline = _best(lambda: pydicom.dcmread(path).pixel_array, args.repeats)
        mask = seg_mask(path, headers, image)
        reader = _best(lambda: seg_mask(path, headers, image), args.repeats)
    print(json.dumps({"shape": list(shape), "segments": args.segments, "seg_frames": frames,
                      "foreground_voxels": int((mask > 0).sum()),
                      "pydicom_decode_s": round(baseline, 4), "seg_mask_s": round(reader, 4)}, indent=2))
    print(f"seg_mask: {reader:.3f} s = x{reader / baseline:.2f} the bare pydicom decode ({baseline:.3f} s)")


if __name__ == "__main__":
    main()
