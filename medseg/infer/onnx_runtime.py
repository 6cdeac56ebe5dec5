"""An ``medseg export_onnx`` folder as a model ``medseg predict`` runs through onnxruntime.

The folder holds the graphs (``model.onnx``, or ``encoder.onnx`` and ``decoder.onnx`` for point/box
models) and ``onnx.json``: the source model's identity, metadata (its recorded protocol and classes), the
graphs' files, SHA-256s and input/output names, and the export check. Every field is checked and every
graph file must match its recorded SHA-256 before onnxruntime opens it. ``OnnxSegmenter`` then answers the
engine's calls (``module(images)``, ``embed``, ``decode``, ``decode_all``) like the PyTorch module, so the
protocol replay, the engine and the writers are the same code for both backends.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import MedsegError
from medseg.models.checkpoints import IMAGE_SIZE_RANGE, MAX_CLASSES, first_line
from medseg.models.segmenter import MODES

FORMAT = "medseg.onnx/1"
MANIFEST = "onnx.json"
GRAPHS = {"automated": {"model": (("images",), ("logits",))},
          "prompted": {"encoder": (("images",), ("embeddings",)), "decoder": (("embeddings", "prompts"), ("logits",))}}
CANDIDATE_OUTPUTS = ("logits", "iou")  # original SAM's decoder: three candidates and their predicted IoU
SHA256 = re.compile(r"[0-9a-f]{64}")


def graph_names(mode: str, candidates: bool) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """The graphs of a model of ``mode``: name -> (input names, output names)."""
    graphs = dict(GRAPHS["automated" if mode == "automated" else "prompted"])
    if candidates:
        graphs["decoder"] = (graphs["decoder"][0], CANDIDATE_OUTPUTS)
    return graphs


def is_export_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``medseg export_onnx`` (it holds ``onnx.json``)."""
    return path.is_dir() and (path / MANIFEST).is_file()


def _need(record: dict[str, Any], key: str, valid: Any, expected: str, path: Path) -> Any:
    """``record[key]`` when ``valid``; ``key`` is the field's dotted path in the manifest (``labels.values``)."""
    value = record.get(key.rsplit(".", 1)[-1]) if isinstance(record, dict) else None
    if not valid(value):
        raise MedsegError(f"field '{key}' must be {expected}, got {value!r:.60}", path)
    return value


def _whole(low: int, high: int) -> Any:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def read_manifest(folder: Path) -> dict[str, Any]:
    """``onnx.json`` of an export folder, every field checked (one line naming the file and field otherwise)."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedsegError(f"not valid JSON ({str(exc).splitlines()[0][:120]})", path) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MedsegError(f"not a {FORMAT} manifest (field 'format')", path)
    model = _need(manifest, "model", lambda v: isinstance(v, dict), "an object", path)
    mode = _need(model, "model.mode", lambda v: v in MODES, f"one of {list(MODES)}", path)
    candidates = _need(model, "model.candidates", lambda v: v is False or (v is True and mode != "automated"),
                       "false (true only with point/box prompts)", path)
    _need(model, "model.image_size", lambda v: _whole(*IMAGE_SIZE_RANGE)(v) and v % 16 == 0,
          f"a multiple of 16 in {IMAGE_SIZE_RANGE[0]}..{IMAGE_SIZE_RANGE[1]}", path)
    classes = _need(model, "model.num_classes", _whole(2, MAX_CLASSES) if mode == "automated" else lambda v: v == 2,
                    f"2..{MAX_CLASSES} (2 for point/box models)", path)
    _need(model, "model.backbone", lambda v: isinstance(v, str) and v, "a name", path)
    _need(manifest, "metadata", lambda v: isinstance(v, dict), "an object", path)
    _need(manifest, "source", lambda v: isinstance(v, dict), "an object", path)
    labels = _need(manifest, "labels", lambda v: isinstance(v, dict), "an object", path)
    _need(labels, "labels.values", lambda v: isinstance(v, list) and len(v) == (classes if mode == "automated" else 2)
          and all(_whole(0, 255)(x) for x in v) and len(set(v)) == len(v),
          "distinct label values 0..255, one per output class", path)
    _need(labels, "labels.names", lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and k.isdigit() and isinstance(n, str) for k, n in v.items()), "value -> name", path)
    check = _need(manifest, "check", lambda v: isinstance(v, dict), "an object", path)
    _need(check, "check.passed", lambda v: v is True, "true (the export passed its check)", path)
    _check_graphs(manifest, graph_names(mode, candidates), path)
    return manifest


def _check_graphs(manifest: dict[str, Any], expected: dict[str, tuple[tuple[str, ...], ...]], path: Path) -> None:
    graphs = _need(manifest, "graphs", lambda v: isinstance(v, dict) and set(v) == set(expected),
                   f"an object with {sorted(expected)}", path)
    for name, (inputs, outputs) in expected.items():
        graph = graphs[name]
        where = f"graphs.{name}"
        if not isinstance(graph, dict):
            raise MedsegError(f"field '{where}' must be an object", path)
        if graph.get("file") != f"{name}.onnx" or graph.get("inputs") != list(inputs) or \
                graph.get("outputs") != list(outputs):
            raise MedsegError(f"field '{where}' must name {name}.onnx with inputs {list(inputs)} and outputs "
                              f"{list(outputs)}", path)
        files = (f"{name}.onnx", f"{name}.onnx.data")
        digests = graph.get("sha256")
        if not isinstance(digests, dict) or files[0] not in digests or not all(
                k in files and isinstance(h, str) and SHA256.fullmatch(h) for k, h in digests.items()):
            raise MedsegError(f"field '{where}.sha256' must map {files[0]} (and {files[1]}) to SHA-256s", path)


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Every graph file present and equal (SHA-256) to what the export wrote."""
    from medseg.train.fingerprint import file_sha256

    for graph in manifest["graphs"].values():
        for name, digest in graph["sha256"].items():
            if not (folder / name).is_file():
                raise MedsegError(f"{name} is missing (onnx.json lists it)", folder)
            if file_sha256(folder / name) != digest:
                raise MedsegError("does not match the SHA-256 onnx.json records for it (modified or corrupt); "
                                  "export the model again", folder / name)


def session(path: Path) -> Any:
    """An onnxruntime CPU session of a graph file, with as many threads as PyTorch uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: the CLI reports them itself
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException
        raise MedsegError(f"onnxruntime cannot load it ({first_line(exc)})", path) from exc


def run_graph(runner: Any, feed: dict[str, np.ndarray], path: Path) -> list[np.ndarray]:
    """A session's outputs for ``feed``; onnxruntime's failure (e.g. a shape the graph cannot take) as one line."""
    try:
        return runner.run(None, feed)
    except Exception as exc:  # onnxruntime's Fail / InvalidArgument / RuntimeException
        shapes = {name: list(value.shape) for name, value in feed.items()}
        raise MedsegError(f"onnxruntime cannot run it on inputs of shapes {shapes} ({first_line(exc)})", path) from exc


def backend_name() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__} (CPUExecutionProvider)"


class OnnxSegmenter:
    """The exported graphs answering the engine's calls as the PyTorch module does (torch tensors in and out)."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        model = manifest["model"]
        self.mode, self.candidates, self.backbone = model["mode"], model["candidates"], model["backbone"]
        self.image_size, self.num_classes = model["image_size"], model["num_classes"]
        self.sessions: dict[str, Any] = {}
        self.paths = {name: folder / graph["file"] for name, graph in manifest["graphs"].items()}
        for name, graph in manifest["graphs"].items():
            runner = session(folder / graph["file"])
            found = ([i.name for i in runner.get_inputs()], [o.name for o in runner.get_outputs()])
            if found != (graph["inputs"], graph["outputs"]):
                raise MedsegError(f"the graph's inputs and outputs {list(found)} are not the recorded "
                                  f"{[graph['inputs'], graph['outputs']]}", folder / graph["file"])
            self.sessions[name] = runner

    def to(self, device: Any) -> OnnxSegmenter:
        return self  # onnxruntime's CPU provider: nothing to move

    def _run(self, graph: str, **inputs: torch.Tensor) -> list[torch.Tensor]:
        feed = {name: np.ascontiguousarray(value.detach().cpu().numpy(), dtype=np.float32)
                for name, value in inputs.items()}
        return [torch.from_numpy(out) for out in run_graph(self.sessions[graph], feed, self.paths[graph])]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self._run("model", images=images)[0]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self._run("encoder", images=images)[0]

    def _decode_rows(self, embeddings: torch.Tensor, prompts: torch.Tensor) -> list[torch.Tensor]:
        """The decoder per prompt (one image's embeddings each), each output batched back."""
        rows = [self._run("decoder", embeddings=embeddings[i : i + 1], prompts=prompts[i : i + 1])
                for i in range(len(embeddings))]
        return [torch.cat(outputs) for outputs in zip(*rows, strict=True)]

    def decode_all(self, embeddings: torch.Tensor, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate logits and predicted IoU."""
        logits, iou = self._decode_rows(embeddings, prompts)
        return logits, iou

    def decode(self, embeddings: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        return self._decode_rows(embeddings, prompts)[0]


def load_onnx_model(folder: Path) -> Any:
    """A ``PredictModel`` whose module is the export folder's graphs run by onnxruntime."""
    from medseg.infer.model import PredictModel

    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    labels, source = manifest["labels"], manifest["source"]
    return PredictModel(OnnxSegmenter(folder, manifest), folder / MANIFEST, dict(manifest["metadata"]),
                        tuple(labels["values"]), {int(k): v for k, v in labels["names"].items()},
                        backend=backend_name(), origin={"path": source.get("path"), "sha256": source.get("sha256")})
