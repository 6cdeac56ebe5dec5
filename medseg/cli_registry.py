"""The model-registry subcommands of ``medseg``: ``artifacts``, ``register``, ``promote`` and ``fetch_model``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.cli_tools import step_params
from medseg.errors import MedsegError
from medseg.params import section


def _artifacts(args: argparse.Namespace) -> int:
    from medseg.artifacts.declare import block_text, committed_artifacts, declared, differences, replace_block

    if args.check and args.write:
        raise MedsegError("give --check or --write, not both")
    wanted = declared(step_params(args))
    dvc_yaml = Path(args.dvc_yaml or "dvc.yaml")
    if args.write:
        if not dvc_yaml.is_file():
            raise MedsegError("dvc.yaml not found: run from the project root (or give --dvc-yaml)", dvc_yaml)
        text = dvc_yaml.read_text(encoding="utf-8")
        updated = replace_block(text, block_text(wanted))
        if updated != text:
            from medseg.atomic import atomic_file

            with atomic_file(dvc_yaml) as tmp:
                tmp.write_text(updated, encoding="utf-8")
        print(f"artifacts: {len(wanted)} model artifact(s) declared in {dvc_yaml}"
              f"{'' if updated != text else ' (unchanged)'}")
        return 0
    if args.check:
        notes = differences(committed_artifacts(dvc_yaml), wanted)
        if notes:
            raise MedsegError(f"artifacts do not follow params.yaml ({'; '.join(notes[:3])}"
                              f"{f'; {len(notes) - 3} more' if len(notes) > 3 else ''}): run `medseg artifacts "
                              "--write`", dvc_yaml)
        print(f"artifacts: {dvc_yaml} declares the {len(wanted)} model artifact(s) params.yaml makes")
        return 0
    for name, artifact in wanted.items():
        print(f"{name}\t{artifact['path']}")
    return 0


def _register(args: argparse.Namespace) -> int:
    from medseg.artifacts.publish import register

    if args.bump is not None and args.bump not in ("patch", "minor", "major"):
        raise MedsegError(f"--bump must be patch, minor or major, not {args.bump!r:.40}")
    settings = section(step_params(args), "registry")
    done = register(args.name, args.version, args.bump, settings, push=args.push)
    print(f"register: {done.name} {done.version} = {done.path} ({done.md5}) at commit {done.commit[:12]} "
          f"(git tag {done.name}@{done.version}{'' if args.push else '; `git push origin --tags` publishes it'})")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from medseg.artifacts.publish import promote

    settings = section(step_params(args), "registry")
    artifact = promote(args.name, args.version, args.stage, settings, push=args.push)
    print(f"promote: {args.name} {args.version} ({artifact.path}, commit {artifact.commit[:12]}) -> stage "
          f"{args.stage}{'' if args.push else '; `git push origin --tags` publishes it'}")
    return 0


def _fetch_model(args: argparse.Namespace) -> int:
    from medseg.artifacts.fetch import fetch_model
    from medseg.infer.model import warnings_for

    record = fetch_model(args.uri, args.dest)
    for note in warnings_for(record):
        print(f"fetch_model: warning: {record['name']} {record['version']}: {note}", file=sys.stderr)
    stage = f" (stage {record['stage']})" if record["stage"] else ""
    print(f"fetch_model: {record['name']} {record['version']}{stage} from commit {record['commit'][:12]} -> "
          f"{Path(args.dest) / record['file']} (sha256 "
          f"{record['sha256'][:12]}), {Path(args.dest) / 'registry.json'}")
    return 0


NAME = ("name", "artifact name, as dvc.yaml declares it (`medseg artifacts` lists them)", "positional")
PUSH = ("--push", "also push the new git tag to origin", "switch")

REGISTRY_TOOLS = (
    ("artifacts", _artifacts, "the model artifacts params.yaml's stages make (dvc.yaml `artifacts:`, DVC's model "
     "registry): list them, check dvc.yaml or write its block",
     (("--check", "fail (exit 2) when dvc.yaml's artifacts differ from params.yaml's", "switch"),
      ("--write", "write the artifacts block of dvc.yaml (stages and comments are kept)", "switch"),
      ("--dvc-yaml", "the dvc.yaml to check or write (default: ./dvc.yaml)", "optional"))),
    ("register", _register, "register the model HEAD pins as a new version of an artifact (a GTO git tag "
     "<name>@vX.Y.Z)",
     (NAME, ("--version", "the version, vX.Y.Z (default: bump the latest one)", "optional"),
      ("--bump", "patch, minor or major (default: registry.default_bump)", "optional"), PUSH)),
    ("promote", _promote, "assign a stage (registry.stages) to a registered version, once its metrics are "
     "committed (a GTO git tag <name>#<stage>#N)",
     (NAME, ("--version", "the registered version, vX.Y.Z"), ("--stage", "the stage, e.g. staging or prod"), PUSH)),
    ("fetch_model", _fetch_model, "fetch a registered model by name and version or stage into a folder (KServe's "
     "storage initializer: medseg fetch_model <storageUri> /mnt/models)",
     (("uri", "dvc+<git-url>#<artifact>@<stage or vX.Y.Z>", "positional"),
      ("dest", "folder to write (empty or an earlier fetch): <model file> and registry.json", "positional"))),
)
