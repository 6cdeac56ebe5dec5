"""Where a step may write, checked before anything is written.

Rules (README, "Reliability"):

- An output never equals, contains or lies inside one of the step's inputs, and never equals or
  contains the working directory, a repository root (a folder holding ``.git``, ``.dvc`` or
  ``dvc.yaml``), the home folder or the file-system root.
- An output never lies inside another step's output (a folder holding a ``.medseg-step`` marker).
- An existing output is replaced only when the same step wrote it: a folder holding this step's
  marker, or holding nothing but files this step writes (by name: outputs of older versions, or what
  DVC left of them), or a file this step recognises as its own. A ``.gitignore`` in the folder (DVC
  keeps one in some outputs) is carried over.
- The step holds a lock on its output while it writes (a second run fails at once), removes the
  temporary siblings an interrupted earlier run left, builds the new output in a temporary sibling
  and renames it into place only on success.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from medseg import provenance
from medseg.atomic import atomic_dir, atomic_file
from medseg.errors import MedsegError
from medseg.locking import exclusive_lock

MARKER = ".medseg-step"
REPO_MARKERS = (".git", ".dvc", "dvc.yaml")
BOOKKEEPING = (".gitignore",)
STEP_FILES = {  # what each step writes into its output folder (glob patterns, relative)
    "sample": ("dataset.json", "SYNTHETIC.txt", "imagesTr/*", "labelsTr/*"),
    "datasets": ("*.json",),
    "ingest": ("images.npy", "masks.npy", "manifest.parquet", "ingest.json", "provenance.json"),
    "validate": ("validation.json", "summary.md", "reports/*", "provenance.json"),
    "finetune": ("model.pt", "train_summary.json", "training/*", "provenance.json"),
    "baseline": ("model.pt", "train_summary.json", "training/*", "nnunet/*", "provenance.json"),
    "pretrain_mae": ("encoder.pt", "train_summary.json", "training/*", "reconstructions.png", "provenance.json"),
    "pretrain_sup": ("weights.pt", "train_summary.json", "training/*", "provenance.json"),
    "evaluate": ("per_slice.parquet", "per_volume.parquet", "metrics.json", "metrics_details.json", "overlays.png",
                 "provenance.json"),
    "predict": ("predict.json", "*_mask.png", "*_mask.nii.gz", "*_mask.nii", "*_mask.mha", "*_mask.nrrd", "*_seg.dcm",
                "provenance.json"),
    "export_onnx": ("model.onnx", "encoder.onnx", "decoder.onnx", "*.onnx.data", "onnx.json", "provenance.json"),
    "report": ("report.md", "report.html", "report.csv", "comparison.csv", "figures/*", "provenance.json", "runs/*"),
    "regress": ("regress.md", "regress.json", "provenance.json"),
}
NO_PROVENANCE_FILE = ("sample", "datasets")  # raw data and registry entries stay exactly what they are
PathLike = str | Path


def marker_step(folder: Path) -> str | None:
    """The step that wrote ``folder`` (from its marker), ``"?"`` for an unreadable marker, else None."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    try:
        return str(json.loads(marker.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


def write_marker(folder: Path, step: str) -> None:
    """Mark ``folder`` as the output of ``step`` (deterministic bytes, so DVC hashes stay stable)."""
    (folder / MARKER).write_text(json.dumps({"step": step}) + "\n")


def _protected(cwd: Path, out: Path) -> list[tuple[Path, str]]:
    places = [(cwd, "the working directory"), (Path.home().resolve(), "the home folder"), (Path("/"), "/")]
    for folder in (out, cwd, *cwd.parents):
        if any((folder / name).exists() for name in REPO_MARKERS):
            places.append((folder, "a repository root"))
    return places


def _overlap(out: Path, other: Path) -> str | None:
    if out == other:
        return "is"
    if other.is_relative_to(out):
        return "contains"
    if out.is_relative_to(other):
        return "lies inside"
    return None


def _check_places(out: Path, inputs: Sequence[PathLike | None], original: PathLike) -> None:
    for raw in inputs:
        if raw is None or str(raw) == "":
            continue
        relation = _overlap(out, Path(raw).resolve())
        if relation:
            phrase = "is the same path as" if relation == "is" else relation
            raise MedsegError(f"output {phrase} the input '{raw}'; choose an output elsewhere", original)
    for place, what in _protected(Path.cwd().resolve(), out):
        if out == place or place.is_relative_to(out):
            raise MedsegError(f"output would replace {what} ({place}); choose a new folder for it", original)
    for folder in out.parents:
        if (owner := marker_step(folder)) is not None:
            raise MedsegError(f"output lies inside the output of `medseg {owner}` ({folder}); choose a folder "
                              "outside it", original)


def _foreign_files(step: str, folder: Path) -> list[str]:
    """Files in ``folder`` that ``step`` does not write (DVC's and git's bookkeeping aside)."""
    known = (*STEP_FILES.get(step, ()), *BOOKKEEPING, *(f"*/{name}" for name in BOOKKEEPING))
    files = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())
    return [name for name in files if not any(fnmatch.fnmatch(name, pattern) for pattern in known)]


def _check_replaceable_dir(step: str, out: Path, original: PathLike) -> None:
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise MedsegError(f"output exists and is not a folder written by `medseg {step}`; remove it or choose "
                          "another path", original)
    owner = marker_step(out)
    if owner is None and (foreign := _foreign_files(step, out)):
        raise MedsegError(f"output folder exists and holds files `medseg {step}` did not write (e.g. "
                          f"{foreign[0]}); remove them or choose a new folder", original)
    if owner is not None and owner != step:
        raise MedsegError(f"output folder was written by `medseg {owner}`, not `medseg {step}`; choose another "
                          "folder", original)


def _clean_stale_temps(target: Path) -> None:
    """Remove temporary siblings (``.<name>.tmp-*``) that an interrupted run of this output left."""
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def checked_output(out: PathLike, inputs: Sequence[PathLike | None] = ()) -> Path:
    """The resolved output path after the placement rules (not the replacement rule)."""
    resolved = Path(out).resolve()
    _check_places(resolved, inputs, out)
    return resolved


@contextlib.contextmanager
def output_dir(step: str, out: PathLike, inputs: Sequence[PathLike | None] = ()) -> Iterator[Path]:
    """A temporary folder that becomes ``out`` (with ``step``'s marker) only if the block succeeds."""
    target = checked_output(out, inputs)
    _check_replaceable_dir(step, target, out)
    with exclusive_lock(target, "the output folder"):
        _clean_stale_temps(target)
        with atomic_dir(target) as tmp:
            yield tmp
            write_marker(tmp, step)
            record = provenance.current()
            if record is not None and step not in NO_PROVENANCE_FILE:
                provenance.write(tmp, record)
            for name in BOOKKEEPING:
                if (target / name).is_file() and not (tmp / name).exists():
                    shutil.copy2(target / name, tmp / name)


@contextlib.contextmanager
def output_file(step: str, out: PathLike, inputs: Sequence[PathLike | None] = (),
                owned: Callable[[Path], bool] = lambda _: False) -> Iterator[Path]:
    """A temporary file that becomes ``out`` only if the block succeeds; an existing ``out`` is
    replaced only when ``owned(out)`` recognises it as this step's."""
    target = checked_output(out, inputs)
    if target.is_dir():
        raise MedsegError("output is an existing folder; give a file path", out)
    if target.exists() and not owned(target):
        raise MedsegError(f"output file exists and was not written by `medseg {step}`; remove it or choose "
                          "another path", out)
    with exclusive_lock(target, "the output file"):
        _clean_stale_temps(target)
        with atomic_file(target) as tmp:
            yield tmp


def starts_with(prefix: str) -> Callable[[Path], bool]:
    """An ``owned`` test for text outputs: the file begins with ``prefix``."""
    def owned(path: Path) -> bool:
        try:
            with path.open("rb") as handle:
                return handle.read(len(prefix.encode())) == prefix.encode()
        except OSError:
            return False
    return owned
