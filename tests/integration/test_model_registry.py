"""The model registry end to end in a temporary git repository with a local DVC remote: a declared model
(a tiny UNet baseline, tracked with `dvc add`) registered and promoted with GTO, refused where it must be,
fetched by stage and by version as KServe's storage initializer would, and segmenting a PNG with `medseg predict`."""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from helpers import run_tool, tiny_params
from medseg.baselines.networks import BaselineSegmenter, baseline_spec, parse_baseline
from medseg.cli import main
from medseg.data.protocol import Protocol
from medseg.models.checkpoints import export_checkpoint
from medseg.provenance import dvc_hash

NAME = "sample-scratch-full-automated-unet"
RUN = "sample/scratch/full/automated/unet"
MODEL = f"models/{RUN}/model.pt"


def _git(repo: Path, *args: str) -> str:
    return run_tool(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], repo).stdout.strip()


def _medseg(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    if args[0] == "fetch_model":  # as in the image: no git command (scmrepo clones and reads the repository)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PATH", str(Path(sys.executable).parent))
            assert shutil.which("git") is None
            code = main(list(args))
    else:
        code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _ok(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, output = _medseg(capsys, *args)
    assert code == 0, output
    return output


def _export_unet(path: Path) -> None:
    torch.manual_seed(0)
    network = parse_baseline("unet", {"channels": [4, 8], "strides": [2], "num_res_units": 0})
    path.parent.mkdir(parents=True, exist_ok=True)
    export_checkpoint(BaselineSegmenter(network, 64, 2), path, baseline_spec(network), {
        "dataset": "sample", "strategy": "unet", "mode": "automated", "init": "scratch", "profile": "full",
        "fewshot": False, "epoch": 0, "random_init": False, "synthetic_data": True,
        "classes": ["background", "lesion"], "protocol": Protocol("RAS+", 2, 64, None, None, 2**27).to_record()})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A git + DVC project whose dvc.yaml declares params' artifacts; the baseline's model added and committed,
    not yet pushed."""
    repo = tmp_path / "project"
    repo.mkdir()
    for key, value in (("GIT_AUTHOR_NAME", "t"), ("GIT_AUTHOR_EMAIL", "t@t"), ("GIT_COMMITTER_NAME", "t"),
                       ("GIT_COMMITTER_EMAIL", "t@t"), ("DVC_NO_ANALYTICS", "1")):
        monkeypatch.setenv(key, value)
    _git(repo, "init", "-q", "-b", "main")
    run_tool(["dvc", "init", "-q"], repo)
    run_tool(["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], repo)
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    (repo / "dvc.yaml").write_text("# stages would be here\n")
    monkeypatch.chdir(repo)
    _ok(capsys, "artifacts", "--write")
    _export_unet(repo / MODEL)
    run_tool(["dvc", "add", "-q", MODEL], repo)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "model")
    return repo


def _evaluate(repo: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = _medseg(capsys, "evaluate", "--dataset", "sample", "--strategy", "unet", "--data", str(data),
                           "--model", MODEL, "--out", f"results/runs/{RUN}/eval")
    assert code == 0, output
    _git(repo, "add", f"results/runs/{RUN}/eval/metrics.json")
    _git(repo, "commit", "-qm", "evaluation")


def test_register_promote_fetch_by_stage_and_predict(project: Path, ingested_sample: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, output = _medseg(capsys, "register", NAME)
    assert code == 2 and "not on the DVC remote" in output and "dvc push" in output  # nothing deployable yet
    run_tool(["dvc", "push", "-q"], project)
    _ok(capsys, "register", NAME)
    first = _git(project, "rev-list", "-n1", f"{NAME}@v0.0.1")
    assert first == _git(project, "rev-parse", "HEAD")

    code, output = _medseg(capsys, "promote", NAME, "--version", "v0.0.1", "--stage", "staging")
    assert code == 2 and "no metrics" in output and f"results/runs/{RUN}/eval/metrics.json" in output
    assert _git(project, "tag", "--list", f"{NAME}#*") == ""  # refused: no stage tag

    _evaluate(project, ingested_sample, capsys)
    code, output = _medseg(capsys, "register", NAME, "--bump", "minor")
    assert code == 0 and f"{NAME} v0.1.0" in output, output
    code, output = _medseg(capsys, "promote", NAME, "--version", "v0.1.0", "--stage", "prod")
    assert code == 2 and "guarded" in output and "synthetic_data is true" in output  # the phantom is not for prod
    _ok(capsys, "promote", NAME, "--version", "v0.1.0", "--stage", "staging")

    dest = tmp_path / "mnt" / "models"
    dest.mkdir(parents=True)  # KServe mounts an empty folder
    code, output = _medseg(capsys, "fetch_model", f"dvc+file://{project}#{NAME}@staging", str(dest))
    assert code == 0, output
    assert sorted(p.name for p in dest.iterdir()) == ["model.pt", "registry.json"]
    record = json.loads((dest / "registry.json").read_text())
    assert (record["name"], record["version"], record["stage"]) == (NAME, "v0.1.0", "staging")
    assert record["commit"] == _git(project, "rev-parse", "HEAD") and record["synthetic_data"] is True
    assert dvc_hash(dest / "model.pt") == record["dvc_md5"] == dvc_hash(project / MODEL)

    run_tool(["dvc", "artifacts", "get", f"file://{project}", NAME, "--stage", "staging", "-o", "plain.pt"], tmp_path)
    assert dvc_hash(tmp_path / "plain.pt") == record["dvc_md5"]  # what DVC itself fetches for the stage

    image = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(image)
    code, output = _medseg(capsys, "predict", "--model", str(dest), "--input", str(image),
                           "--out", str(tmp_path / "masks"))
    assert code == 0, output
    summary = json.loads((tmp_path / "masks" / "predict.json").read_text())
    assert summary["model"]["sha256"] == record["sha256"] and (tmp_path / "masks" / "scan_mask.png").is_file()

    code, output = _medseg(capsys, "fetch_model", f"dvc+file://{project}#{NAME}@v0.0.1", str(dest))
    assert code == 0, output  # replaces its own earlier fetch
    assert json.loads((dest / "registry.json").read_text())["commit"] == first


def test_refusals_leave_nothing_behind(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_tool(["dvc", "push", "-q"], project)
    code, output = _medseg(capsys, "register", "sample-scratch-full-automated-swinunet")
    assert code == 2 and "not a model artifact declared" in output
    code, output = _medseg(capsys, "register", "pretrain-sslsam-vit-t")  # declared, but never run nor added
    assert code == 2 and "models/pretrain/sslsam/vit_t/encoder.pt is not pinned at" in output
    for args, message in ((["--version", "1.0"], "not a version"), (["--bump", "huge"], "--bump must be"),
                          (["--version", "v1.0.0", "--bump", "patch"], "not both")):
        code, output = _medseg(capsys, "register", NAME, *args)
        assert code == 2 and message in output, output
    dvc_yaml = (project / "dvc.yaml").read_text()
    (project / "dvc.yaml").write_text(dvc_yaml + "# an edit\n")
    code, output = _medseg(capsys, "register", NAME)
    assert code == 2 and "uncommitted changes to dvc.yaml" in output
    (project / "dvc.yaml").write_text(dvc_yaml)
    (project / MODEL).chmod(0o644)
    (project / MODEL).write_bytes((project / MODEL).read_bytes() + b"\0")
    code, output = _medseg(capsys, "register", NAME)
    assert code == 2 and "differs from the version HEAD pins" in output
    run_tool(["dvc", "checkout", "-q", "--force", MODEL], project)
    _ok(capsys, "register", NAME, "--version", "v1.0.0")
    code, output = _medseg(capsys, "promote", NAME, "--version", "v1.0.0", "--stage", "production")
    assert code == 2 and "registry.stages" in output

    from gto.api import assign, unassign

    assign(str(project), NAME, "staging", version="v1.0.0")  # with GTO itself: the gate is tested elsewhere
    unassign(str(project), NAME, stage="staging", version="v1.0.0")
    dest = tmp_path / "dest"
    dest.mkdir()
    for uri, message in ((f"dvc+file://{project}#{NAME}@prod", "no version of"),
                         (f"dvc+file://{project}#{NAME}@staging", "no version of"),  # revoked
                         (f"dvc+file://{project}#{NAME}@v9.9.9", "has no version v9.9.9"),
                         (f"dvc+file://{project}#sample-nothing@v1.0.0", "has no version"),
                         (f"dvc+file://{project}#sample-nothing@prod", "no version of"),  # no tag at all
                         (f"dvc+file://{tmp_path}/missing#{NAME}@prod", "cannot clone"),
                         (f"dvc+ext::sh -c touch%20x#{NAME}@prod", "not a git URL"),
                         (f"file://{project}#{NAME}@prod", "not a model URI"),
                         (f"dvc+file://{project}#{NAME.upper()}@prod", "not a valid artifact name")):
        code, output = _medseg(capsys, "fetch_model", uri, str(dest))
        assert code == 2 and message in output and len(output.strip().splitlines()) == 1, (uri, output)
        assert list(dest.iterdir()) == []
    assert _git(project, "status", "--porcelain") == ""


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files), its own authority."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "host.pem", folder / "host.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@contextlib.contextmanager
def _served_over_https(repo: Path, folder: Path) -> Iterator[tuple[str, Path]]:
    """``repo`` on loopback through dulwich's smart-HTTP server behind TLS (a git host as a deployment sees
    one): its URL and the certificate to trust."""
    from dulwich.repo import Repo
    from dulwich.server import DictBackend
    from dulwich.web import make_server, make_wsgi_chain

    cert_file, key_file = _self_signed(folder)
    server = make_server("127.0.0.1", 0, make_wsgi_chain(DictBackend({"/project.git": Repo(str(repo))})))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}/project.git", cert_file
    finally:
        server.shutdown()
        thread.join()


def test_fetch_by_stage_over_https_keeps_credentials_out_of_the_record(
        project: Path, ingested_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The storage initializer's usual case: a git host over https with a token in the URL (and a private
    authority trusted through git's own ``http.sslCAInfo``)."""
    run_tool(["dvc", "push", "-q"], project)
    _evaluate(project, ingested_sample, capsys)
    _ok(capsys, "register", NAME, "--version", "v1.2.0")
    _ok(capsys, "promote", NAME, "--version", "v1.2.0", "--stage", "staging")
    dest = tmp_path / "mnt" / "models"
    dest.mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with _served_over_https(project, tmp_path) as (url, certificate):
        with_token = url.replace("https://", "https://deploy:s3cr3t-token@")
        code, untrusted = _medseg(capsys, "fetch_model", f"dvc+{with_token}#{NAME}@staging", str(dest))
        assert code == 2 and "cannot clone" in untrusted and "s3cr3t" not in untrusted, untrusted
        (home / ".gitconfig").write_text(f"[http]\n\tsslCAInfo = {certificate}\n")
        code, output = _medseg(capsys, "fetch_model", f"dvc+{with_token}#{NAME}@staging", str(dest))
        assert code == 0, output
        code, missing = _medseg(capsys, "fetch_model", f"dvc+{url}#{NAME}@prod", str(tmp_path / "empty"))
    record_text = (dest / "registry.json").read_text()
    record = json.loads(record_text)
    head = _git(project, "rev-parse", "HEAD")
    assert (record["version"], record["stage"], record["commit"]) == ("v1.2.0", "staging", head)
    assert dvc_hash(dest / "model.pt") == dvc_hash(project / MODEL)
    assert "s3cr3t" not in record_text + output and url in record_text  # the repository, without the token
    assert code == 2 and "no version of" in missing and "s3cr3t" not in missing
