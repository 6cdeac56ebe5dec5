"""The local executor runs compiled KFP v2 pipelines as the cluster would: toy pipelines of ``python -c`` steps.

No ``from __future__ import annotations`` here: kfp reads the component annotations at runtime.
"""

import json
import re
import sys
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml
from kfp import compiler, dsl

from pipelines import ir_conditions as flow
from pipelines import ir_placeholders as ph
from pipelines.local_executor import PipelineError, PipelineRun, TaskFailed, load_ir, main, run_pipeline

PY = sys.executable
# Each script: argv[1] is the output path, argv[2:] the inputs.
WRITE = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(':'.join(sys.argv[2:]))"
APPEND = (
    "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text("
    "':'.join(sys.argv[2:-1] + [pathlib.Path(sys.argv[-1]).read_text()]))"
)
FINETUNE = """
import json, pathlib, sys
out, dataset, strategy, data, executor_input = sys.argv[1:]
pathlib.Path(out).write_text(f"{dataset}/{strategy}/" + pathlib.Path(data).read_text())
ei = json.loads(executor_input)
uri = ei["outputs"]["artifacts"]["run"]["artifacts"][0]["uri"]
meta = {"strategy": strategy, "dataset": dataset}
pathlib.Path(ei["outputs"]["outputFile"]).write_text(
    json.dumps({"artifacts": {"run": {"artifacts": [{"uri": uri, "metadata": meta}]}}}))
"""
REPORT = """
import json, pathlib, sys
out, executor_input = sys.argv[1:]
runs = json.loads(executor_input)["inputs"]["artifacts"]["runs"]["artifacts"]
pathlib.Path(out).write_text(json.dumps([pathlib.Path(a["uri"]).read_text() for a in runs]))
"""
CELLS = [
    {"strategy": "vit_t", "cpu_limit": "4", "memory_limit": "8G", "gpus": 1},
    {"strategy": "vit_h", "cpu_limit": "16", "memory_limit": "64G", "gpus": 1},
]


@dsl.container_component
def pull(target: str, raw: dsl.Output[dsl.Dataset]):
    return dsl.ContainerSpec(image="img", command=["medseg", "-c", WRITE], args=[raw.path, target])


@dsl.container_component
def ingest(dataset: str, raw: dsl.Input[dsl.Dataset], processed: dsl.Output[dsl.Dataset]):
    return dsl.ContainerSpec(image="img", command=[PY, "-c", APPEND], args=[processed.path, dataset, raw.path])


@dsl.container_component
def finetune(
    dataset: str, strategy: str, processed: dsl.Input[dsl.Dataset], run: dsl.Output[dsl.Model], executor_input: str
):
    return dsl.ContainerSpec(
        image="img", command=[PY, "-c", FINETUNE], args=[run.path, dataset, strategy, processed.path, executor_input]
    )


@dsl.container_component
def evaluate(run: dsl.Input[dsl.Model], runs: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(image="img", command=[PY, "-c", APPEND], args=[runs.path, "scored", run.path])


@dsl.container_component
def report(runs: dsl.Input[list[dsl.Artifact]], executor_input: str, table: dsl.Output[dsl.Markdown]):
    return dsl.ContainerSpec(image="img", command=[PY, "-c", REPORT], args=[table.path, executor_input])


@dsl.pipeline
def nested(target: str = "phantom"):
    with dsl.ParallelFor(items=["sample", "brain"], parallelism=4) as dataset:
        raw = pull(target=target)
        processed = ingest(dataset=dataset, raw=raw.outputs["raw"])
        with dsl.ParallelFor(items=CELLS, parallelism=8) as cell:
            trained = finetune(
                dataset=dataset,
                strategy=cell.strategy,
                processed=processed.outputs["processed"],
                executor_input=dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER,
            )
            trained.set_cpu_limit(cell.cpu_limit).set_memory_limit(cell.memory_limit)
            trained.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(cell.gpus)
            scored = evaluate(run=trained.outputs["run"])
    report(runs=dsl.Collected(scored.outputs["runs"]), executor_input=dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER)


def compile_to(pipeline: Any, directory: Path) -> Path:
    path = directory / f"{pipeline.name}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


def run_toy(pipeline: Any, tmp: Path, arguments: dict[str, Any] | None = None, **kwargs: Any) -> PipelineRun:
    kwargs = {"cwd": tmp, "executables": {"medseg": PY}, "log": lambda _: None, **kwargs}
    return run_pipeline(compile_to(pipeline, tmp), tmp / "work", arguments, **kwargs)


@pytest.fixture(scope="module")
def nested_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    return run_toy(nested, tmp_path_factory.mktemp("nested"))


def test_tasks_run_in_topological_order_with_unique_names(nested_run: PipelineRun) -> None:
    names = [t.name for t in nested_run.tasks]
    assert len(names) == len(set(names)) == 2 * (2 + 2 * 2) + 1
    for outer in (0, 1):
        loop = f"for-loop-2[{outer}]"
        assert names.index(f"{loop}/pull") < names.index(f"{loop}/ingest")
        for inner in (0, 1):
            cell = f"{loop}/for-loop-4[{inner}]"
            assert names.index(f"{loop}/ingest") < names.index(f"{cell}/finetune") < names.index(f"{cell}/evaluate")
    assert names[-1] == "report"
    assert nested_run.loops == {
        "for-loop-2": {"items": 2, "parallelism": 4},
        "for-loop-2[0]/for-loop-4": {"items": 2, "parallelism": 8},
        "for-loop-2[1]/for-loop-4": {"items": 2, "parallelism": 8},
    }


def test_artifacts_flow_through_nested_loops_using_the_outer_item(nested_run: PipelineRun) -> None:
    cell = nested_run.task("for-loop-2[1]/for-loop-4[0]/finetune")
    assert cell.inputs["dataset"] == "brain" and cell.inputs["strategy"] == "vit_t"
    assert cell.command[0] == PY  # "medseg" replaced through executables
    assert nested_run.task("for-loop-2[1]/pull").command[0] == PY
    assert cell.outputs["run"][0].read_text() == "brain/vit_t/brain:phantom"
    assert "for-loop-2_1/for-loop-4_0/finetune" in str(cell.outputs["run"][0])


def test_collected_artifacts_reach_the_consumer_flattened(nested_run: PipelineRun) -> None:
    consumer = nested_run.task("report")
    runs = consumer.executor_input["inputs"]["artifacts"]["runs"]["artifacts"]
    assert len({a["uri"] for a in runs}) == 4
    assert json.loads(consumer.outputs["table"][0].read_text()) == [
        f"scored:{d}/{s}/{d}:phantom" for d in ("sample", "brain") for s in ("vit_t", "vit_h")
    ]
    assert all(a["type"]["schemaTitle"] == "system.Artifact" for a in runs)


def test_resources_come_from_the_loop_items(nested_run: PipelineRun) -> None:
    big = nested_run.task("for-loop-2[0]/for-loop-4[1]/finetune")
    assert big.resources == {
        "cpu_limit": "16",
        "memory_limit": "64G",
        "accelerator_type": "nvidia.com/gpu",
        "accelerator_count": "1",
    }
    assert nested_run.task("for-loop-2[1]/for-loop-4[0]/finetune").resources["memory_limit"] == "8G"
    assert any("parent DAG does not have input parameter" in w for w in big.warnings)  # how kfp compiles these
    assert any("not a string" in w for w in big.warnings)  # "gpus": 1 is a number


def test_metadata_from_the_executor_output_is_merged_and_passed_on(nested_run: PipelineRun) -> None:
    assert nested_run.task("for-loop-2[0]/for-loop-4[1]/finetune").metadata["run"] == {
        "strategy": "vit_h",
        "dataset": "sample",
    }
    scored = nested_run.task("for-loop-2[0]/for-loop-4[1]/evaluate")
    assert scored.executor_input["inputs"]["artifacts"]["run"]["artifacts"][0]["metadata"]["strategy"] == "vit_h"


def test_pipeline_parameters_can_be_overridden(tmp_path: Path) -> None:
    result = run_toy(nested, tmp_path, {"target": "liver"})
    assert result.task("for-loop-2[0]/for-loop-4[0]/finetune").outputs["run"][0].read_text().endswith(":liver")
    with pytest.raises(PipelineError, match="unknown pipeline parameters"):
        run_toy(nested, tmp_path, {"tagret": "x"})


ARGV = (
    "import json, os, sys; "
    "open(sys.argv[1], 'w').write(json.dumps([os.getcwd(), os.environ.get('X', ''), *sys.argv[2:]]))"
)
UPPER = "import sys; open(sys.argv[1], 'w').write(sys.argv[2].upper())"


@dsl.container_component
def show(
    argv: dsl.OutputPath(str),
    n: int,
    x: float,
    flag: bool,
    items: list,
    cfg: dict,
    opt: Optional[str] = None,  # noqa: UP045 (kfp does not read `str | None`)
    label: str = "plain",
):
    return dsl.ContainerSpec(
        image="img",
        command=[PY, "-c", ARGV],
        args=[
            argv, n, x, flag, items, cfg,
            dsl.IfPresentPlaceholder(input_name="opt", then=["--opt", opt], else_=["--no-opt"]),
            dsl.ConcatPlaceholder(["label=", label]),
        ],
    )  # fmt: skip


@dsl.container_component
def upper(word: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="img", command=[PY, "-c", UPPER], args=[out, word])


@dsl.container_component
def join(words: list, extra: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="img", command=[PY, "-c", UPPER], args=[out, dsl.ConcatPlaceholder([words, extra])])


@dsl.pipeline
def params(names: list = ["a", "b"], opt: Optional[str] = None):  # noqa: B006, UP045
    show(n=3, x=0.5, flag=True, items=[1, 2], cfg={"b": 1, "a": "<&>"})
    show(n=3, x=0.5, flag=False, items=[], cfg={}, opt=opt, label="given")
    with dsl.ParallelFor(items=names) as name:
        word = upper(word=name)
    first = upper(word="first")
    join(words=dsl.Collected(word.outputs["out"]), extra=first.outputs["out"])


def test_parameters_are_formatted_like_the_launcher(tmp_path: Path) -> None:
    result = run_toy(params, tmp_path, {"opt": "x"}, env={"X": "from-env"})
    plain, given = (json.loads(t.parameters["argv"]) for t in result.tasks_of("show"))
    assert plain == [str(tmp_path), "from-env", "3", "0.5", "true", "[1,2]", r'{"a":"\u003c\u0026\u003e","b":1}',
                     "--no-opt", "label=plain"]  # fmt: skip
    assert given[4:] == ["false", "[]", "{}", "--opt", "x", "label=given"]
    assert result.tasks_of("show")[0].inputs["label"] == "plain"  # defaults reach the ExecutorInput
    assert any("Concat" in w for w in result.tasks_of("show")[0].warnings)


def test_loops_over_a_pipeline_parameter_collect_output_parameters(tmp_path: Path) -> None:
    result = run_toy(params, tmp_path, {"names": ["x", "y", "z"]}, env={"X": ""})
    assert [t.parameters["out"] for t in result.tasks_of("upper")] == ["X", "Y", "Z", "FIRST"]
    assert json.loads(result.tasks_of("show")[1].parameters["argv"])[-2] == "--no-opt"  # `opt` was not given
    assert result.task("join").parameters["out"] == '["X","Y","Z"]FIRST'
    assert result.loops["for-loop-1"]["items"] == 3


FLAKY = "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) if p.exists() else 0; " \
        "p.write_text(str(n + 1)); sys.exit(0 if n else 1)"  # fmt: skip
FAIL = "import sys; print('first line', file=sys.stderr); print('boom: bad input', file=sys.stderr); sys.exit(3)"


@dsl.container_component
def flaky(counter: str):
    return dsl.ContainerSpec(image="img", command=[PY, "-c", FLAKY, counter])


@dsl.container_component
def fail(word: str):
    return dsl.ContainerSpec(image="img", command=[PY, "-c", FAIL, word])


@dsl.pipeline
def failing(counter: str):
    first = flaky(counter=counter).set_retry(1)
    broken = fail(word="w").after(first)
    upper(word="never").after(broken)


def test_a_failing_task_stops_the_run_and_names_itself(tmp_path: Path) -> None:
    lines: list[str] = []
    with pytest.raises(TaskFailed) as caught:
        run_toy(failing, tmp_path, {"counter": str(tmp_path / "count")}, log=lines.append)
    message = str(caught.value)
    assert message.startswith("task 'fail' (comp-fail) exited with 3")
    assert "sys.exit(3)" in message and "| boom: bad input" in message  # the command and the end of its stderr
    assert (tmp_path / "count").read_text() == "2"  # retried once, then it passed
    assert any("retry 1 of 1" in line for line in lines)
    assert not any("upper" in line for line in lines)


def test_secret_as_env_is_injected_and_required(tmp_path: Path) -> None:
    kubernetes = pytest.importorskip("kfp.kubernetes")

    @dsl.pipeline
    def with_secret():
        task = show(n=1, x=1.0, flag=True, items=[], cfg={})
        kubernetes.use_secret_as_env(task, secret_name="store", secret_key_to_env={"token": "X"})
        kubernetes.add_node_selector(task, label_key="gpu", label_value="h200")

    result = run_toy(with_secret, tmp_path, secrets={"store": {"token": "s3cr3t"}})
    task = result.task("show")
    assert json.loads(task.parameters["argv"])[1] == "s3cr3t"
    assert task.env["X"] == "***"
    assert task.platform["nodeSelector"] == {"labels": {"gpu": "h200"}}
    with pytest.raises(PipelineError, match="no key 'token' in secret 'store'"):
        run_toy(with_secret, tmp_path, secrets={"store": {}})


def test_command_line_runs_a_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = compile_to(params, tmp_path)
    code = main([str(path), "--workdir", str(tmp_path / "w"), "--arg", 'names=["q"]', "--cwd", str(tmp_path)])
    assert code == 0
    assert "for-loop-1[0]/upper" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("s", "s"),
        (3.0, "3"),
        (0.25, "0.25"),
        (True, "true"),
        ([1.0, "a"], '[1,"a"]'),
        ({"b": 1, "a": "<"}, '{"a":"\\u003c","b":1}'),
    ],
)
def test_values_are_formatted_like_the_launcher(value: Any, text: str) -> None:
    assert ph.format_value(value) == text


@dsl.pipeline
def multiline(text: str = "seed: 1\nsample:\n- 2\n"):
    upper(word=text)


def test_a_multi_line_default_in_the_ir_header_is_skipped(tmp_path: Path) -> None:
    path = compile_to(multiline, tmp_path)  # kfp copies the default into the header comment, unprefixed
    with pytest.raises(yaml.YAMLError):
        list(yaml.safe_load_all(path.read_text()))
    result = run_toy(multiline, tmp_path)
    assert result.task("upper").parameters["out"] == "SEED: 1\nSAMPLE:\n- 2\n"


BRANCH_CELLS = [{"backbone": "vit_h"}, {"backbone": "vit_b"}, {"backbone": "vit_t"}]


@dsl.container_component
def train(label: str, run: dsl.Output[dsl.Model]):
    return dsl.ContainerSpec(image="img", command=[PY, "-c", WRITE], args=[run.path, label])


@dsl.pipeline
def branching(threshold: int = 2):
    with dsl.ParallelFor(items=["sample", "brain"]) as dataset, dsl.ParallelFor(items=BRANCH_CELLS) as cell:
        with dsl.If(cell.backbone == "vit_h"):
            big = train(label=dataset).set_memory_limit("96G").set_cpu_limit("16")
        with dsl.Elif(cell.backbone == "vit_b"):
            mid = train(label="mid").set_memory_limit("32G")
        with dsl.Else():
            small = train(label="small").set_memory_limit("8G")
        scored = evaluate(run=dsl.OneOf(big.outputs["run"], mid.outputs["run"], small.outputs["run"]))
    report(runs=dsl.Collected(scored.outputs["runs"]), executor_input=dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER)
    with dsl.Condition(threshold > 5):  # dsl.Condition: the deprecated name of dsl.If
        upper(word="never")


@pytest.fixture(scope="module")
def branching_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    return run_toy(branching, tmp_path_factory.mktemp("branching"))


def test_each_iteration_runs_the_branch_of_its_loop_item_with_its_resources(branching_run: PipelineRun) -> None:
    expected = {"vit_h": ("train", {"cpu_limit": "16", "memory_limit": "96G"}),
                "vit_b": ("train-2", {"memory_limit": "32G"}),
                "vit_t": ("train-3", {"memory_limit": "8G"})}  # fmt: skip
    trained = branching_run.tasks_of("train")
    assert len(trained) == 6
    for outer in (0, 1):
        for inner, cell in enumerate(BRANCH_CELLS):
            loop = f"for-loop-2[{outer}]/for-loop-4[{inner}]"
            ran = [t for t in trained if t.name.startswith(loop + "/")]
            assert len(ran) == 1
            assert ran[0].name.endswith("/" + expected[cell["backbone"]][0])
            assert ran[0].resources == expected[cell["backbone"]][1]
    big = branching_run.task("for-loop-2[1]/for-loop-4[0]/condition-branches-5/condition-6/train")
    assert big.outputs["run"][0].read_text() == "brain"  # the outer loop item reaches a task inside a branch
    conditions = {k: v for k, v in branching_run.conditions.items() if k.startswith("for-loop-2[0]/for-loop-4[1]/")}
    assert list(conditions.values()) == [False, True, False]  # If, Elif, Else for vit_b


def test_one_of_feeds_the_branch_that_ran_downstream_and_collected_flattens_it(branching_run: PipelineRun) -> None:
    scored = branching_run.task("for-loop-2[0]/for-loop-4[1]/evaluate")
    assert scored.executor_input["inputs"]["artifacts"]["run"]["artifacts"][0]["uri"].endswith(
        "for-loop-4_1/condition-branches-5/condition-7/train-2/artifacts/run"
    )
    consumer = branching_run.task("report")
    assert len(consumer.executor_input["inputs"]["artifacts"]["runs"]["artifacts"]) == 6
    assert json.loads(consumer.outputs["table"][0].read_text()) == [
        f"scored:{label}" for dataset in ("sample", "brain") for label in (dataset, "mid", "small")
    ]


def test_a_false_condition_skips_its_tasks(branching_run: PipelineRun) -> None:
    assert branching_run.conditions["condition-9"] is False
    assert "condition-9" in branching_run.skipped and not branching_run.tasks_of("upper")
    skipped = "for-loop-2[0]/for-loop-4[0]/condition-branches-5/condition-7"
    assert skipped in branching_run.skipped and not any(t.name.startswith(skipped) for t in branching_run.tasks)
    assert len(branching_run.skipped) == 1 + 2 * 3 * 2  # each iteration skips two branches of three


def test_loop_item_conditions_in_a_branch_chain_are_flagged(branching_run: PipelineRun) -> None:
    # kfp 2.17 compiles them against the loop item, which the condition-branches DAG does not receive
    flagged = [w for w in branching_run.dag_warnings if "parent DAG does not have input parameter" in w]
    assert len(flagged) == 2 * 3 * 3
    assert flagged[0].startswith("for-loop-2[0]/for-loop-4[0]/condition-branches-5/condition-6: ")


def with_condition(pipeline: Any, tmp: Path, component: str, task: str, condition: str) -> Path:
    """The compiled pipeline with the condition of ``task`` in the DAG of ``component`` replaced."""
    spec = load_ir(compile_to(pipeline, tmp))[0]
    dag = spec["root"] if component == "root" else spec["components"][component]
    dag["dag"]["tasks"][task]["triggerPolicy"]["condition"] = condition
    path = tmp / "edited.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_one_of_with_no_branch_run_stops_the_consumer(tmp_path: Path) -> None:
    path = with_condition(branching, tmp_path, "comp-condition-branches-5", "condition-8", "false")  # the Else
    with pytest.raises(PipelineError, match=r"for-loop-4\[2\]/evaluate: dsl.OneOf output .* none of \["):
        run_pipeline(path, tmp_path / "work", cwd=tmp_path, log=lambda _: None)


@dsl.pipeline
def gated(k: int = 3):
    with dsl.If(k > 2):
        high = upper(word="high")
    with dsl.Else():
        low = upper(word="low")
    upper(word=dsl.OneOf(high.outputs["out"], low.outputs["out"]))
    with dsl.If(k > 5):
        upper(word="rare")


@pytest.mark.parametrize(("k", "outs"), [(1, ["LOW", "LOW"]), (3, ["HIGH", "HIGH"]), (6, ["HIGH", "HIGH", "RARE"])])
def test_one_of_parameters_come_from_the_branch_that_ran(tmp_path: Path, k: int, outs: list[str]) -> None:
    result = run_toy(gated, tmp_path, {"k": k})
    assert sorted(t.parameters["out"] for t in result.tasks_of("upper")) == outs
    assert result.task("upper-3").inputs["word"] == outs[0]  # the OneOf consumer


@dsl.pipeline
def mistyped(k: int = 3):
    with dsl.If(k == "3"):  # kfp 2.17 quotes the int() call into a string literal: not valid CEL
        upper(word="x")


def test_an_unsupported_condition_names_the_expression(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"condition-1: cannot evaluate the condition \"'int\(inputs") as caught:
        run_toy(mistyped, tmp_path)
    assert "not in the supported subset of CEL" in str(caught.value)
    path = with_condition(gated, tmp_path, "comp-condition-branches-1", "condition-2", "size('ab') > 1")
    with pytest.raises(
        PipelineError,
        match=r"condition-2: cannot evaluate the condition .*size\('ab'\) > 1.*unsupported function size\(\)",
    ):
        run_pipeline(path, tmp_path / "work", cwd=tmp_path, log=lambda _: None)


P = {"s": "vit_h", "n": 3.0, "flag": True, "x": 0.5, "none": None}


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("inputs.parameter_values['s'] == 'vit_h'", True),
        ("!(inputs.parameter_values['s'] == 'vit_h') && inputs.parameter_values['s'] == 'vit_b'", False),
        ("int(inputs.parameter_values['n']) > 2 || inputs.parameter_values['flag'] == false", True),
        ("inputs.parameter_values['x'] < double(int(inputs.parameter_values['n']))", True),
        ("inputs.parameter_values['n'] == 3", True),  # numbers compare by value across int and double
        ("inputs.parameter_values['s'] == 3", False),  # different types are unequal, not an error
        ("inputs.parameter_values['none'] != 'vit_h'", True),
        ("string(inputs.parameter_values['n']) == '3' && string(0.5) == '0.5'", True),
        ("inputs.parameter_values['missing'] == 'a' || true", True),  # the deciding side absorbs the error
        ("inputs.parameter_values[\"s\"] >= 'vit_b' && -1 < 0", True),
    ],
)
def test_conditions_are_evaluated_as_cel_evaluates_them(expression: str, value: bool) -> None:
    assert flow.evaluate(expression, P) is value


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("inputs.parameter_values['missing'] == 'a'", "evaluation error: no such key: missing"),
        ("inputs.parameter_values['s'] < 3", "no such overload: string < int"),
        ("inputs.parameter_values['s']", "return type is not bool"),
        ("inputs.parameter_values['s'] in ['a']", "not in the supported subset"),
        ("inputs.parameter_values['s'].startsWith('v')", "unsupported member access or index '.'"),
        ("1 + 1 == 2", "unsupported syntax at '+ 1 == 2'"),
    ],
)
def test_anything_else_is_an_error(expression: str, error: str) -> None:
    with pytest.raises(flow.ConditionError, match=re.escape(error)):
        flow.evaluate(expression, P)


def test_a_number_in_a_string_input_compares_as_text() -> None:
    # kfp types a loop-item field as STRING, so `cell.n >= 2` compiles to `... >= '2'`; the driver turns 10 into '10'
    values = flow.condition_values({"n": 10, "k": None}, {"n": {"parameterType": "STRING"}}, dag=True)
    assert values == {"n": "10", "k": None}
    assert flow.evaluate("inputs.parameter_values['n'] >= '2'", values) is False
