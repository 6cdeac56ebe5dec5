"""What a run records and how a Kubeflow task receives its settings: params text and override, the
provenance beside every output, and the executor input's artifacts and metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import REPO
from medseg import kfp_io, provenance
from medseg.cli import main
from medseg.errors import MedsegError
from medseg.params import load_params


def test_override_merges_key_by_key_and_is_checked() -> None:
    text = (REPO / "params.yaml").read_text()
    params = load_params(text=text, override='{"finetune": {"max_epochs": 3}, "evaluate": {"device": "cpu"}}')
    assert params["finetune"]["max_epochs"] == 3 and params["finetune"]["lr"] == 1e-4  # siblings kept
    assert load_params(text=text, override="")["finetune"]["max_epochs"] == 8
    with pytest.raises(MedsegError, match=r"--params-override: finetune.lr: .*greater than 0"):
        load_params(text=text, override="finetune: {lr: -1}")
    with pytest.raises(MedsegError, match="--params-override: expected a mapping"):
        load_params(text=text, override="[1, 2]")
    with pytest.raises(MedsegError, match="--params-text: not valid YAML"):
        load_params(text="a: [")


def test_dvc_hash_matches_what_dvc_lock_records() -> None:
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())
    out = lock["stages"]["sample@sample"]["outs"][0]
    if not (REPO / out["path"]).is_dir():
        pytest.skip("demo outputs not checked out")
    assert provenance.dvc_hash(REPO / out["path"]) == out["md5"]
    assert provenance.dvc_hash(REPO / "params.yaml") == __import__("hashlib").md5(
        (REPO / "params.yaml").read_bytes()).hexdigest()


def test_sample_step_leaves_its_raw_data_without_a_provenance_file(tmp_path: Path, params_file: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(provenance.GIT_SHA_ENV, "abc123")
    assert main(["sample", "--out", str(tmp_path / "raw"), "--params", str(params_file)]) == 0
    assert not (tmp_path / "raw" / provenance.PROVENANCE_FILE).exists()  # raw data stays as generated


def test_ingest_records_revision_input_hash_and_params(tmp_path: Path, phantom_raw: Path, params_file: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(provenance.GIT_SHA_ENV, "abc123")
    out = tmp_path / "processed"
    assert main(["ingest", "--dataset", "sample", "--raw", str(phantom_raw), "--out", str(out),
                 "--params", str(params_file), "--params-override", "ingest: {image_size: 32}"]) == 0
    record = json.loads((out / provenance.PROVENANCE_FILE).read_text())
    assert record["git_sha"] == "abc123" and record["step"] == "ingest"
    assert record["inputs"]["raw"]["dvc_hash"] == provenance.dvc_hash(phantom_raw)
    assert record["params"]["ingest"]["image_size"] == 32
    assert record["params_sha256"] == provenance.params_sha256(record["params"])


def _executor_input(tmp_path: Path, outputs: dict[str, str], inputs: dict[str, list[str]]) -> dict:
    return {"inputs": {"artifacts": {n: {"artifacts": [{"name": n, "uri": u} for u in uris]}
                                     for n, uris in inputs.items()}},
            "outputs": {"artifacts": {n: {"artifacts": [{"name": n, "uri": u, "metadata": {}}]}
                                      for n, u in outputs.items()},
                        "outputFile": str(tmp_path / "kfp/executor_output.json")}}


def test_executor_input_paths_follow_the_launchers_mounts(tmp_path: Path) -> None:
    executor_input = _executor_input(tmp_path, {}, {"runs": ["minio://mlpipeline/a/runs", "s3://b/c", "gs://g/h",
                                                             str(tmp_path / "local")]})
    assert kfp_io.input_paths(executor_input, "runs") == [Path("/minio/mlpipeline/a/runs"), Path("/s3/b/c"),
                                                          Path("/gcs/g/h"), tmp_path / "local"]
    assert kfp_io.local_path({"uri": "s3://b/c", "customPath": "/mnt/c"}) == Path("/mnt/c")
    assert kfp_io.local_path({"uri": "minio://m/x", "metadata": {"_kfp_workspace": True}}).parts[-2:] == ("m", "x")
    with pytest.raises(MedsegError, match="has no local path"):
        kfp_io.local_path({"uri": "ftp://host/x"})
    with pytest.raises(MedsegError, match="no input artifact 'other'"):
        kfp_io.input_paths(executor_input, "other")
    with pytest.raises(MedsegError, match="--kfp-executor-input: not JSON"):
        kfp_io.parse("{not json")


def test_metadata_is_written_for_the_launcher_to_merge(tmp_path: Path) -> None:
    executor_input = _executor_input(tmp_path, {"metrics": "minio://x/m", "runs": "minio://x/r"}, {})
    path = kfp_io.write_metadata(executor_input, {"metrics": {"dice_mean": 0.5, "hd95_mean": float("nan")}})
    written = json.loads(path.read_text())["artifacts"]["metrics"]["artifacts"][0]
    assert written["uri"] == "minio://x/m" and written["metadata"] == {"dice_mean": 0.5, "hd95_mean": None}
    with pytest.raises(MedsegError, match="no output artifact named nope"):
        kfp_io.write_metadata(executor_input, {"nope": {}})


def _evaluated_run(runs: Path, run: str, dice: float) -> Path:
    """An evaluation in evaluate's layout (``<dataset>/<init>/<profile>/<mode>/<strategy>/eval``)."""
    from PIL import Image

    dataset, init, profile, mode, strategy = run.split("/")
    folder = runs / run / "eval"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({
        "dataset": dataset, "strategy": strategy, "mode": mode, "init": init, "profile": profile,
        "fewshot": profile == "fewshot", "selection": "argmax", "dice_mean": dice, "num_slices": 8,
        "num_patients": 2}))
    Image.new("RGB", (8, 8), (int(dice * 255), 0, 0)).save(folder / "overlays.png")
    return folder


def test_a_report_carrying_its_runs_feeds_a_later_report(tmp_path: Path) -> None:
    """Kubeflow's two-level report: one per dataset (carrying its runs), then one over those."""
    from medseg.eval.report import write_report

    runs = tmp_path / "runs"
    names = ["sample/sam/full/automated/vit_t_dec_vanilla", "sample/sslsam/fewshot/automated/vit_t_dec_vanilla",
             "sample/scratch/full/automated/unet"]
    for n, name in enumerate(names):
        _evaluated_run(runs, name, 0.3 + 0.1 * n)
    first = write_report([runs], tmp_path / "per_dataset", carry_runs=True).parent
    for name in names:
        carried = first / "runs" / name / "eval"
        assert (carried / "metrics.json").is_file() and (carried / "overlays.png").is_file()
    final = write_report([first], tmp_path / "final").parent
    assert (final / "report.csv").read_text() == (first / "report.csv").read_text()
    assert len(pd.read_csv(final / "report.csv")) == len(names)
    with pytest.raises(MedsegError, match="appears twice"):
        write_report([first, runs], tmp_path / "twice")


def test_evaluation_folder_from_runs_root_and_model_folder(tmp_path: Path) -> None:
    """--runs-root places the evaluation by what the model records: <dataset>/<init>/<profile>/<mode>/<strategy>."""
    import argparse

    import torch

    from medseg.cli import _evaluation_dir, _model_file
    from medseg.models.checkpoints import export_checkpoint
    from medseg.models.factory import model_spec
    from medseg.models.segmenter import SamSegmenter
    from medseg.models.strategies import PeftConfig

    torch.manual_seed(0)
    spec = model_spec("vit_t_dec_vanilla", PeftConfig())
    export_checkpoint(SamSegmenter("vit_t", 64, 2, "box"), tmp_path / "model.pt", spec,
                      {"mode": "box", "init": "supsam", "profile": "fewshot", "fewshot": True})
    args = argparse.Namespace(out=None, runs_root=str(tmp_path / "runs"), model=str(tmp_path / "model.pt"),
                              dataset="us_breast", strategy="vit_t_dec_vanilla")
    assert _evaluation_dir(args) == str(tmp_path / "runs/us_breast/supsam/fewshot/box/vit_t_dec_vanilla/eval")
    export_checkpoint(SamSegmenter("vit_t", 64, 2), tmp_path / "old.pt", spec,
                      {"fewshot": True})  # a model written before init and profile were recorded
    old = argparse.Namespace(**{**vars(args), "model": str(tmp_path / "old.pt")})
    assert _evaluation_dir(old) == str(tmp_path / "runs/us_breast/sam/fewshot/automated/vit_t_dec_vanilla/eval")
    export_checkpoint(SamSegmenter("vit_t", 64, 2), tmp_path / "crafted.pt", spec,
                      {"init": "../../elsewhere"})  # names from a model file become folders: plain ones only
    with pytest.raises(MedsegError, match=r"crafted\.pt: the model's init '\.\./\.\./elsewhere' is not a valid name"):
        _evaluation_dir(argparse.Namespace(**{**vars(args), "model": str(tmp_path / "crafted.pt")}))
    with pytest.raises(MedsegError, match="not both"):
        _evaluation_dir(argparse.Namespace(**{**vars(args), "out": "x"}))
    with pytest.raises(MedsegError, match="give --out or --runs-root"):
        _evaluation_dir(argparse.Namespace(**{**vars(args), "runs_root": None}))
    with pytest.raises(MedsegError, match="checkpoint not found"):
        _evaluation_dir(argparse.Namespace(**{**vars(args), "model": str(tmp_path / "absent.pt")}))
    assert _model_file(str(tmp_path)) == str(tmp_path / "model.pt")


def test_on_kubeflow_the_dataset_comes_from_the_collected_processed_input(ingested_sample: Path,
                                                                         tmp_path: Path) -> None:
    """finetune and evaluate without --data: the collected 'processed' artifact whose alias is --dataset."""
    import argparse

    from medseg.cli import _dataset_dir

    executor_input = _executor_input(tmp_path, {}, {"processed": [str(ingested_sample)]})
    args = argparse.Namespace(data=None, data_root=None, dataset="sample", executor_input=executor_input)
    with _dataset_dir(args) as data:
        assert data.resolve() == ingested_sample.resolve() and (data / "ingest.json").is_file()
    assert args.data == str(ingested_sample.resolve())  # provenance records the artifact itself
    other = argparse.Namespace(**{**vars(args), "data": None, "dataset": "mri_heart"})
    with pytest.raises(MedsegError, match=r"dataset mri_heart is not among the collected 'processed' datasets "
                                          r"\(sample\)"), _dataset_dir(other):
        pass
    given = argparse.Namespace(**{**vars(args), "data": str(tmp_path / "elsewhere")})
    with _dataset_dir(given) as data:  # --data, when given, wins
        assert data == tmp_path / "elsewhere"


def test_many_inputs_are_summarised_in_the_brief_form() -> None:
    inputs = {f"runs_{i}": {"path": f"/r/{i}", "dvc_hash": f"{i:032x}"} for i in range(20)}
    record = {"step": "report", "inputs": inputs, "params": {"a": 1}, "params_sha256": "x"}
    short = provenance.brief(record)
    assert short["inputs"]["count"] == 20 and "params" not in short and len(json.dumps(short)) < 300
