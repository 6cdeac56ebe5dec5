"""Kubeflow Pipelines' side of a step: reading the executor input (``{{$}}``) and writing artifact metadata.

A container task receives the executor input as JSON (its input artifacts with their URIs, its output
artifacts and the path of the executor output file). The launcher downloads every input artifact, a
collected list included, to a local path derived from its URI, and after the command ends it reads the
executor output file and merges each output artifact's metadata into ML Metadata, where the UI shows it
(``system.Metrics`` as scalar metrics that runs can be compared on).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError

OPTION = "--kfp-executor-input"
SCHEMES = ("gs://", "minio://", "s3://", "oci://")  # the launcher mounts these (its LocalPathForURI)


def parse(text: str) -> dict[str, Any]:
    """The executor input; a one-line error when it is not the JSON object Kubeflow passes."""
    try:
        executor_input = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedsegError(f"not JSON ({exc.msg} at character {exc.pos})", OPTION) from exc
    if not isinstance(executor_input, dict) or not isinstance(executor_input.get("outputs", {}), dict):
        raise MedsegError("expected Kubeflow's executor input object ({{$}})", OPTION)
    return executor_input


def local_path(artifact: Mapping[str, Any]) -> Path:
    """Where the launcher put an artifact, by kfp's own rule (custom path, the mount of its URI scheme, the
    pipeline workspace); a URI without a scheme is already a local path (a pipeline run on this machine)."""
    from kfp.dsl import Artifact

    uri = str(artifact.get("uri", ""))
    mapped = Artifact(uri=uri, metadata=dict(artifact.get("metadata") or {}))
    mapped.custom_path = str(artifact.get("customPath") or "")
    path = mapped.path
    if not path or "://" in path or not path.startswith("/"):
        raise MedsegError(f"artifact URI {uri!r} has no local path (storage schemes: {', '.join(SCHEMES)})", OPTION)
    return Path(path)


def input_paths(executor_input: Mapping[str, Any], name: str, required: bool = True) -> list[Path]:
    """Local paths of every artifact of input ``name`` (one, or all of a collected list; none for an
    optional input the task was not given)."""
    artifacts = executor_input.get("inputs", {}).get("artifacts", {}).get(name, {}).get("artifacts")
    if not artifacts and not required:
        return []
    if not artifacts:
        raise MedsegError(f"the executor input has no input artifact '{name}'", OPTION)
    return [local_path(artifact) for artifact in artifacts]


def _plain(value: Any) -> Any:
    """Metadata values as JSON allows them (no NaN: protobuf's Struct refuses it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_metadata(executor_input: Mapping[str, Any], metadata: Mapping[str, Mapping[str, Any]]) -> Path | None:
    """Write the executor output file giving each named output artifact ``metadata`` (merged by the
    launcher into what it records); returns the file, or None when the task has no output file."""
    outputs = executor_input.get("outputs", {})
    output_file = outputs.get("outputFile")
    if not output_file:
        return None
    declared = outputs.get("artifacts", {})
    unknown = sorted(set(metadata) - set(declared))
    if unknown:
        raise MedsegError(f"no output artifact named {', '.join(unknown)} in the executor input", OPTION)
    artifacts = {}
    for name, values in metadata.items():
        artifact = dict(declared[name]["artifacts"][0])
        artifact["metadata"] = {**artifact.get("metadata", {}), **_plain(dict(values))}
        artifacts[name] = {"artifacts": [artifact]}
    path = Path(output_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"artifacts": artifacts}, indent=1))
    return path


def output_names(executor_input: Mapping[str, Any]) -> list[str]:
    """The task's output artifact names."""
    return sorted(executor_input.get("outputs", {}).get("artifacts", {}))
