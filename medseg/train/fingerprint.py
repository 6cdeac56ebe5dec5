"""What a saved training state must match to be resumed: the settings, the training data and the
contents of the initial weight files, hashed separately so that a refusal can say which changed.

The data part hashes ``manifest.parquet`` and ``ingest.json`` byte for byte plus the shapes and
dtypes of the slice arrays (re-ingesting with other slices, splits or protocol changes it); the
weights part hashes each checkpoint file's content (chunked sha256), not only its path."""

from __future__ import annotations

import hashlib
from pathlib import Path

from medseg.data.slice_dataset import check_ingested, open_arrays
from medseg.errors import MedsegError

CHUNK = 1 << 20
PARTS = {"settings": "the settings", "data": "the training data", "weights": "the checkpoint files' contents"}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise MedsegError(f"cannot read file to fingerprint it ({exc.strerror or exc})", path) from exc
    return digest.hexdigest()


def data_fingerprint(data_dir: str | Path) -> str:
    """sha256 over the manifest and ingest summary bytes and the arrays' shapes and dtypes."""
    data_dir = check_ingested(data_dir)
    digest = hashlib.sha256()
    for name in ("manifest.parquet", "ingest.json"):
        digest.update(f"{name}|{file_sha256(data_dir / name)}|".encode())
    for name, array in zip(("images", "masks"), open_arrays(data_dir), strict=True):
        digest.update(f"{name}|{tuple(array.shape)}|{array.dtype.str}|".encode())
    return digest.hexdigest()


def weights_fingerprint(*paths: str | None) -> str:
    """sha256 over each weight file's path and content hash (``-`` for an absent setting)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path}|{file_sha256(path) if path else '-'}|".encode())
    return digest.hexdigest()


def changed_parts(saved: dict[str, str], current: dict[str, str]) -> list[str]:
    """Readable names of the parts that differ (every part when ``saved`` lacks one)."""
    return [PARTS.get(part, part) for part in current if saved.get(part) != current[part]]
