"""Run a compiled KFP v2 pipeline (IR YAML) locally: each container task's command becomes a subprocess.

The DAG is walked as the Kubeflow driver walks it (sub-DAGs, ParallelFor iterations, ``dsl.Collected``
outputs, task-output and component-input channels, conditions and ``dsl.OneOf``, see
:mod:`pipelines.ir_conditions`) and each command is resolved as the launcher resolves it (see
:mod:`pipelines.ir_placeholders`). A task whose condition is false is skipped, and so is every task
downstream of a skipped one (Argo's ``depends: upstream.Succeeded``). Tasks run one at a time in
topological order, loop iterations in item order; parallelism limits are recorded, not applied.
Artifact URIs are local paths under ``workdir``; images and node settings are recorded, not used.
Where a cluster would behave differently the task still runs here and ``PipelineRun.warnings`` says how.

``python -m pipelines.local_executor PIPELINE.yaml --workdir DIR [--arg name=value ...]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines import ir_conditions as flow
from pipelines import ir_placeholders as ph
from pipelines.ir_conditions import Outputs
from pipelines.ir_placeholders import Artifact, PipelineError

__all__ = ["Artifact", "PipelineError", "PipelineRun", "TaskFailed", "TaskRun", "load_ir", "run_pipeline"]
_STDERR_TAIL = 20
_IR_BODY = re.compile(r"^(components|deploymentSpec|pipelineInfo|root|schemaVersion|sdkVersion):", re.MULTILINE)


class TaskFailed(PipelineError):
    """A task's command exited non-zero (after its retries) or did not write its output parameters."""


@dataclass
class TaskRun:
    """One executed container task; ``name`` is unique, e.g. ``for-loop-2[0]/for-loop-4[1]/finetune``."""

    name: str
    component: str
    image: str
    command: list[str]
    env: dict[str, str]  # added to os.environ (secret values shown as ***)
    resources: dict[str, str]  # cpu_limit, memory_limit, accelerator_type, accelerator_count, ...
    platform: dict[str, Any]  # the executor's Kubernetes settings as compiled
    inputs: dict[str, Any]  # input parameter values, defaults included
    executor_input: dict[str, Any]
    task_dir: Path
    warnings: list[str]
    outputs: dict[str, list[Path]] = field(default_factory=dict)  # output artifact paths
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # per output artifact, merged
    parameters: dict[str, Any] = field(default_factory=dict)  # output parameter values
    attempts: int = 0


@dataclass
class PipelineRun:
    """The tasks in the order they ran, the pipeline's outputs, each loop's size and parallelism limit, each
    evaluated condition's value, and the tasks skipped (condition false, or downstream of a skipped task)."""

    tasks: list[TaskRun]
    outputs: dict[str, Any]  # parameter values; lists of paths for artifacts
    loops: dict[str, dict[str, int]]
    conditions: dict[str, bool] = field(default_factory=dict)  # e.g. for-loop-2[0]/condition-3: False
    skipped: list[str] = field(default_factory=list)
    dag_warnings: list[str] = field(default_factory=list)  # about sub-DAG tasks (conditions, loops), by name

    def task(self, name_suffix: str) -> TaskRun:
        """The one task whose name is ``name_suffix`` or ends with ``/name_suffix``."""
        found = [t for t in self.tasks if t.name == name_suffix or t.name.endswith("/" + name_suffix)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} tasks named {name_suffix!r}: {[t.name for t in found]}")
        return found[0]

    def tasks_of(self, component: str) -> list[TaskRun]:
        """The tasks of ``component`` (``comp-`` prefix optional), in the order they ran. kfp compiles each further
        use of a component as ``comp-NAME-2``, ``comp-NAME-3``, ...: those count too."""
        pattern = re.compile(rf"(comp-)?{re.escape(component.removeprefix('comp-'))}(-\d+)?")
        return [t for t in self.tasks if pattern.fullmatch(t.component)]

    @property
    def warnings(self) -> list[str]:
        """Every task's warnings, prefixed by the task name, then those about sub-DAG tasks."""
        return [f"{t.name}: {w}" for t in self.tasks for w in t.warnings] + self.dag_warnings


@dataclass
class _Scope:
    """A DAG being run: its task-name prefix, its inputs, the outputs of its tasks that ran, those skipped."""

    prefix: str
    parameters: dict[str, Any]
    artifacts: dict[str, list[Artifact]]
    done: dict[str, Outputs] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)


def load_ir(ir_path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline spec and the Kubernetes settings per executor (``{}`` when none) of a compiled YAML.

    The ``# PIPELINE DEFINITION`` header is skipped up to the spec's first key: kfp writes multi-line string
    defaults into that comment unprefixed, which leaves the file invalid YAML.
    """
    text = Path(ir_path).read_text()
    body = _IR_BODY.search(text) if text.startswith("# PIPELINE DEFINITION") else None
    docs = [doc for doc in yaml.safe_load_all(text[body.start() if body else 0 :]) if doc]
    spec = next(doc for doc in docs if "root" in doc)
    platform = next((doc["platforms"] for doc in docs if "platforms" in doc), {})
    return spec, platform.get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})


def run_pipeline(
    ir_path: str | Path,
    workdir: Path,
    arguments: dict[str, Any] | None = None,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    secrets: dict[str, dict[str, str]] | None = None,
    executables: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> PipelineRun:
    """Run every container task of the compiled pipeline; raise TaskFailed at the first failing one.

    ``arguments`` override the pipeline parameters' defaults. Commands run in ``cwd`` with ``env`` added
    to os.environ; ``secrets`` (name -> key -> value) feed ``secretAsEnv``; ``executables`` replaces a
    command's first word (e.g. ``{"medseg": "/venv/bin/medseg"}``).
    """
    spec, platform = load_ir(ir_path)
    runner = _Runner(spec, platform, Path(workdir).resolve(), Path(cwd), log)
    runner.env, runner.secrets, runner.executables = env or {}, secrets or {}, executables or {}
    return runner.run(arguments or {})


class _Runner:
    def __init__(
        self, spec: dict[str, Any], platform: dict[str, Any], workdir: Path, cwd: Path, log: Callable[[str], None]
    ) -> None:
        self.spec, self.platform, self.workdir, self.cwd, self.log = spec, platform, workdir, cwd, log
        self.env: dict[str, str] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.executables: dict[str, str] = {}
        self.tasks: list[TaskRun] = []
        self.loops: dict[str, dict[str, int]] = {}
        self.conditions: dict[str, bool] = {}
        self.skipped: list[str] = []
        self.dag_warnings: list[str] = []
        run_id, now = str(uuid.uuid4()), datetime.datetime.now(datetime.UTC).isoformat()
        name = spec.get("pipelineInfo", {}).get("name", "pipeline")
        self.run_values = {
            "{{$.pipeline_job_name}}": name,
            "{{$.pipeline_job_resource_name}}": f"{name}-{run_id[:8]}",
            "{{$.pipeline_job_uuid}}": run_id,
            "{{$.pipeline_job_create_time_utc}}": now,
            "{{$.pipeline_job_schedule_time_utc}}": now,
        }

    def run(self, arguments: dict[str, Any]) -> PipelineRun:
        root = self.spec["root"]
        definitions = root.get("inputDefinitions", {}).get("parameters", {})
        unknown = sorted(set(arguments) - set(definitions))
        if unknown:
            raise PipelineError(f"unknown pipeline parameters {unknown}; the pipeline has {sorted(definitions)}")
        outputs = self._run_dag(root["dag"], _Scope("", ph.with_defaults(definitions, arguments, "pipeline"), {}))
        values = {**outputs.parameters, **{k: [a.path for a in v] for k, v in outputs.artifacts.items()}}
        return PipelineRun(self.tasks, values, self.loops, self.conditions, self.skipped, self.dag_warnings)

    def _run_dag(self, dag: dict[str, Any], scope: _Scope) -> Outputs:
        tasks = dag.get("tasks", {})
        for key, needs in flow.task_order(tasks):
            outputs = None if needs & scope.skipped else self._run_task(key, tasks[key], scope)
            if outputs is None:
                scope.skipped.add(key)
                self.skipped.append(scope.prefix + key)
            else:
                scope.done[key] = outputs
        return flow.dag_outputs(dag.get("outputs", {}), scope.done, scope.prefix.rstrip("/") or "the pipeline")

    def _run_task(self, key: str, task: dict[str, Any], scope: _Scope) -> Outputs | None:
        """The task's outputs, or None when its condition is false."""
        name, component = scope.prefix + key, self.spec["components"][task["componentRef"]["name"]]
        warnings: list[str] = []
        parameters, artifacts = self._inputs(name, key, task, scope, warnings)
        if "dag" in component:  # its driver resolves the inputs first, so these hold even if the condition is false
            self.dag_warnings.extend(f"{name}: {warning}" for warning in warnings)
        if not self._triggers(name, task, component, parameters):
            return None
        if "dag" not in component:
            return self._run_container(name, task, component, (parameters, artifacts, scope), warnings)
        definitions = component.get("inputDefinitions", {}).get("parameters", {})
        iterator = task.get("parameterIterator")
        if iterator is None:
            child = _Scope(name + "/", ph.with_defaults(definitions, parameters, name), artifacts)
            return self._run_dag(component["dag"], child)
        items = iterator["items"].get("raw") or parameters[iterator["items"]["inputParameter"]]
        items = json.loads(items) if isinstance(items, str) else items
        limit = int(task.get("iteratorPolicy", {}).get("parallelismLimit", 0))
        self.loops[name] = {"items": len(items), "parallelism": limit}
        collected = Outputs()
        for index, item in enumerate(items):
            values = ph.with_defaults(definitions, {**parameters, iterator["itemInput"]: item}, name)
            collected.collect(self._run_dag(component["dag"], _Scope(f"{name}[{index}]/", values, artifacts)), index)
        return collected

    def _triggers(self, name: str, task: dict[str, Any], component: dict[str, Any], parameters: dict[str, Any]) -> bool:
        """Whether the task's ``triggerPolicy.condition`` (if any) holds for the inputs its driver resolves."""
        condition = task.get("triggerPolicy", {}).get("condition")
        if not condition:
            return True
        definitions = component.get("inputDefinitions", {}).get("parameters", {})
        try:
            values = flow.condition_values(parameters, definitions, dag="dag" in component)
            self.conditions[name] = flow.evaluate(condition, values)
        except flow.ConditionError as exc:
            raise PipelineError(f"{name}: cannot evaluate the condition {condition!r}: {exc}") from exc
        if not self.conditions[name]:
            self.log(f"    {name}: condition false, skipped")
        return self.conditions[name]

    def _inputs(
        self, name: str, key: str, task: dict[str, Any], scope: _Scope, warnings: list[str]
    ) -> tuple[dict[str, Any], dict[str, list[Artifact]]]:
        parameters: dict[str, Any] = {}
        for input_name, spec in task.get("inputs", {}).get("parameters", {}).items():
            parameters[input_name] = self._parameter(name, key, spec, scope, warnings)
        siblings = {f"{{{{$.inputs.parameters['{k}']}}}}": ph.format_value(v) for k, v in parameters.items()}
        for input_name, value in parameters.items():  # f-strings and resource settings refer to sibling inputs
            if isinstance(value, str) and "{{$.inputs.parameters[" in value:
                parameters[input_name] = ph.substitute(value, siblings)
        artifacts: dict[str, list[Artifact]] = {}
        for input_name, spec in task.get("inputs", {}).get("artifacts", {}).items():
            if "componentInputArtifact" in spec:
                artifacts[input_name] = list(scope.artifacts[spec["componentInputArtifact"]])
            elif "taskOutputArtifact" in spec:
                source = spec["taskOutputArtifact"]
                producer = scope.done[source["producerTask"]].giving(source["outputArtifactKey"], name)
                artifacts[input_name] = list(producer.artifacts[source["outputArtifactKey"]])
            else:
                raise PipelineError(f"{name}: input artifact {input_name!r} of an unsupported kind: {spec}")
        return parameters, artifacts

    def _parameter(self, name: str, key: str, spec: dict[str, Any], scope: _Scope, warnings: list[str]) -> Any:
        selector = spec.get("parameterExpressionSelector")
        if "componentInputParameter" in spec and spec["componentInputParameter"] not in scope.parameters:
            return ph.misplaced_input(name, spec["componentInputParameter"], selector, scope.parameters, warnings)
        if "componentInputParameter" in spec:
            value = scope.parameters[spec["componentInputParameter"]]
        elif "runtimeValue" in spec:
            constant = spec["runtimeValue"].get("constant")
            values = {**self.run_values, "{{$.pipeline_task_name}}": key, "{{$.pipeline_task_uuid}}": name}
            value = values.get(constant, constant) if isinstance(constant, str) else constant
        elif "taskOutputParameter" in spec:
            source = spec["taskOutputParameter"]
            producer = scope.done[source["producerTask"]].giving(source["outputParameterKey"], name)
            value = producer.parameters.get(source["outputParameterKey"])
        else:
            raise PipelineError(f"{name}: input parameter of an unsupported kind: {spec}")
        return ph.select(value, selector) if selector else value

    def _run_container(
        self,
        name: str,
        task: dict[str, Any],
        component: dict[str, Any],
        resolved: tuple[dict[str, Any], dict[str, list[Artifact]], _Scope],
        warnings: list[str],
    ) -> Outputs:
        (given, artifacts, scope), label = resolved, component["executorLabel"]
        parameters = {k: v for k, v in given.items() if v is not None}  # null: an optional input left out
        container = self.spec["deploymentSpec"]["executors"][label].get("container")
        if container is None:
            raise PipelineError(f"{name}: only container executors are supported ({label})")
        task_dir = self.workdir / re.sub(r"\[(\d+)\]", r"_\1", name)
        shutil.rmtree(task_dir, ignore_errors=True)
        for sub in ("artifacts", "parameters"):
            (task_dir / sub).mkdir(parents=True)
        inputs, produced = component.get("inputDefinitions", {}), component.get("outputDefinitions", {})
        values = ph.with_defaults(inputs.get("parameters", {}), parameters, name, dag=False)
        outputs = {
            out: Artifact(out, str(task_dir / "artifacts" / out), spec["artifactType"])
            for out, spec in produced.get("artifacts", {}).items()
        }
        output_files = {out: str(task_dir / "parameters" / out) for out in produced.get("parameters", {})}
        task_input = ph.executor_input(values, artifacts, outputs, output_files, str(task_dir / "executor_output.json"))
        command = ph.resolve_command(container, component, parameters, task_input, warnings)
        if command and command[0] in self.executables:
            command[0] = self.executables[command[0]]
        platform = self.platform.get(label, {})
        secret_env = ph.secret_env(name, platform, scope.parameters, self.secrets)
        env = {**self.env, **{e["name"]: e["value"] for e in container.get("env", [])}}
        run = TaskRun(
            name=name,
            component=task["componentRef"]["name"],
            image=container.get("image", ""),
            command=command,
            env={**env, **dict.fromkeys(secret_env, "***")},
            resources=ph.pod_resources(container, values, warnings),
            platform=platform,
            inputs=values,
            executor_input=task_input,
            task_dir=task_dir,
            warnings=warnings,
        )
        self.tasks.append(run)
        self.log(f"[{len(self.tasks)}] {name}: {_display(command)}")
        started = time.monotonic()
        retries = int(task.get("retryPolicy", {}).get("maxRetryCount", 0))
        self._execute(run, {**os.environ, **env, **secret_env}, retries)
        types = {out: (s["parameterType"], output_files[out]) for out, s in produced.get("parameters", {}).items()}
        try:
            run.parameters = ph.merge_executor_output(Path(task_input["outputs"]["outputFile"]), outputs, types)
        except (OSError, ValueError) as exc:
            raise TaskFailed(f"task {name!r}: cannot read its outputs: {exc}") from exc
        run.outputs = {out: [a.path] for out, a in outputs.items()}
        run.metadata = {out: dict(a.metadata) for out, a in outputs.items()}
        self.log(f"    done in {time.monotonic() - started:.1f} s")
        return Outputs(run.parameters, {out: [a] for out, a in outputs.items()})

    def _execute(self, run: TaskRun, env: dict[str, str], retries: int) -> None:
        """Run the command, again up to ``retries`` times while it fails."""
        for attempt in range(1, retries + 2):
            run.attempts = attempt
            Path(run.executor_input["outputs"]["outputFile"]).unlink(missing_ok=True)
            with open(run.task_dir / "stdout.log", "w") as out, open(run.task_dir / "stderr.log", "w") as err:
                try:
                    process = subprocess.run(
                        run.command, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
                    )
                    code = process.returncode
                except OSError as exc:  # no such executable
                    err.write(f"{exc}\n")
                    code = 127
            if code == 0:
                return
            if attempt <= retries:
                self.log(f"    exited with {code}; retry {attempt} of {retries}")
        tail = (run.task_dir / "stderr.log").read_text(errors="replace").splitlines()[-_STDERR_TAIL:]
        raise TaskFailed(
            f"task {run.name!r} ({run.component}) exited with {code} after {run.attempts} attempt(s)\n"
            f"  command: {_display(run.command)}\n  stderr ({run.task_dir / 'stderr.log'}):\n"
            + "\n".join(f"  | {line}" for line in tail)
        )


def _display(command: list[str], width: int = 300) -> str:
    """The command as a shell line, long arguments (an ExecutorInput) cut to ``width`` characters."""
    return shlex.join(arg if len(arg) <= width else f"{arg[:width]}...({len(arg)} chars)" for arg in command)


def main(argv: list[str] | None = None) -> int:
    """Command line: run a compiled pipeline here, printing each task as it runs and then the outputs."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.local_executor", description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path, help="compiled pipeline YAML")
    parser.add_argument("--workdir", type=Path, required=True, help="directory for artifacts and task logs")
    parser.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="a pipeline parameter")
    parser.add_argument("--cwd", type=Path, default=Path.cwd(), help="directory the commands run in")
    parser.add_argument("--exe", action="append", default=[], metavar="WORD=PATH", help="replace a command's 1st word")
    parser.add_argument("--secrets", type=Path, help="JSON file: {secret: {key: value}}")
    args = parser.parse_args(argv)
    definitions = load_ir(args.pipeline)[0]["root"].get("inputDefinitions", {}).get("parameters", {})
    arguments: dict[str, Any] = {}
    for item in args.arg:
        key, _, text = item.partition("=")
        is_string = definitions.get(key, {}).get("parameterType", "STRING") == "STRING"
        arguments[key] = text if is_string else json.loads(text)
    secrets = json.loads(args.secrets.read_text()) if args.secrets else None
    executables = dict(item.split("=", 1) for item in args.exe)
    try:
        run = run_pipeline(
            args.pipeline, args.workdir, arguments, cwd=args.cwd, secrets=secrets, executables=executables
        )
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in run.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(run.outputs, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
