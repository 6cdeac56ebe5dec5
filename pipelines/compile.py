"""Compile the Kubeflow pipelines to YAML (offline): ``medseg compile_pipeline --name demo|study|regression --out
FILE``: a grid of ``kubeflow.pipelines`` (``pipelines.grid``), or the regression check (``pipelines.regression``).

The image tag names the code revision: by default the checkout's git SHA, refused when tracked files have
uncommitted changes (the image built from that SHA would not hold them); ``--image-tag`` sets it outright.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.outputs import output_file, starts_with
from medseg.params import params_path
from medseg.provenance import git_head

LOOP_ITEM_FIELD = re.compile(r"(pipelinechannel--loop-item-param-\d+)-subvar-(\w+)")


def image_tag(explicit: str | None = None, cwd: str | Path | None = None) -> str:
    """``explicit``, or HEAD's SHA when the checkout has no uncommitted changes to tracked files."""
    if explicit:
        if not all(c.isalnum() or c in "._-" for c in explicit) or len(explicit) > 128:
            raise MedsegError("not a valid image tag (letters, digits, '.', '_', '-'; at most 128)",
                              f"--image-tag {explicit!r}")
        return explicit
    try:  # compiled pipelines name the image, not the other way round
        sha, dirty = git_head(cwd, exclude=("pipelines/compiled",))
    except (OSError, subprocess.SubprocessError) as exc:
        raise MedsegError("no git checkout to take the image tag from: pass --image-tag") from exc
    if dirty:
        raise MedsegError(f"uncommitted changes: HEAD's image ({sha[:12]}) would not hold them; commit first, "
                          "or pass --image-tag")
    return sha


def compile_pipeline(name: str, params: dict[str, Any], out: str | Path, tag: str,
                     params_file: str | Path | None = None) -> Path:
    """Compile pipeline ``name`` (``kubeflow.pipelines.<name>``, or ``regression``) running image tag ``tag`` to
    ``out``."""
    from kfp import compiler

    from medseg.params_kubeflow import REGRESSION

    out = Path(out)
    if name == REGRESSION:
        from pipelines import regression

        pipeline = regression.build(regression.regression_plan(params, tag, params_path(params_file)))
    else:
        from pipelines.grid import build, make_plan

        pipeline = build(make_plan(params, name, tag, params_path(params_file)))
    select_loop_item_fields(pipeline.pipeline_spec)
    with output_file("compile_pipeline", out, owned=starts_with("# PIPELINE DEFINITION")) as tmp:
        compiler.Compiler().compile(pipeline, str(tmp))
    return out


def select_loop_item_fields(spec: Any) -> int:
    """Point task inputs made from a loop item's field at the item, with a field selector; returns how many.

    kfp 2.17 compiles a field used in a task *setting* (``set_cpu_limit(cell.cpu_limit)``) as an input
    ``pipelinechannel--loop-item-param-N-subvar-F`` read from the loop's DAG, which never declares it, so
    the driver would stop ("parent DAG does not have input parameter"). A field passed as an ordinary
    argument compiles to ``pipelinechannel--loop-item-param-N`` with ``parseJson(string_value)["F"]``:
    this gives the settings the same form."""
    count = 0
    for component in spec.components.values():
        if not component.HasField("dag"):
            continue
        declared = set(component.input_definitions.parameters)
        for task in component.dag.tasks.values():
            for name, value in task.inputs.parameters.items():
                field = LOOP_ITEM_FIELD.fullmatch(value.component_input_parameter)
                if field and name == field.group(0) and name not in declared and field.group(1) in declared:
                    value.component_input_parameter = field.group(1)
                    value.parameter_expression_selector = f'parseJson(string_value)["{field.group(2)}"]'
                    count += 1
    return count
