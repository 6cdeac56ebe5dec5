"""``medseg predict``: run an exported model on new images and write masks in their own geometry.

The output is one folder (built in a temporary sibling and renamed into place only when every input has
been segmented, like every step's output): a mask per input (``medseg.infer.writers``, DICOM-SEG for a
DICOM series) and ``predict.json``, which says which model produced them (strategy, mode, init, the dataset
it was trained on, random-init and synthetic-data flags, file SHA-256), the backend that ran it (PyTorch,
or onnxruntime for an ``export_onnx`` folder), the protocol replayed and where it came from, the prompts'
source, and per input its output, shape, slices, prompts and labels present.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg import __version__
from medseg.data.protocol import Protocol
from medseg.errors import MedsegError
from medseg.infer.inputs import KINDS, Scan, Source, find_inputs, read_scan
from medseg.infer.model import (
    PredictModel,
    description,
    identity,
    load_model,
    model_device,
    short_description,
    warnings_for,
)
from medseg.infer.prompts import SlicePrompt
from medseg.infer.replay import ProtocolChoice, back_to_scan, model_slices, resolve_protocol, slice_axis
from medseg.infer.writers import output_name
from medseg.outputs import output_dir

FORMAT = "medseg.predict/1"
SUMMARY_FILE = "predict.json"
PromptPlan = Callable[[Scan, int], list[SlicePrompt]] | None


@dataclass(frozen=True)
class PredictRequest:
    """What ``medseg predict`` was asked to do."""

    model: Path
    input: Path
    out: Path
    prompts: Path | None = None
    prompt_mask: Path | None = None
    batch_size: int = 8
    device: str = "auto"
    protocol: ProtocolChoice = field(default_factory=ProtocolChoice)


def predict(request: PredictRequest) -> dict[str, Any]:
    """Segment every input of ``request.input`` into ``request.out``; returns the summary (``predict.json``).
    Nothing is written unless every input succeeds."""

    if request.prompts is not None and request.prompt_mask is not None:
        raise MedsegError("give --prompts or --prompt-mask, not both")
    inputs = [request.input, request.model, request.prompts, request.prompt_mask]
    with output_dir("predict", request.out, inputs) as tmp:
        sources = find_inputs(request.input)
        _check_output_names(sources, request.input)
        model = load_model(request.model)
        protocol, protocol_source = resolve_protocol(model.metadata, model.image_size, request.model,
                                                     request.protocol)
        plan = _prompt_plan(request, model, sources, protocol)
        device = model_device(model, request.device)
        facts = identity(model)
        entries = [_predict_one(source, (model, facts, protocol, plan), request.batch_size, device, tmp)
                   for source in sources]
        summary = _summary(request, model, facts, (protocol, protocol_source), entries, str(device))
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _check_output_names(sources: list[Source], where: Path) -> None:
    seen: dict[str, str] = {}
    for source in sources:
        name = output_name(source)
        if name in seen:
            raise MedsegError(f"inputs '{seen[name]}' and '{source.name}' would both write {name}; predict them "
                              "separately", where)
        seen[name] = source.name


def _prompt_plan(request: PredictRequest, model: PredictModel, sources: list[Source], protocol: Protocol
                 ) -> PromptPlan:
    """How each scan gets its prompts (None: automated); prompt files are checked here, before any scan."""
    from medseg.infer import prompt_masks, prompts

    if model.mode == "automated":
        given = request.prompts or request.prompt_mask
        if given is not None:
            raise MedsegError(f"the model is automated and takes no prompts; drop --prompts/--prompt-mask ({given})")
        return None
    size = model.image_size
    if request.prompts is not None:
        by_input = prompts.read_prompts(request.prompts, model.mode, sources)
        path = request.prompts
        return lambda scan, axis: prompts.slice_prompts(by_input[scan.source.name], scan, axis, size, path)
    if request.prompt_mask is None:
        raise MedsegError(f"the model takes {model.mode} prompts: give --prompts PROMPTS.json or --prompt-mask MASK")
    single = request.input.is_file() or sources[0].kind == "dicom"
    files = prompt_masks.prompt_mask_files(request.prompt_mask, sources, single)

    def from_mask(scan: Scan, axis: int) -> list[SlicePrompt]:
        from medseg.data.slices import mask_slices

        path = files[scan.source.name]
        labels = prompt_masks.read_prompt_mask(path, scan, protocol.max_voxels)
        derived = prompts.mask_prompts(mask_slices(labels, size, axis), model.mode)
        if not derived:
            raise MedsegError(f"prompt mask holds no object to prompt (all background at the model's "
                              f"{size}x{size} slices) for input '{scan.source.name}'", path)
        return derived

    return from_mask


def _predict_one(source: Source, context: tuple[PredictModel, dict[str, Any], Protocol, PromptPlan], batch_size: int,
                 device: Any, folder: Path) -> dict[str, Any]:
    """Read, slice, segment and write one input; its entry in the summary."""
    from medseg.infer.engine import segment

    model, facts, protocol, plan = context
    started = time.perf_counter()
    scan = read_scan(source, protocol.max_voxels)
    axis = slice_axis(scan, protocol)
    slices = model_slices(scan, protocol)
    slice_prompts = plan(scan, axis) if plan is not None else None
    labels = back_to_scan(segment(model, slices, slice_prompts, batch_size, device, f"predict {source.name}"),
                          scan, axis)
    present = [int(v) for v in np.unique(labels) if v]
    _write(labels, scan, folder / output_name(source), model, facts, slice_prompts)
    return {"input": source.name, "kind": KINDS[source.kind], "output": output_name(source),
            "shape": [int(n) for n in (scan.native if source.kind == "image" else _file_shape(scan))],
            "slices": len(slices), "prompts": None if slice_prompts is None else len(slice_prompts),
            "labels_present": {str(v): model.name_of(v) for v in present},
            "seconds": round(time.perf_counter() - started, 3)}


def _file_shape(scan: Scan) -> tuple[int, ...]:
    if scan.source.kind == "nifti":
        return tuple(scan.native.shape)
    if scan.source.kind == "itk":
        return tuple(scan.native.GetSize())
    headers = scan.native.headers
    return (*headers[0].plane.shape, len(headers))  # rows, columns, slice files


def _write(labels: np.ndarray, scan: Scan, path: Path, model: PredictModel, facts: dict[str, Any],
           slice_prompts: list[SlicePrompt] | None) -> None:
    from medseg.infer.dicom_seg import write_dicom_seg
    from medseg.infer.writers import write_mask

    if scan.source.kind != "dicom":
        write_mask(labels, scan, path, description(facts), short_description(facts))
        return
    values = model.values[1:] if slice_prompts is None else sorted({p.label for p in slice_prompts})
    write_dicom_seg(labels, scan, path, [(v, model.name_of(v)) for v in values], facts, short_description(facts))


def _summary(request: PredictRequest, model: PredictModel, facts: dict[str, Any],
             protocol: tuple[Protocol, str], entries: list[dict[str, Any]], device: str) -> dict[str, Any]:
    from medseg.provenance import git_revision

    used = sorted({int(v) for entry in entries for v in entry["labels_present"]})
    labels = model.names if model.mode == "automated" else {v: model.name_of(v) for v in used}
    prompts = ("json" if request.prompts else "mask" if request.prompt_mask else "none")
    return {
        "format": FORMAT, "medseg_version": __version__, **git_revision(),
        "description": description(facts), "warnings": warnings_for(facts), "model": facts,
        "protocol": {**protocol[0].to_record(), "source": protocol[1]},
        "prompts": {"source": prompts, "path": str(request.prompts or request.prompt_mask or "") or None},
        "labels": {str(value): name for value, name in sorted(labels.items())},
        "backend": model.backend, "device": device, "batch_size": request.batch_size, "inputs": str(request.input),
        "outputs": entries,
    }
