"""The ``medseg`` command line: one subcommand per pipeline step (same name as its DVC stage and
Kubeflow component). Heavy libraries are imported inside the handlers so that start-up is fast."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medseg import __version__
from medseg.cli_registry import REGISTRY_TOOLS
from medseg.cli_tools import TOOLS, Handler, copy_text, step_params
from medseg.cli_tools import model_file as _model_file
from medseg.errors import MedsegError
from medseg.names import check_name
from medseg.params import section


def _sample(args: argparse.Namespace) -> int:
    from medseg.data.sample import SYNTHETIC_NOTICE, PhantomSpec, write_sample

    params = step_params(args)
    cases = write_sample(args.out, PhantomSpec.from_params(section(params, "sample")), int(params["seed"]))
    print(f"sample: wrote {len(cases)} phantom cases to {args.out} ({SYNTHETIC_NOTICE})")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from medseg.data.ingest import ingest_dataset

    params = step_params(args)
    check_name(args.dataset, "--dataset")
    summary = ingest_dataset(args.dataset, args.raw, args.out, section(params, "ingest"), int(params["seed"]))
    print(f"ingest: {summary['num_slices']} slices of {args.dataset} -> {args.out} "
          f"(slices per split {summary['slices_per_split']}, grouping by {summary['grouping']}"
          f"{', skipped ' + str(len(summary['skipped'])) + ' cases' if summary['skipped'] else ''})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from medseg.quality.validate import validate

    params = step_params(args)
    check_name(args.dataset, "--dataset")
    ingest, gate = section(params, "ingest"), section(params, "validate")
    settings = {**gate, "image_size": ingest["image_size"], "drop_empty_slices": ingest["drop_empty_slices"],
                "split_fractions": ingest["split_fractions"]}
    try:
        result = validate(args.dataset, args.data, args.out, settings, args.raw, args.reference)
    finally:
        summary = Path(args.out) / "summary.md"
        if args.markdown and summary.is_file():
            copy_text("validate", summary, args.markdown, "# Validation of")
    checks = result["checks"]
    print(f"validate: {args.dataset} passed {sum(checks.values())}/{len(checks)} checks, "
          f"{result['num_warnings']} warning(s) -> {Path(args.out) / 'summary.md'}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from medseg.train.config import TrainConfig
    from medseg.train.finetune import finetune

    params = step_params(args)
    check_name(args.dataset, "--dataset")
    profile, mode = check_name(args.profile or "full", "--profile"), check_name(args.mode or "automated", "--mode")
    config = TrainConfig.from_params(  # --checkpoint: on Kubeflow, SAM's weights pulled from the DVC remote
        params, profile=profile, mode=mode, strategy=args.strategy, init=check_name(args.init or "sam", "--init"),
        init_weights=args.init_weights, checkpoint=args.checkpoint)
    work_root = section(params, "finetune")["work_dir"]
    with _dataset_dir(args) as data:
        summary = finetune(args.dataset, args.strategy, data, args.out, config, work_root, args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        print(f"finetune: {summary['strategy']} ({summary['mode']}, {summary['init']} init, {summary['profile']}) on "
              f"{summary['dataset']}: best epoch "
              f"{summary['best_epoch']}, val Dice {summary['best_val_dice']:.4f}, {summary['wall_time_s']:.0f} s, "
              f"peak memory {summary['peak_memory_mb']} MB ({summary['device']} x{summary['processes']}), "
              f"trainable {summary['params_trainable']:,} of {summary['params_total']:,} params -> "
              f"{Path(args.out) / 'model.pt'}")
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from medseg.baselines.networks import parse_baseline
    from medseg.train.config import TrainConfig
    from medseg.train.finetune import finetune

    params = step_params(args)
    check_name(args.dataset, "--dataset")
    settings = section(params, "baseline")
    profile = check_name(args.profile or "full", "--profile")
    unweighted = {**params, "finetune": {**section(params, "finetune"), "checkpoint": None}}  # SAM's: not read
    config = dataclasses.replace(TrainConfig.from_params(unweighted, profile=profile),
                                 checkpoint=None, encoder_checkpoint=None, init="scratch",
                                 lr=float(settings.get("lr") or section(params, "finetune")["lr"]))
    work_root = section(params, "finetune")["work_dir"]
    if args.network == "nnunet":
        from medseg.baselines.nnunet_run import NnunetSettings, train_nnunet

        nnunet_settings = NnunetSettings.from_params(settings.get("nnunet"))
        summary = train_nnunet(args.dataset, args.data, args.out, config, nnunet_settings, work_root, args.resume)
    else:
        model = parse_baseline(args.network, settings.get(args.network))
        summary = finetune(args.dataset, model, args.data, args.out, config, work_root, args.resume)
    if os.environ.get("RANK", "0") == "0":
        print(f"baseline: {args.network} ({summary['profile']}) on {summary['dataset']}: best epoch "
              f"{summary['best_epoch']}, val Dice "
              f"{summary['best_val_dice']:.4f}, {summary['wall_time_s']:.0f} s, {summary['params_total']:,} params "
              f"-> {Path(args.out) / 'model.pt'}")
    return 0


def _pretrain_mae(args: argparse.Namespace) -> int:
    from medseg.pretrain.mae_run import MaeSettings, pretrain_mae

    summary = _pretrain(args, MaeSettings, pretrain_mae)
    if os.environ.get("RANK", "0") == "0":
        print(f"pretrain_mae: {args.backbone} on {', '.join(summary['datasets'])} ({summary['train_slices']} slices): "
              f"{summary['epochs_run']} epochs, val loss {summary['final_val_loss']:.4f}, "
              f"{summary['wall_time_s']:.0f} s -> {Path(args.out) / 'encoder.pt'} (init sslsam)")
    return 0


def _pretrain_sup(args: argparse.Namespace) -> int:
    from medseg.pretrain.sup_run import SupSettings, pretrain_sup

    summary = _pretrain(args, SupSettings, pretrain_sup)
    if os.environ.get("RANK", "0") == "0":
        print(f"pretrain_sup: {args.backbone} on {', '.join(summary['datasets'])} ({summary['train_items']} prompted "
              f"slices): best epoch {summary['best_epoch']}, val Dice {summary['best_val_dice']:.4f}, "
              f"{summary['wall_time_s']:.0f} s -> {Path(args.out) / 'weights.pt'} (init supsam)")
    return 0


def _pretrain(args: argparse.Namespace, settings_type: Any, run: Any) -> dict[str, Any]:
    """A pretraining step: its settings for ``--backbone``, then ``run`` on the datasets of ``--data-root``."""
    from medseg.models.backbones import ENCODER_BUILDERS

    params = step_params(args)
    if args.backbone not in ENCODER_BUILDERS:
        raise MedsegError(f"--backbone must be one of {sorted(ENCODER_BUILDERS)}, got {args.backbone!r}")
    settings = settings_type.from_params(params, args.backbone)
    with _data_root(args) as data_root:
        return run(settings, data_root, args.out, section(params, "finetune")["work_dir"], args.resume)


@contextlib.contextmanager
def _data_root(args: argparse.Namespace, option: str = "--data-root") -> Iterator[Path]:
    """``--data-root``, or on Kubeflow a temporary folder linking each collected ``processed`` dataset by its alias."""
    if getattr(args, "data_root", None) is not None:
        yield Path(args.data_root)
        return
    if args.executor_input is None:
        raise MedsegError(f"{option} is required (or --kfp-executor-input with a collected 'processed' input)")
    from medseg.kfp_io import input_paths
    from medseg.pretrain.common import linked_data_root

    with linked_data_root(input_paths(args.executor_input, "processed")) as root:
        yield root


@contextlib.contextmanager
def _dataset_dir(args: argparse.Namespace) -> Iterator[Path]:
    """``--data``, or on Kubeflow the collected ``processed`` dataset whose alias is ``--dataset``."""
    if args.data is not None:
        yield Path(args.data)
        return
    with _data_root(args, "--data") as root:
        if not (root / args.dataset).is_dir():
            raise MedsegError(f"dataset {args.dataset} is not among the collected 'processed' datasets "
                              f"({', '.join(sorted(p.name for p in root.iterdir())) or 'none'})")
        args.data = str((root / args.dataset).resolve())  # provenance records the artifact itself
        yield root / args.dataset


def _evaluate(args: argparse.Namespace) -> int:
    from medseg.eval.evaluate import evaluate

    params = step_params(args)
    check_name(args.dataset, "--dataset")
    check_name(args.strategy, "--strategy")
    from medseg.eval.scoring import ScoreSettings
    from medseg.train.prompted import PromptSettings

    settings = section(params, "evaluate")
    prompts = PromptSettings(**section(params, "finetune").get("prompts", {}))
    args.model = _model_file(args.model)
    args.out = _evaluation_dir(args)  # with --runs-root: from the metadata of the model file (not its folder)
    with _dataset_dir(args) as data:
        metrics = evaluate(args.dataset, args.strategy, data, args.model, args.out, ScoreSettings.from_params(params),
                           int(settings["batch_size"]), prompts, int(settings["overlay_slices"]),
                           str(settings.get("device", "auto")))
    args.kfp_metrics = {key: metrics[key] for key in METRIC_KEYS if isinstance(metrics.get(key), int | float)}
    dice = "n/a" if metrics["dice_mean"] is None else f"{metrics['dice_mean']:.4f}"
    print(f"evaluate: {args.strategy} ({metrics['mode']}) on {args.dataset}: test Dice {dice} over "
          f"{metrics['num_slices']} slices -> {Path(args.out) / 'metrics.json'}")
    return 0


def _evaluation_dir(args: argparse.Namespace) -> str:
    """``--out``, or ``<--runs-root>/<dataset>/<init>/<profile>/<mode>/<strategy>/eval`` (the layout ``report``
    reads) with the init, profile and mode the model records."""
    if (args.out is None) == (args.runs_root is None):
        raise MedsegError("give --out or --runs-root (not both)")
    if args.out is not None:
        return args.out
    from medseg.eval.reference import run_folder
    from medseg.models.checkpoints import exported_metadata

    metadata = exported_metadata(args.model)
    for key in ("init", "profile"):  # they become folder names: plain identifiers only
        if metadata.get(key) is not None:
            check_name(metadata[key], f"{args.model}: the model's {key}")
    folder = run_folder({"strategy": args.strategy, **metadata})
    return str(Path(args.runs_root) / args.dataset / folder / args.strategy / "eval")


def _report(args: argparse.Namespace) -> int:
    from medseg.eval.report import write_report

    params = step_params(args)  # read even with --all-datasets: the report records what it ran with
    datasets = None if args.all_datasets else section(params, "ingest")["datasets"]
    if args.runs is None:  # on Kubeflow: the evaluations collected out of the grid
        if args.executor_input is None:
            raise MedsegError("--runs is required (or --kfp-executor-input with a collected 'runs' input)")
        from medseg.kfp_io import input_paths

        args.runs_list = input_paths(args.executor_input, "runs") + [
            path for name in ("more_runs", "pretrained_runs")
            for path in input_paths(args.executor_input, name, required=False)]
    runs = args.runs if args.runs is not None else args.runs_list
    table = write_report(runs, args.out, compare_average=args.compare_average, datasets=datasets,
                         carry_runs=args.carry_runs)
    if args.markdown:
        copy_text("report", table, args.markdown, "# medseg results")
    if args.html:
        copy_text("report", table.with_suffix(".html"), args.html, "<!doctype html><html><head>")
    print(table.read_text())
    print(f"report: written to {table} (with report.csv, comparison.csv, report.html and figures/)")
    return 0


def _regress(args: argparse.Namespace) -> int:
    from medseg.eval.regress import HEADING, Settings, choose_baseline, write_regress

    params = step_params(args)
    settings = section(params, "regress")
    if args.runs is None:  # on Kubeflow: the evaluations collected out of the pipeline's loop
        if args.executor_input is None:
            raise MedsegError("--runs is required (or --kfp-executor-input with a collected 'runs' input)")
        from medseg.kfp_io import input_paths

        args.runs_list = input_paths(args.executor_input, "runs")
    roots = [args.runs] if args.runs is not None else args.runs_list
    baseline = choose_baseline({"--baseline-rev": args.baseline_rev, "--baseline": args.baseline,
                                "--baseline-text": args.baseline_text}, settings, roots)
    result = write_regress(roots, args.out, baseline, Settings.from_params(settings))
    if args.markdown:
        copy_text("regress", result.folder / "regress.md", args.markdown, HEADING)
    print(result.markdown)
    print(f"regress: {result.summary} -> {result.folder / 'regress.md'}")
    return 1 if result.failed else 0  # exit 1: a regression; 2 (raised): bad input, nothing compared


def _add_step(subparsers: argparse._SubParsersAction, name: str, handler: Handler, help_text: str,
              arguments: Sequence[tuple[str, ...]]) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    for flag, flag_help, *kind in arguments:
        if kind == ["switch"]:
            parser.add_argument(flag, action="store_true", help=flag_help)
        elif kind == ["positional"]:
            parser.add_argument(flag, help=flag_help)
        elif kind == ["pair"]:
            parser.add_argument(flag, nargs=2, type=float, metavar=("LOW", "HIGH"), help=flag_help)
        else:
            parser.add_argument(flag, required=not kind, help=flag_help)
    parser.add_argument("--params", default=None, help="params file (default: $MEDSEG_PARAMS or ./params.yaml)")
    parser.add_argument("--params-text", default=None, help="the whole params as YAML text, instead of a file")
    parser.add_argument("--params-override", default=None,
                        help="YAML/JSON mapping merged over the params, e.g. '{finetune: {max_epochs: 2}}'")
    parser.add_argument("--kfp-executor-input", default=None,
                        help="Kubeflow's executor input ({{$}}): record provenance and metrics on the output artifacts")
    parser.set_defaults(handler=handler)


DATASET = ("--dataset", "dataset alias, e.g. sample")
STRATEGY = ("--strategy", "strategy id <backbone>_<dec|endec>_<method>, e.g. vit_t_dec_vanilla")
DATA = ("--data", "ingested dataset directory")
COLLECTED_DATA = ("--data", "ingested dataset directory (on Kubeflow, or the collected 'processed' input's dataset "
                            "named by --dataset)", "optional")

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
     (DATASET, STRATEGY, COLLECTED_DATA, ("--out", "run directory (model.pt, training logs)"),
      ("--mode", "automated (default), point or box prompts", "optional"),
      ("--profile", "full (default: all training slices) or fewshot (the 5-shot selection, finetune.fewshot)",
       "optional"),
      ("--init", "initial weights: sam (default: finetune.checkpoint), medsam, sslsam or supsam", "optional"),
      ("--init-weights", "with --init medsam, sslsam or supsam: the folder of its weights, one sub-folder per "
                         "backbone (models/pretrain/<init>)", "optional"),
      ("--checkpoint", "initial SAM weights file, instead of finetune.checkpoint", "optional"),
      ("--resume", "continue an interrupted run from its last saved epoch", "switch"))),
    ("baseline", _baseline, "train a baseline network (unet, swinunet, nnunet) on one dataset, as finetune "
     "trains SAM",
     (DATASET, ("--network", "unet, swinunet or nnunet (nnU-Net's own planner and trainer)"), DATA,
      ("--out", "run directory (model.pt, training logs)"),
      ("--profile", "full (default: all training slices) or fewshot (the 5-shot selection)", "optional"),
      ("--resume", "continue an interrupted run (nnunet: nnU-Net's --c)", "switch"))),
    ("pretrain_mae", _pretrain_mae, "SSLSAM: masked-image pretraining of a SAM image encoder on ingested datasets",
     (("--backbone", "vit_b (the study), vit_t or vit_h"),
      ("--data-root", "folder of ingested datasets: <data-root>/<alias> for each of pretrain_mae.datasets "
                      "(on Kubeflow: the collected 'processed' input)", "optional"),
      ("--out", "run directory (encoder.pt, reconstructions.png, training logs)"),
      ("--resume", "continue an interrupted run from its last saved epoch", "switch"))),
    ("pretrain_sup", _pretrain_sup, "SupSAM: prompt-based supervised training of SAM on many datasets at once",
     (("--backbone", "vit_b (the study), vit_t or vit_h"),
      ("--data-root", "folder of ingested datasets: <data-root>/<alias> for each of pretrain_sup.datasets "
                      "(on Kubeflow: the collected 'processed' input)", "optional"),
      ("--out", "run directory (weights.pt, training logs)"),
      ("--resume", "continue an interrupted run from its last saved epoch", "switch"))),
    ("evaluate", _evaluate, "test-split metrics of a fine-tuned model",
     (DATASET, STRATEGY, COLLECTED_DATA, ("--model", "exported model.pt, or the run folder holding it"),
      ("--out", "evaluation directory", "optional"),
      ("--runs-root", "instead of --out: write <runs-root>/<dataset>/<init>/<profile>/<mode>/<strategy>/eval, "
                      "as the model records them", "optional"))),
    ("report", _report, "aggregate evaluated runs into the results table",
     (("--runs", "directory of <dataset>/<init>/<profile>/<mode>/<strategy>/eval runs (on Kubeflow: the "
                 "collected input)", "optional"), ("--out", "report directory"),
      ("--markdown", "also write the report to this single Markdown file", "optional"),
      ("--html", "also write the self-contained HTML report to this file", "optional"),
      ("--compare-average", "set datasets the study did not use beside the paper's Average row", "switch"),
      ("--all-datasets", "report every run found, not only those of ingest.datasets", "switch"),
      ("--carry-runs", "copy the runs' summaries into <out>/runs, so another report can read this one", "switch"))),
    ("regress", _regress, "compare every evaluation with a baseline, metric by metric: a Markdown table; exit 1 "
     "when a metric drops beyond its tolerance (regress in params.yaml)",
     (("--runs", "directory of <dataset>/<init>/<profile>/<mode>/<strategy>/eval runs (on Kubeflow: the "
                 "collected input)", "optional"), ("--out", "output folder (regress.md, regress.json)"),
      ("--baseline-rev", "git revision whose committed runs are the baseline (default: regress.baseline_rev)",
       "optional"),
      ("--baseline", "a baseline file instead: an earlier regress.json, or {\"runs\": {run: {metric: value}}} "
                     "(default: regress.baseline_file)", "optional"),
      ("--baseline-text", "a baseline file's content (the Kubeflow pipeline's run parameter)", "optional"),
      ("--markdown", "also write the table to this single Markdown file", "optional"))),
)
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="<step>")
    for name, handler, help_text, arguments in STEPS + TOOLS + REGISTRY_TOOLS:
        _add_step(subparsers, name, handler, help_text, arguments)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"medseg: {category.__name__}: {message}\n"


INPUT_OPTIONS = ("raw", "data", "data_root", "model", "reference", "runs", "checkpoint", "init_weights", "baseline")
METRIC_KEYS = ("dice_mean", "dice_ci_low", "dice_ci_high", "dice_volume_mean", "iou_mean", "hd95_mean", "nsd_mean")


def _inputs(args: argparse.Namespace) -> dict[str, str]:
    """The step's input paths by option name (a report's collected runs as ``runs``, ``runs_1``, ...)."""
    found = {name: getattr(args, name) for name in INPUT_OPTIONS if getattr(args, name, None)}
    for index, path in enumerate(getattr(args, "runs_list", []) or []):
        found[f"runs_{index}" if index else "runs"] = str(path)
    return found


def _run(args: argparse.Namespace) -> int:
    """Run the step, recording its provenance; on Kubeflow, publish it (and an evaluation's metrics) as the
    output artifacts' metadata."""
    from medseg import kfp_io, provenance

    executor_input = kfp_io.parse(args.kfp_executor_input) if args.kfp_executor_input else None
    args.executor_input = executor_input
    recorder = provenance.Recorder(args.command, lambda: _inputs(args), lambda: getattr(args, "loaded_params", None))
    with provenance.recording(recorder):
        code = args.handler(args)
    if code == 0 and executor_input is not None:
        record = recorder.get()  # computed once: the step's outputs already asked for it
        brief = provenance.brief(record) if record is not None else {}
        metadata = {name: {**brief, **getattr(args, "artifact_metadata", {})}
                    for name in kfp_io.output_names(executor_input)}
        if getattr(args, "kfp_metrics", None) is not None and "metrics" in metadata:
            metadata["metrics"] = args.kfp_metrics  # scalars only: the UI compares runs on these
        kfp_io.write_metadata(executor_input, metadata)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except MedsegError as exc:
        print(f"medseg {args.command}: error: {exc.one_line()}", file=sys.stderr)
    except OSError as exc:  # disk full, permissions, a vanished file: the OS names the file and the problem
        where = exc.filename if exc.filename is not None else "(no file named)"
        print(f"medseg {args.command}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
