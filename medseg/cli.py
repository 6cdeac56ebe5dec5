"""The ``medseg`` command line: one subcommand per pipeline step (same name as its DVC stage and
Kubeflow component). Heavy libraries are imported inside the handlers so that start-up is fast."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from medseg import __version__
from medseg.errors import MedsegError
from medseg.names import check_name
from medseg.params import load_params, section

Handler = Callable[[argparse.Namespace], int]


def _sample(args: argparse.Namespace) -> int:
    from medseg.data.sample import SYNTHETIC_NOTICE, PhantomSpec, write_sample

    params = load_params(args.params)
    cases = write_sample(args.out, PhantomSpec.from_params(section(params, "sample")), int(params["seed"]))
    print(f"sample: wrote {len(cases)} phantom cases to {args.out} ({SYNTHETIC_NOTICE})")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from medseg.data.ingest import ingest_dataset

    params = load_params(args.params)
    check_name(args.dataset, "--dataset")
    summary = ingest_dataset(args.dataset, args.raw, args.out, section(params, "ingest"), int(params["seed"]))
    print(f"ingest: {summary['num_slices']} slices of {args.dataset} -> {args.out} "
          f"(slices per split {summary['slices_per_split']}, grouping by {summary['grouping']}"
          f"{', skipped ' + str(len(summary['skipped'])) + ' cases' if summary['skipped'] else ''})")
    return 0


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

    params = load_params(args.params)
    ingest = {**section(params, "ingest"), "classes": section(params, "finetune").get("classes") or {}}
    extra = ingest.get("extra_registries")
    registry = load_registry(extra)
    if args.check_params:
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


def _validate(args: argparse.Namespace) -> int:
    from medseg.quality.validate import validate

    params = load_params(args.params)
    check_name(args.dataset, "--dataset")
    ingest, gate = section(params, "ingest"), section(params, "validate")
    settings = {**gate, "image_size": ingest["image_size"], "drop_empty_slices": ingest["drop_empty_slices"],
                "split_fractions": ingest["split_fractions"]}
    try:
        result = validate(args.dataset, args.data, args.out, settings, args.raw, args.reference)
    finally:
        summary = Path(args.out) / "summary.md"
        if args.markdown and summary.is_file():
            _copy_text("validate", summary, args.markdown, "# Validation of")
    checks = result["checks"]
    print(f"validate: {args.dataset} passed {sum(checks.values())}/{len(checks)} checks, "
          f"{result['num_warnings']} warning(s) -> {Path(args.out) / 'summary.md'}")
    return 0


def _copy_text(step: str, source: Path, target: str, signature: str) -> None:
    """Copy a text output to a single file a user asked for; an existing file is replaced only when it
    begins with ``signature`` (an earlier copy of the same output)."""
    from medseg.outputs import output_file, starts_with

    with output_file(step, target, [source.parent], starts_with(signature)) as tmp:
        tmp.write_text(source.read_text())


def _finetune(args: argparse.Namespace) -> int:
    from medseg.train.config import TrainConfig
    from medseg.train.finetune import finetune

    params = load_params(args.params)
    check_name(args.dataset, "--dataset")
    config = TrainConfig.from_params(params, mode=args.mode or "automated")
    work_root = section(params, "finetune")["work_dir"]
    summary = finetune(args.dataset, args.strategy, args.data, args.out, config, work_root, args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        print(f"finetune: {summary['strategy']} ({summary['mode']}) on {summary['dataset']}: best epoch "
              f"{summary['best_epoch']}, val Dice {summary['best_val_dice']:.4f}, {summary['wall_time_s']:.0f} s, "
              f"peak memory {summary['peak_memory_mb']} MB ({summary['device']} x{summary['processes']}), "
              f"trainable {summary['params_trainable']:,} of {summary['params_total']:,} params -> "
              f"{Path(args.out) / 'model.pt'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from medseg.eval.evaluate import evaluate

    params = load_params(args.params)
    check_name(args.dataset, "--dataset")
    check_name(args.strategy, "--strategy")
    from medseg.eval.scoring import ScoreSettings
    from medseg.train.prompted import PromptSettings

    settings = section(params, "evaluate")
    prompts = PromptSettings(**section(params, "finetune").get("prompts", {}))
    metrics = evaluate(args.dataset, args.strategy, args.data, args.model, args.out, ScoreSettings.from_params(params),
                       int(settings["batch_size"]), prompts, int(settings["overlay_slices"]),
                       str(settings.get("device", "auto")))
    dice = "n/a" if metrics["dice_mean"] is None else f"{metrics['dice_mean']:.4f}"
    print(f"evaluate: {args.strategy} ({metrics['mode']}) on {args.dataset}: test Dice {dice} over "
          f"{metrics['num_slices']} slices -> {Path(args.out) / 'metrics.json'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from medseg.eval.report import write_report

    datasets = None if args.all_datasets else section(load_params(args.params), "ingest")["datasets"]
    table = write_report(args.runs, args.out, compare_average=args.compare_average, datasets=datasets)
    if args.markdown:
        _copy_text("report", table, args.markdown, "# medseg results")
    if args.html:
        _copy_text("report", table.with_suffix(".html"), args.html, "<!doctype html><html><head>")
    print(table.read_text())
    print(f"report: written to {table} (with report.csv, comparison.csv, report.html and figures/)")
    return 0


def _models(args: argparse.Namespace) -> int:
    from medseg.models.report import markdown_report, parameter_rows
    from medseg.models.strategies import PeftConfig

    peft = PeftConfig.from_params(section(load_params(args.params), "models"))
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
    from medseg.models.checkpoints import export_checkpoint
    from medseg.models.factory import model_spec, zeroshot_model
    from medseg.models.strategies import PeftConfig
    from medseg.outputs import output_file

    if not args.image_size.isdigit():
        raise MedsegError(f"--image-size must be a whole number of pixels, not '{args.image_size}'")
    with output_file("export_sam", args.out, [args.checkpoint], _zeroshot_checkpoint) as tmp:
        model = zeroshot_model(args.backbone, int(args.image_size), args.mode, args.checkpoint)
        metadata = {"zeroshot": True, "mode": args.mode, "init": "sam", "random_init": args.checkpoint is None}
        export_checkpoint(model, tmp, model_spec(f"{args.backbone}_dec_vanilla", PeftConfig()), metadata)
    print(f"export_sam: original SAM {args.backbone} with {args.mode} prompts -> {args.out}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from medseg.profiles import profile_command

    print(profile_command(args.name, args.params, dvc=args.dvc))
    return 0


def _compile_pipeline(args: argparse.Namespace) -> int:
    from pipelines.compile import compile_pipeline

    params = load_params(args.params)
    path = compile_pipeline(params, args.out)
    print(f"compile_pipeline: Kubeflow pipeline written to {path}")
    return 0


def _add_step(subparsers: argparse._SubParsersAction, name: str, handler: Handler, help_text: str,
              arguments: Sequence[tuple[str, ...]]) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    for flag, flag_help, *kind in arguments:
        if kind == ["switch"]:
            parser.add_argument(flag, action="store_true", help=flag_help)
        else:
            parser.add_argument(flag, required=not kind, help=flag_help)
    parser.add_argument("--params", default=None, help="params file (default: $MEDSEG_PARAMS or ./params.yaml)")
    parser.set_defaults(handler=handler)


DATASET = ("--dataset", "dataset alias, e.g. sample")
STRATEGY = ("--strategy", "strategy id <backbone>_<dec|endec>_<method>, e.g. vit_t_dec_vanilla")
DATA = ("--data", "ingested dataset directory")

STEPS: tuple[tuple[str, Handler, str, tuple[tuple[str, ...], ...]], ...] = (
    ("sample", _sample, "write the synthetic MSD-layout phantom dataset",
     (("--out", "output raw dataset directory"),)),
    ("ingest", _ingest, "raw dataset -> 2D slices, masks, manifest and patient-level splits",
     (DATASET, ("--raw", "raw dataset directory"), ("--out", "output directory"))),
    ("validate", _validate, "data gate: great-expectations checks and evidently drift reports",
     (DATASET, DATA, ("--out", "validation directory (validation.json, summary.md, reports/)"),
      ("--raw", "raw dataset directory, to check that source files exist", "optional"),
      ("--reference", "another ingested dataset to report drift against", "optional"),
      ("--markdown", "also write the summary to this single Markdown file", "optional"))),
    ("finetune", _finetune, "fine-tune one SAM strategy on one dataset",
     (DATASET, STRATEGY, DATA, ("--out", "run directory (model.pt, training logs)"),
      ("--mode", "automated (default), point or box prompts", "optional"),
      ("--resume", "continue an interrupted run from its last saved epoch", "switch"))),
    ("evaluate", _evaluate, "test-split metrics of a fine-tuned model",
     (DATASET, STRATEGY, DATA, ("--model", "exported model.pt"), ("--out", "evaluation directory"))),
    ("report", _report, "aggregate evaluated runs into the results table",
     (("--runs", "directory of <dataset>/<mode>/<strategy>/eval runs"), ("--out", "report directory"),
      ("--markdown", "also write the report to this single Markdown file", "optional"),
      ("--html", "also write the self-contained HTML report to this file", "optional"),
      ("--compare-average", "set datasets the study did not use beside the paper's Average row", "switch"),
      ("--all-datasets", "report every run found, not only those of ingest.datasets", "switch"))),
)
TOOLS = (("compile_pipeline", _compile_pipeline, "compile the Kubeflow pipeline to YAML",
          (("--out", "output pipeline YAML"),)),
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
           ("--checkpoint", "official SAM/MobileSAM weights (random init when omitted)", "optional"))),
         ("models", _models, "parameter counts of every backbone x strategy beside the study's Table 3", ()),
         ("profile", _profile, "write a settings profile (profiles/<name>.yaml: demo, study) into params.yaml",
          (("--name", "profile name, or a YAML file of params.yaml overrides"),
           ("--dvc", "print the `dvc exp run -S ...` command instead of editing params.yaml", "switch"))))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="<step>")
    for name, handler, help_text, arguments in STEPS + TOOLS:
        _add_step(subparsers, name, handler, help_text, arguments)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"medseg: {category.__name__}: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except MedsegError as exc:
        print(f"medseg {args.command}: error: {exc.one_line()}", file=sys.stderr)
    except OSError as exc:  # disk full, permissions, a vanished file: the OS names the file and the problem
        where = exc.filename if exc.filename is not None else "(no file named)"
        print(f"medseg {args.command}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
