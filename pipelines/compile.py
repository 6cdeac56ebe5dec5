"""Compile the Kubeflow pipelines to YAML (offline): ``medseg compile_pipeline --out FILE``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.outputs import output_file, starts_with
from medseg.params import section


def compile_pipeline(params: dict[str, Any], out: str | Path) -> Path:
    """Compile the demo pipeline configured by ``params['kubeflow']`` to ``out``."""
    from kfp import compiler

    from pipelines.demo import build_demo_pipeline

    out = Path(out)
    with output_file("compile_pipeline", out, owned=starts_with("# PIPELINE DEFINITION")) as tmp:
        compiler.Compiler().compile(build_demo_pipeline(section(params, "kubeflow")), str(tmp))
    return out
