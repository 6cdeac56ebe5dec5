"""The embedded demo dataset: a deterministic, synthetic CT-like phantom in the MSD raw layout.

The phantom is NOT patient data. Each "patient" is a torso-like cross-section in Hounsfield units
(air, fat rim, soft tissue, spine, a bright unlabeled distractor organ) with one labeled, irregular
lesion whose intensity overlaps the surrounding tissue, so that a global threshold cannot segment
it. With ``num_classes`` > 2 (a multi-class phantom, e.g. for tests) the lesion is replaced by
``num_classes - 1`` bright, irregular structures, class k brighter and smaller than class k - 1, each
spanning its own range of slices. Files follow the Medical Segmentation Decathlon layout::

    <out>/dataset.json
    <out>/imagesTr/phantom_001.nii.gz
    <out>/labelsTr/phantom_001.nii.gz
    <out>/SYNTHETIC.txt

``dataset.json`` carries ``"medseg_synthetic": true`` and the notice in its description, and
``SYNTHETIC.txt`` holds the notice: ``medseg ingest`` recognises the phantom by them and ingests it only
as a dataset whose registry entry says ``synthetic: true`` (``medseg.data.identity``).

Bytes are reproducible: the same params give byte-identical files (gzip with a fixed mtime).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.outputs import output_dir

AIR_HU = -1000.0
FAT_HU = -100.0
TISSUE_HU = 40.0
BONE_HU = 700.0
DISTRACTOR_EXTRA_HU = 45.0
STRUCTURE_STEP_HU = 250.0  # class k of a multi-class phantom: TISSUE_HU + k x this
SYNTHETIC_NOTICE = "SYNTHETIC PHANTOM - not patient data; for demos and tests only"
SYNTHETIC_KEY = "medseg_synthetic"  # dataset.json field that marks the phantom
SYNTHETIC_FILE = "SYNTHETIC.txt"  # written beside dataset.json, holding the notice


@dataclass(frozen=True)
class PhantomSpec:
    """Settings of the phantom (params.yaml ``sample`` section)."""

    num_patients: int
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    noise_hu: float
    lesion_contrast_hu: float
    num_classes: int = 2  # label values 0..num_classes-1; above 2: bright structures instead of the lesion
    # (lesion_contrast_hu is then unused)

    def __post_init__(self) -> None:
        classes = self.num_classes
        if isinstance(classes, bool) or not isinstance(classes, int) or not 2 <= classes <= 8:
            raise MedsegError(f"must be an integer in 2..8, got {self.num_classes!r:.40}", "sample.num_classes")

    @classmethod
    def from_params(cls, sample_params: dict[str, Any]) -> PhantomSpec:
        shape = tuple(int(v) for v in sample_params["shape"])
        spacing = tuple(float(v) for v in sample_params["spacing_mm"])
        return cls(
            num_patients=int(sample_params["num_patients"]),
            shape=shape,  # type: ignore[arg-type]
            spacing_mm=spacing,  # type: ignore[arg-type]
            noise_hu=float(sample_params["noise_hu"]),
            lesion_contrast_hu=float(sample_params["lesion_contrast_hu"]),
            num_classes=int(sample_params.get("num_classes", 2)),
        )


def _lobed_region(
    grid_x: np.ndarray, grid_y: np.ndarray, center: tuple[float, float], radius: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Boolean disc whose radius is modulated by random low-order harmonics (an irregular blob)."""
    dx, dy = grid_x - center[0], grid_y - center[1]
    angle = np.arctan2(dy, dx)
    wobble = np.ones_like(angle)
    for order, amplitude in ((1, 0.15), (2, 0.2), (3, 0.1)):
        wobble += rng.uniform(0, amplitude) * np.cos(order * angle + rng.uniform(0, 2 * np.pi))
    return np.hypot(dx, dy) <= radius * wobble


@dataclass(frozen=True)
class _Structure:
    """One class of a multi-class phantom: an irregular blob over a range of slices."""

    label: int
    center: tuple[float, float]
    radius: float
    z_center: float
    half_depth: float
    shape_seed: int


def _structures(spec: PhantomSpec, center: tuple[float, float], axes: tuple[float, float],
                rng: np.random.Generator) -> list[_Structure]:
    """Classes 1..num_classes-1 on a ring inside the body, each smaller than the one before."""
    nx, ny, nz = spec.shape
    count, start = spec.num_classes - 1, rng.uniform(-0.3, 0.3)  # organ-like: about the same place in every patient
    structures = []
    for index in range(count):
        angle = start + 2 * np.pi * index / count
        at = (center[0] + 0.5 * axes[0] * np.cos(angle), center[1] + 0.5 * axes[1] * np.sin(angle))
        structures.append(_Structure(index + 1, at, min(nx, ny) * 0.12 * 0.8**index, rng.uniform(0.35, 0.65) * nz,
                                     rng.uniform(0.3, 0.45) * nz, int(rng.integers(0, 2**32))))
    return structures


def _paint_structures(image: np.ndarray, label: np.ndarray, structures: list[_Structure], z: int,
                      grids: tuple[np.ndarray, np.ndarray], inside: np.ndarray) -> None:
    """Paint the structures present in slice ``z`` (class k at TISSUE_HU + k x STRUCTURE_STEP_HU)."""
    for structure in structures:
        depth = 1.0 - ((z - structure.z_center) / structure.half_depth) ** 2
        if depth <= 0:
            continue
        shape_rng = np.random.default_rng(structure.shape_seed)  # the same outline on every slice
        region = _lobed_region(*grids, structure.center, structure.radius * np.sqrt(depth), shape_rng) & inside
        image[region] = TISSUE_HU + structure.label * STRUCTURE_STEP_HU
        label[region] = structure.label


def phantom_volume(spec: PhantomSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One patient: an int16 HU volume and a uint8 label volume of ``spec.shape``."""
    from scipy.ndimage import gaussian_filter

    nx, ny, nz = spec.shape
    grid_x, grid_y = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float), indexing="ij")
    image = np.full(spec.shape, AIR_HU, dtype=float)
    label = np.zeros(spec.shape, dtype=np.uint8)
    body_a, body_b = nx * rng.uniform(0.40, 0.46), ny * rng.uniform(0.30, 0.36)
    cx, cy = nx / 2 + rng.normal(0, 1), ny / 2 + rng.normal(0, 1)
    lesion_center = (cx + rng.uniform(-0.35, 0.05) * body_a, cy + rng.uniform(-0.3, 0.1) * body_b)
    distractor_center = (cx + rng.uniform(0.2, 0.4) * body_a, cy + rng.uniform(-0.2, 0.1) * body_b)
    lesion_z, lesion_half_depth = rng.uniform(0.35, 0.65) * nz, rng.uniform(0.2, 0.35) * nz
    lesion_radius = min(nx, ny) * rng.uniform(0.10, 0.16)
    lesion_rng_state = rng.integers(0, 2**32)
    structures = _structures(spec, (cx, cy), (body_a, body_b), rng) if spec.num_classes > 2 else []
    for z in range(nz):
        taper = 1.0 - 0.15 * abs(z - nz / 2) / (nz / 2)
        body = ((grid_x - cx) / (body_a * taper)) ** 2 + ((grid_y - cy) / (body_b * taper)) ** 2
        image[..., z][body <= 1.0] = FAT_HU
        image[..., z][body <= 0.8] = TISSUE_HU
        spine = np.hypot(grid_x - cx, grid_y - (cy + 0.7 * body_b * taper)) <= 0.12 * body_b
        image[..., z][spine] = BONE_HU
        distractor = _lobed_region(grid_x, grid_y, distractor_center, 0.13 * min(nx, ny), rng)
        image[..., z][distractor & (body <= 0.8)] += DISTRACTOR_EXTRA_HU
        _paint_structures(image[..., z], label[..., z], structures, z, (grid_x, grid_y), body <= 0.8)
        depth = 1.0 - ((z - lesion_z) / lesion_half_depth) ** 2
        if depth > 0 and not structures:
            slice_rng = np.random.default_rng([int(lesion_rng_state), z // 3])
            lesion = _lobed_region(grid_x, grid_y, lesion_center, lesion_radius * np.sqrt(depth), slice_rng)
            lesion &= body <= 0.8
            image[..., z][lesion] += spec.lesion_contrast_hu
            label[..., z][lesion] = 1
    image += gaussian_filter(rng.normal(0.0, spec.noise_hu * 1.6, spec.shape), sigma=(0.8, 0.8, 0.0))
    return np.clip(np.round(image), -1024, 3071).astype(np.int16), label


def _affine(spec: PhantomSpec) -> np.ndarray:
    """An LPS-like affine (x and y flipped), as many scanners write, so reorientation matters."""
    sx, sy, sz = spec.spacing_mm
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [sx * spec.shape[0] / 2, sy * spec.shape[1] / 2, -sz * spec.shape[2] / 2]
    return affine


def _write_nifti_gz(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write a .nii.gz whose bytes depend only on the data (gzip mtime fixed to 0)."""
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))


def _dataset_json(case_ids: list[str], num_classes: int = 2) -> dict[str, Any]:
    labels = {"0": "background", "1": "lesion"} if num_classes == 2 else {
        "0": "background", **{str(k): f"structure_{k}" for k in range(1, num_classes)}}
    content = ("one irregular lesion" if num_classes == 2 else
               f"{num_classes - 1} bright structures of decreasing size (multi-class)")
    return {
        "name": "Phantom",
        SYNTHETIC_KEY: True,
        "description": f"{SYNTHETIC_NOTICE}. CT-like torso phantom with {content}.",
        "reference": "medseg embedded sample (generated by `medseg sample`)",
        "licence": "CC0-1.0",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": labels,
        "numTraining": len(case_ids),
        "numTest": 0,
        "training": [
            {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in case_ids
        ],
        "test": [],
    }


def write_sample(out_dir: str | Path, spec: PhantomSpec, seed: int) -> list[str]:
    """Write the phantom dataset atomically to ``out_dir`` (refused where it would replace anything but an
    earlier sample); returns the case ids."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    case_ids = [f"phantom_{i:03d}" for i in range(1, spec.num_patients + 1)]
    with output_dir("sample", out_dir) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        for case_id in tqdm(case_ids, desc="sample", unit="patient"):
            image, label = phantom_volume(spec, rng)
            _write_nifti_gz(image, _affine(spec), tmp / "imagesTr" / f"{case_id}.nii.gz")
            _write_nifti_gz(label, _affine(spec), tmp / "labelsTr" / f"{case_id}.nii.gz")
        (tmp / "dataset.json").write_text(json.dumps(_dataset_json(case_ids, spec.num_classes), indent=2) + "\n")
        (tmp / SYNTHETIC_FILE).write_text(SYNTHETIC_NOTICE + "\n")
    return case_ids
