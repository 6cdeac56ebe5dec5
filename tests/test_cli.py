"""The ``medseg`` command line: subcommands, fast start-up, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from medseg.cli import STEPS, build_parser

MEDSEG = str(Path(sys.executable).parent / "medseg")
STEP_NAMES = [name for name, *_ in STEPS]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MEDSEG, *args], capture_output=True, text=True, cwd=cwd, check=False)


def test_every_step_is_a_subcommand() -> None:
    assert STEP_NAMES == ["sample", "ingest", "validate", "finetune", "baseline", "pretrain_mae", "pretrain_sup",
                          "evaluate", "report", "regress"]
    help_text = _run("--help").stdout
    for name in STEP_NAMES:
        assert name in help_text


def test_cli_start_does_not_import_heavy_libraries() -> None:
    code = "import sys, medseg.cli; print(sorted({'torch', 'monai', 'kfp', 'pandas'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_missing_required_argument_is_a_usage_error() -> None:
    result = _run("ingest", "--dataset", "sample")
    assert result.returncode == 2 and "--raw" in result.stderr


def test_missing_params_file_is_one_line_naming_it(tmp_path: Path) -> None:
    result = _run("sample", "--out", str(tmp_path / "raw"), "--params", str(tmp_path / "nope.yaml"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"medseg sample: error: {tmp_path / 'nope.yaml'}: params file not found"]
    assert not (tmp_path / "raw").exists()


def test_corrupt_input_gives_one_line_and_no_output(tmp_path: Path, params_file: Path) -> None:
    raw = tmp_path / "raw"
    assert _run("sample", "--out", str(raw), "--params", str(params_file)).returncode == 0
    image = next((raw / "imagesTr").glob("*.nii.gz"))
    image.write_bytes(image.read_bytes()[:200])
    result = _run("ingest", "--dataset", "sample", "--raw", str(raw), "--out", str(tmp_path / "out"),
                  "--params", str(params_file))
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 2 and len(lines) == 1 and image.name in lines[0]
    assert not (tmp_path / "out").exists()


def test_parser_requires_a_step() -> None:
    parser = build_parser()
    assert parser.parse_args(["report", "--runs", "r", "--out", "o"]).markdown is None


def test_models_report_lists_every_strategy_beside_table3(capsys: pytest.CaptureFixture[str]) -> None:
    from medseg.cli import main

    assert main(["models", "--params", str(REPO / "params.yaml")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| vit_")]
    assert len(rows) == 18 + 3
    assert "| vit_b | endec | adapter | 96,094,479 | 2,499,328 (2.60%) | 97.28M / 3.68M | 97.28M / 3.68M |" in rows


@pytest.mark.parametrize(("args", "message"), [
    (["finetune", "--dataset", "sample", "--strategy", "vit_t_dec_vanilla", "--data", "x", "--out", "y",
      "--mode", "scribble"], "unknown mode 'scribble'"),
    (["finetune", "--dataset", "sample", "--strategy", "vit_t_dec_vanilla", "--data", "x", "--out", "y",
      "--mode", "automated_5shot"], "unknown mode 'automated_5shot'"),  # the 5-shot runs are --profile fewshot
    (["finetune", "--dataset", "sample", "--strategy", "vit_t_dec_vanilla", "--data", "x", "--out", "y",
      "--profile", "5shot"], "unknown profile '5shot'; known: ['full', 'fewshot']"),
    (["finetune", "--dataset", "sample", "--strategy", "vit_t_dec_vanilla", "--out", "y"],
     "--data is required (or --kfp-executor-input with a collected 'processed' input)"),
    (["export_sam", "--backbone", "vit_t", "--mode", "box", "--image-size", "big", "--out", "z.pt"],
     "--image-size must be a whole number"),
    (["export_sam", "--backbone", "vit_q", "--mode", "box", "--image-size", "64", "--out", "z.pt"],
     "unknown backbone 'vit_q'"),
    (["predict", "--model", "m.pt", "--input", ".", "--out", "y", "--batch-size", "0"],
     "--batch-size must be a whole number of at least 1, not '0'"),
    (["predict", "--model", "m.pt", "--input", "scan.nii.gz", "--out", "y", "--window", "-160", "240"],
     "scan.nii.gz: input not found"),
])
def test_bad_training_and_export_settings_are_one_line(args: list[str], message: str, tmp_path: Path,
                                                       params_file: Path) -> None:
    result = _run(*args, "--params", str(params_file), cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 2 and len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "z.pt").exists() and not (tmp_path / "y").exists()


def test_export_sam_writes_an_evaluable_candidate_model(tmp_path: Path, params_file: Path) -> None:
    from medseg.models.checkpoints import load_exported

    result = _run("export_sam", "--backbone", "vit_t", "--mode", "point", "--image-size", "64", "--out",
                  str(tmp_path / "model.pt"), "--params", str(params_file))
    assert result.returncode == 0 and "RANDOM" in result.stderr
    model, metadata = load_exported(tmp_path / "model.pt")
    assert model.candidates and model.mode == "point" and metadata["zeroshot"] is True


def test_predict_is_a_tool_beside_the_steps() -> None:
    help_text = _run("predict", "--help").stdout
    assert "predict" not in STEP_NAMES
    for option in ("--model", "--input", "--out", "--prompts", "--prompt-mask", "--batch-size", "--device",
                   "--window LOW HIGH", "--min-max"):
        assert option in help_text
    assert build_parser().parse_args(["predict", "--model", "m", "--input", "i", "--out", "o", "--window", "-160",
                                      "240"]).window == [-160.0, 240.0]


def test_checking_params_does_not_import_heavy_libraries() -> None:
    code = ("import sys; from medseg.params import load_params; load_params('params.yaml'); "
            "print(sorted({'torch', 'monai', 'kfp', 'pandas'} & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=REPO).stdout.strip() == "[]"


def test_strategy_ids_know_exactly_the_built_backbones() -> None:
    from medseg.models.backbones import ENCODER_BUILDERS
    from medseg.models.strategy_ids import BACKBONES

    assert sorted(BACKBONES) == sorted(ENCODER_BUILDERS)
