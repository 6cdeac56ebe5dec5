"""nnU-Net v2 as a baseline, trained on the same ingested slices as the SAM models.

A bridge, not a re-implementation: the ingested slices are written as an nnU-Net raw dataset, then
nnU-Net's own command-line programs plan, preprocess, train and predict (each in a child process of
the current interpreter, with the ``nnUNet_*`` paths set for that process only).

Work directory layout (``work_dir``)::

    nnUNet_raw/Dataset<id>_<name>/      imagesTr/ labelsTr/ imagesTs/ dataset.json medseg_export.json
    nnUNet_preprocessed/Dataset<id>_<name>/   nnU-Net's plans and 2d data, splits_final.json
    nnUNet_results/Dataset<id>_<name>/<trainer>__nnUNetPlans__2d/fold_0/checkpoint_final.pth
    predictions/Dataset<id>_<name>/<trainer>/  one <case id>.png per test slice

Slices are 2D PNGs read by nnU-Net's ``NaturalImage2DIO``: the ingested slices are 8-bit grayscale,
so PNG stores them losslessly, nnU-Net treats the data as genuinely 2D (spacing 999 x 1 x 1, no
through-plane axis to resample), and predictions come back as PNGs of the same size. Labels are
renumbered 0..K-1 (nnU-Net needs consecutive labels) and mapped back to the stored values on import.
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.atomic import atomic_dir, write_json
from medseg.data.classes import ClassMap, dataset_labels, resolve_classes
from medseg.data.slice_dataset import open_arrays, read_ingest_summary, read_manifest
from medseg.errors import MedsegError

DEFAULT_TRAINER = "nnUNetTrainer"  # the study profile: nnU-Net's own trainer, unchanged
TINY_TRAINER = "nnUNetTrainer_medseg_tiny"  # tests: 2 epochs x 2 iterations
DEMO_TRAINER = "nnUNetTrainer_medseg_demo"  # CPU demos: 20 epochs x 25 iterations
CONFIGURATION, PLANS, FOLD = "2d", "nnUNetPlans", 0
FILE_ENDING, CHANNEL = ".png", "_0000"
CHANNEL_NAME = "zscore"  # nnU-Net's per-image z-score normalisation of the 0-255 slices
EXPORT_RECORD = "medseg_export.json"
TRAINERS_DIR = Path(__file__).resolve().parent / "nnunet_trainers"
EXT_TRAINER = "nnUNet_extTrainer"  # nnU-Net 2.8: folders searched for trainer classes it does not ship
DEVICES = ("cpu", "cuda", "mps")
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ENTRY_POINTS = {  # nnU-Net's console scripts (see its entry_points.txt)
    "nnUNetv2_plan_and_preprocess": "nnunetv2.experiment_planning.plan_and_preprocess_entrypoints:"
                                    "plan_and_preprocess_entry",
    "nnUNetv2_train": "nnunetv2.run.run_training:run_training_entry",
    "nnUNetv2_predict": "nnunetv2.inference.predict_from_raw_data:predict_entry_point",
}


@dataclass(frozen=True)
class NnunetDirs:
    """nnU-Net's three folders under one work directory."""

    raw: Path
    preprocessed: Path
    results: Path


def nnunet_dirs(work_dir: str | Path) -> NnunetDirs:
    work_dir = Path(work_dir).resolve()
    return NnunetDirs(work_dir / "nnUNet_raw", work_dir / "nnUNet_preprocessed", work_dir / "nnUNet_results")


def dataset_name(dataset_id: int, name: str) -> str:
    """``Dataset<id>_<name>``, nnU-Net's folder name (id 1-999 written with three digits)."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise MedsegError(f"nnU-Net dataset id must be an integer in 1..999, got {dataset_id!r}")
    if not _NAME.fullmatch(name):
        raise MedsegError(f"nnU-Net dataset name must match {_NAME.pattern}, got {name!r}")
    return f"Dataset{dataset_id:03d}_{name}"


def find_dataset(root: str | Path, dataset_id: int, hint: str = "") -> Path:
    """The one ``Dataset<id>_*`` folder under ``root`` (nnU-Net resolves ids the same way)."""
    prefix = dataset_name(dataset_id, "x")[:-1]
    found = sorted(p for p in Path(root).glob(f"{prefix}*") if p.is_dir())
    if len(found) != 1:
        problem = "none" if not found else f"{len(found)} ({', '.join(p.name for p in found)})"
        raise MedsegError(f"expected one nnU-Net dataset {prefix}*, found {problem}{hint}", root)
    return found[0]


def case_ids(manifest: Any) -> list[str]:
    """File-name-safe, stable case ids, one per manifest row: ``<row>_<case>_<slice>``."""
    cases = manifest["case"].astype(str).str.replace(r"[^A-Za-z0-9-]+", "-", regex=True).str.strip("-").str[:40]
    return [f"{int(row):06d}_{case or 'case'}_{int(index):04d}"
            for row, case, index in zip(manifest["row"], cases, manifest["slice_index"], strict=True)]


# --- export ---------------------------------------------------------------------------------------

def export_dataset(data_dir: str | Path, raw_root: str | Path, dataset_id: int, name: str,
                   fewshot: bool = False, classes: Sequence[str] | None = None) -> Path:
    """Write the ingested slices as the nnU-Net raw dataset ``raw_root/Dataset<id>_<name>``.

    Training cases are the train and val slices (with ``fewshot``: only the 5-shot selection, the
    manifest's ``fewshot`` column); the test slices go to ``imagesTs`` in manifest order. ``classes``
    narrows the dataset's foreground classes by name as ``finetune.classes`` does. Replaces only an
    earlier export; returns the dataset folder."""
    target = Path(raw_root).resolve() / dataset_name(dataset_id, name)
    _check_target(target, dataset_id)
    manifest = read_manifest(data_dir)
    images, masks = open_arrays(data_dir)
    roles = _roles(manifest, fewshot, Path(data_dir))
    class_map, known = _class_map(data_dir, classes)
    _check_arrays(manifest, images, masks, Path(data_dir))
    ids = case_ids(manifest)
    with atomic_dir(target) as tmp:
        for folder in ("imagesTr", "labelsTr", "imagesTs"):
            (tmp / folder).mkdir()
        for role in ("train", "val", "test"):
            for row in roles[role]:
                _write_png(tmp / ("imagesTs" if role == "test" else "imagesTr") / f"{ids[row]}{CHANNEL}{FILE_ENDING}",
                           images[row])
                if role != "test":
                    mask = _nnunet_labels(np.asarray(masks[row]), class_map, known, f"{data_dir}/masks.npy[{row}]")
                    _write_png(tmp / "labelsTr" / f"{ids[row]}{FILE_ENDING}", mask)
        meta = _dataset_json(class_map, len(roles["train"]) + len(roles["val"]), name)
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")  # labels in label order
        write_json(tmp / EXPORT_RECORD, {
            "source": str(Path(data_dir).resolve()), "fewshot": fewshot, "image_size": int(images.shape[-1]),
            "label_values": list(class_map.values), "class_names": list(class_map.names),
            **{role: [ids[row] for row in rows] for role, rows in roles.items()},
            "test_rows": [int(row) for row in roles["test"]],
        })
    return target


def _check_target(target: Path, dataset_id: int) -> None:
    if target.exists() and not (target / EXPORT_RECORD).is_file():
        raise MedsegError(f"exists and is not an earlier export ({EXPORT_RECORD} missing); "
                          "remove it or choose another dataset id", target)
    others = [p.name for p in target.parent.glob(f"Dataset{dataset_id:03d}_*") if p.name != target.name]
    if others:
        raise MedsegError(f"dataset id {dataset_id} is taken by {others} (nnU-Net resolves datasets by id)",
                          target.parent)


def _roles(manifest: Any, fewshot: bool, data_dir: Path) -> dict[str, np.ndarray]:
    """Manifest rows (= array rows) of the training, validation and test cases, in manifest order."""
    column = "fewshot" if fewshot else "split"
    roles = {role: manifest.loc[manifest[column] == role, "row"].to_numpy() for role in ("train", "val")}
    roles["test"] = manifest.loc[manifest["split"] == "test", "row"].to_numpy()
    for role in ("train", "val"):
        if not len(roles[role]):
            raise MedsegError(f"no {role} slices{' in the few-shot selection' if fewshot else ''}; "
                              "nnU-Net's fold 0 needs both train and val", data_dir / "manifest.parquet")
    return roles


def _class_map(data_dir: str | Path, classes: Sequence[str] | None) -> tuple[ClassMap, set[int]]:
    """The classes nnU-Net learns, and every label value the dataset's label map knows."""
    summary = read_ingest_summary(data_dir)
    labels = dataset_labels(summary, Path(data_dir) / "ingest.json")
    return resolve_classes(labels, classes, str(summary.get("dataset", "dataset"))), set(labels)


def _nnunet_labels(mask: np.ndarray, class_map: ClassMap, known: set[int], where: str) -> np.ndarray:
    """A stored mask in nnU-Net's labels 0..K-1 (labels not kept read as background); a label
    missing from the dataset's label map is an error."""
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    unknown = [int(v) for v in present if int(v) not in known]
    if unknown:
        raise MedsegError(f"label(s) {unknown} missing from the label map (ingest.json)", where)
    table = np.zeros(256, dtype=np.uint8)
    table[list(class_map.values)] = np.arange(len(class_map.values), dtype=np.uint8)
    return table[mask]


def _check_arrays(manifest: Any, images: np.ndarray, masks: np.ndarray, data_dir: Path) -> None:
    if len(manifest) != len(images) or not np.array_equal(manifest["row"].to_numpy(), np.arange(len(images))):
        raise MedsegError(f"manifest rows do not match the {len(images)} stored slices; re-run `medseg ingest`",
                          data_dir / "manifest.parquet")
    for name, array in (("images.npy", images), ("masks.npy", masks)):
        if array.dtype != np.uint8:
            raise MedsegError(f"expected uint8 slices, got {array.dtype}", data_dir / name)


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path, compress_level=1)


def _dataset_json(class_map: ClassMap, num_training: int, name: str) -> dict[str, Any]:
    labels: dict[str, int] = {"background": 0}
    for index, (label, value) in enumerate(zip(class_map.names[1:], class_map.values[1:], strict=True), start=1):
        key = label if label not in labels and label != "ignore" else f"{label}_{value}"
        labels[key] = index
    return {"name": name, "channel_names": {"0": CHANNEL_NAME}, "labels": labels, "numTraining": num_training,
            "file_ending": FILE_ENDING, "overwrite_image_reader_writer": "NaturalImage2DIO",
            "description": "2D slices exported by medseg (train+val as training cases, test in imagesTs)"}


def read_export(raw_dataset: str | Path) -> dict[str, Any]:
    """The export record of a raw dataset folder (case ids per role, label values)."""
    path = Path(raw_dataset) / EXPORT_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MedsegError(f"cannot read the export record ({exc.__class__.__name__}); re-run the export", path) from exc
    if not all(isinstance(record.get(key), list) for key in ("train", "val", "test", "label_values")):
        raise MedsegError("export record lacks train/val/test/label_values; re-run the export", path)
    return record


# --- nnU-Net processes ----------------------------------------------------------------------------

def write_splits(raw_dataset: str | Path, preprocessed_root: str | Path) -> Path:
    """``splits_final.json`` whose fold 0 is exactly our train/val split (nnU-Net reads it from the
    preprocessed dataset folder when training starts)."""
    record = read_export(raw_dataset)
    path = Path(preprocessed_root) / Path(raw_dataset).name / "splits_final.json"
    write_json(path, [{"train": record["train"], "val": record["val"]}])
    return path


def nnunet_env(work_dir: str | Path, processes: int | None = None) -> dict[str, str]:
    """The environment of an nnU-Net child process: this one's plus nnU-Net's paths and the project's
    trainers; ``processes`` sets nnU-Net's worker counts (None: nnU-Net's defaults)."""
    dirs = nnunet_dirs(work_dir)
    env = {**os.environ, "nnUNet_raw": str(dirs.raw), "nnUNet_preprocessed": str(dirs.preprocessed),
           "nnUNet_results": str(dirs.results)}
    env[EXT_TRAINER] = os.pathsep.join(p for p in (str(TRAINERS_DIR), os.environ.get(EXT_TRAINER)) if p)
    if processes is not None:  # 0: no data-augmentation workers (nnU-Net's pools still need one process)
        env["nnUNet_def_n_proc"], env["nnUNet_n_proc_DA"] = str(max(1, processes)), str(max(0, processes))
    return env


def run_nnunet(program: str, args: Sequence[str], work_dir: str | Path, processes: int | None = None,
               where: str | Path | None = None, extra_env: dict[str, str] | None = None) -> None:
    """Run one of nnU-Net's console programs with this interpreter; its stderr is passed through, and
    a failure raises a one-line error with its last stderr line."""
    if importlib.util.find_spec("nnunetv2") is None:
        raise MedsegError(f"{program}: nnunetv2 is not installed in {sys.executable}'s environment")
    module, function = _ENTRY_POINTS[program].split(":")
    code = f"import sys; sys.argv[0] = {program!r}; from {module} import {function}; sys.exit({function}())"
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with subprocess.Popen([sys.executable, "-c", code, *args], cwd=work_dir, stderr=subprocess.PIPE,
                          env={**nnunet_env(work_dir, processes), **(extra_env or {})}) as process:
        last = _pass_through(process.stderr)
    if process.returncode != 0:
        raise MedsegError(f"{program} failed (exit {process.returncode}): {last or 'no error message'}",
                          where or work_dir)


def _pass_through(stream: Any) -> str:
    """Copy a child's stderr to ours as it comes; return its last non-empty line."""
    decoder, tail = codecs.getincrementaldecoder("utf-8")(errors="replace"), ""
    while chunk := stream.read1(65536):
        text = decoder.decode(chunk)
        sys.stderr.write(text)
        tail = (tail + text)[-8192:]
    sys.stderr.flush()
    lines = [line.strip() for line in re.split(r"[\r\n]+", tail) if line.strip()]
    return lines[-1] if lines else ""


def plan_and_preprocess(work_dir: str | Path, dataset_id: int, processes: int | None = None,
                        verify: bool = True) -> Path:
    """nnU-Net's fingerprint, experiment planning and ``2d`` preprocessing of an exported dataset
    (``verify``: its dataset integrity check first), then our ``splits_final.json``; returns the
    preprocessed dataset folder."""
    dirs = nnunet_dirs(work_dir)
    raw_dataset = find_dataset(dirs.raw, dataset_id, "; run export_dataset first")
    read_export(raw_dataset)
    args = ["-d", str(dataset_id), "-c", CONFIGURATION, "--clean", "--no_pbar"]
    if processes is not None:
        args += ["-np", str(max(1, processes)), "-npfp", str(max(1, processes))]
    planner_processes = None if processes is None else max(1, processes)  # its planner sets torch threads to it
    run_nnunet("nnUNetv2_plan_and_preprocess", [*args, *(["--verify_dataset_integrity"] if verify else [])],
               work_dir, planner_processes, where=raw_dataset)
    preprocessed = dirs.preprocessed / raw_dataset.name
    if not (preprocessed / f"{PLANS}.json").is_file():
        raise MedsegError(f"nnU-Net preprocessing wrote no {PLANS}.json", preprocessed)
    write_splits(raw_dataset, dirs.preprocessed)
    return preprocessed


def model_folder(work_dir: str | Path, dataset_id: int, trainer: str = DEFAULT_TRAINER) -> Path:
    """The trained model's folder (plans.json, dataset.json, fold_0/): what prediction needs."""
    results = find_dataset(nnunet_dirs(work_dir).results, dataset_id, "; run train first")
    return results / f"{trainer}__{PLANS}__{CONFIGURATION}"


def check_trainer(trainer: str) -> None:
    """Refuse a trainer class that neither nnunetv2 nor the extra trainer folders define (read as text, so
    that a typo fails at once rather than after planning)."""
    import nnunetv2

    folders = [Path(nnunetv2.__file__).parent / "training" / "nnUNetTrainer", TRAINERS_DIR,
               *(Path(p) for p in os.environ.get(EXT_TRAINER, "").split(os.pathsep) if p)]
    pattern = re.compile(rf"^class {re.escape(trainer)}\(", re.MULTILINE)
    for folder in folders:
        for path in folder.rglob("*.py"):
            if pattern.search(path.read_text(encoding="utf-8", errors="replace")):
                return
    raise MedsegError(f"nnU-Net trainer {trainer!r} is not defined in nnunetv2 or {TRAINERS_DIR.name}/ "
                      f"(e.g. {DEFAULT_TRAINER}, {DEMO_TRAINER})", "baseline.nnunet.trainer")


def train(work_dir: str | Path, dataset_id: int, trainer: str = DEFAULT_TRAINER, device: str = "cpu",
          continue_training: bool = False, processes: int | None = None) -> Path:
    """Train fold 0 (our train/val split) of the ``2d`` configuration with nnU-Net's trainer
    ``trainer`` on ``device`` (cpu, cuda, cuda:N or mps); ``continue_training`` resumes from the last
    checkpoint (nnU-Net's ``--c``). Returns the path of ``checkpoint_final.pth``."""
    device, visible = _device_and_env(device)
    dirs = nnunet_dirs(work_dir)
    preprocessed = find_dataset(dirs.preprocessed, dataset_id, "; run plan_and_preprocess first")
    for needed in (f"{PLANS}.json", "splits_final.json"):
        if not (preprocessed / needed).is_file():
            raise MedsegError(f"missing {needed}; run plan_and_preprocess first", preprocessed / needed)
    args = [str(dataset_id), CONFIGURATION, str(FOLD), "-tr", trainer, "-p", PLANS, "-device", device]
    fold_dir = dirs.results / preprocessed.name / f"{trainer}__{PLANS}__{CONFIGURATION}" / f"fold_{FOLD}"
    if not continue_training:  # nnU-Net's --c prefers an older run's final checkpoint to a newer run's latest
        for stale in CHECKPOINTS:
            (fold_dir / stale).unlink(missing_ok=True)
    run_nnunet("nnUNetv2_train", [*args, *(["--c"] if continue_training else [])], work_dir, processes,
               where=fold_dir, extra_env=visible)
    checkpoint = fold_dir / "checkpoint_final.pth"
    if not checkpoint.is_file():
        raise MedsegError("nnU-Net training ended without checkpoint_final.pth", checkpoint)
    return checkpoint


def predict(work_dir: str | Path, dataset_id: int, trainer: str = DEFAULT_TRAINER, device: str = "cpu",
            out_dir: str | Path | None = None, mirroring: bool = True, processes: int | None = None) -> Path:
    """Segment the exported test slices (``imagesTs``) with the trained fold 0 and nnU-Net's predictor
    (``mirroring``: its test-time augmentation); returns the folder of predicted PNGs."""
    device, visible = _device_and_env(device)
    dirs = nnunet_dirs(work_dir)
    raw_dataset = find_dataset(dirs.raw, dataset_id, "; run export_dataset first")
    if not read_export(raw_dataset)["test"]:
        raise MedsegError("the export holds no test slices to predict", raw_dataset / "imagesTs")
    checkpoint = model_folder(work_dir, dataset_id, trainer) / f"fold_{FOLD}" / "checkpoint_final.pth"
    if not checkpoint.is_file():
        raise MedsegError("no trained model; run train first", checkpoint)
    out = Path(out_dir) if out_dir is not None else Path(work_dir) / "predictions" / raw_dataset.name / trainer
    args = ["-i", str(raw_dataset / "imagesTs"), "-o", str(out.resolve()), "-d", str(dataset_id),
            "-c", CONFIGURATION, "-f", str(FOLD), "-tr", trainer, "-p", PLANS, "-chk", "checkpoint_final.pth",
            "-device", device, "--disable_progress_bar"]
    if processes is not None:  # 0: preprocess and export in this process (nnU-Net's sequential mode)
        args += ["-npp", str(max(0, processes)), "-nps", str(max(0, processes))]
    run_nnunet("nnUNetv2_predict", [*args, *([] if mirroring else ["--disable_tta"])], work_dir, processes,
               where=out, extra_env=visible)
    return out


def _device_and_env(device: str) -> tuple[str, dict[str, str]]:
    """nnU-Net's ``-device`` (cpu, cuda, mps) and, for ``cuda:N``, the child's CUDA_VISIBLE_DEVICES."""
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise MedsegError(f"nnU-Net device must be one of {list(DEVICES)} or cuda:N, got {device!r}")
    return kind, ({"CUDA_VISIBLE_DEVICES": index} if index else {})


def import_predictions(pred_dir: str | Path, raw_dataset: str | Path) -> np.ndarray:
    """The predicted masks (N, S, S) uint8 in our test-slice order (the manifest's test rows, as the
    export recorded them), labels mapped back to the stored label values."""
    from PIL import Image

    record = read_export(raw_dataset)
    values = np.asarray(record["label_values"], dtype=np.uint8)
    size = int(record.get("image_size", 0))
    masks = np.zeros((len(record["test"]), size, size), dtype=np.uint8)
    for index, case in enumerate(record["test"]):
        path = Path(pred_dir) / f"{case}{FILE_ENDING}"
        try:
            with Image.open(path) as image:
                predicted = np.asarray(image)
        except (OSError, ValueError) as exc:
            raise MedsegError(f"cannot read the nnU-Net prediction ({exc.__class__.__name__})", path) from exc
        if predicted.shape != (size, size) or predicted.max(initial=0) >= len(values):
            raise MedsegError(f"prediction of shape {predicted.shape} with labels up to {predicted.max(initial=0)}; "
                              f"expected ({size}, {size}) and labels < {len(values)}", path)
        masks[index] = values[predicted]
    return masks
