"""The embedded demo dataset: a deterministic, synthetic CT-like phantom in the MSD raw layout.

The phantom is NOT patient data. Each "patient" is a torso-like cross-section in Hounsfield units
(air, fat rim, soft tissue, spine, a bright unlabeled distractor organ) with one labeled, irregular
lesion whose intensity overlaps the surrounding tissue, so that a global threshold cannot segment
it. Files follow the Medical Segmentation Decathlon layout::

    <out>/dataset.json
    <out>/imagesTr/phantom_001.nii.gz
    <out>/labelsTr/phantom_001.nii.gz

Bytes are reproducible: the same params give byte-identical files (gzip with a fixed mtime).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.outputs import output_dir

AIR_HU = -1000.0
FAT_HU = -100.0
TISSUE_HU = 40.0
BONE_HU = 700.0
DISTRACTOR_EXTRA_HU = 45.0
SYNTHETIC_NOTICE = "SYNTHETIC PHANTOM - not patient data; for demos and tests only"


@dataclass(frozen=True)
class PhantomSpec:
    """Settings of the phantom (params.yaml ``sample`` section)."""

    num_patients: int
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    noise_hu: float
    lesion_contrast_hu: float

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
    for z in range(nz):
        taper = 1.0 - 0.15 * abs(z - nz / 2) / (nz / 2)
        body = ((grid_x - cx) / (body_a * taper)) ** 2 + ((grid_y - cy) / (body_b * taper)) ** 2
        image[..., z][body <= 1.0] = FAT_HU
        image[..., z][body <= 0.8] = TISSUE_HU
        spine = np.hypot(grid_x - cx, grid_y - (cy + 0.7 * body_b * taper)) <= 0.12 * body_b
        image[..., z][spine] = BONE_HU
        distractor = _lobed_region(grid_x, grid_y, distractor_center, 0.13 * min(nx, ny), rng)
        image[..., z][distractor & (body <= 0.8)] += DISTRACTOR_EXTRA_HU
        depth = 1.0 - ((z - lesion_z) / lesion_half_depth) ** 2
        if depth > 0:
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


def _dataset_json(case_ids: list[str]) -> dict[str, Any]:
    return {
        "name": "Phantom",
        "description": f"{SYNTHETIC_NOTICE}. CT-like torso phantom with one irregular lesion.",
        "reference": "medseg embedded sample (generated by `medseg sample`)",
        "licence": "CC0-1.0",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "lesion"},
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
        (tmp / "dataset.json").write_text(json.dumps(_dataset_json(case_ids), indent=2) + "\n")
        (tmp / "SYNTHETIC.txt").write_text(SYNTHETIC_NOTICE + "\n")
    return case_ids
