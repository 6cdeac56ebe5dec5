"""The ``medseg`` tools that are not pipeline steps (registry, parameter counts, profiles, compiling the
Kubeflow pipelines, pulling a commit's DVC data, predicting on new scans, serving a model), and what every
subcommand shares."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from medseg.errors import MedsegError
from medseg.params import load_params, section

Handler = Callable[[argparse.Namespace], int]


def step_params(args: argparse.Namespace) -> dict:
    """The step's settings: ``--params`` (or ``--params-text``) with ``--params-override`` merged in; kept
    on ``args`` for the provenance record."""
    args.loaded_params = load_params(args.params, text=args.params_text, override=args.params_override)
    return args.loaded_params


def copy_text(step: str, source: Path, target: str, signature: str) -> None:
    """Copy a text output to a single file a user asked for; an existing file is replaced only when it
    begins with ``signature`` (an earlier copy of the same output)."""
    from medseg.outputs import output_file, starts_with

    with output_file(step, target, [source.parent], starts_with(signature)) as tmp:
        tmp.write_text(source.read_text())


def _datasets(args: argparse.Namespace) -> int:
    if args.check or args.fields:  # one entry file, or the format: no params needed
        from medseg.data.registry_schema import check_entry_file, fields_markdown

        if args.check:
            spec = check_entry_file(args.check)
            print(f"ok: {spec.alias} ({spec.adapter})")
        else:
            print(fields_markdown(), end="")
        return 0
    from medseg.data.registry import load_registry, markdown_table

    params = step_params(args)
    ingest = {**section(params, "ingest"), "classes": section(params, "finetune").get("classes") or {}}
    extra = ingest.get("extra_registries")
    registry = load_registry(extra)
    if args.check_params:
        from medseg.data.preflight import check_pretraining_datasets
        from medseg.params import params_path

        check_pretraining_datasets(params, params_path(args.params))
        return _check_datasets(args, ingest, registry)
    if args.raw or args.out:
        raise MedsegError("--raw and --out go with --check-params")
    if args.readme:
        from medseg.data.registry import README_HEADER, readme_markdown
        from medseg.outputs import output_file, starts_with

        generated = starts_with(README_HEADER.split(" from the registry")[0])
        with output_file("datasets", args.readme, extra or [], generated) as tmp:
            tmp.write_text(readme_markdown(registry))
        print(f"datasets: wrote {args.readme}")
        return 0
    print(markdown_table(registry))
    return 0


def _check_datasets(args: argparse.Namespace, ingest: dict, registry: dict) -> int:
    """``datasets --check-params``: every alias of ``ingest.datasets`` registered (and with ``--raw``, its raw
    folder present); with ``--out``, the entry each ingest reads as ``<out>/<alias>.json``."""
    from medseg.data.preflight import (
        check_class_choices,
        check_raw_folders,
        registered,
        untracked_registries,
        write_entries,
    )
    from medseg.params import params_path

    extra = ingest.get("extra_registries") or []
    specs = registered(ingest["datasets"], registry, params_path(args.params))
    check_class_choices(ingest["classes"], specs, params_path(args.params))
    if args.raw:
        check_raw_folders(specs, Path(args.raw))
    if args.out:
        write_entries(specs, args.out, [args.raw, *extra])
        for folder in untracked_registries(extra):
            print(f"datasets: warning: ingest.extra_registries: {folder} is not under registry/, the folder the "
                  "datasets stage depends on: dvc repro will not notice edits to its entries", file=sys.stderr)
    print(f"datasets: {', '.join(s.alias for s in specs)} registered"
          f"{f', raw folders under {args.raw}' if args.raw else ''}{f' -> {args.out}' if args.out else ''}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from medseg.models.report import markdown_report, parameter_rows
    from medseg.models.strategies import PeftConfig

    peft = PeftConfig.from_params(section(step_params(args), "models"))
    print("Parameters at 1024x1024 with 2 output classes (background + 1), as in the study's Table 3.\n")
    print(markdown_report(parameter_rows(peft)))
    return 0


def _zeroshot_checkpoint(path: Path) -> bool:
    """Whether ``path`` is an earlier ``export_sam`` output (read safely, tensors memory-mapped)."""
    import torch

    from medseg.models.checkpoints import CHECKPOINT_FORMAT

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a torch file at all: not ours
        return False
    return (isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT
            and isinstance(payload.get("metadata"), dict) and payload["metadata"].get("zeroshot") is True)


def _export_sam(args: argparse.Namespace) -> int:
    from medseg.models.backbones import normalisation_for
    from medseg.models.checkpoints import export_checkpoint
    from medseg.models.factory import model_spec, zeroshot_model
    from medseg.models.strategies import PeftConfig
    from medseg.names import check_name
    from medseg.outputs import output_file

    if not args.image_size.isdigit():
        raise MedsegError(f"--image-size must be a whole number of pixels, not '{args.image_size}'")
    init = check_name(args.init or "sam", "--init")
    with output_file("export_sam", args.out, [args.checkpoint], _zeroshot_checkpoint) as tmp:
        model = zeroshot_model(args.backbone, int(args.image_size), args.mode, args.checkpoint,
                               normalisation_for(init))
        metadata = {"zeroshot": True, "mode": args.mode, "init": init, "random_init": args.checkpoint is None}
        export_checkpoint(model, tmp, model_spec(f"{args.backbone}_dec_vanilla", PeftConfig()), metadata)
    print(f"export_sam: original SAM {args.backbone} with {args.mode} prompts -> {args.out}")
    return 0


def _whole_number(value: str | None, flag: str, low: int, high: int | None = None) -> int | None:
    """An optional whole-number option, checked (one line naming the option otherwise)."""
    if value is None:
        return None
    if not value.isdigit() or int(value) < low or (high is not None and int(value) > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise MedsegError(f"{flag} must be a whole number {bounds}, not '{value}'")
    return int(value)


def _predict(args: argparse.Namespace) -> int:
    from medseg.infer.predict import PredictRequest, predict
    from medseg.infer.replay import ProtocolChoice

    choice = ProtocolChoice(window=tuple(args.window) if args.window else None, min_max=args.min_max,
                            slice_axis=_whole_number(args.slice_axis, "--slice-axis", 0, 2),
                            max_voxels=_whole_number(args.max_voxels, "--max-voxels", 1))
    request = PredictRequest(
        model=Path(model_file(args.model, onnx=True)), input=Path(args.input), out=Path(args.out),
        prompts=Path(args.prompts) if args.prompts else None,
        prompt_mask=Path(args.prompt_mask) if args.prompt_mask else None,
        batch_size=_whole_number(args.batch_size, "--batch-size", 1) or 8, device=args.device or "auto",
        protocol=choice)
    summary = predict(request)
    for note in summary["warnings"]:
        print(f"predict: warning: {note}", file=sys.stderr)
    outputs = summary["outputs"]
    print(f"predict: {len(outputs)} input(s) segmented by {summary['description']} -> {args.out} "
          f"({', '.join(entry['output'] for entry in outputs[:3])}{' ...' if len(outputs) > 3 else ''}, predict.json)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from medseg.infer.replay import ProtocolChoice
    from medseg.names import check_name
    from medseg.serve.server import ServeSettings, serve

    settings = ServeSettings(
        model=Path(model_file(args.model, onnx=True)), name=check_name(args.name or "medseg", "--name"),
        host=args.host or "127.0.0.1", port=_whole_number(args.port, "--port", 1, 65535) or 8080,
        device=args.device or "auto", batch_size=_whole_number(args.batch_size, "--batch-size", 1) or 8,
        protocol=ProtocolChoice(window=tuple(args.window) if args.window else None, min_max=args.min_max,
                                max_voxels=_whole_number(args.max_voxels, "--max-voxels", 1)),
        max_request_bytes=(_whole_number(args.max_request_mb, "--max-request-mb", 1) or 1024) * 2**20)
    serve(settings)
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from medseg.infer.model import warnings_for
    from medseg.infer.onnx_export import ExportSettings, export_onnx

    settings = ExportSettings.from_params(step_params(args))
    record = export_onnx(Path(model_file(args.model, onnx=True)), Path(args.out), settings)
    check = record["check"]
    for note in warnings_for(record["source"]["identity"]):
        print(f"export_onnx: warning: {note}", file=sys.stderr)
    print(f"export_onnx: {', '.join(g['file'] for g in record['graphs'].values())} (opset {record['opset']}) -> "
          f"{args.out}; onnxruntime matches PyTorch within {check['worst']:.2g} (tolerance {check['tolerance']:g})")
    return 0


def model_file(model: str, onnx: bool = False) -> str:
    """``--model``: the exported file or a run folder holding it (a Kubeflow ``Model`` artifact); with ``onnx``
    also an ``export_onnx`` folder (given as the folder or its ``onnx.json``)."""
    from medseg.infer.onnx_runtime import MANIFEST, is_export_folder

    path = Path(model)
    if onnx and path.name == MANIFEST and is_export_folder(path.parent):
        return str(path.parent)
    if path.is_dir() and not (onnx and is_export_folder(path)):
        return str(path / "model.pt")
    return model


def _pull(args: argparse.Namespace) -> int:
    from medseg.provenance import git_revision
    from medseg.remote import pull

    target = f"{args.folder.rstrip('/')}/{args.target}" if args.folder else args.target
    pin = pull(target, args.out, args.remote or None)
    args.artifact_metadata = {**git_revision(), "dvc_target": pin.target, "dvc_hash": pin.md5,
                              "pinned_by": Path(pin.source).name}
    print(f"pull: {pin.target} ({pin.md5}, pinned by {Path(pin.source).name}) -> {args.out}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from medseg.profiles import profile_command

    print(profile_command(args.name, args.params, dvc=args.dvc))
    return 0


def _compile_pipeline(args: argparse.Namespace) -> int:
    from pipelines.compile import compile_pipeline, image_tag

    params = step_params(args)
    tag = image_tag(args.image_tag)
    path = compile_pipeline(args.name, params, args.out, tag, args.params)
    print(f"compile_pipeline: the {args.name} pipeline (image tag {tag}) written to {path}")
    return 0


TOOLS = (("compile_pipeline", _compile_pipeline, "compile a Kubeflow pipeline (demo, study or regression) to YAML",
          (("--name", "demo (the sample on CPUs), study (the grid on GPUs, the paper's recipe) or regression (the "
                      "models this commit pins, evaluated and checked with `medseg regress`)"),
           ("--out", "output pipeline YAML"),
           ("--image-tag", "image tag to run (default: the checkout's git SHA; refused with uncommitted changes)",
            "optional"))),
         ("pull", _pull, "pull one DVC-tracked path at the version this commit pins, from the DVC remote",
          (("--target", "tracked path, e.g. data/raw/mri_prostate or checkpoints/sam_vit_b_01ec64.pth"),
           ("--folder", "the folder --target is in, e.g. data/raw (then --target is the name)", "optional"),
           ("--out", "where to write it (a new path)"),
           ("--remote", "DVC remote name (default: the project's default remote)", "optional"))),
         ("datasets", _datasets, "the dataset registry: study datasets, layouts, licences",
          (("--readme", "write data/README.md (table + download and dvc add steps) here", "optional"),
           ("--check", "check one registry entry file (<alias>.yaml): prints 'ok: <alias> (<adapter>)'", "optional"),
           ("--fields", "print every entry field and adapter setting as Markdown tables", "switch"),
           ("--check-params", "check that every alias of ingest.datasets is registered (the datasets stage)",
            "switch"),
           ("--raw", "with --check-params: folder of the raw datasets, each <alias>/ must exist", "optional"),
           ("--out", "with --check-params: write the entry each ingest reads here as <alias>.json", "optional"))),
         ("export_sam", _export_sam, "original SAM with point/box prompts (three candidates) as an evaluable model",
          (("--backbone", "vit_h, vit_b or vit_t"), ("--mode", "point or box"),
           ("--image-size", "input size of the ingested slices, e.g. 256"), ("--out", "model.pt to write"),
           ("--checkpoint", "official SAM/MobileSAM weights (random init when omitted)", "optional"),
           ("--init", "name of the weights for the report: sam (default), medsam (MedSAM's [0, 1] input scaling), "
                      "supsam", "optional"))),
         ("predict", _predict, "segment new images (PNG/JPEG, NIfTI, MHA, NRRD, a DICOM series) with an exported "
          "model; masks in the input's geometry",
          (("--model", "exported model.pt (or the run folder holding it): SAM strategy, original SAM, or baseline; "
                       "or an export_onnx folder (run by onnxruntime)"),
           ("--input", "an image, a volume, a folder of them, or a DICOM series folder"),
           ("--out", "output folder (masks, DICOM-SEG, predict.json)"),
           ("--prompts", "point/box models: prompts JSON (format in README, 'Predict on new scans')", "optional"),
           ("--prompt-mask", "point/box models: label image/volume (folder: one per input) to derive one prompt per "
                             "object per slice", "optional"),
           ("--batch-size", "slices per forward pass (default 8)", "optional"),
           ("--device", "auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps", "optional"),
           ("--window", "models recording no protocol: intensity window LOW HIGH mapped to 0-255", "pair"),
           ("--min-max", "models recording no protocol: per-volume min-max to 0-255", "switch"),
           ("--slice-axis", "models recording no protocol: RAS+ axis to slice volumes along (default 2, axial)",
            "optional"),
           ("--max-voxels", "refuse inputs larger than this (default: the model's ingest.max_voxels)", "optional"))),
         ("serve", _serve, "serve an exported model over KServe's open inference protocol (v2) on a local port",
          (("--model", "exported model.pt, or the folder holding it (e.g. /mnt/models)"),
           ("--name", "model name in the URLs, /v2/models/<name>/infer (default: medseg)", "optional"),
           ("--host", "address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 in a pod)", "optional"),
           ("--port", "HTTP port (default 8080)", "optional"),
           ("--device", "auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps", "optional"),
           ("--batch-size", "slices per forward pass (default 8)", "optional"),
           ("--window", "models recording no protocol: intensity window LOW HIGH mapped to 0-255", "pair"),
           ("--min-max", "models recording no protocol: per-image min-max to 0-255", "switch"),
           ("--max-voxels", "refuse requests with more image values than this (default: the model's "
                            "ingest.max_voxels)", "optional"),
           ("--max-request-mb", "refuse request bodies larger than this many MiB before reading them (default "
                                "1024)", "optional"))),
         ("export_onnx", _export_onnx, "an exported model as ONNX graphs (automated: model.onnx; point/box: "
          "encoder.onnx + decoder.onnx), checked against PyTorch with onnxruntime; `predict --model` takes the folder",
          (("--model", "exported model.pt (or the run folder holding it): SAM strategy, original SAM, UNet or "
                       "SwinUNETR (nnU-Net is refused)"),
           ("--out", "output folder (the .onnx graphs and onnx.json)"))),
         ("models", _models, "parameter counts of every backbone x strategy beside the study's Table 3", ()),
         ("profile", _profile, "write a settings profile (profiles/<name>.yaml: demo, study) into params.yaml",
          (("--name", "profile name, or a YAML file of params.yaml overrides"),
           ("--dvc", "print the `dvc exp run -S ...` command instead of editing params.yaml", "switch"))))


