"""`medseg regress`: evaluations against a baseline (a git revision's committed ones, or a baseline file), the
Markdown table, the exit codes (1: a regression, 2: bad input or no baseline) and the one-line summary."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from helpers import tiny_params
from medseg.cli import main

SAM = "sample/sam/full/automated/vit_t_dec_vanilla"
UNET = "sample/scratch/full/automated/unet"
HEADLINE = {"dice_mean": 0.62, "dice_volume_mean": 0.66, "iou_mean": 0.48, "nsd_mean": 0.31, "hd95_mean": 24.0}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


def _write_run(root: Path, run: str, **values: Any) -> Path:
    """A metrics.json as `medseg evaluate` writes it (identity, flags, headline metrics)."""
    dataset, init, profile, mode, strategy = run.split("/")
    path = root / "results/runs" / run / "eval/metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = {"dataset": dataset, "init": init, "profile": profile, "mode": mode, "strategy": strategy,
               "num_slices": 24, "num_patients": 2, **HEADLINE, **values}
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository whose branch main commits two evaluated runs and the tiny params; the working
    directory is its root (as `dvc repro` and CI run the step)."""
    root = tmp_path / "project"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "params only")
    _write_run(root, SAM)
    _write_run(root, UNET, dice_mean=0.70, hd95_mean=30.0)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "evaluations")
    _git(root, "checkout", "-qb", "change")
    monkeypatch.chdir(root)
    return root


def _regress(capsys: pytest.CaptureFixture[str], *args: str, out: str = "results/regress") -> tuple[int, str, str]:
    code = main(["regress", "--runs", "results/runs", "--out", out, "--params", "params.yaml", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _table(project: Path) -> list[list[str]]:
    lines = (project / "results/regress/regress.md").read_text().splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines
            if line.startswith("| sample/")]


def _set_params(project: Path, **regress: Any) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["regress"].update(regress)
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def test_unchanged_evaluations_pass_with_every_verdict_ok(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _regress(capsys)
    assert code == 0, err
    rows = _table(project)
    assert len(rows) == 2 * 5 and {row[-1] for row in rows} == {"ok"}
    assert [SAM, "dice_mean", "0.6200", "0.6200", "+0.0000", "0.01", "ok"] in rows
    assert [UNET, "hd95_mean", "30.0000", "30.0000", "+0.0000", "2", "ok"] in rows
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("regress: passed against results/runs at main (")
    assert "10 comparisons of 2 runs within tolerance -> " in summary
    report = json.loads((project / "results/regress/regress.json").read_text())
    assert report["passed"] is True and report["baseline"]["commit"] == _git(project, "rev-parse", "main")
    assert report["runs"][UNET]["dice_mean"] == 0.70 and len(report["comparisons"]) == 10
    assert "| run | metric | baseline | now | delta | tolerance | verdict |" in out  # the table, for logs


def test_a_drop_beyond_its_tolerance_fails_naming_the_run_and_metric(project: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _write_run(project, SAM, dice_mean=0.55, hd95_mean=25.5)  # Dice -0.07 (tolerance 0.01); HD95 +1.5 px (2 px)
    code, out, _ = _regress(capsys)
    assert code == 1
    assert out.strip().splitlines()[-1] == (
        f"regress: FAILED against results/runs at main ({_git(project, 'rev-parse', 'main')[:12]}): {SAM} dice_mean "
        "dropped from 0.6200 to 0.5500 (-0.0700, tolerance 0.01) -> results/regress/regress.md")
    verdicts = {(row[0], row[1]): row[-1] for row in _table(project)}
    assert verdicts[(SAM, "dice_mean")] == "**regressed**" and verdicts[(SAM, "hd95_mean")] == "ok"
    assert verdicts[(UNET, "dice_mean")] == "ok"
    report = json.loads((project / "results/regress/regress.json").read_text())  # the verdict is written too
    assert report["passed"] is False and [(c["run"], c["metric"]) for c in report["comparisons"] if c["failed"]] == [
        (SAM, "dice_mean")]


def test_hd95_is_better_lower_and_gains_or_drops_within_tolerance_pass(project: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _write_run(project, SAM, hd95_mean=27.5, dice_mean=0.61)  # HD95 up 3.5 px: worse
    _write_run(project, UNET, hd95_mean=20.0, dice_mean=0.80)  # HD95 down, Dice up: better
    code, out, _ = _regress(capsys)
    assert code == 1 and f"{SAM} hd95_mean rose from 24.0000 to 27.5000 (+3.5000, tolerance 2)" in out
    verdicts = {(row[0], row[1]): row[-1] for row in _table(project)}
    assert verdicts[(SAM, "dice_mean")] == "ok"  # exactly the tolerance: still a pass
    assert verdicts[(UNET, "hd95_mean")] == verdicts[(UNET, "dice_mean")] == "improved"
    _write_run(project, SAM)
    code, out, _ = _regress(capsys)
    assert code == 0 and out.strip().splitlines()[-1].endswith("within tolerance (2 improved) -> "
                                                               "results/regress/regress.md")


def test_an_unknown_revision_is_a_one_line_error_and_writes_nothing(project: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _regress(capsys, "--baseline-rev", "release-9")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("medseg regress: error: --baseline-rev: no revision 'release-9' in ")
    assert not (project / "results/regress").exists()
    _set_params(project, baseline_rev="nope")
    code, _, err = _regress(capsys)
    assert code == 2 and "regress.baseline_rev: no revision 'nope'" in err


def test_a_run_without_a_baseline_value_is_an_error_unless_new_runs_are_allowed(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = "sample/sam/full/box/vit_t_dec_vanilla"
    _write_run(project, new)  # evaluated now, absent at main
    code, _, err = _regress(capsys)
    assert code == 2 and err.count("\n") == 1 and not (project / "results/regress").exists()
    assert "results/runs at main (" in err and f"no baseline value for {new}: nothing to compare with" in err
    code, _, err = _regress(capsys, "--baseline-rev", "HEAD~1")  # a revision holding no evaluations at all
    assert code == 2 and "no evaluations under results/runs at HEAD~1" in err
    _set_params(project, new_runs="allow")
    code, out, _ = _regress(capsys)
    assert code == 0 and "(5 new)" in out.strip().splitlines()[-1]
    assert {row[-1] for row in _table(project) if row[0] == new} == {"new"}


def test_a_run_no_longer_evaluated_fails_unless_allowed(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(project / "results/runs" / UNET)
    code, out, _ = _regress(capsys)
    assert code == 1 and out.strip().splitlines()[-1].endswith(f"{UNET} is no longer evaluated -> "
                                                                "results/regress/regress.md")
    _set_params(project, dropped_runs="allow")
    code, out, _ = _regress(capsys)
    assert code == 0 and "(5 dropped)" in out


def test_a_ci_clone_reads_the_base_branch_from_origin(project: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """actions/checkout of a pull request: history fetched, main only as the remote-tracking origin/main."""
    _git(project, "commit", "-qm", "on the branch", "--allow-empty")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", "--branch", "change", str(project), str(clone))
    assert "main" not in _git(clone, "branch", "--list")
    monkeypatch.chdir(clone)
    code, out, err = _regress(capsys)
    assert code == 0, err
    assert "results/runs at origin/main (" in out.strip().splitlines()[-1]


def test_a_regress_json_serves_as_a_baseline_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _regress(capsys)[0] == 0
    shutil.copy(project / "results/regress/regress.json", project / "baseline.json")
    _write_run(project, UNET, dice_mean=0.70, hd95_mean=30.0, iou_mean=0.30)
    code, out, _ = _regress(capsys, "--baseline", "baseline.json")
    assert code == 1 and f"baseline.json: {UNET} iou_mean dropped from 0.4800 to 0.3000" in out
    _set_params(project, baseline_file="baseline.json", baseline_rev="nope")  # the file wins over the revision
    assert _regress(capsys)[0] == 1
    (project / "baseline.json").write_text('{"runs": {"../../etc/passwd": {"dice_mean": 1}}}')
    code, _, err = _regress(capsys)
    assert code == 2 and err.startswith("medseg regress: error: baseline.json: '../../etc/passwd' is not a run")
    code, _, err = _regress(capsys, "--baseline-text", "{}")
    assert code == 2 and 'not a baseline file: expected {"runs"' in err
    code, _, err = _regress(capsys, "--baseline", "baseline.json", "--baseline-rev", "main")
    assert code == 2 and "give one baseline, not --baseline-rev and --baseline" in err


def test_original_sams_oracle_selection_is_compared_as_a_run_of_its_own(project: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    zeroshot = "sample/sam/full/box/vit_b_zeroshot"
    _write_run(project, zeroshot, selection="argmax", oracle={**HEADLINE, "dice_mean": 0.9})
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "zero-shot")
    _git(project, "branch", "-f", "main")
    _write_run(project, zeroshot, selection="argmax", oracle={**HEADLINE, "dice_mean": 0.8})
    code, out, _ = _regress(capsys)
    assert code == 1 and f"{zeroshot} (oracle) dice_mean dropped from 0.9000 to 0.8000" in out
    assert {row[-1] for row in _table(project) if row[0] == zeroshot} == {"ok"}


@pytest.mark.parametrize(("regress", "message"), [
    ({"tolerance": {"dice_mean": -0.01}}, "regress.tolerance.dice_mean: Input should be greater than or equal to 0"),
    ({"metrics": ["dice_mean", "dice"]}, "regress.metrics.1: Input should be 'dice_mean', "),
    ({"tolerance": {"dice": 0.1}}, "regress.tolerance: unknown metric 'dice' (known: dice_mean, "),
    ({"tolerance": {"dice_mean": 0.01}}, "regress: tolerance.dice_volume_mean: missing (every metric in "
                                         "regress.metrics needs a tolerance)"),
    ({"baseline_rev": "--upload-pack=touch x"}, "regress.baseline_rev: String should match pattern"),
    ({"new_runs": "warn"}, "regress.new_runs: Input should be 'fail' or 'allow'"),
])
def test_bad_regress_settings_are_one_line_errors_naming_the_key(project: Path, capsys: pytest.CaptureFixture[str],
                                                                 regress: dict[str, Any], message: str) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["regress"] = {**params["regress"], **regress}  # replaced, not merged: a tolerance may go missing
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    code, out, err = _regress(capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert not (project / "results/regress").exists()


def test_an_option_like_revision_is_refused(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _regress(capsys, "--baseline-rev=--output=/tmp/x")
    assert code == 2 and "--baseline-rev '--output=/tmp/x': not a git revision" in err


# --- a trained model, then the same model with noise on its decoder ---------------------------------------------


@pytest.fixture(scope="module")
def trained(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A UNet trained on the tiny phantom (`medseg baseline`), scored by `medseg evaluate` into a git repository
    whose main branch commits the evaluation."""
    root = tmp_path_factory.mktemp("regress-model")
    params = tiny_params()
    params["finetune"].update(max_epochs=6, work_dir=str(root / "work"))
    params["evaluate"].update(bootstrap_samples=50, overlay_slices=1)
    project = root / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    model = root / f"models/{UNET}"
    common = ["--params", str(project / "params.yaml"), "--dataset", "sample", "--data", str(ingested_sample)]
    assert main(["baseline", "--network", "unet", "--out", str(model), *common]) == 0
    assert main(["evaluate", "--strategy", "unet", "--model", str(model), "--runs-root",
                 str(project / "results/runs"), *common]) == 0
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "the evaluated model")
    return {"project": project, "model": model / "model.pt", "data": ingested_sample}


def _evaluate_and_regress(trained: dict[str, Path], model: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    project = trained["project"]
    monkeypatch.chdir(project)
    common = ["--params", "params.yaml", "--dataset", "sample", "--data", str(trained["data"])]
    assert main(["evaluate", "--strategy", "unet", "--model", str(model), "--out", f"results/runs/{UNET}/eval",
                 *common]) == 0
    capsys.readouterr()
    code, out, _ = _regress(capsys)
    _git(project, "checkout", "-q", "--", "results/runs")  # the committed evaluation, for the next test
    return code, out


def test_the_same_model_evaluated_again_passes(trained: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _evaluate_and_regress(trained, trained["model"], capsys, monkeypatch)
    assert code == 0 and "5 comparisons of 1 run within tolerance" in out.strip().splitlines()[-1]
    assert {row[-1] for row in _table(trained["project"])} == {"ok"}


def test_a_model_with_noise_on_its_decoder_fails(trained: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The convolutions of the UNet's decoder (its upsampling path, MONAI's ``...submodule.2`` blocks, and the output
    block ``network.model.2``) get Gaussian noise as large as their weights: the evaluation drops, and the check
    names the run and metric."""
    payload = torch.load(trained["model"], map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    decoder = [key for key in payload["state_dict"] if key.endswith("conv.weight")
               and (key.startswith("network.model.2.") or ".2." in key.removeprefix("network.model.1."))]
    assert decoder and all(payload["state_dict"][k].is_floating_point() for k in decoder)
    for key in decoder:
        weights = payload["state_dict"][key]
        weights += torch.randn(weights.shape, generator=generator) * weights.std().clamp_min(1e-3)
    (tmp_path / "unet").mkdir()
    shutil.copy(trained["model"].parent / "train_summary.json", tmp_path / "unet")
    torch.save(payload, tmp_path / "unet/model.pt")
    code, out = _evaluate_and_regress(trained, tmp_path / "unet/model.pt", capsys, monkeypatch)
    summary = out.strip().splitlines()[-1]
    assert code == 1 and summary.startswith("regress: FAILED against results/runs at main (")
    assert f"{UNET} dice_mean dropped from " in summary
    assert "**regressed**" in {row[-1] for row in _table(trained["project"]) if row[1] == "dice_mean"}
