"""``medseg export_onnx``: an exported model.pt as ONNX graphs, checked against PyTorch with onnxruntime.

Automated models (SAM strategies, Adapter and LoRA included; UNet; SwinUNETR) become ``model.onnx``
(images -> class logits, free batch axis). Point/box models become ``encoder.onnx`` (images -> image
embeddings, free batch axis) and ``decoder.onnx`` (one image's embeddings and one prompt -> logits, plus
predicted IoU for original SAM's candidates). The graphs are traced by torch.onnx's dynamo exporter
(``torch.export``): the TorchScript exporter (``dynamo=False``) traces the batch size into the graphs, which
then give wrong ViT-T logits (off by up to 0.33) or fail to run (LoRA) at other batch sizes. nnU-Net models
segment through nnU-Net's own predictor (preprocessing, sliding window, mirroring) and are refused.

Before anything is written, onnxruntime and PyTorch run on the same seeded inputs (``export_onnx.check_batch``
images, uniform 0-255, as one batch and the first alone; random prompts inside the image); the export is
refused (exit 2) when any output differs by more than ``export_onnx.tolerance``. ``onnx.json`` records the
source model's identity (random-init and synthetic-data flags included), its metadata (recorded protocol,
classes), labels, source SHA-256, the opset, each graph's file, SHA-256 and input/output names, and the check.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg import __version__
from medseg.errors import MedsegError
from medseg.infer.model import PredictModel, identity, load_model
from medseg.infer.onnx_graphs import DecoderGraph, EncoderGraph, exportable
from medseg.infer.onnx_runtime import FORMAT, MANIFEST, backend_name, graph_names, is_export_folder, run_graph, session

SINGLE_FILE_BYTES = 1_800_000_000  # larger graphs keep their weights in <name>.onnx.data (protobuf's 2 GB limit)
MAX_BATCH = 4096
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch.onnx colours its messages


@dataclass(frozen=True)
class ExportSettings:
    """``export_onnx`` in params.yaml, and the seed of the check's inputs (params' ``seed``)."""

    opset: int
    tolerance: float
    check_batch: int
    seed: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ExportSettings:
        section = params["export_onnx"]
        return cls(int(section["opset"]), float(section["tolerance"]), int(section["check_batch"]),
                   int(params["seed"]))


@dataclass(frozen=True)
class Graph:
    """One graph to export: the module tracing it, example inputs, names, and whether the batch axis is free."""

    name: str
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    free_batch: bool


def _images(model: PredictModel, count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = model.image_size
    return torch.rand(count, 3, size, size, generator=generator) * 255


def _prompts(model: PredictModel, count: int, seed: int) -> torch.Tensor:
    """Random prompts inside the image: points (x, y), or boxes (x0, y0, x1, y1) with low <= high."""
    generator = torch.Generator().manual_seed(seed + 1)
    corners = torch.rand(count, 2, 2, generator=generator) * (model.image_size - 1)
    if model.mode == "point":
        return corners[:, 0]
    return torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)


def graphs_for(model: PredictModel, settings: ExportSettings) -> list[Graph]:
    """The graphs of the model (refusing what cannot be exported), with seeded example inputs."""
    module = model.module
    if getattr(module, "backbone", None) == "nnunet":
        raise MedsegError("nnU-Net models segment with nnU-Net's own predictor (its preprocessing, sliding window "
                          "and mirroring), which is not one network: export_onnx does not export them; predict "
                          "with model.pt", model.path)
    names = graph_names(model.mode, model.candidates)
    images = _images(model, settings.check_batch, settings.seed)
    if model.mode == "automated":
        return [Graph("model", module.eval(), (images,), *names["model"], True)]
    with torch.no_grad():
        embeddings = module.embed(images[:1])
    prompts = _prompts(model, 1, settings.seed)
    return [Graph("encoder", EncoderGraph(module).eval(), (images,), *names["encoder"], True),
            Graph("decoder", DecoderGraph(module).eval(), (embeddings, prompts), *names["decoder"], False)]


def _weight_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def export_graph(graph: Graph, folder: Path, opset: int, source: Path) -> list[str]:
    """Write ``<name>.onnx`` (and ``.onnx.data`` for a large graph) into ``folder``; the files written."""
    from medseg.models.checkpoints import first_line

    dynamic = None
    if graph.free_batch:
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        dynamic = ({0: batch}, *[None] * (len(graph.inputs) - 1))  # by position: modules name their arguments
    path = folder / f"{graph.name}.onnx"
    try:
        with torch.no_grad(), exportable(graph.module), contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(graph.module, graph.inputs, dynamo=True, opset_version=opset,
                                        input_names=list(graph.input_names), output_names=list(graph.output_names),
                                        dynamic_shapes=dynamic, verbose=False)
            program.save(str(path), external_data=_weight_bytes(graph.module) > SINGLE_FILE_BYTES)
    except Exception as exc:  # torch.export / onnxscript raise many kinds; the root cause's first line says which
        while exc.__cause__ is not None:
            exc = exc.__cause__
        reason = ANSI.sub("", first_line(exc))
        raise MedsegError(f"torch.onnx cannot export the {graph.name} graph ({reason})", source) from exc
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f"{graph.name}.onnx"))


def _difference(reference: torch.Tensor, got: np.ndarray) -> float:
    if tuple(reference.shape) != got.shape:
        return float("inf")
    return float(np.abs(reference.detach().numpy().astype(np.float64) - got).max(initial=0.0))


def check(model: PredictModel, graphs: list[Graph], folder: Path, settings: ExportSettings) -> dict[str, Any]:
    """onnxruntime against PyTorch on seeded inputs: the largest absolute difference of each output."""
    module = model.module
    images = _images(model, settings.check_batch, settings.seed)
    differences: dict[str, float] = {}
    with torch.no_grad():
        if model.mode == "automated":
            graph = session(folder / "model.onnx")
            for batch in (images, images[:1]):  # two batch sizes: the axis must really be free
                got = run_graph(graph, {"images": batch.numpy()}, folder / "model.onnx")[0]
                differences["logits"] = max(differences.get("logits", 0.0), _difference(module(batch), got))
        else:
            decoder = next(graph for graph in graphs if graph.name == "decoder")
            _check_prompted(model, decoder.output_names, folder, images, settings, differences)
    worst = max(differences.values())
    inputs = (f"{settings.check_batch} seeded images (uniform 0-255, seed {settings.seed}) as one batch, and the "
              "first alone" + ("" if model.mode == "automated" else f"; one random {model.mode} prompt each"))
    return {"inputs": inputs, "max_abs_difference": differences, "worst": worst, "tolerance": settings.tolerance,
            "passed": worst <= settings.tolerance, "runtime": backend_name(), "torch": torch.__version__}


def _check_prompted(model: PredictModel, outputs: tuple[str, ...], folder: Path, images: torch.Tensor,
                    settings: ExportSettings, differences: dict[str, float]) -> None:
    """Encoder alone, then encoder + decoder end to end (as predict runs them) against embed + decode;
    ``outputs``: the decoder's output names."""
    module = model.module
    encoder, decoder = session(folder / "encoder.onnx"), session(folder / "decoder.onnx")
    reference = module.embed(images)
    embeddings = run_graph(encoder, {"images": images.numpy()}, folder / "encoder.onnx")[0]
    alone = run_graph(encoder, {"images": images[:1].numpy()}, folder / "encoder.onnx")[0]
    differences["embeddings"] = max(_difference(reference, embeddings), _difference(reference[:1], alone))
    prompts = _prompts(model, len(images), settings.seed)
    for index in range(len(images)):
        row = slice(index, index + 1)
        got_all = run_graph(decoder, {"embeddings": embeddings[row], "prompts": prompts[row].numpy()},
                            folder / "decoder.onnx")
        expected = (module.decode_all(reference[row], prompts[row]) if model.candidates
                    else (module.decode(reference[row], prompts[row]),))
        for name, want, got in zip(outputs, expected, got_all, strict=True):
            differences[name] = max(differences.get(name, 0.0), _difference(want, got))


def _plain(value: Any) -> Any:
    """Metadata as JSON data (tuples as lists; anything else JSON cannot hold as its text)."""
    return json.loads(json.dumps(value, default=str))


def manifest(model: PredictModel, source: Path, graphs: list[Graph], files: dict[str, list[str]],
             result: dict[str, Any], settings: ExportSettings, folder: Path) -> dict[str, Any]:
    from medseg.provenance import git_revision
    from medseg.train.fingerprint import file_sha256

    facts = identity(model)
    return {
        "format": FORMAT, "medseg_version": __version__, **git_revision(),
        "source": {"path": str(source), "sha256": facts["sha256"], "identity": _plain(facts)},
        "model": {"mode": model.mode, "candidates": model.candidates, "backbone": facts["backbone"],
                  "image_size": model.image_size, "num_classes": int(model.module.num_classes)},
        "metadata": _plain(model.metadata),
        "labels": {"values": list(model.values), "names": {str(v): n for v, n in sorted(model.names.items())}},
        "opset": settings.opset, "exporter": f"torch.onnx (dynamo) {torch.__version__}",
        "graphs": {graph.name: {"file": f"{graph.name}.onnx", "inputs": list(graph.input_names),
                                "outputs": list(graph.output_names), "batch": "free" if graph.free_batch else 1,
                                "sha256": {f: file_sha256(folder / f) for f in files[graph.name]}}
                   for graph in graphs},
        "check": result,
    }


def export_onnx(source: Path, out: Path, settings: ExportSettings) -> dict[str, Any]:
    """Export ``source`` (a model.pt) into the folder ``out``; returns ``onnx.json``. Nothing is written unless
    the check passes."""
    from medseg.outputs import output_dir

    if is_export_folder(source):
        raise MedsegError("already an ONNX export; give the model.pt it came from", source)
    with output_dir("export_onnx", out, [source]) as tmp:
        model = load_model(source)
        graphs = graphs_for(model, settings)
        files = {graph.name: export_graph(graph, tmp, settings.opset, source) for graph in graphs}
        result = check(model, graphs, tmp, settings)
        if not result["passed"]:
            shown = ", ".join(f"{k} {v:.3g}" for k, v in result["max_abs_difference"].items())
            raise MedsegError(f"onnxruntime and PyTorch disagree beyond export_onnx.tolerance "
                              f"{settings.tolerance:g} (largest absolute differences: {shown}); nothing written",
                              source)
        record = manifest(model, source, graphs, files, result, settings, tmp)
        (tmp / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
    return record
