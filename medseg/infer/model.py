"""The exported model ``medseg predict`` runs: loaded weights-only, its output labels and what it is.

Automated models write each output class as the label value the dataset's label map gives it (the
model records it: ``ClassMap.to_metadata``), so a model trained on a subset of a dataset's classes writes
the dataset's own numbers. Prompted models write each prompted object with its prompt's label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from medseg.data.classes import ClassMap
from medseg.errors import MedsegError
from medseg.provenance import synthetic_data
from medseg.train.fingerprint import file_sha256

if TYPE_CHECKING:
    from medseg.infer.onnx_runtime import OnnxSegmenter

IDENTITY_KEYS = ("strategy", "mode", "init", "profile", "dataset", "epoch", "val_dice", "random_init",
                 "synthetic_data", "zeroshot")


@dataclass(frozen=True)
class PredictModel:
    """A loaded model with what predicting needs to know about it: a PyTorch module, or an ONNX export's graphs
    answering the same calls through onnxruntime (``backend``; ``origin``: the model.pt it was exported from)."""

    module: nn.Module | OnnxSegmenter
    path: Path
    metadata: dict[str, Any]
    values: tuple[int, ...]  # automated: the label value written for each output class
    names: dict[int, str]  # label value -> class name
    backend: str = "torch"
    origin: dict[str, Any] | None = None

    @property
    def mode(self) -> str:
        return str(self.module.mode)

    @property
    def candidates(self) -> bool:
        return bool(getattr(self.module, "candidates", False))

    @property
    def image_size(self) -> int:
        return int(self.module.image_size)

    def name_of(self, value: int) -> str:
        """The class name of a written label value (prompted objects without a recorded name: ``object <v>``)."""
        return self.names.get(value, f"object {value}" if self.mode != "automated" else f"class {value}")


def load_model(path: Path) -> PredictModel:
    """Load an exported ``model.pt`` (weights-only; every field checked) with its labels and names, or an
    ``export_onnx`` folder (``medseg.infer.onnx_runtime``)."""
    from medseg.infer.onnx_runtime import is_export_folder, load_onnx_model
    from medseg.models.checkpoints import load_exported

    if is_export_folder(path):
        return load_onnx_model(path)
    module, metadata = load_exported(path)
    class_map = ClassMap.from_metadata(metadata)
    outputs = int(module.num_classes)
    if module.mode != "automated":
        names = dict(zip(class_map.values, class_map.names, strict=True)) if class_map else {0: "background"}
        return PredictModel(module, path, metadata, (0, 1), names)
    if class_map is not None and class_map.num_classes == outputs:
        return PredictModel(module, path, metadata, class_map.values, dict(zip(class_map.values, class_map.names,
                                                                                  strict=True)))
    recorded = metadata.get("classes")
    names = [str(n) for n in recorded] if isinstance(recorded, list) and len(recorded) == outputs else [
        "background", *(f"class {i}" for i in range(1, outputs))]
    return PredictModel(module, path, metadata, tuple(range(outputs)), dict(enumerate(names)))


def model_device(model: PredictModel, device: str) -> torch.device:
    """Where the model runs: ``device`` resolved for a PyTorch module; an ONNX export runs on onnxruntime's
    CPU provider, so ``device`` may only say ``cpu`` or ``auto``."""
    from medseg.train.runtime import resolve_device

    if model.backend == "torch":
        return resolve_device(device, key="--device")
    if device not in ("auto", "cpu"):
        raise MedsegError(f"--device {device}: an ONNX export runs on onnxruntime's CPU provider; give --device cpu "
                          "(or none), or use the model.pt it was exported from", model.path)
    return torch.device("cpu")


def value_table(model: PredictModel) -> np.ndarray:
    """Output class index -> written label value (automated models)."""
    return np.asarray(model.values, dtype=np.uint8)


def identity(model: PredictModel) -> dict[str, Any]:
    """Which model this is: its recorded run (strategy, mode, init, dataset...), whether it is random init or
    trained on synthetic data (``None``: not recorded), the file and its SHA-256, the backend running it (and
    for an ONNX export, the model.pt it came from)."""
    recorded = {key: model.metadata.get(key) for key in IDENTITY_KEYS}
    recorded["mode"] = model.mode
    recorded["strategy"] = recorded["strategy"] or ("original SAM" if recorded["zeroshot"] else None)
    recorded["synthetic_data"] = synthetic_data(recorded)
    return {**recorded, "backbone": getattr(model.module, "backbone", None), "image_size": model.image_size,
            "path": str(model.path), "sha256": file_sha256(model.path), "backend": model.backend,
            **({"exported_from": model.origin} if model.origin is not None else {})}


def description(facts: dict[str, Any]) -> str:
    """One line saying what produced a mask, for file headers and series descriptions."""
    trained = f"trained on {facts['dataset']}" if facts.get("dataset") else "not fine-tuned"
    flags = [text for key, text in (("random_init", "RANDOM-INIT WEIGHTS"), ("synthetic_data", "SYNTHETIC DATA"))
             if facts.get(key)]
    unknown = [key for key in ("random_init", "synthetic_data") if facts.get(key) is None and facts.get("dataset")]
    if unknown:
        flags.append(f"{' and '.join(k.replace('_', ' ') for k in unknown)} not recorded")
    init = facts.get("init") or "sam"
    text = f"medseg {facts.get('strategy') or 'model'} ({facts['mode']}, init {init}) {trained}"
    return text + (f"; {', '.join(flags)}" if flags else "")


def short_description(facts: dict[str, Any]) -> str:
    """The description in a few words, flags first so that a length-limited field keeps them (DICOM, NIfTI)."""
    flags = [text for key, text in (("random_init", "RANDOM-INIT"), ("synthetic_data", "SYNTHETIC")) if facts.get(key)]
    trained = facts.get("dataset") or "not fine-tuned"
    return " ".join([*flags, "medseg", str(facts.get("strategy") or "model"), facts["mode"], trained])


def warnings_for(facts: dict[str, Any]) -> list[str]:
    """What a user must know before trusting the masks."""
    notes = []
    if facts.get("random_init"):
        notes.append("the model's weights trace back to a random initialisation: its masks mean nothing clinically")
    if facts.get("synthetic_data"):
        notes.append("the model was trained on synthetic data (the phantom), not on patient data")
    return notes
