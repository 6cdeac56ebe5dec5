"""Reading a git repository's committed files at a revision (``git ls-tree``, ``git cat-file``), without a
checkout: what ``medseg regress`` compares with and what ``medseg register``/``promote`` check."""

from __future__ import annotations

import subprocess
from pathlib import Path

from medseg.errors import MedsegError


def git(args: list[str], cwd: Path, feed: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run git in ``cwd``; a git that cannot start is a one-line error (a failing command is the caller's)."""
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=feed, capture_output=True, check=False, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        raise MedsegError(f"git could not run ({exc.__class__.__name__}: {exc})", cwd) from exc


def blobs(root: Path, oids: list[str]) -> list[bytes]:
    """The contents of git blobs, read in one ``git cat-file --batch``."""
    out = git(["cat-file", "--batch"], root, "".join(f"{oid}\n" for oid in oids).encode())
    if out.returncode:
        raise MedsegError(f"git cat-file failed: {out.stderr.decode(errors='replace').strip()}", root)
    contents, position = [], 0
    for _ in oids:
        end = out.stdout.index(b"\n", position)
        size = int(out.stdout[position:end].split()[2])
        contents.append(out.stdout[end + 1:end + 1 + size])
        position = end + 2 + size
    return contents


def committed_file(root: Path, commit: str, path: str) -> bytes | None:
    """The content of ``path`` (relative to the repository root) at ``commit``, or None when it is not there."""
    listing = git(["ls-tree", "-z", "--full-tree", commit, "--", path], root)
    if listing.returncode:
        raise MedsegError(f"git ls-tree failed: {listing.stderr.decode(errors='replace').strip()}", root)
    entry = listing.stdout.decode(errors="replace").split("\0")[0]
    meta, _, found = entry.partition("\t")
    if found != path or meta.split()[1:2] != ["blob"]:
        return None
    return blobs(root, [meta.split()[2]])[0]


def repository_root(folder: Path) -> Path:
    """The top of the git checkout holding ``folder``."""
    top = git(["rev-parse", "--show-toplevel"], folder)
    if top.returncode:
        raise MedsegError("not in a git checkout", folder)
    return Path(top.stdout.decode().strip()).resolve()


def resolve_commit(root: Path, rev: str) -> str | None:
    """The commit SHA ``rev`` names, or None."""
    found = git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root)
    return found.stdout.decode().strip() if found.returncode == 0 else None
