"""`medseg export_onnx` and ONNX export folders in `medseg predict`: the graphs match PyTorch within the tolerance
(on inputs the export check did not use), predict writes the masks model.pt writes, tampered or corrupt exports
and exports that fail their check are refused (one line, exit 2, nothing written)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from predict_helpers import MIN_MAX, metadata, shared

from helpers import REPO, peft_config, tiny_params
from medseg.cli import main
from medseg.train.fingerprint import file_sha256

PARAMS = str(REPO / "params.yaml")
TOLERANCE = 1e-3
TIES = 1e-3  # fraction of voxels whose label may differ (near-equal logits of two classes)


def _errors(err: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]+", err) if ": error: " in line]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, list[str]]]:
    """``run_cli("export_onnx", ...)``: the exit code and the error lines a user sees."""
    def run(*argv: str | Path) -> tuple[int, list[str]]:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        return code, _errors(capsys.readouterr().err)
    return run


def _export(model: Path, out: Path, *extra: str) -> Path:
    assert main(["export_onnx", "--model", str(model), "--out", str(out), "--params", PARAMS, *extra]) == 0
    return out


@pytest.fixture(scope="session")
def unet_onnx(unet_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(unet_model, tmp_path_factory.mktemp("unet_onnx") / "export")


@pytest.fixture
def scans(tmp_path: Path) -> dict[str, Path]:
    """A PNG and a small NIfTI volume of noise (both classes of a random-init model appear)."""
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 255, (50, 70), dtype=np.uint8)).save(tmp_path / "image.png")
    data = rng.normal(100, 30, (40, 48, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), tmp_path / "volume.nii.gz")
    return {"png": tmp_path / "image.png", "nifti": tmp_path / "volume.nii.gz"}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "onnx.json").read_text())


def _labels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) if path.suffix == ".png" else np.asarray(nib.load(path).dataobj)


def _same_masks(model: Path, export: Path, source: Path, tmp_path: Path, *extra: str | Path) -> dict:
    """Predict ``source`` with model.pt and with the export; the masks agree (but for ties); the export's summary."""
    summaries = {}
    for name, given in (("torch", model), ("onnx", export)):
        out = tmp_path / f"{name}-{source.name}"
        assert main(["predict", "--model", str(given), "--input", str(source), "--out", str(out),
                     *(str(e) for e in extra)]) == 0
        summaries[name] = json.loads((out / "predict.json").read_text())
    mask = summaries["torch"]["outputs"][0]["output"]
    ours, theirs = (_labels(tmp_path / f"{name}-{source.name}" / mask) for name in ("torch", "onnx"))
    assert ours.shape == theirs.shape and len(np.unique(ours)) > 1, "a trivial mask proves nothing"
    assert np.mean(ours != theirs) <= TIES
    assert summaries["torch"]["backend"] == "torch" and summaries["onnx"]["backend"].startswith("onnxruntime ")
    return summaries["onnx"]


def test_unet_export_records_its_source_and_its_check(unet_model: Path, unet_onnx: Path) -> None:
    import onnxruntime as ort

    from medseg.models.checkpoints import load_exported

    record = _manifest(unet_onnx)
    assert sorted(p.name for p in unet_onnx.iterdir()) == [".medseg-step", "model.onnx", "onnx.json",
                                                          "provenance.json"]
    assert record["check"]["passed"] is True and record["check"]["worst"] <= TOLERANCE
    assert record["check"]["tolerance"] == TOLERANCE and record["opset"] == 18
    assert record["source"]["sha256"] == file_sha256(unet_model)
    facts = record["source"]["identity"]
    assert facts["strategy"] == "unet" and facts["random_init"] is False and facts["synthetic_data"] is True
    assert record["metadata"]["protocol"] == MIN_MAX.to_record()
    assert record["labels"] == {"values": [0, 1], "names": {"0": "background", "1": "lesion"}}
    graph = record["graphs"]["model"]
    assert graph["inputs"] == ["images"] and graph["outputs"] == ["logits"]
    assert graph["sha256"] == {"model.onnx": file_sha256(unet_onnx / "model.onnx")}
    module, _ = load_exported(unet_model)
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(99)) * 255  # not the check's inputs
    session = ort.InferenceSession(str(unet_onnx / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(images).numpy()
    assert np.abs(session.run(None, {"images": images.numpy()})[0] - expected).max() <= TOLERANCE


def test_predict_with_the_unet_export_writes_the_masks_of_model_pt(unet_model: Path, unet_onnx: Path,
                                                                    scans: dict[str, Path], tmp_path: Path) -> None:
    for source in scans.values():
        summary = _same_masks(unet_model, unet_onnx, source, tmp_path)
        assert summary["model"]["exported_from"]["sha256"] == file_sha256(unet_model)
        assert summary["model"]["synthetic_data"] is True and summary["protocol"]["source"] == "model"
        assert summary["device"] == "cpu"


def test_a_real_brats_volume_gets_the_same_mask_through_onnxruntime(unet_model: Path, unet_onnx: Path,
                                                                      tmp_path: Path) -> None:
    flair = next(shared("brats2015/brats_2013_pat0005_1").glob("*Flair*.nii.gz"))
    summary = _same_masks(unet_model, unet_onnx, flair, tmp_path)
    assert summary["outputs"][0]["slices"] == 155 and summary["model"]["path"] == str(unet_onnx / "onnx.json")


def _tampered(export: Path, tmp_path: Path, change: Callable[[Path], None]) -> Path:
    folder = tmp_path / "tampered"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(export, folder)
    change(folder)
    return folder


def _edit_manifest(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        record = _manifest(folder)
        edit(record)
        (folder / "onnx.json").write_text(json.dumps(record))
    return change


def _flip_byte(folder: Path) -> None:
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))


def _garbage_with_its_hash(folder: Path) -> None:
    (folder / "model.onnx").write_bytes(b"not a protobuf at all")
    _edit_manifest(lambda r: r["graphs"]["model"].update(sha256={"model.onnx": file_sha256(folder / "model.onnx")}))(
        folder)


@pytest.mark.parametrize(("change", "expected"), [
    (_flip_byte, "model.onnx: does not match the SHA-256 onnx.json records"),
    (lambda f: (f / "model.onnx").unlink(), "model.onnx is missing"),
    (_garbage_with_its_hash, "model.onnx: onnxruntime cannot load it"),
    (lambda f: (f / "onnx.json").write_text('{"format": "medseg.onnx/1", '), "onnx.json: not valid JSON"),
    (_edit_manifest(lambda r: r.update(format="other/1")), "onnx.json: not a medseg.onnx/1 manifest"),
    (_edit_manifest(lambda r: r["labels"].update(values=[0, 300])), "onnx.json: field 'labels.values'"),
    (_edit_manifest(lambda r: r["graphs"]["model"].update(file="../model.pt")), "field 'graphs.model' must name"),
    (_edit_manifest(lambda r: r["check"].update(passed=False)), "field 'check.passed' must be true"),
])
def test_a_tampered_or_corrupt_export_is_refused(unet_onnx: Path, scans: dict[str, Path], tmp_path: Path,
                                                 run_cli: Callable, change: Callable[[Path], None],
                                                 expected: str) -> None:
    folder = _tampered(unet_onnx, tmp_path, change)
    out = tmp_path / "out"
    code, errors = run_cli("predict", "--model", folder, "--input", scans["png"], "--out", out)
    assert code == 2 and len(errors) == 1 and expected in errors[0], errors
    assert not out.exists()


def test_weights_beside_the_graph_are_recorded_checked_and_loaded(unet_model: Path, scans: dict[str, Path],
                                                                    tmp_path: Path, run_cli: Callable,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """ViT-H graphs pass protobuf's 2 GB limit and keep their weights in ``model.onnx.data``: the same path, taken
    here by a UNet with the threshold lowered. Both files are hashed, predict runs from them, a changed weights
    file is refused."""
    from medseg.infer import onnx_export

    monkeypatch.setattr(onnx_export, "SINGLE_FILE_BYTES", 0)
    export = _export(unet_model, tmp_path / "export")
    assert {"model.onnx", "model.onnx.data"} <= {p.name for p in export.iterdir()}
    assert (export / "model.onnx.data").stat().st_size > 0  # the tiny UNet's larger tensors
    assert _manifest(export)["graphs"]["model"]["sha256"] == {
        name: file_sha256(export / name) for name in ("model.onnx", "model.onnx.data")}
    _same_masks(unet_model, export, scans["png"], tmp_path)

    def change_weights(folder: Path) -> None:
        data = bytearray((folder / "model.onnx.data").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "model.onnx.data").write_bytes(bytes(data))

    out = tmp_path / "out"
    code, errors = run_cli("predict", "--model", _tampered(export, tmp_path, change_weights),
                           "--input", scans["png"], "--out", out)
    assert code == 2 and len(errors) == 1 and "model.onnx.data: does not match the SHA-256" in errors[0], errors
    assert not out.exists()


def test_onnx_exports_run_on_the_cpu_and_are_not_exported_again(unet_onnx: Path, scans: dict[str, Path],
                                                                tmp_path: Path, run_cli: Callable) -> None:
    out = tmp_path / "out"
    code, errors = run_cli("predict", "--model", unet_onnx, "--input", scans["png"], "--out", out, "--device", "cuda")
    assert code == 2 and len(errors) == 1 and "onnxruntime's CPU provider" in errors[0] and not out.exists()
    code, errors = run_cli("export_onnx", "--model", unet_onnx / "onnx.json", "--out", out, "--params", PARAMS)
    assert code == 2 and len(errors) == 1 and "already an ONNX export" in errors[0] and not out.exists()
    broken = tmp_path / "broken"  # refused before anything of it is read
    broken.mkdir()
    (broken / "onnx.json").write_text("{not json")
    code, errors = run_cli("export_onnx", "--model", broken, "--out", out, "--params", PARAMS)
    assert code == 2 and len(errors) == 1 and "broken: already an ONNX export" in errors[0] and not out.exists()


def test_medseg_serve_answers_with_an_onnx_export_as_with_model_pt(unet_model: Path, unet_onnx: Path) -> None:
    from medseg.errors import MedsegError
    from medseg.infer.replay import ProtocolChoice
    from medseg.serve.inference import load_served, response_parameters, segment_request
    from medseg.serve.tensors import Tensor, parse_request

    image = np.random.default_rng(3).normal(100, 30, (2, 48, 40))
    request = parse_request([Tensor("image", "FP32", image.shape, lambda: image)], {}, "automated", 2**20)
    served = {path: load_served(path, ProtocolChoice(), "auto", 2) for path in (unet_model, unet_onnx)}
    torch_mask, onnx_mask = (segment_request(served[path], request) for path in (unet_model, unet_onnx))
    assert torch_mask.shape == (2, 48, 40) and np.mean(torch_mask != onnx_mask) <= TIES
    answered, original = (response_parameters(served[path]) for path in (unet_onnx, unet_model))
    assert answered["backend"].startswith("onnxruntime ") and original["backend"] == "torch"
    for key in ("strategy", "mode", "dataset", "random_init", "synthetic_data"):  # the source model's labels
        assert answered[key] == original[key], key
    with pytest.raises(MedsegError, match="onnxruntime's CPU provider"):
        load_served(unet_onnx, ProtocolChoice(), "cuda", 2)


class Shifted(torch.nn.Module):
    def __init__(self, graph: torch.nn.Module) -> None:
        super().__init__()
        self.inner = graph

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner(images) + 0.01


def test_an_export_that_fails_its_check_is_refused(unet_model: Path, tmp_path: Path, run_cli: Callable,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from medseg.infer import onnx_export

    out = tmp_path / "out"
    code, errors = run_cli("export_onnx", "--model", unet_model, "--out", out, "--params", PARAMS,
                           "--params-override", "{export_onnx: {tolerance: 1.0e-12}}")
    assert code == 2 and len(errors) == 1 and "disagree beyond export_onnx.tolerance 1e-12" in errors[0], errors
    assert not out.exists()
    exact = onnx_export.graphs_for

    def shifted(model: object, settings: object) -> list:
        """The right graph, plus 0.01 on every logit: a module that is not the model."""
        graph = exact(model, settings)[0]
        return [dataclasses.replace(graph, module=Shifted(graph.module).eval())]

    monkeypatch.setattr(onnx_export, "graphs_for", shifted)
    code, errors = run_cli("export_onnx", "--model", unet_model, "--out", out, "--params", PARAMS)
    assert code == 2 and len(errors) == 1 and "logits 0.01" in errors[0], errors
    assert not out.exists()

    def fixed_batch(model: object, settings: object) -> list:
        """The right graph with its batch axis traced as a constant (what the TorchScript exporter does)."""
        return [dataclasses.replace(exact(model, settings)[0], free_batch=False)]

    monkeypatch.setattr(onnx_export, "graphs_for", fixed_batch)
    code, errors = run_cli("export_onnx", "--model", unet_model, "--out", out, "--params", PARAMS)
    assert code == 2 and len(errors) == 1, errors
    assert "model.onnx: onnxruntime cannot run it on inputs of shapes {'images': [1, 3, 64, 64]}" in errors[0]
    assert not out.exists()


def test_a_second_export_replaces_its_own_folder_but_no_other(unet_model: Path, tmp_path: Path,
                                                              run_cli: Callable) -> None:
    out = _export(unet_model, tmp_path / "export")
    first = _manifest(out)["graphs"]["model"]["sha256"]
    assert _manifest(_export(unet_model, out))["graphs"]["model"]["sha256"] == first  # same model, same bytes
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    code, errors = run_cli("export_onnx", "--model", unet_model, "--out", tmp_path / "notes", "--params", PARAMS)
    assert code == 2 and len(errors) == 1 and "todo.txt" in errors[0] and (tmp_path / "notes/todo.txt").exists()
    code, errors = run_cli("export_onnx", "--model", unet_model, "--out", unet_model.parent, "--params", PARAMS)
    assert code == 2 and len(errors) == 1 and "contains the input" in errors[0], errors


def test_export_settings_are_checked(unet_model: Path, tmp_path: Path, run_cli: Callable) -> None:
    for bad, key in (("{export_onnx: {opset: 12}}", "export_onnx.opset"),
                     ("{export_onnx: {tolerance: 0}}", "export_onnx.tolerance"),
                     ("{export_onnx: {check_batch: 1}}", "export_onnx.check_batch"),
                     ("{export_onnx: {tolerence: 0.1}}", "export_onnx.tolerence: unknown setting")):
        code, errors = run_cli("export_onnx", "--model", unet_model, "--out", tmp_path / "out", "--params", PARAMS,
                               "--params-override", bad)
        assert code == 2 and len(errors) == 1 and key in errors[0], errors


def test_nnunet_models_are_refused() -> None:
    from medseg.errors import MedsegError
    from medseg.infer.model import PredictModel
    from medseg.infer.onnx_export import ExportSettings, graphs_for

    class Planned(torch.nn.Module):
        backbone, mode, candidates, image_size, num_classes = "nnunet", "automated", False, 64, 2

    model = PredictModel(Planned(), Path("model.pt"), {}, (0, 1), {0: "background", 1: "lesion"})
    with pytest.raises(MedsegError, match="nnU-Net's own predictor"):
        graphs_for(model, ExportSettings(18, 1e-3, 2, 0))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["vit_t_endec_lora", "vit_t_endec_adapter", "vit_b_endec_lora", "swinunet"])
def test_automated_models_export_and_predict(strategy: str, scans: dict[str, Path], tmp_path: Path) -> None:
    """SAM strategies (LoRA and Adapter wrappers; ViT-B's relative positions) and SwinUNETR, random init."""
    import warnings

    from medseg.baselines.networks import BaselineSegmenter, baseline_spec, parse_baseline
    from medseg.models.checkpoints import export_checkpoint
    from medseg.models.factory import build_model, model_spec

    torch.manual_seed(0)
    if strategy == "swinunet":
        baseline = parse_baseline("swinunet", tiny_params()["baseline"]["swinunet"])
        module, spec = BaselineSegmenter(baseline, 64, 2), baseline_spec(baseline)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random init is the point here
            module, spec = build_model(strategy, peft_config(), 64, 2), model_spec(strategy, peft_config())
    model = tmp_path / "model.pt"
    export_checkpoint(module, model, spec, metadata("automated", strategy=strategy))
    export = _export(model, tmp_path / "export")
    record = _manifest(export)
    assert record["check"]["worst"] <= TOLERANCE and record["source"]["identity"]["random_init"] is True
    for source in scans.values():
        assert _same_masks(model, export, source, tmp_path)["model"]["strategy"] == strategy


@pytest.mark.slow
def test_point_model_exports_an_encoder_and_a_decoder(point_model: Path, scans: dict[str, Path],
                                                      tmp_path: Path) -> None:
    export = _export(point_model, tmp_path / "export")
    record = _manifest(export)
    assert set(record["graphs"]) == {"encoder", "decoder"} and record["graphs"]["decoder"]["outputs"] == ["logits"]
    assert set(record["check"]["max_abs_difference"]) == {"embeddings", "logits"}
    assert record["check"]["worst"] <= TOLERANCE
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"format": "medseg.prompts/1", "prompts": [{"point": [20, 20]},
                                                                              {"point": [50, 30], "label": 2}]}))
    summary = _same_masks(point_model, export, scans["png"], tmp_path, "--prompts", prompts)
    assert summary["outputs"][0]["prompts"] == 2


@pytest.mark.slow
def test_original_sam_exports_its_candidates_and_their_iou(box_model: Path, scans: dict[str, Path],
                                                           tmp_path: Path) -> None:
    export = _export(box_model, tmp_path / "export")
    record = _manifest(export)
    assert record["graphs"]["decoder"]["outputs"] == ["logits", "iou"] and record["model"]["candidates"] is True
    assert set(record["check"]["max_abs_difference"]) == {"embeddings", "logits", "iou"}
    assert record["source"]["identity"]["strategy"] == "original SAM"
    mask = np.zeros((40, 48, 5), dtype=np.uint8)
    mask[5:30, 8:40, 1:4] = 1
    nib.save(nib.Nifti1Image(mask, np.diag([0.8, 0.8, 2.0, 1.0])), tmp_path / "prompt.nii.gz")
    summary = _same_masks(box_model, export, scans["nifti"], tmp_path, "--prompt-mask", tmp_path / "prompt.nii.gz",
                          "--min-max")
    assert summary["outputs"][0]["prompts"] == 3
