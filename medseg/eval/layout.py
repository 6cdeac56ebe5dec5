"""Where evaluations live: ``<runs>/<dataset>/<init>/<profile>/<mode>/<strategy>/eval/metrics.json``, in one runs
folder or several (a Kubeflow grid's collected evaluations), or carried by an earlier report. Shared by
``medseg report`` and ``medseg regress``; no heavy imports."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from medseg.errors import MedsegError

RUN_GLOB = "*/*/*/*/*/eval/metrics.json"
CARRIED_RUNS = "runs"  # an earlier report's copy of the runs it read (``medseg report --carry-runs``)


def evaluation_files(roots: Sequence[str | Path]) -> Iterator[tuple[Path, Path]]:
    """(runs root, metrics.json) of every evaluation, sorted per root; a run found twice is an error."""
    seen: dict[str, Path] = {}
    for given in roots:
        root = Path(given)
        if not root.is_dir():
            raise MedsegError("runs directory not found", given)
        if (root / CARRIED_RUNS).is_dir() and (root / "report.md").is_file():
            root = root / CARRIED_RUNS  # an earlier report (a Kubeflow dataset's report) carries its runs
        for path in sorted(root.glob(RUN_GLOB)):
            key = path.parent.parent.relative_to(root).as_posix()
            if key in seen:
                raise MedsegError(f"run {key} appears twice (also under {seen[key]})", root)
            seen[key] = root
            yield root, path
