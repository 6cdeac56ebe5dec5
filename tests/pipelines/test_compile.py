"""The Kubeflow pipelines compile offline, mirror the DVC stages and carry the platform spec a cluster
needs: the commit's image, params as task inputs, GPUs per backbone, secrets by reference, retries."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, tiny_params
from medseg.errors import MedsegError
from pipelines.compile import compile_pipeline, image_tag

TAG = "0123456789abcdef0123456789abcdef01234567"


def _params(**grid: Any) -> dict[str, Any]:
    params = tiny_params()
    params["kubeflow"]["pipelines"]["study"].update(grid)
    params["kubeflow"]["gpu"]["node_selector"] = {"nvidia.com/gpu.present": "true"}
    params["kubeflow"]["gpu"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                 "effect": "NoSchedule"}]
    return params


def _compile(tmp: Path, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The pipeline spec, with the platform spec (the second YAML document) under ``platforms``."""
    path = compile_pipeline(name, params, tmp / f"{name}.yaml", TAG, REPO / "params.yaml")
    spec, *platform = yaml.safe_load_all(path.read_text())
    return {**spec, **(platform[0] if platform else {})}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    grid = {"datasets": ["us_breast", "mri_hippocampus"], "strategies": ["vit_t_dec_vanilla", "vit_b_endec_lora"],
            "modes": ["automated", "box"], "profiles": ["full"], "baselines": ["unet", "nnunet"], "parallelism": 3,
            "pretrained": {"inits": ["medsam", "sslsam"], "strategies": ["vit_b_dec_lora"],
                           "profiles": ["full", "fewshot"]}}
    return _compile(tmp_path_factory.mktemp("kfp"), "study", _params(**grid))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _compile(tmp_path_factory.mktemp("kfp"), "demo", tiny_params())


def _executors(ir: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name.removeprefix("exec-"): spec["container"] for name, spec in ir["deploymentSpec"]["executors"].items()}


def _base(name: str) -> str:
    return re.sub(r"-\d+$", "", name)


def test_every_task_runs_its_medseg_step_in_the_commits_image(demo: dict[str, Any]) -> None:
    for name, container in _executors(demo).items():
        assert container["image"] == f"ghcr.io/medseg/medseg:{TAG}"
        step = _base(name).removesuffix("-pretrained")  # finetune-pretrained: the finetune step from another init
        command = container["command"]
        assert command[:2] == ["medseg", step] or command[-2:] == ["medseg.cli", step]
        assert not any("Concat" in arg or "IfPresent" in arg for arg in container["args"])  # the backend skips them
    assert {_base(n) for n in _executors(demo)} == {"pull", "ingest", "validate", "finetune", "finetune-pretrained",
                                                    "baseline", "evaluate", "report"}


def test_params_are_run_parameters_and_task_inputs(demo: dict[str, Any]) -> None:
    """The compiled params (params.yaml + the demo profile + grid) and the override reach every medseg task
    as inputs, so Kubeflow's cache key includes them; the image carries none."""
    inputs = demo["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == {"params", "params_override", "dvc_remote"}
    compiled = yaml.safe_load(inputs["params"]["defaultValue"])
    assert compiled["ingest"]["datasets"] == ["sample"] and compiled["finetune"]["max_epochs"] == 8  # demo profile
    for name, container in _executors(demo).items():
        if _base(name) != "pull":
            args = container["args"]
            assert args[args.index("--params-text") + 1] == "{{$.inputs.parameters['params']}}"
            assert args[args.index("--params-override") + 1] == "{{$.inputs.parameters['params_override']}}"
            assert "{{$}}" in args


def test_study_grid_is_nested_parallel_for_with_limits_and_one_report(study: dict[str, Any]) -> None:
    root = study["root"]["dag"]["tasks"]
    outer = next(task for task in root.values() if "parameterIterator" in task)
    assert outer["iteratorPolicy"]["parallelismLimit"] == 3
    assert yaml.safe_load(outer["parameterIterator"]["items"]["raw"]) == ["us_breast", "mri_hippocampus"]
    inner_dag = study["components"][outer["componentRef"]["name"]]["dag"]["tasks"]
    inner = next(task for task in inner_dag.values() if "parameterIterator" in task)
    cells = yaml.safe_load(inner["parameterIterator"]["items"]["raw"])
    assert len(cells) == 4 and {c["mode"] for c in cells} == {"automated", "box"}
    assert {c["profile"] for c in cells} == {"full"} and "init" not in cells[0]  # SAM's weights
    assert {c["strategy"]: c["memory_limit"] for c in cells} == {"vit_t_dec_vanilla": "24G", "vit_b_endec_lora": "48G"}
    final = next(task for name, task in root.items() if name.startswith("report"))
    assert final["inputs"]["artifacts"]["runs"]["taskOutputArtifact"]["producerTask"] == outer["taskInfo"]["name"]
    assert any(name.startswith("report") for name in inner_dag)  # one report per dataset, then one over those


def test_baselines_loop_beside_the_cells_on_one_gpu_and_reach_the_datasets_report(study: dict[str, Any]) -> None:
    """Each baseline trains on the grid's profiles in its own nested loop (a dsl.If on a loop item would not
    reach Kubeflow's driver), is scored by the same evaluate, and the dataset's report collects every loop."""
    outer = next(task for task in study["root"]["dag"]["tasks"].values() if "parameterIterator" in task)
    dataset_dag = study["components"][outer["componentRef"]["name"]]["dag"]["tasks"]
    loops = [task for task in dataset_dag.values() if "parameterIterator" in task]
    items = [yaml.safe_load(loop["parameterIterator"]["items"]["raw"]) for loop in loops]
    baselines = next(cells for cells in items if cells[0]["strategy"] in ("unet", "nnunet"))
    assert [(c["strategy"], c["mode"], c["profile"]) for c in baselines] == [("unet", "automated", "full"),
                                                                             ("nnunet", "automated", "full")]
    assert {c["processes"] for c in baselines} == {"1"} and baselines[0]["memory_limit"] == "48G"
    baseline_dag = next(study["components"][loop["componentRef"]["name"]]["dag"]["tasks"] for loop, cells
                        in zip(loops, items, strict=True) if cells is baselines)
    assert {_base(name) for name in baseline_dag} == {"baseline", "evaluate"}
    report = next(task for name, task in dataset_dag.items() if name.startswith("report"))
    producers = {name: value["taskOutputArtifact"]["producerTask"]
                 for name, value in report["inputs"]["artifacts"].items()}
    assert set(producers) == {"runs", "more_runs", "pretrained_runs"} and len(set(producers.values())) == 3
    resources = _executors(study)["baseline"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    args = _executors(study)["baseline"]["args"]
    assert args[args.index("--profile") + 1] == "{{$.inputs.parameters['profile']}}"


def test_pretrained_cells_pull_their_inits_weights_as_pinned_and_pass_them_to_finetune(study: dict[str, Any]) -> None:
    """A third loop per dataset: each cell pulls models/pretrain/<init>/<backbone>/<file> (dvc.lock pins the
    pretraining outputs; MedSAM's release is added with DVC) and SAM's weights for the backbone."""
    outer = next(task for task in study["root"]["dag"]["tasks"].values() if "parameterIterator" in task)
    dataset_dag = study["components"][outer["componentRef"]["name"]]["dag"]["tasks"]
    loops = [task for task in dataset_dag.values() if "parameterIterator" in task]
    cells = next(items for loop in loops if "init" in (items := yaml.safe_load(loop["parameterIterator"]["items"]
                                                                                       ["raw"]))[0])
    assert [(c["init"], c["profile"], c["init_folder"], c["init_name"]) for c in cells] == [
        ("medsam", "full", "models/pretrain/medsam/vit_b", "medsam_vit_b.pth"),
        ("medsam", "fewshot", "models/pretrain/medsam/vit_b", "medsam_vit_b.pth"),
        ("sslsam", "full", "models/pretrain/sslsam/vit_b", "encoder.pt"),
        ("sslsam", "fewshot", "models/pretrain/sslsam/vit_b", "encoder.pt")]
    assert {c["checkpoint_name"] for c in cells} == {"sam_vit_b_01ec64.pth"} and cells[0]["memory_limit"] == "48G"
    args = _executors(study)["finetune-pretrained-with-weights"]["args"]
    assert args[args.index("--init") + 1] == "{{$.inputs.parameters['init']}}"
    assert args[args.index("--init-weights") + 1] == "{{$.inputs.artifacts['init_weights'].path}}"
    assert args[args.index("--checkpoint") + 1] == "{{$.inputs.artifacts['checkpoint'].path}}"


def test_a_pretrained_init_without_weights_for_a_backbone_is_refused(tmp_path: Path) -> None:
    from pipelines.grid import make_plan

    for init, problem in (("sslsam", r"vit_h is not in pretrain_mae\.backbones"), ("medsam", r"ViT-B only")):
        params = _params(datasets=["us_breast"], pretrained={"inits": [init], "strategies": ["vit_h_dec_vanilla"]})
        with pytest.raises(MedsegError, match=rf"finetune\.pretrained: no {init} weights for vit_h_dec_vanilla.*"
                                              rf"{problem}"):
            make_plan(params, "study", TAG, REPO / "params.yaml")


def test_fewshot_profile_runs_baselines_on_it_and_no_gpu_resources_is_refused(tmp_path: Path) -> None:
    params = _params(datasets=["us_breast"], strategies=["vit_t_dec_vanilla"], modes=["box", "automated"],
                     profiles=["fewshot"], baselines=["swinunet"])
    from pipelines.grid import make_plan

    plan = make_plan(params, "study", TAG, REPO / "params.yaml")
    assert [(c["strategy"], c["mode"], c["profile"]) for c in plan.baseline_cells] == [
        ("swinunet", "automated", "fewshot")]
    assert [(c["mode"], c["profile"]) for c in plan.cells] == [("box", "fewshot"), ("automated", "fewshot")]
    del params["kubeflow"]["gpu"]["baseline"]
    with pytest.raises(MedsegError, match=r"kubeflow\.gpu\.baseline"):
        make_plan(params, "study", TAG, REPO / "params.yaml")


def test_loop_item_fields_in_task_settings_are_selected_from_the_item(study: dict[str, Any]) -> None:
    """Resources from a cell reach the driver as the item's fields (kfp alone leaves them undeclared)."""
    for component in study["components"].values():
        declared = set(component.get("inputDefinitions", {}).get("parameters", {}))
        for task in component.get("dag", {}).get("tasks", {}).values():
            for name, value in task.get("inputs", {}).get("parameters", {}).items():
                source = value.get("componentInputParameter", "")
                assert "subvar" not in source, (name, source)
                assert not source or source in declared, (name, source)


def test_training_and_evaluation_request_gpus_per_backbone(study: dict[str, Any]) -> None:
    executors = _executors(study)
    for step in ("finetune-with-weights", "evaluate"):
        resources = executors[step]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert "subvar-processes" in resources["accelerator"]["resourceCount"]
        assert "subvar-memory_limit" in resources["resourceMemoryLimit"]
    for step in ("pull", "ingest", "validate", "report"):
        assert "accelerator" not in executors[step]["resources"]


def test_platform_spec_secret_node_selector_tolerations_shm(study: dict[str, Any]) -> None:
    platform = study["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, spec in platform.items():
        if _base(name.removeprefix("exec-")) == "pull":
            assert {e["envVar"] for e in spec["secretAsEnv"][0]["keyToEnv"]} == {
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
            assert spec["secretAsEnv"][0]["secretName"] == "medseg-s3"
    for step in ("exec-finetune-with-weights", "exec-evaluate"):
        assert platform[step]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert platform[step]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert platform["exec-finetune-with-weights"]["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
    assert not any("secretAsEnv" in platform.get(f"exec-{s}", {}) for s in ("ingest", "finetune", "report"))


def test_every_task_retries_with_backoff(study: dict[str, Any]) -> None:
    def tasks(dag: dict[str, Any]) -> list[dict[str, Any]]:
        found = []
        for task in dag["tasks"].values():
            found.append(task)
            sub = study["components"][task["componentRef"]["name"]].get("dag")
            found += tasks(sub) if sub else []
        return found

    containers = [t for t in tasks(study["root"]["dag"]) if "dag" not in study["components"][t["componentRef"]["name"]]]
    assert containers and all(t["retryPolicy"]["maxRetryCount"] == 2 and t["retryPolicy"]["backoffFactor"] == 2
                              for t in containers)


def test_study_pulls_each_backbones_weights_when_named(tmp_path: Path) -> None:
    params = _params(datasets=["us_breast"], strategies=["vit_t_dec_vanilla"], modes=["automated"])
    ir = _compile(tmp_path, "study", params)  # the study profile names the official checkpoints
    cells = [yaml.safe_load(t["parameterIterator"]["items"]["raw"]) for c in ir["components"].values()
             for t in c.get("dag", {}).get("tasks", {}).values() if "parameterIterator" in t
             and "raw" in t["parameterIterator"]["items"] and "{" in t["parameterIterator"]["items"]["raw"]]
    assert cells[0][0]["checkpoint_folder"] == "checkpoints" and cells[0][0]["checkpoint_name"] == "mobile_sam.pt"
    args = _executors(ir)["finetune-with-weights"]["args"]
    assert args[args.index("--checkpoint") + 1] == "{{$.inputs.artifacts['checkpoint'].path}}"


def test_mixed_checkpoints_are_refused(tmp_path: Path) -> None:
    params = _params(datasets=["us_breast"], strategies=["vit_t_dec_vanilla", "vit_b_dec_vanilla"], profile="half",
                     pretrained={"inits": []})
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles/half.yaml").write_text("finetune:\n  checkpoint: {vit_t: checkpoints/mobile_sam.pt}\n")
    with pytest.raises(MedsegError, match="some backbones"):
        compile_pipeline("study", params, tmp_path / "x.yaml", TAG, tmp_path / "params.yaml")
    assert not (tmp_path / "x.yaml").exists()


def test_unknown_pipeline_and_bad_tag_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(MedsegError, match="no pipeline 'nope'"):
        compile_pipeline("nope", tiny_params(), tmp_path / "x.yaml", TAG, REPO / "params.yaml")
    with pytest.raises(MedsegError, match="image tag"):
        image_tag("bad tag/with slash")


def test_default_tag_is_head_and_uncommitted_changes_are_refused(tmp_path: Path) -> None:
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-qm", "x")
    assert image_tag(None, tmp_path) == git("rev-parse", "HEAD")
    (tmp_path / "f.txt").write_text("b")
    with pytest.raises(MedsegError, match="uncommitted changes"):
        image_tag(None, tmp_path)


@pytest.mark.parametrize("name", ["demo", "study", "regression"])
def test_committed_pipelines_are_current(tmp_path: Path, name: str) -> None:
    """pipelines/compiled/<name>.yaml must be regenerated (make pipeline) when components or params change (and the
    regression pipeline also when the models dvc.lock pins or their recorded evaluations change); compiled with the
    image tag it names (the commit it was compiled at)."""
    committed = (REPO / "pipelines/compiled" / f"{name}.yaml").read_text()
    tag = re.search(r"image: ghcr\.io/medseg/medseg:(\S+)", committed).group(1)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    fresh = compile_pipeline(name, copy.deepcopy(params), tmp_path / "fresh.yaml", tag, REPO / "params.yaml")
    assert committed == fresh.read_text()


def test_no_two_cells_of_the_study_grid_write_the_same_run_folder() -> None:
    """Each cell's evaluation lands in <dataset>/<init>/<profile>/<mode>/<strategy> (the folder the model's
    metadata names): unique over SAM cells, baselines and cells from pretrained inits."""
    from medseg.eval.reference import run_name
    from pipelines.grid import make_plan

    plan = make_plan(yaml.safe_load((REPO / "params.yaml").read_text()), "study", TAG, REPO / "params.yaml")
    folders = [run_name({"dataset": "d", **cell}) for cell in [*plan.cells, *plan.baseline_cells,
                                                               *plan.pretrained_cells]]
    assert len(folders) == 18 * 3 * 2 + 3 * 2 + 3 * 6 * 2 and len(set(folders)) == len(folders)
    assert {folder.split("/")[1] for folder in folders} == {"sam", "scratch", "medsam", "sslsam", "supsam"}


# --- the regression pipeline: the models the commit pins, evaluated, then `medseg regress` ----------------------

PINNED = ["sample/sam/full/automated/vit_t_dec_vanilla", "sample/scratch/full/automated/unet",
          "sample/sslsam/full/automated/vit_t_dec_vanilla", "sample/supsam/full/automated/vit_t_dec_vanilla"]


def _loop(ir: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]], dict[str, Any]]:
    """(the root's ParallelFor task, its items, the loop's tasks)."""
    loop = next(task for task in ir["root"]["dag"]["tasks"].values() if "parameterIterator" in task)
    items = yaml.safe_load(loop["parameterIterator"]["items"]["raw"])
    return loop, items, ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"]


def test_regression_pipeline_evaluates_every_pinned_model_then_regresses(tmp_path: Path) -> None:
    """One cell per model dvc.lock pins: pull it and its dataset's ingested data, evaluate; one regress over the
    collected evaluations, not retried (its failure is the verdict), with the baseline as a run parameter whose
    default is what the commit records."""
    ir = _compile(tmp_path, "regression", tiny_params())
    inputs = ir["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == {"params", "params_override", "dvc_remote", "baseline"}
    baseline = json.loads(inputs["baseline"]["defaultValue"])
    committed = json.loads((REPO / "results/runs" / PINNED[0] / "eval/metrics.json").read_text())
    assert sorted(baseline["runs"]) == PINNED and baseline["runs"][PINNED[0]]["dice_mean"] == committed["dice_mean"]
    loop, cells, loop_tasks = _loop(ir)
    assert [(c["dataset"], c["folder"], c["strategy"]) for c in cells] == [
        ("sample", f"models/{run}", run.split("/")[-1]) for run in PINNED]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 4 and {c["memory_limit"] for c in cells} == {"8G"}
    assert sorted(_base(name) for name in loop_tasks) == ["evaluate", "pull", "pull"]
    scored = loop_tasks["evaluate"]["inputs"]["artifacts"]
    assert {scored[name]["taskOutputArtifact"]["producerTask"] for name in ("processed", "run")} == {"pull", "pull-2"}
    regress = ir["root"]["dag"]["tasks"]["regress"]
    assert regress["inputs"]["artifacts"]["runs"]["taskOutputArtifact"]["producerTask"] == loop["taskInfo"]["name"]
    assert regress["inputs"]["parameters"]["baseline"]["componentInputParameter"] == "baseline"
    assert "retryPolicy" not in regress and "retryPolicy" in loop_tasks["evaluate"]
    args = _executors(ir)["regress"]["args"]
    assert _executors(ir)["regress"]["command"] == ["medseg", "regress"] and "--runs" not in args
    assert args[args.index("--baseline-text") + 1] == "{{$.inputs.parameters['baseline']}}"
    assert _executors(ir)["evaluate"]["image"] == f"ghcr.io/medseg/medseg:{TAG}"
    platform = ir["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {_base(n.removeprefix("exec-")) for n, spec in platform.items() if "secretAsEnv" in spec} == {"pull"}


def test_regression_pipeline_on_gpus_sizes_each_evaluation_by_its_model(tmp_path: Path) -> None:
    params = _params()
    params["kubeflow"]["regression"] = {"gpu": True, "parallelism": 2}
    ir = _compile(tmp_path, "regression", params)
    _, cells, _ = _loop(ir)
    assert {c["strategy"]: c["memory_limit"] for c in cells} == {"vit_t_dec_vanilla": "24G", "unet": "48G"}
    assert {c["processes"] for c in cells} == {"1"}  # one GPU per evaluation, whatever training used
    resources = _executors(ir)["evaluate"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "accelerator" not in _executors(ir)["regress"]["resources"]


def _project(tmp_path: Path, runs: list[str]) -> Path:
    """dvc.yaml, dvc.lock and params.yaml of the project, with the recorded evaluations of ``runs`` only."""
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    for run in runs:
        (tmp_path / "results/runs" / run / "eval").mkdir(parents=True)
        shutil.copy(REPO / "results/runs" / run / "eval/metrics.json", tmp_path / "results/runs" / run / "eval")
    return tmp_path


def test_a_pinned_model_without_a_recorded_evaluation_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path, PINNED[1:])
    with pytest.raises(MedsegError, match=rf"{PINNED[0]}/eval/metrics.json: the pinned model {PINNED[0]} has no "
                                          "recorded evaluation to compare with"):
        compile_pipeline("regression", tiny_params(), tmp_path / "r.yaml", TAG, project / "params.yaml")
    assert not (tmp_path / "r.yaml").exists()


def test_a_baseline_file_named_in_params_is_the_compiled_baseline(tmp_path: Path) -> None:
    project = _project(tmp_path, [])
    runs = {run: {"dice_mean": 0.5, "hd95_mean": 20.0} for run in PINNED}
    (project / "baseline.json").write_text(json.dumps({"runs": runs}))
    params = tiny_params()
    params["regress"]["baseline_file"] = "baseline.json"
    path = compile_pipeline("regression", params, tmp_path / "r.yaml", TAG, project / "params.yaml")
    spec = next(yaml.safe_load_all(path.read_text()))
    baseline = json.loads(spec["root"]["inputDefinitions"]["parameters"]["baseline"]["defaultValue"])
    assert baseline["runs"] == runs and baseline["source"] == str(project / "baseline.json")


def test_no_grid_may_take_the_regression_pipelines_name() -> None:
    params = tiny_params()
    params["kubeflow"]["pipelines"]["regression"] = params["kubeflow"]["pipelines"]["demo"]
    with pytest.raises(MedsegError, match=r"kubeflow\.pipelines: 'regression' names the regression pipeline"):
        compile_pipeline("demo", params, "unused.yaml", TAG, REPO / "params.yaml")
