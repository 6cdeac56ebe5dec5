"""Helpers shared by the tests (importable as ``helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import yaml
from PIL import Image

from medseg.models.strategies import PeftConfig

REPO = Path(__file__).resolve().parents[1]
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "sample": {"num_patients": 6, "shape": [32, 32, 8]},
    "ingest": {"image_size": 64, "workers": 1},
    "finetune": {"max_epochs": 2, "batch_size": 4, "warmup_iters": 2},
    "evaluate": {"batch_size": 8},
}


def tiny_params() -> dict[str, Any]:
    """A fresh copy of the repository's params.yaml with sizes shrunk for fast tests."""
    params = copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))
    for section, values in TINY_OVERRIDES.items():
        params[section].update(values)
    return params


def peft_config() -> PeftConfig:
    """The Adapter/LoRA placements of the repository's params.yaml."""
    return PeftConfig.from_params(tiny_params()["models"])


def run_tool(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command of the environment (dvc, git, medseg) in ``cwd``; fail the test when it fails."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def project_copy(root: Path, params: dict[str, Any], skip: tuple[str, ...] = ()) -> Path:
    """A fresh git repository at ``root`` holding the project's files (minus paths starting with ``skip``)
    and ``params`` as params.yaml, committed."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(skip):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        run_tool(args, root)
    return root


def busi_layout(root: Path, count: int = 10) -> None:
    """Ultrasound-like PNGs with one bright lesion each and its 0/255 mask beside it."""
    rng = np.random.default_rng(0)
    folder = root / "Dataset_BUSI_with_GT" / "benign"
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:48, :48]
    for n in range(1, count + 1):
        cy, cx, r = rng.integers(14, 34), rng.integers(14, 34), rng.integers(5, 10)
        lesion = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        image = np.clip(rng.normal(80, 20, (48, 48)) + 120 * lesion, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"benign ({n}).png")
        Image.fromarray((lesion * 255).astype(np.uint8)).save(folder / f"benign ({n})_mask.png")


def hippocampus_layout(root: Path, count: int = 6) -> None:
    """MSD Task04 volumes with two structures: label 1 (anterior) and label 2 (posterior)."""
    rng = np.random.default_rng(1)
    task = root / "Task04_Hippocampus"
    (task / "imagesTr").mkdir(parents=True)
    (task / "labelsTr").mkdir()
    training = []
    for n in range(1, count + 1):
        label = np.zeros((32, 32, 6), dtype=np.uint8)
        label[8:16, 8:20, 1:5], label[18:26, 12:24, 1:5] = 1, 2
        image = rng.normal(100, 15, label.shape) + 60 * (label == 1) + 120 * (label == 2)
        name = f"hippocampus_{n:03d}.nii.gz"
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), task / "imagesTr" / name)
        nib.save(nib.Nifti1Image(label, np.eye(4)), task / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"name": "Hippocampus", "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
            "training": training, "test": []}
    (task / "dataset.json").write_text(json.dumps(meta))


def kill_after_first_commit(command: list[str], state: Path, timeout_s: float = 240) -> None:
    """Start ``command``, SIGKILL it once it has committed ``state`` (a saved epoch) and is into the next
    epoch, and wait for it; the test fails if the run finished before it could be interrupted."""
    import signal
    import time

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while not state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    assert process.poll() is None, "the run finished before it could be interrupted"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
