"""`medseg pull`: a DVC-tracked path at the version the project pins, from a local DVC remote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import run_tool
from medseg.cli import main
from medseg.provenance import dvc_hash


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DVC project (no git, as in the image) with one tracked folder and one tracked file, pushed."""
    root = tmp_path_factory.mktemp("project")
    run_tool(["dvc", "init", "--no-scm", "-q"], root)
    run_tool(["dvc", "remote", "add", "-d", "store", str(root.parent / f"{root.name}-remote")], root)
    raw = root / "data/raw/us_breast"
    raw.mkdir(parents=True)
    (raw / "a.png").write_bytes(b"image-a")
    (raw / "sub").mkdir()
    (raw / "sub/b.png").write_bytes(b"image-b")
    (root / "checkpoints").mkdir()
    (root / "checkpoints/mobile_sam.pt").write_bytes(b"weights")
    run_tool(["dvc", "add", "-q", "data/raw/us_breast", "checkpoints/mobile_sam.pt"], root)
    run_tool(["dvc", "push", "-q"], root)
    return root


def _pull(project: Path, target: str, out: Path, *extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("MEDSEG_PROJECT_DIR", str(project))
    return main(["pull", "--target", target, "--out", str(out), *extra])


def test_folder_and_file_arrive_as_pinned(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _pull(project, "data/raw/us_breast", tmp_path / "raw", monkeypatch=monkeypatch) == 0
    assert (tmp_path / "raw/sub/b.png").read_bytes() == b"image-b"
    pinned = yaml.safe_load((project / "data/raw/us_breast.dvc").read_text())["outs"][0]["md5"]
    assert dvc_hash(tmp_path / "raw") == pinned
    assert _pull(project, "checkpoints/mobile_sam.pt", tmp_path / "w.pt", monkeypatch=monkeypatch) == 0
    assert (tmp_path / "w.pt").read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "w.pt"]  # no scratch left behind


def test_records_the_pin_on_the_kubeflow_artifact(project: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    executor_input = {"outputs": {"artifacts": {"data": {"artifacts": [{"name": "data", "uri": str(tmp_path / "d")}]}},
                                  "outputFile": str(tmp_path / "out/executor_output.json")}}
    code = _pull(project, "checkpoints/mobile_sam.pt", tmp_path / "d", "--kfp-executor-input",
                 json.dumps(executor_input), monkeypatch=monkeypatch)
    assert code == 0
    metadata = json.loads((tmp_path / "out/executor_output.json").read_text())["artifacts"]["data"]["artifacts"][0]
    assert metadata["metadata"]["dvc_hash"] == dvc_hash(tmp_path / "d")
    assert metadata["metadata"]["pinned_by"] == "mobile_sam.pt.dvc" and metadata["uri"] == str(tmp_path / "d")


@pytest.mark.parametrize(("target", "message"), [
    ("data/raw/nothing", "not tracked by DVC"),
    ("../outside", "plain relative path"),
    ("/etc/passwd", "plain relative path"),
])
def test_untracked_or_unsafe_targets_are_refused(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str], target: str,
                                                 message: str) -> None:
    assert _pull(project, target, tmp_path / "x", monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_existing_output_and_unknown_remote_are_refused(project: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x").mkdir()
    assert _pull(project, "checkpoints/mobile_sam.pt", tmp_path / "x", monkeypatch=monkeypatch) == 2
    assert "writes only to a new path" in capsys.readouterr().err
    assert _pull(project, "checkpoints/mobile_sam.pt", tmp_path / "y", "--remote", "nope", monkeypatch=monkeypatch) == 2
    assert "no DVC remote 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_missing_object_on_the_remote_is_one_line(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    empty = tmp_path / "empty-remote"
    empty.mkdir()
    run_tool(["dvc", "remote", "add", "empty", str(empty)], copy)
    assert _pull(copy, "data/raw/us_breast", tmp_path / "r", "--remote", "empty", monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert "could not pull data/raw/us_breast" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_stage_outputs_pinned_in_dvc_lock(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage output (e.g. data/raw/sample) is pinned by dvc.lock instead of a .dvc file."""
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    entry = yaml.safe_load((copy / "data/raw/us_breast.dvc").read_text())["outs"][0]
    (copy / "data/raw/us_breast.dvc").unlink()
    stale = {**entry, "md5": "0" * 32 + ".dir"}  # DVC keeps the entries of stages dvc.yaml no longer has
    lock = {"schema": "2.0", "stages": {"old": {"cmd": "x", "outs": [{**stale, "path": "data/raw/us_breast"}]},
                                        "make@a": {"cmd": "x", "outs": [{**entry, "path": "data/raw/us_breast"}]}}}
    (copy / "dvc.lock").write_text(yaml.safe_dump(lock))
    (copy / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"make": {"matrix": {"x": ["a"]}, "cmd": "x"}}}))
    assert _pull(copy, "data/raw/us_breast", tmp_path / "r", monkeypatch=monkeypatch) == 0
    assert (tmp_path / "r/a.png").read_bytes() == b"image-a"
