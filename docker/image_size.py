"""Estimate the image's size from the runtime lock, without building it (`make image-size`).

Sums the installed size of every package the runtime lock pins (files listed in each dist-info RECORD,
measured in a virtualenv that has them installed, bytecode included, as `pip install` leaves it), the
virtualenv's own pip, and adds the base image's uncompressed size. Packages only the dev lock adds
are listed separately: they are what the image leaves out.

    python docker/image_size.py [--lock requirements.lock] [--dev-lock requirements-dev.lock]
                                [--site-packages DIR] [--base-mb 130] [--top 15]
"""

from __future__ import annotations

import argparse
import re
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# python:3.11.7-slim-bookworm, linux/amd64, uncompressed (`docker image inspect`): about 130 MB.
BASE_IMAGE_MB = 130.0
VENV_EXTRAS = ("pip",)  # `python -m venv` installs it; the lock does not pin it
MB = 1_000_000
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(lock: Path) -> dict[str, str]:
    """``{normalized name: version}`` of a lock file's ``name==version`` lines (``-r`` lines are not followed)."""
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    size: int  # bytes


def installed_size(dist: metadata.Distribution) -> int:
    """Bytes of the files a distribution installed: the RECORD size, else the file's size on disk (for
    entries RECORD lists without one, such as bytecode and RECORD itself)."""
    total = 0
    for file in dist.files or []:
        if file.size is not None:
            total += file.size
            continue
        path = Path(file.locate())
        if path.is_file():
            total += path.stat().st_size
    return total


def scan(site_packages: Path) -> dict[str, Installed]:
    """Every distribution installed in ``site_packages``, by normalized name."""
    found: dict[str, Installed] = {}
    for dist in metadata.distributions(path=[str(site_packages)]):
        name = normalize(dist.metadata["Name"])
        found[name] = Installed(dist.metadata["Name"], dist.version, installed_size(dist))
    return found


def source_size() -> int:
    """Bytes of the project's packages and of what /app holds, from the checkout (an editable install
    records no files); bytecode adds about as much again, which is noise beside the dependencies."""
    trees = ("medseg", "components", "pipelines", "registry", "profiles")
    files = [path for tree in trees for path in (ROOT / tree).rglob("*")
             if path.is_file() and "__pycache__" not in path.parts and "compiled" not in path.parts]
    files += [ROOT / name for name in ("dvc.yaml", "dvc.lock") if (ROOT / name).is_file()]
    return sum(path.stat().st_size for path in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    parser.add_argument("--dev-lock", type=Path, default=ROOT / "requirements-dev.lock")
    parser.add_argument("--site-packages", type=Path, default=Path(sysconfig.get_paths()["purelib"]),
                        help="where the packages are installed (default: this interpreter's)")
    parser.add_argument("--base-mb", type=float, default=BASE_IMAGE_MB, help="base image size, MB")
    parser.add_argument("--top", type=int, default=15, help="list the largest N packages")
    args = parser.parse_args(argv)

    pins = read_pins(args.lock)
    dev_only = {name: version for name, version in read_pins(args.dev_lock).items() if name not in pins}
    installed = scan(args.site_packages)
    problems = [f"{name}=={version}: not installed in {args.site_packages}" for name, version in pins.items()
                if name not in installed]
    problems += [f"{name}: {installed[name].version} installed, the lock pins {version}"
                 for name, version in pins.items() if name in installed and installed[name].version != version]
    if problems:
        print("image_size: the virtualenv does not match the lock; install it first (make venv):", file=sys.stderr)
        print("\n".join(f"  {problem}" for problem in problems), file=sys.stderr)
        return 2

    runtime = [installed[name] for name in [*pins, *VENV_EXTRAS] if name in installed]
    packages = sum(item.size for item in runtime)
    project_size = source_size()
    left_out = sum(installed[name].size for name in dev_only if name in installed)
    total = args.base_mb * MB + packages + project_size

    print(f"Runtime lock {args.lock.name}: {len(pins)} packages (+ the virtualenv's pip), measured in "
          f"{args.site_packages}")
    print(f"{'package':34} {'version':>16} {'MB':>9}")
    for item in sorted(runtime, key=lambda item: item.size, reverse=True)[: args.top]:
        print(f"{item.name:34} {item.version:>16} {item.size / MB:9.1f}")
    cuda = sum(item.size for item in runtime if normalize(item.name).startswith(("nvidia-", "cuda-", "triton")))
    print(f"\npackages                {packages / MB:9.0f} MB  (CUDA libraries: nvidia-*, cuda-*, triton "
          f"{cuda / MB:.0f} MB)")
    print(f"medseg and /app         {project_size / MB:9.1f} MB  (sources)")
    print(f"base image              {args.base_mb:9.0f} MB  (python:3.11.7-slim-bookworm, uncompressed)")
    print(f"image, estimated        {total / MB:9.0f} MB  = {total / 1e9:.2f} GB uncompressed")
    print(f"left out (dev lock only: {', '.join(sorted(dev_only))}): {left_out / MB:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
