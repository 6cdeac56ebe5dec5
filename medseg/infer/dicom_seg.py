"""Masks of a DICOM series as a DICOM-SEG (highdicom), which 3D Slicer (QuantitativeReporting) and OHIF open.

One BINARY segmentation frame per source slice and segment (empty frames kept, so every source slice is
covered), placed and referenced through the source images: the same study, patient, frame of reference,
each frame's Image Position, and the referenced series and SOP instances. One segment per written label,
labelled with the model's class name; its property type is a private code (``99MEDSEG``) carrying that
name, its category "Tissue" (SNOMED CT). The algorithm identification names medseg and the model, and the
series description says which model produced it (random-init and synthetic-data flags included).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medseg import __version__
from medseg.infer.inputs import Scan

SERIES_NUMBER = 9901
LONG_STRING = 64  # DICOM LO values


def _frames(labels: np.ndarray, scan: Scan, numbers: dict[int, int]) -> np.ndarray:
    """The label array sampled on each source slice (in header order), as segment numbers."""
    from medseg.data.dicom_masks import frame_index

    table = np.zeros(256, dtype=np.uint8)
    for value, number in numbers.items():
        table[value] = number
    series = scan.native
    frames = [labels[frame_index(h.plane, series.volume, h.path)] for h in series.headers]
    return table[np.stack(frames)]


def _descriptions(segments: list[tuple[int, str]], algorithm: Any, automated: bool) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    kind = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if automated else hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
    return [hd.seg.SegmentDescription(
        segment_number=number, segment_label=name[:LONG_STRING], segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=hd.sr.CodedConcept(f"L{value}", "99MEDSEG", name[:LONG_STRING]),
        algorithm_type=kind, algorithm_identification=algorithm, tracking_id=f"medseg label {value}",
        tracking_uid=hd.UID()) for number, (value, name) in enumerate(segments, start=1)]


def write_dicom_seg(labels: np.ndarray, scan: Scan, path: Path, segments: list[tuple[int, str]],
                    facts: dict[str, Any], description: str) -> None:
    """Write ``labels`` (on the series' RAS+ grid) as a DICOM-SEG; ``segments``: (label value, name) pairs,
    numbered 1, 2, ... in that order; ``description``: the short one (64 characters are kept)."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(h.path, stop_before_pixels=True) for h in scan.native.headers]
    model_name = f"medseg {facts.get('strategy') or 'model'}"[:LONG_STRING]
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model_name, version=__version__, family=codes.cid7162.ArtificialIntelligence,
        source=f"medseg (model sha256 {facts['sha256'][:16]})",
        parameters={key: str(facts.get(key)) for key in ("mode", "init", "dataset", "random_init", "synthetic_data")})
    numbers = {value: number for number, (value, _) in enumerate(segments, start=1)}
    with warnings.catch_warnings():  # highdicom's notes on the source's own attributes (e.g. person names)
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=_frames(labels, scan, numbers),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_descriptions(segments, algorithm, facts["mode"] == "automated"),
            series_instance_uid=hd.UID(), series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="medseg", manufacturer_model_name=model_name, software_versions=__version__,
            device_serial_number=facts["sha256"][:16], series_description=description[:LONG_STRING],
            content_description=description[:LONG_STRING], content_label="MEDSEG", omit_empty_frames=False,
            specific_character_set="ISO_IR 192")
        seg.save_as(path)
