"""One task of compiled KFP v2 IR as the Kubeflow driver and launcher see it: input parameters (defaults,
loop-item fields where kfp misplaces them), placeholders, the ExecutorInput, pod resources and secrets,
and the ExecutorOutput merge.

A task's container command is resolved in the cluster's order: ``IfPresent`` blocks are expanded
(the driver: an input is present only when the task passes it a non-null value; defaults do not
count), then every ``{{$...}}`` placeholder is replaced from the ExecutorInput with parameter
defaults added (the launcher). ``Concat`` blocks are expanded too, although the Kubeflow backend
itself passes them through unexpanded; :func:`expand_arg` reports each one through ``warn``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

_TOKEN = re.compile(r"\{\{\$.*?\}\}")
_SELECTOR = re.compile(r'^parseJson\(string_value\)((?:\["[^"]*"\])+)$')
_CHANNEL = re.compile(r"^\{\{\$\.inputs\.parameters\['(.+?)'\]\}\}$")
_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_REMOTE_MOUNTS = {"gs://": "/gcs/", "minio://": "/minio/", "s3://": "/s3/"}
_RESOURCES = {  # recorded name: (field that takes placeholders, legacy number field, legacy format)
    "cpu_limit": ("resourceCpuLimit", "cpuLimit", "{}"),
    "cpu_request": ("resourceCpuRequest", "cpuRequest", "{}"),
    "memory_limit": ("resourceMemoryLimit", "memoryLimit", "{}G"),
    "memory_request": ("resourceMemoryRequest", "memoryRequest", "{}G"),
}


class PipelineError(RuntimeError):
    """The pipeline cannot run, as compiled or as called."""


@dataclass
class Artifact:
    """One runtime artifact as the ExecutorInput carries it."""

    name: str
    uri: str
    type: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(local_path(self.uri))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "uri": self.uri, "type": self.type, "metadata": self.metadata}


def normalise(value: Any) -> Any:
    """``value`` with integral floats as ints, as protobuf JSON prints numbers (``3.0`` -> ``3``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {key: normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def to_json(value: Any) -> str:
    """Compact JSON with sorted keys and Go's HTML escapes, as the launcher formats lists and dicts."""
    text = json.dumps(normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return re.sub("[<>&\u2028\u2029]", lambda m: _GO_HTML_ESCAPES[m.group(0)], text)


def format_value(value: Any) -> str:
    """A parameter value as it appears in a command line: strings as-is, numbers without ``.0``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return str(value)
        return str(normalise(float(value))) if float(value).is_integer() else repr(float(value))
    return to_json(value)


def pb_text(value: Any) -> str:
    """A parameter value as text, as the backend's ``PbValueToText`` writes it (numbers without exponent)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            return {math.inf: "+Inf", -math.inf: "-Inf"}.get(number, "NaN")
        return str(int(number)) if number.is_integer() else format(Decimal(repr(number)), "f")
    return value if isinstance(value, str) else to_json(value)


def parse_text(text: str, parameter_type: str) -> Any:
    """An output parameter file's text as a value of ``parameter_type`` (the launcher's TextToPbValue)."""
    if parameter_type == "STRING":
        return text
    if parameter_type == "NUMBER_INTEGER":
        return int(text.strip())
    if parameter_type == "NUMBER_DOUBLE":
        return float(text.strip())
    if parameter_type == "BOOLEAN":
        word = text.strip()
        if word in {"1", "t", "T", "true", "TRUE", "True"}:
            return True
        if word in {"0", "f", "F", "false", "FALSE", "False"}:
            return False
        raise ValueError(f"not a boolean: {text!r}")
    value = json.loads(text)
    if not isinstance(value, list if parameter_type == "LIST" else dict):
        raise ValueError(f"not a {parameter_type}: {text!r}")
    return value


def select(value: Any, selector: str) -> Any:
    """Apply a ``parameterExpressionSelector`` such as ``parseJson(string_value)["field"]``."""
    match = _SELECTOR.match(selector)
    if match is None:
        raise NotImplementedError(f"parameter expression selector {selector!r}")
    selected = json.loads(value) if isinstance(value, str) else value
    for key in re.findall(r'\["([^"]*)"\]', match.group(1)):
        selected = selected[key]
    return selected


def channel_name(text: str) -> str | None:
    """The input name when ``text`` is exactly ``{{$.inputs.parameters['name']}}``, else None."""
    match = _CHANNEL.match(text)
    return match.group(1) if match else None


def local_path(uri: str) -> str:
    """An artifact URI's local path: remote schemes map to their mounts, anything else is the path."""
    for prefix, mount in _REMOTE_MOUNTS.items():
        if uri.startswith(prefix):
            return mount + uri[len(prefix) :]
    return uri


def expand_arg(arg: str, present: Callable[[str], bool], warn: Callable[[str], None]) -> list[str]:
    """One command/args element as zero or more strings, expanding ``IfPresent`` and ``Concat`` blocks."""
    text = arg.strip()
    if not (text.startswith('{"IfPresent":') or text.startswith('{"Concat":')):
        return [arg]
    return _expand(json.loads(text), present, warn)


def _expand(node: Any, present: Callable[[str], bool], warn: Callable[[str], None]) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [text for item in node for text in _expand(item, present, warn)]
    if isinstance(node, dict) and "Concat" in node:
        warn("Concat placeholder expanded here; the Kubeflow backend passes it to the container as JSON text")
        return ["".join(text for item in node["Concat"] for text in _expand(item, present, warn))]
    if isinstance(node, dict) and "IfPresent" in node:
        spec = node["IfPresent"]
        branch = spec.get("Then") if present(spec["InputName"]) else spec.get("Else")
        return [] if branch is None else _expand(branch, present, warn)
    raise ValueError(f"unknown placeholder structure: {node!r}")


def placeholder_values(executor_input: Mapping[str, Any]) -> dict[str, str]:
    """Every placeholder the launcher knows for this ExecutorInput, mapped to its text."""
    inputs, outputs = executor_input.get("inputs", {}), executor_input.get("outputs", {})
    values = {"{{$}}": json.dumps(normalise(executor_input), separators=(",", ":"), ensure_ascii=False)}
    for name, value in inputs.get("parameterValues", {}).items():
        values[f"{{{{$.inputs.parameters['{name}']}}}}"] = format_value(value)
    for side, artifacts in (("inputs", inputs.get("artifacts", {})), ("outputs", outputs.get("artifacts", {}))):
        for name, listed in artifacts.items():
            if listed.get("artifacts"):
                uri = listed["artifacts"][0]["uri"]
                values[f"{{{{$.{side}.artifacts['{name}'].uri}}}}"] = uri
                values[f"{{{{$.{side}.artifacts['{name}'].path}}}}"] = local_path(uri)
    for name, parameter in outputs.get("parameters", {}).items():
        values[f"{{{{$.outputs.parameters['{name}'].output_file}}}}"] = parameter["outputFile"]
    return values


def substitute(text: str, values: Mapping[str, str], missing: list[str] | None = None) -> str:
    """Replace known placeholders in one pass (inserted text is not scanned again); unknown ones stay
    as they are and are appended to ``missing``."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token not in values and missing is not None:
            missing.append(token)
        return values.get(token, token)

    return _TOKEN.sub(replace, text)


def executor_input(
    parameters: dict[str, Any],
    artifacts: dict[str, list[Artifact]],
    outputs: dict[str, Artifact],
    output_parameters: dict[str, str],
    output_file: str,
) -> dict[str, Any]:
    """The ExecutorInput in protobuf JSON form (empty maps left out, as protojson does)."""
    inputs = {
        "parameterValues": parameters,
        "artifacts": {k: {"artifacts": [a.to_json() for a in v]} for k, v in artifacts.items()},
    }
    produced = {
        "parameters": {k: {"outputFile": v} for k, v in output_parameters.items()},
        "artifacts": {k: {"artifacts": [a.to_json()]} for k, a in outputs.items()},
    }
    return {
        "inputs": {k: v for k, v in inputs.items() if v},
        "outputs": {**{k: v for k, v in produced.items() if v}, "outputFile": output_file},
    }


def resolve_command(
    container: dict[str, Any],
    component: dict[str, Any],
    provided: Mapping[str, Any],
    task_input: dict[str, Any],
    warnings: list[str],
) -> list[str]:
    """The container's command + args resolved in two passes, as on a cluster. The driver expands IfPresent
    blocks and fills in the ``provided`` input parameters (defaults not yet added); the launcher then fills
    in ``{{$}}`` and every other placeholder from ``task_input``, defaults included."""
    artifact_inputs = component.get("inputDefinitions", {}).get("artifacts", {})

    def warn(message: str) -> None:
        if message not in warnings:
            warnings.append(message)

    def present(name: str) -> bool:
        if name in artifact_inputs:
            warn(f"IfPresent on artifact input {name!r}: the Kubeflow driver looks only at parameters")
        return name in provided

    driver_values = placeholder_values({"inputs": {"parameterValues": dict(provided)}})
    driver_values.pop("{{$}}")
    values, missing, command = placeholder_values(task_input), [], []
    for part in container.get("command", []) + container.get("args", []):
        driver_side = "$.outputs" not in part  # the driver leaves such elements to the launcher
        if not driver_side and part.lstrip().startswith('{"IfPresent":'):
            warn("IfPresent block mentioning outputs: the Kubeflow driver does not expand it")
        for text in expand_arg(part, present, warn):
            if driver_side:
                defaulted: list[str] = []
                text = substitute(text, driver_values, defaulted)
                for token in defaulted:
                    if token.startswith("{{$.inputs.parameters[") and token in values:
                        warn(
                            f"{token} is a default not passed by the task; recent Kubeflow drivers resolve it before"
                            " defaults are added and stop with 'not found in executor input'"
                        )
            command.append(substitute(text, values, missing))
    if missing:
        warn(f"placeholders left as they are: {sorted(set(missing))}")
    return command


def pod_resources(container: dict[str, Any], parameters: Mapping[str, Any], warnings: list[str]) -> dict[str, str]:
    """CPU, memory and accelerator settings with ``{{$.inputs.parameters[...]}}`` channels resolved."""
    spec, resources = container.get("resources", {}), {}

    def pod_value(text: str) -> str:
        channel = channel_name(text)
        if channel is None:
            return text
        value = parameters[channel]
        if not isinstance(value, str):
            warnings.append(
                f"{channel} = {value!r} is not a string; the Kubeflow driver puts only string values into the pod"
                " spec (it leaves an accelerator count empty and fails on a CPU or memory value)"
            )
        return format_value(value)

    for recorded, (current, legacy, legacy_format) in _RESOURCES.items():
        if spec.get(current):
            resources[recorded] = pod_value(spec[current])
        elif spec.get(legacy):
            resources[recorded] = legacy_format.format(format_value(spec[legacy]))
    accelerator = spec.get("accelerator", {})
    kind = pod_value(accelerator["resourceType"]) if accelerator.get("resourceType") else accelerator.get("type")
    count = pod_value(accelerator["resourceCount"]) if accelerator.get("resourceCount") else accelerator.get("count")
    if kind:
        resources["accelerator_type"] = kind
    if count:
        resources["accelerator_count"] = format_value(count)
    return resources


def merge_executor_output(
    path: Path, outputs: dict[str, Artifact], output_parameters: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """Merge the ExecutorOutput file (if written) into ``outputs`` (the launcher's mergeRuntimeArtifacts) and
    return the output parameter values: from that file, else from each parameter's output file
    (``output_parameters``: name -> (parameter type, path))."""
    written = json.loads(path.read_text()) if path.is_file() else {}
    for name, artifact in outputs.items():
        listed = written.get("artifacts", {}).get(name, {}).get("artifacts", [])
        if listed:
            artifact.uri = listed[0].get("uri") or artifact.uri
            artifact.metadata.update(listed[0].get("metadata") or {})
    values = dict(written.get("parameterValues", written.get("parameter_values", {})))
    for name, (parameter_type, file) in output_parameters.items():
        if name not in values:
            values[name] = parse_text(Path(file).read_text(), parameter_type)
    return values


def with_defaults(definitions: dict[str, Any], given: dict[str, Any], owner: str, dag: bool = True) -> dict[str, Any]:
    """``given`` plus the defaults of the parameters it leaves out; a required one left out is an error.
    A DAG's optional parameters without a default are null; a container's are left out."""
    values = {k: v["defaultValue"] for k, v in definitions.items() if "defaultValue" in v and k not in given}
    if dag:
        values.update({k: None for k, v in definitions.items() if v.get("isOptional") and k not in {*given, *values}})
    missing = sorted(k for k, v in definitions.items() if not ({k} & {*given, *values} or v.get("isOptional")))
    if missing:
        raise PipelineError(f"{owner}: no value for input parameters {missing}")
    return {**values, **given}


def misplaced_input(
    name: str, source: str, selector: str | None, parameters: dict[str, Any], warnings: list[str]
) -> Any:
    """A component input the enclosing DAG lacks, taken where kfp put it. kfp compiles a loop-item field used in
    task settings as ``ITEM-subvar-FIELD`` in a DAG that has only ``ITEM``, and (kfp issue #13273) a loop-item
    field in a dsl.If/Elif/Else condition as ``ITEM`` + selector in a DAG that has only ``ITEM-subvar-FIELD``."""
    field_name = re.fullmatch(r'parseJson\(string_value\)\["([^"]*)"\]', selector or "")
    subvar = f"{source}-subvar-{field_name.group(1)}" if field_name else None
    item, _, item_field = source.rpartition("-subvar-")
    if subvar not in parameters and item not in parameters:
        raise PipelineError(f"{name}: the enclosing DAG has no input parameter {source!r}")
    warnings.append(
        f"{source!r} is not an input of the enclosing DAG, which has {subvar if subvar in parameters else item!r}"
        " (kfp compiles loop-item fields this way in task settings and in If/Elif/Else conditions); the Kubeflow"
        " driver stops with 'parent DAG does not have input parameter'"
    )
    if subvar in parameters:
        return parameters[subvar]
    value = select(parameters[item], f'parseJson(string_value)["{item_field}"]')
    return select(value, selector) if selector else value


def secret_env(
    name: str, platform: dict[str, Any], scope_parameters: dict[str, Any], secrets: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The ``secretAsEnv`` variables; a missing secret or key stops the run (the pod would not start)."""
    env: dict[str, str] = {}
    for entry in platform.get("secretAsEnv", []):
        source, secret_name = entry.get("secretNameParameter", {}), entry.get("secretName")
        if "runtimeValue" in source:
            secret_name = source["runtimeValue"]["constant"]
        elif "componentInputParameter" in source:
            secret_name = scope_parameters.get(source["componentInputParameter"], secret_name)
        secret = secrets.get(secret_name, {})
        for pair in entry.get("keyToEnv", []):
            if pair["secretKey"] in secret:
                env[pair["envVar"]] = secret[pair["secretKey"]]
            elif not entry.get("optional"):
                raise PipelineError(f"{name}: no key {pair['secretKey']!r} in secret {secret_name!r} (secretAsEnv)")
    return env
