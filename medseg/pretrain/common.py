"""What both pretraining steps share: their datasets, the run's frame (runtime, output, work directory) and
the resume fingerprint."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medseg.data.slice_dataset import check_ingested
from medseg.errors import MedsegError
from medseg.locking import exclusive_lock
from medseg.names import check_name
from medseg.outputs import output_dir
from medseg.train.runtime import Runtime, start_runtime

Body = Callable[[Runtime, Path, Path | None], dict[str, Any]]  # (runtime, work directory, output or None)


def ingested_folders(data_root: str | Path, names: list[str], key: str) -> list[Path]:
    """``<data_root>/<name>`` of each dataset ``key`` lists, each checked to be an ingested dataset."""
    folders = [check_ingested(Path(data_root) / check_name(name, key)) for name in names]
    if not folders:
        raise MedsegError("lists no dataset to learn from", key)
    return folders


def run_pretraining(step: str, backbone: str, runtime_settings: tuple[str, str], places: tuple[Path, Path],
                    inputs: list[Any], body: Body) -> dict[str, Any]:
    """Run ``body`` in ``step``'s frame: the runtime (device, precision), the output ``places[0]`` (written only
    when the run ends) and the locked work directory ``<places[1]>/<step>/<backbone>`` (removed once the outputs
    are in place); returns the summary."""
    from medseg.train.finetune import on_main

    out_dir, work_root = places
    work = Path(work_root) / step / backbone
    with (start_runtime(*runtime_settings) as runtime,
          on_main(runtime, lambda: output_dir(step, out_dir, [*inputs, work_root])) as tmp,
          on_main(runtime, lambda: exclusive_lock(work, "this pretraining work directory"))):
        summary = body(runtime, work, tmp)
    if runtime.is_main:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def fingerprint(settings: Any, folders: list[Path], checkpoint: str | None) -> dict[str, str]:
    """What an interrupted run must match to resume: the settings, the datasets and the starting weights."""
    from medseg.train.fingerprint import data_fingerprint, weights_fingerprint

    text = json.dumps(dataclasses.asdict(settings), sort_keys=True, default=str)
    data = hashlib.sha256("|".join(data_fingerprint(f) for f in folders).encode()).hexdigest()
    return {"settings": hashlib.sha256(text.encode()).hexdigest(), "data": data,
            "weights": weights_fingerprint(checkpoint)}


@contextlib.contextmanager
def linked_data_root(folders: list[Path]) -> Iterator[Path]:
    """A temporary folder of links ``<alias>`` -> each ingested dataset (its alias from its ingest.json), removed
    afterwards: the ``--data-root`` layout over datasets that live elsewhere (Kubeflow's collected artifacts)."""
    import tempfile

    from medseg.data.slice_dataset import read_ingest_summary

    with tempfile.TemporaryDirectory(prefix="medseg-datasets-") as tmp:
        for folder in folders:
            alias = check_name(read_ingest_summary(folder).get("dataset"), f"{folder}/ingest.json dataset")
            if (Path(tmp) / alias).exists():
                raise MedsegError(f"dataset {alias} is collected twice", folder)
            (Path(tmp) / alias).symlink_to(Path(folder).resolve(), target_is_directory=True)
        yield Path(tmp)
