"""Miniature raw layouts of the registered study datasets, written as the real downloads name and store
their files (a few KB each), with what ingesting them must give.

Each writer takes an empty folder, writes 3-5 patients or images there and returns an ``Expected``:
the slice count, known image -> label-file pairs (manifest paths, several masks joined by ``;``), the
classes the masks hold after the dataset's mask rule, and the patient ids (None: split by image)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHAPE = (8, 8, 4)
RSP = np.array([[-1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # axes: right, superior, posterior


@dataclass(frozen=True)
class Expected:
    """What ingesting a miniature layout must give."""

    slices: int
    pairs: dict[str, str]
    labels: set[int]
    patients: set[str] | None


# ---------------------------------------------------------------- writing helpers


def _image(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A non-constant float image (every slice has contrast)."""
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 100 + np.arange(shape[0]).reshape(-1, *[1] * (len(shape) - 1))).astype(np.float32)


def _labelled(shape: tuple[int, ...], axis: int, planted: dict[int, int], dtype: type = np.uint8) -> np.ndarray:
    """A mask holding ``value`` in a 4x4 patch of slice ``index`` (along ``axis``) for each planted item."""
    mask = np.zeros(shape, dtype=dtype)
    moved = np.moveaxis(mask, axis, 0)
    for index, value in planted.items():
        moved[index, 2:6, 2:6] = value
    return mask


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))


def _mha(path: Path, array: np.ndarray) -> None:
    """An array indexed (z, y, x) as SimpleITK stores it."""
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


def _picture(path: Path, array: np.ndarray) -> None:
    """A PNG or TIFF (mode from the array: (H, W) gray or (H, W, 3) RGB)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path)


def _gray(seed: int, size: int = 16) -> np.ndarray:
    return _image((size, size), seed).clip(0, 255).astype(np.uint8)


def _rgb(seed: int, size: int = 16) -> np.ndarray:
    return np.repeat(_gray(seed, size)[..., None], 3, axis=2)


def _mask2d(value: int, rows: slice = slice(4, 10), size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[rows, 4:10] = value
    return mask


def _junk(path: Path, text: str = "junk") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---------------------------------------------------------------- 3D datasets


def mri_brain_sclerosis(root: Path) -> Expected:
    top = root / ("Brain MRI Dataset of Multiple Sclerosis with Consensus Manual Lesion Segmentation and "
                  "Patient Meta Information")
    planted = {1: {1: 1}, 2: {0: 1, 2: 1}, 3: {1: 1, 2: 1, 3: 1}, 10: {3: 1}}
    pairs = {}
    for number, slices in planted.items():
        folder = top / f"Patient-{number}"
        for sequence in ("Flair", "T1", "T2"):
            _nifti(folder / f"{number}-{sequence}.nii", _image(SHAPE, number))
        _nifti(folder / f"{number}-LesionSeg-Flair.nii", _labelled(SHAPE, 2, slices))
        for sequence in ("T1", "T2"):  # other sequences: more lesion slices, must not be read
            _nifti(folder / f"{number}-LesionSeg-{sequence}.nii", _labelled(SHAPE, 2, dict.fromkeys(range(4), 1)))
        relative = folder.relative_to(root).as_posix()
        pairs[f"{relative}/{number}-Flair.nii"] = f"{relative}/{number}-LesionSeg-Flair.nii"
    _junk(top / "Supplementary Table 1 for patient info .xlsx")
    return Expected(sum(len(s) for s in planted.values()), pairs, {0, 1}, {str(n) for n in planted})


def mri_brain_resection(root: Path) -> Expected:
    """Raters per subject: the lowest-numbered rater's mask is used; sub-0004 is unannotated."""
    raters = {"0001": {1: {1: 1}}, "0002": {2: {1: 1, 2: 1}, 3: {0: 1, 1: 1, 2: 1}},
              "0003": {1: {2: 1}, 2: {0: 1, 1: 1, 2: 1, 3: 1}}, "0004": {}, "0005": {3: {0: 1, 3: 1}}}
    pairs, slices = {}, 0
    for number, masks in raters.items():
        subject = root / "EPISURG" / "subjects" / f"sub-{number}"
        _nifti(subject / "preop" / f"sub-{number}_preop-t1mri-1.nii.gz", _image(SHAPE, int(number)))
        _nifti(subject / "postop" / f"sub-{number}_postop-t1mri-1.nii.gz", _image(SHAPE, int(number) + 50))
        for rater, planted in masks.items():
            _nifti(subject / "postop" / f"sub-{number}_postop-seg-{rater}.nii.gz", _labelled(SHAPE, 2, planted))
        if masks:
            first = min(masks)
            slices += len(masks[first])
            image = f"EPISURG/subjects/sub-{number}/postop/sub-{number}_postop-t1mri-1.nii.gz"
            pairs[image] = image.replace("t1mri-1", f"seg-{first}")
    _junk(root / "EPISURG" / "subjects.csv", "Subject,Hemisphere\nsub-0001,L\n")
    return Expected(slices, pairs, {0, 1}, {"0001", "0002", "0003", "0005"})


def mri_brain_stroke_lesion(root: Path) -> Expected:
    top = root / "ISLES-2022"
    planted = {1: {0: 1}, 2: {1: 1, 2: 1}, 3: {3: 1}, 4: {0: 1, 1: 1, 3: 1}}
    pairs = {}
    for number, slices in planted.items():
        sub = f"sub-strokecase{number:04d}"
        visit = top / sub / "ses-0001"
        _nifti(visit / "dwi" / f"{sub}_ses-0001_dwi.nii.gz", _image(SHAPE, number))
        _nifti(visit / "dwi" / f"{sub}_ses-0001_adc.nii.gz", _image(SHAPE, number + 10))
        _nifti(visit / "anat" / f"{sub}_ses-0001_FLAIR.nii.gz", _image((10, 10, 6), number))  # other geometry
        _nifti(top / "derivatives" / sub / "ses-0001" / f"{sub}_ses-0001_msk.nii.gz", _labelled(SHAPE, 2, slices))
        pairs[f"ISLES-2022/{sub}/ses-0001/dwi/{sub}_ses-0001_dwi.nii.gz"] = (
            f"ISLES-2022/derivatives/{sub}/ses-0001/{sub}_ses-0001_msk.nii.gz")
    _junk(top / "dataset_description.json", json.dumps({"Name": "ISLES 2022"}))
    return Expected(sum(len(s) for s in planted.values()), pairs, {0, 1}, {f"{n:04d}" for n in planted})


def _msd(root: Path, task: str, prefix: str, cases: dict[int, dict[int, int]], labels: dict[str, str]) -> Expected:
    """An MSD task folder with float32 labels, a test image and macOS ``._`` junk."""
    folder = root / task
    training, pairs = [], {}
    for number, planted in cases.items():
        name = f"{prefix}_{number:03d}.nii.gz"
        _nifti(folder / "imagesTr" / name, _image(SHAPE, number))
        _nifti(folder / "labelsTr" / name, _labelled(SHAPE, 2, planted, np.float32))
        _junk(folder / "imagesTr" / f"._{name}", "\x00\x05\x16\x07")
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        pairs[f"{task}/imagesTr/{name}"] = f"{task}/labelsTr/{name}"
    _nifti(folder / "imagesTs" / f"{prefix}_999.nii.gz", _image(SHAPE, 999))
    meta = {"name": task, "labels": labels, "numTraining": len(training), "training": training,
            "test": [f"./imagesTs/{prefix}_999.nii.gz"]}
    (folder / "dataset.json").write_text(json.dumps(meta, indent=4))
    values = {0} | {v for planted in cases.values() for v in planted.values()}
    return Expected(sum(len(p) for p in cases.values()), pairs, values,
                    {f"{prefix}_{n:03d}" for n in cases})


def mri_heart(root: Path) -> Expected:
    cases = {3: {1: 1}, 4: {1: 1, 2: 1}, 5: {0: 1}, 7: {2: 1, 3: 1}}
    return _msd(root, "Task02_Heart", "la", cases, {"0": "background", "1": "left atrium"})


def mri_hippocampus(root: Path) -> Expected:
    cases = {1: {1: 1, 2: 2}, 3: {0: 2}, 367: {1: 1, 2: 1, 3: 2}, 394: {2: 1}}
    return _msd(root, "Task04_Hippocampus", "hippocampus", cases,
                {"0": "background", "1": "Anterior", "2": "Posterior"})


def ct_colon(root: Path) -> Expected:
    cases = {1: {2: 1}, 5: {1: 1, 2: 1}, 24: {3: 1}, 219: {0: 1}}
    return _msd(root, "Task10_Colon", "colon", cases, {"0": "background", "1": "colon cancer primaries"})


def ct_hepatic_vessel(root: Path) -> Expected:
    cases = {1: {1: 1, 2: 2}, 2: {0: 1}, 10: {3: 2}, 456: {1: 1, 2: 1}}
    return _msd(root, "Task08_HepaticVessel", "hepaticvessel", cases,
                {"0": "background", "1": "Vessel", "2": "Tumour"})


def ct_pancreas(root: Path) -> Expected:
    cases = {1: {1: 1, 2: 2}, 4: {2: 1}, 5: {0: 1, 1: 1}, 421: {3: 2}}
    return _msd(root, "Task07_Pancreas", "pancreas", cases, {"0": "background", "1": "pancreas", "2": "cancer"})


def mri_kidney(root: Path) -> Expected:
    """Coronal volumes stored right-superior-posterior; the third stored axis (3 slices) is anterior-posterior."""
    shape = (8, 8, 3)
    scans = {"Healthy_Control/HC_01_T2W": {0: 1}, "Healthy_Control/HC_02_T2W_3": {1: 1, 2: 1},
             "Healthy_Control/HC_02_T2W_4": {1: 1}, "CKD/CKD_01_T2W": {0: 1, 1: 1, 2: 1},
             "CKD/CKD_07_T2W": {2: 1}}
    pairs = {}
    for stem, planted in scans.items():
        _nifti(root / f"{stem}.nii.gz", _image(shape, len(stem)), RSP)
        _nifti(root / f"{stem}_mask.nii.gz", _labelled(shape, 2, planted), RSP)
        pairs[f"{stem}.nii.gz"] = f"{stem}_mask.nii.gz"
    return Expected(sum(len(p) for p in scans.values()), pairs, {0, 1}, {"HC_01", "HC_02", "CKD_01", "CKD_07"})


def mri_prostate(root: Path) -> Expected:
    """SAML sites; BMC spells ``_Segmentation`` and marks a second prostate zone as 2."""
    cases = {"RUNMC/Case00": ("_segmentation", {1: 1, 2: 1}), "BMC/Case00": ("_Segmentation", {1: 1, 2: 2}),
             "UCL/Case01": ("_segmentation", {0: 1}), "BIDMC/Case02": ("_segmentation", {3: 1})}
    pairs = {}
    for stem, (suffix, planted) in cases.items():
        _nifti(root / f"{stem}.nii.gz", _image(SHAPE, len(pairs)))
        _nifti(root / f"{stem}{suffix}.nii.gz", _labelled(SHAPE, 2, planted))
        pairs[f"{stem}.nii.gz"] = f"{stem}{suffix}.nii.gz"
    return Expected(sum(len(p) for _, p in cases.values()), pairs, {0, 1}, set(cases))


def mri_brain_subcortical(root: Path) -> Expected:
    subjects = {"IIITH_001": {0: 1, 1: 2}, "IIITH_002": {2: 5}, "IIITH_003": {1: 14, 3: 9}, "IIITH_004": {3: 2}}
    pairs = {}
    for subject, planted in subjects.items():
        _nifti(root / subject / f"{subject}_T1.nii.gz", _image(SHAPE, len(pairs)))
        _nifti(root / subject / f"{subject}_seg.nii.gz", _labelled(SHAPE, 2, planted))
        pairs[f"{subject}/{subject}_T1.nii.gz"] = f"{subject}/{subject}_seg.nii.gz"
    return Expected(6, pairs, {0, 1, 2, 5, 9, 14}, set(subjects))


def mri_spine_spider(root: Path) -> Expected:
    """Sagittal .mha series (3 slices along x); raw labels 1-25, 100, 101-125, 201-225 become 3 classes."""
    shape_zyx = (8, 8, 3)
    series = {"1_t1": {1: [1, 201]}, "1_t2": {0: [2], 2: [100]}, "2_t2": {1: [103]},
              "3_t2_SPACE": {0: [5, 202], 1: [100], 2: [225]}, "4_t1": {2: [25]}}
    pairs = {}
    for name, planted in series.items():
        mask = np.zeros(shape_zyx, dtype=np.uint8)
        for x, values in planted.items():
            for row, value in enumerate(values):  # tall strips along z, so z-slices would count differently
                mask[1:7, 2 * row: 2 * row + 2, x] = value
        _mha(root / "images" / f"{name}.mha", _image(shape_zyx, len(pairs)))
        _mha(root / "masks" / f"{name}.mha", mask)
        pairs[f"images/{name}.mha"] = f"masks/{name}.mha"
    _junk(root / "overview.csv", "new_file_name,subset\n1_t1,training\n")
    _junk(root / "radiological_gradings.csv", "Patient,IVD label,Modic\n1,1,0\n")
    return Expected(sum(len(p) for p in series.values()), pairs, {0, 1, 2, 3}, {"1", "2", "3", "4"})


def mri_knee(root: Path) -> Expected:
    """MRNet (slices, 16, 16) uint8 stacks in three planes; one blank slice is dropped."""
    top = root / "MRNet-v1.0"
    exams = {"train": ["0000", "0001"], "valid": ["1130", "1131"]}
    slices, pairs = 0, {}
    for split, ids in exams.items():
        for offset, exam in enumerate(ids):
            for plane_index, plane in enumerate(("axial", "coronal", "sagittal")):
                depth = 3 + (offset + plane_index) % 3
                stack = _image((depth, 16, 16), int(exam) + plane_index).clip(0, 255).astype(np.uint8)
                if exam == "0001" and plane == "coronal":
                    stack[0] = 0
                    slices -= 1
                slices += depth
                path = top / split / plane / f"{exam}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, stack)
                pairs[f"MRNet-v1.0/{split}/{plane}/{exam}.npy"] = ""
        for task in ("abnormal", "acl", "meniscus"):
            _junk(top / f"{split}-{task}.csv", "".join(f"{exam},0\n" for exam in ids))
    return Expected(slices, pairs, {0}, {i for ids in exams.values() for i in ids})


# ---------------------------------------------------------------- 2D datasets


def mri_brain_duke(root: Path) -> Expected:
    """LGG RGB TIFF slices with 0/255 masks; slice 1 is empty; the zip's duplicate copy is ignored."""
    patients = ["TCGA_CS_4941_19960909", "TCGA_DU_6404_19850629", "TCGA_HT_7602_19951103", "TCGA_FG_5962_20000626"]
    pairs = {}
    for index, folder in enumerate(patients):
        for number in (1, 2, 11):
            stem = f"kaggle_3m/{folder}/{folder}_{number}"
            _picture(root / f"{stem}.tif", _rgb(index * 20 + number))
            _picture(root / f"{stem}_mask.tif", _mask2d(0 if number == 1 else 255, slice(number % 8, 12)))
            pairs[f"{stem}.tif"] = f"{stem}_mask.tif"
    copy = root / "lgg-mri-segmentation" / "kaggle_3m" / patients[0] / f"{patients[0]}_2.tif"
    _picture(copy, _rgb(99))
    _picture(copy.with_name(f"{patients[0]}_2_mask.tif"), _mask2d(255))
    _junk(root / "kaggle_3m" / "data.csv", "Patient,RNASeqCluster\nTCGA_CS_4941,2\n")
    return Expected(8, {k: v for k, v in pairs.items() if not k.endswith("_1.tif")}, {0, 1},
                    {"_".join(p.split("_")[:3]) for p in patients})


def us_breast(root: Path) -> Expected:
    """BUSI: ``(1)`` next to ``(10)``, a second lesion mask, an RGB mask, and normals (left out)."""
    top = root / "Dataset_BUSI_with_GT"
    images = {"benign/benign (1)": 1, "benign/benign (10)": 1, "benign/benign (4)": 2,
              "malignant/malignant (1)": 1, "malignant/malignant (2)": 1, "normal/normal (1)": 1}
    pairs = {}
    for stem, masks in images.items():
        _picture(top / f"{stem}.png", _rgb(len(pairs)))
        empty = stem.startswith("normal")
        _picture(top / f"{stem}_mask.png", _mask2d(0 if empty else 255))
        names = [f"Dataset_BUSI_with_GT/{stem}_mask.png"]
        if masks == 2:
            _picture(top / f"{stem}_mask_1.png", _mask2d(255, slice(11, 14)))
            names.append(f"Dataset_BUSI_with_GT/{stem}_mask_1.png")
        pairs[f"Dataset_BUSI_with_GT/{stem}.png"] = ";".join(names)
    _picture(top / "malignant" / "malignant (2)_mask.png", np.repeat(_mask2d(255)[..., None], 3, axis=2))
    return Expected(5, {k: v for k, v in pairs.items() if "normal" not in k}, {0, 1}, None)


def us_kidney(root: Path) -> Expected:
    """CT2US: interpolated mask values; a mask whose values stay below the threshold is empty."""
    peaks = {"kidney_0001": 255, "kidney_0002": 200, "kidney_0003": 100, "kidney_0004": 255}
    pairs = {}
    for index, (name, peak) in enumerate(peaks.items()):
        mask = _mask2d(peak)
        mask[3, 4:10] = 60  # interpolated rim
        _picture(root / "slice" / "slice" / f"{name}.png", _gray(index))
        _picture(root / "mask" / "mask" / f"{name}.png", mask)
        pairs[f"slice/slice/{name}.png"] = f"mask/mask/{name}.png"
    return Expected(3, {k: v for k, v in pairs.items() if "0003" not in k}, {0, 1}, None)


def us_muscle(root: Path) -> Expected:
    """The MuscleCNN split folders with RGB masks; the per-muscle copies are not read."""
    outer = root / "DATASET for Deep learning segmentation of transverse musculoskeletal ultrasound images"
    data = outer / "Polito-Radboud-DeepLearningUS" / "Segmentation_models" / "data" / "MuscleCNN"
    files = {"train": ["BB_0001", "GM_0002"], "val": ["TA_0003"], "test": ["BB_0004", "GM_0005"]}
    pairs = {}
    for split, names in files.items():
        for name in names:
            _picture(data / split / f"{name}.png", _rgb(len(pairs)))
            _picture(data / f"{split}annot" / f"{name}.png", np.stack([_mask2d(255), _mask2d(0), _mask2d(0)], axis=2))
            relative = (data / split).relative_to(root).as_posix()
            pairs[f"{relative}/{name}.png"] = f"{relative}annot/{name}.png"
    muscle = outer / "Polito-Radboud-DeepLearningUS" / "BB" / "patient_01"
    _picture(muscle / "BB_0001.png", _rgb(0))
    _picture(muscle / "Masks" / "BB_0001.png", _mask2d(255))
    return Expected(5, pairs, {0, 1}, None)


def xray_chest(root: Path) -> Expected:
    """Kaggle layout (Montgomery same name, Shenzhen ``_mask``, one image without a mask) and the NLM
    Montgomery layout (left and right lung in separate folders)."""
    kaggle = root / "Lung Segmentation"
    pairs = {}
    for index, (name, mask_name) in enumerate([("MCUCXR_0001_0", "MCUCXR_0001_0"), ("MCUCXR_0002_1", "MCUCXR_0002_1"),
                                               ("CHNCXR_0001_0", "CHNCXR_0001_0_mask"), ("CHNCXR_0002_1", None)]):
        _picture(kaggle / "CXR_png" / f"{name}.png", _gray(index))
        if mask_name:
            _picture(kaggle / "masks" / f"{mask_name}.png", _mask2d(255))
            pairs[f"Lung Segmentation/CXR_png/{name}.png"] = f"Lung Segmentation/masks/{mask_name}.png"
    _junk(kaggle / "ClinicalReadings" / "CHNCXR_0001_0.txt", "male 45yrs\nnormal\n")
    _picture(kaggle / "test" / "CHNCXR_0100_0.png", _gray(9))
    nlm = root / "MontgomerySet"
    _picture(nlm / "CXR_png" / "MCUCXR_0104_1.png", _gray(7))
    left, right = np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8)
    left[4:12, 2:6], right[4:12, 10:14] = 255, 255
    _picture(nlm / "ManualMask" / "leftMask" / "MCUCXR_0104_1.png", left)
    _picture(nlm / "ManualMask" / "rightMask" / "MCUCXR_0104_1.png", right)
    pairs["MontgomerySet/CXR_png/MCUCXR_0104_1.png"] = (
        "MontgomerySet/ManualMask/leftMask/MCUCXR_0104_1.png;MontgomerySet/ManualMask/rightMask/MCUCXR_0104_1.png")
    return Expected(4, pairs, {0, 1}, {"MCUCXR_0001", "MCUCXR_0002", "CHNCXR_0001", "MCUCXR_0104"})


def xray_hip(root: Path) -> Expected:
    """Hip X-rays as NIfTI: 2D arrays and (H, W, 1) arrays; 1 = ilium, 2 = femur."""
    top = root / "X-ray images of the hip joints"
    planted = {"001": (1, 2), "002": (1,), "044": (1, 2), "140": (2,)}
    pairs = {}
    for index, (number, values) in enumerate(planted.items()):
        label = np.zeros((16, 16), np.uint8)
        for value in values:
            label[2 + 6 * (value - 1): 6 + 6 * (value - 1), 4:12] = value
        image = _image((16, 16), index)
        if index % 2:
            image, label = image[..., None], label[..., None]
        _nifti(top / "images" / f"image_{number}.nii.gz", image)
        _nifti(top / "labels" / f"label_{number}.nii.gz", label)
        pairs[f"{top.name}/images/image_{number}.nii.gz"] = f"{top.name}/labels/label_{number}.nii.gz"
    return Expected(4, pairs, {0, 1, 2}, None)


LAYOUTS: dict[str, Callable[[Path], Expected]] = {
    writer.__name__: writer for writer in (
        mri_brain_sclerosis, mri_brain_duke, mri_brain_resection, mri_brain_stroke_lesion, mri_heart,
        mri_hippocampus, mri_kidney, mri_prostate, ct_colon, ct_hepatic_vessel, ct_pancreas, us_breast, us_kidney,
        us_muscle, xray_chest, xray_hip, mri_brain_subcortical, mri_knee, mri_spine_spider)
}
