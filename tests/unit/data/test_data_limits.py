"""Huge headers are refused before any voxel is read; ``on_error: skip`` reports bad cases."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pandas as pd
import pytest

from helpers import tiny_params
from medseg.data.ingest import ingest_dataset
from medseg.data.volumes import read_2d, read_volume
from medseg.errors import MedsegError

HUGE = 100_000


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims width x height but which carries almost no image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 16))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b""))
    return path


def test_100k_by_100k_png_is_refused_from_its_header(tmp_path: Path) -> None:
    """libpng itself refuses such a header; either way the file is named and nothing is decoded."""
    path = _png_header_only(tmp_path / "huge.png", HUGE, HUGE)
    with pytest.raises(MedsegError, match=r"huge\.png: (image of size .* exceeds the limit|cannot read image header)"):
        read_2d(path, max_voxels=2**28)
    small = _png_header_only(tmp_path / "wide.png", 20_000, 20_000)
    with pytest.raises(MedsegError, match=r"wide\.png: image of size \(20000, 20000\) exceeds the limit"):
        read_2d(small, max_voxels=2**28)


def test_100k_by_100k_mha_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "huge.mha"
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 1\nElementType = MET_UCHAR\n"
                    "ElementDataFile = LOCAL\n")
    with pytest.raises(MedsegError, match=r"huge\.mha: image of size \(100000, 100000, 1\) exceeds the limit"):
        read_volume(path, max_voxels=2**28)


def test_skip_mode_lists_bad_cases_and_keeps_the_rest(phantom_raw: Path, tmp_path: Path) -> None:
    import shutil

    raw = Path(shutil.copytree(phantom_raw, tmp_path / "raw"))
    bad = raw / "imagesTr" / "phantom_002.nii.gz"
    bad.write_bytes(bad.read_bytes()[:300])
    params = {**tiny_params()["ingest"], "on_error": "skip"}
    summary = ingest_dataset("sample", raw, tmp_path / "out", params, seed=0)
    assert [s["case"] for s in summary["skipped"]] == ["phantom_002"]
    assert "phantom_002.nii.gz" in summary["skipped"][0]["problem"]
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert "phantom_002" not in set(manifest["case"]) and manifest["case"].nunique() == 5
    assert json.loads((tmp_path / "out" / "ingest.json").read_text())["skipped"] == summary["skipped"]
    with pytest.raises(MedsegError, match=r"phantom_002\.nii\.gz"):
        ingest_dataset("sample", raw, tmp_path / "strict", {**params, "on_error": "fail"}, seed=0)
    assert not (tmp_path / "strict").exists()
