"""``medseg serve``: a real server on 127.0.0.1 (tiny random-init models), health and metadata, masks equal to
what ``medseg predict`` writes for the same image, honest model labels, a 400 with one clear line for each bad
request, the model loaded once; request decoding and scaling checked in process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from predict_helpers import MIN_MAX, Threshold, to_uint8_threshold
from serve_helpers import Served, free_port, mask_of, raw_exchange, serving, tensor

from medseg.cli import main
from medseg.errors import MedsegError
from medseg.infer.model import PredictModel
from medseg.serve.tensors import Tensor, parse_request

IMAGE = np.random.default_rng(7).integers(0, 255, (40, 50), dtype=np.uint8)


@pytest.fixture(scope="module")
def unet_server(unet_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(unet_model, tmp_path_factory.mktemp("serve") / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def point_server(point_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(point_model, tmp_path_factory.mktemp("serve") / "server.log", "--max-request-mb", "1") as server:
        yield server


def _predicted(model: Path, image: np.ndarray, folder: Path, *extra: str) -> np.ndarray:
    """What ``medseg predict`` writes for ``image`` saved as a PNG."""
    folder.mkdir()
    Image.fromarray(image).save(folder / "scan.png")
    assert main(["predict", "--model", str(model), "--input", str(folder / "scan.png"), "--out",
                 str(folder / "out"), *extra]) == 0
    return np.asarray(Image.open(folder / "out" / "scan_mask.png"))


def test_health_readiness_and_metadata(unet_server: Served) -> None:
    assert unet_server.get("/v2/health/live") == (200, {"live": True})
    assert unet_server.get("/v2/health/ready") == (200, {"ready": True})
    assert unet_server.get("/v2/models/medseg/ready") == (200, {"name": "medseg", "ready": True})
    code, metadata = unet_server.get("/v2/models/medseg")
    assert code == 200 and [i["name"] for i in metadata["inputs"]] == ["image"]
    assert metadata["outputs"] == [{"name": "mask", "datatype": "UINT8", "shape": [-1, -1, -1]}]
    assert unet_server.get("/v2/models/other/ready")[0] == 404


def test_a_mask_equals_what_predict_writes_and_names_the_model(unet_server: Served, unet_model: Path,
                                                               tmp_path: Path) -> None:
    other = IMAGE[::-1].copy()
    expected = [_predicted(unet_model, image, tmp_path / name) for image, name in ((IMAGE, "a"), (other, "b"))]
    code, body = unet_server.infer([tensor("image", IMAGE, "UINT8")])
    assert code == 200, body
    assert np.array_equal(mask_of(body), expected[0][None])
    code, body = unet_server.infer([tensor("image", np.stack([IMAGE, other]).astype(np.float32), "FP32")])
    assert code == 200 and np.array_equal(mask_of(body), np.stack(expected))  # each image scaled on its own
    params = body["parameters"]
    assert (params["strategy"], params["mode"], params["dataset"]) == ("unet", "automated", "sample")
    assert params["random_init"] is False and params["synthetic_data"] is True
    assert "SYNTHETIC DATA" in params["description"] and "synthetic data" in params["warnings"]
    assert json.loads(body["outputs"][0]["parameters"]["labels"]) == {"0": "background", "1": "lesion"}


def test_binary_tensors_in_and_out_give_the_json_mask(unet_server: Served) -> None:
    """KServe's binary tensor extension: a JSON header, then the slice's raw bytes; the mask asked back raw."""
    import urllib.request

    header = json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": list(IMAGE.shape),
                                     "parameters": {"binary_data_size": IMAGE.nbytes}}],
                         "outputs": [{"name": "mask", "parameters": {"binary_data": True}}]}).encode()
    request = urllib.request.Request(unet_server.url + "/v2/models/medseg/infer", data=header + IMAGE.tobytes(),
                                     method="POST", headers={"content-type": "application/octet-stream",
                                                             "inference-header-content-length": str(len(header))})
    with urllib.request.urlopen(request, timeout=60) as response:
        length = int(response.headers["inference-header-content-length"])
        payload = response.read()
    (output,) = json.loads(payload[:length])["outputs"]
    mask = np.frombuffer(payload[length:], dtype=np.uint8).reshape(output["shape"])
    assert output["parameters"]["binary_data_size"] == mask.size
    assert np.array_equal(mask, mask_of(unet_server.infer([tensor("image", IMAGE, "UINT8")])[1]))


BAD_REQUESTS = [
    ([], "missing input 'image'"),
    ([{"name": "img", "datatype": "UINT8", "shape": [2, 2], "data": [0, 1, 2, 3]}], "unknown input 'img'"),
    ([{"name": "image", "datatype": "UINT8", "shape": [4], "data": [0, 1, 2, 3]}], "has shape [4]; expected 2-D"),
    ([{"name": "image", "datatype": "UINT8", "shape": [2, 3], "data": [0, 1, 2, 3]}], "data do not match shape"),
    ([{"name": "image", "datatype": "BYTES", "shape": [1, 1], "data": ["a"]}], "has datatype 'BYTES'"),
    ([{"name": "image", "datatype": "FP32", "shape": [1, 2], "data": [0, float("nan")]}], "NaN or infinite"),
    ([{"name": "image", "datatype": "UINT8", "shape": [1, 2], "data": [0, 300]}], "data do not match"),
    ([{"name": "image", "datatype": "UINT8", "shape": [20000, 20000], "data": [0]}], "too large: 400000000 values"),
    ([{"name": "image", "datatype": "UINT8", "shape": [1, 1], "data": [0]},
      {"name": "boxes", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}], "automated and takes no prompts"),
]


@pytest.mark.parametrize(("inputs", "message"), BAD_REQUESTS)
def test_a_bad_request_is_a_400_with_one_clear_line(unet_server: Served, inputs: list, message: str) -> None:
    code, body = unet_server.infer(inputs)
    assert code == 400 and message in body["error"] and "\n" not in body["error"], body


def test_malformed_bodies_and_v1_calls_are_4xx_and_the_model_is_loaded_once(unet_server: Served) -> None:
    assert unet_server.post("/v2/models/medseg/infer", b"{not json")[0] == 422
    assert unet_server.infer([tensor("image", IMAGE, "UINT8")], volume="yes")[0] == 400
    code, body = unet_server.post("/v1/models/medseg:predict", {"instances": [[1, 2]]})
    assert code == 400 and "open inference protocol (v2)" in body["error"]
    code, body = unet_server.post("/v2/repository/models/medseg/load", {})
    assert code == 501 and "loaded at start" in body["error"]
    assert unet_server.get("/v2/models/medseg/ready")[0] == 200  # still served
    log = unet_server.log.read_text()
    assert log.count("medseg serve: loaded ") == 1 and '" 500' not in log  # loaded once; no request was a 500
    assert "400 bad request: unknown input" in log and "501 not implemented: medseg serve holds one model" in log
    assert "Traceback" not in log  # answers that are not server failures: one line each
    assert "ORJSONResponse" not in log


def test_a_point_model_takes_points_as_predict_takes_a_prompts_file(point_server: Served, point_model: Path,
                                                                    tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"prompts": [{"point": [10, 10]}, {"point": [37, 30], "label": 2}]}))
    expected = _predicted(point_model, IMAGE, tmp_path / "a", "--prompts", str(prompts))
    code, body = point_server.infer([tensor("image", IMAGE, "UINT8"),
                                     tensor("points", np.array([[10, 10], [37, 30]], np.float32), "FP32"),
                                     tensor("prompt_label", np.array([1, 2]), "INT64")])
    assert code == 200, body
    assert np.array_equal(mask_of(body), expected[None])
    assert body["parameters"]["mode"] == "point" and body["parameters"]["random_init"] is True
    code, metadata = point_server.get("/v2/models/medseg")
    assert [i["name"] for i in metadata["inputs"]] == ["image", "points", "prompt_image", "prompt_label"]


@pytest.mark.parametrize(("extra", "message"), [
    ([], "the model takes point prompts: give input 'points'"),
    ([tensor("boxes", np.zeros((1, 4)), "FP32")], "takes point prompts (input 'points'), not 'boxes'"),
    ([tensor("points", np.array([[50.0, 3.0]]), "FP32")], "points[0] [50.0, 3.0] lies outside the image (width 50"),
    ([tensor("points", np.array([[1.0, 3.0]]), "FP32"), tensor("prompt_label", np.array([0]), "INT32")],
     "'prompt_label' values must lie in 1..255"),
    ([tensor("points", np.array([[1.0, 3.0]]), "FP32"), tensor("prompt_image", np.array([1]), "INT32")],
     "'prompt_image' values must lie in 0..0"),
])
def test_bad_prompts_are_a_400(point_server: Served, extra: list, message: str) -> None:
    code, body = point_server.infer([tensor("image", IMAGE, "UINT8"), *extra])
    assert code == 400 and message in body["error"], body


def test_a_body_over_max_request_mb_is_a_413_before_it_is_read(point_server: Served) -> None:
    """As curl sends a large body: the head with ``expect: 100-continue``, then waits; the 413 comes at once.
    In chunks (no length), the 413 comes once the bytes sent pass the limit."""
    path, limit = "/v2/models/medseg/infer", 1048576  # --max-request-mb 1
    head = {"content-type": "application/json", "content-length": str(2 * limit), "expect": "100-continue"}
    code, body = raw_exchange(point_server.url, path, head)
    assert code == 413 and f"over the limit of {limit} bytes" in body["error"] and "--max-request-mb" in body["error"]
    assert point_server.get("/v2/health/ready")[0] == 200
    assert "413 request too large" in point_server.log.read_text()
    chunk = f"{limit + 1:x}\r\n".encode() + b" " * (limit + 1)
    code, body = raw_exchange(point_server.url, path, {"content-type": "application/json",
                                                       "transfer-encoding": "chunked"}, chunk)
    assert code == 413 and "over the limit" in body["error"]
    assert point_server.get("/v2/health/ready")[0] == 200


def test_a_chunked_body_is_cut_once_it_passes_the_limit() -> None:
    """No content-length (a body sent in chunks): the app sees a disconnect and the client gets the 413."""
    import asyncio

    from medseg.serve.limits import BodySizeLimit

    read: list[int] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        while True:
            message = await receive()  # type: ignore[operator]
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
            read.append(len(message["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": True} for _ in range(5)]
    sent: list[dict] = []

    async def receive() -> dict:
        return chunks.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(BodySizeLimit(app, limit=1000)({"type": "http", "headers": []}, receive, send))
    assert sent[0]["status"] == 413 and b"over the limit of 1000 bytes" in sent[1]["body"] and len(sent) == 2
    assert sum(read) == 800  # the app stopped at the chunk that passed the limit


def _tensor(name: str, array: np.ndarray, datatype: str = "FP32") -> Tensor:
    return Tensor(name, datatype, array.shape, lambda: array)


def test_volume_scales_the_slices_together_per_image_scales_each(tmp_path: Path) -> None:
    from medseg.serve.inference import Served as Loaded
    from medseg.serve.inference import segment_request

    model = PredictModel(Threshold(64), tmp_path / "m.pt", {}, (0, 1), {0: "background", 1: "lesion"})
    loaded = Loaded(model, {}, MIN_MAX, "model", torch.device("cpu"), 4)
    stack = np.stack([np.linspace(0, 100, 64 * 64), np.linspace(0, 1000, 64 * 64)]).reshape(2, 64, 64)
    for volume, expected in ((False, [to_uint8_threshold(s, None) for s in stack]),
                             (True, to_uint8_threshold(stack, None))):
        request = parse_request([_tensor("image", stack)], {"volume": volume}, "automated", 2**20)
        assert np.array_equal(segment_request(loaded, request), np.asarray(expected))
    assert segment_request(loaded, request)[0].sum() == 0  # together: the first slice stays below the threshold


def test_every_image_needs_a_prompt_unless_they_are_one_volume() -> None:
    images, points = _tensor("image", np.zeros((2, 8, 8))), _tensor("points", np.array([[1.0, 2.0]]))
    with pytest.raises(MedsegError, match="image 1 of 2 has no prompt"):
        parse_request([images, points], {}, "point", 2**20)
    request = parse_request([images, points], {"volume": True}, "point", 2**20)
    assert request.prompts is not None and [p.image for p in request.prompts] == [0]
    with pytest.raises(MedsegError, match=r"boxes\[0\].*corners must be x0 <= x1"):
        parse_request([images, _tensor("boxes", np.array([[3.0, 0, 1, 1]]))], {"volume": True}, "box", 2**20)
    with pytest.raises(MedsegError, match="given twice"):
        parse_request([images, images], {}, "automated", 2**20)


def test_serve_refuses_a_busy_port_and_a_model_without_protocol(unet_model: Path, box_model: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert main(["serve", "--model", str(unet_model), "--port", str(port)]) == 2
    assert f"--port {port}: the address is already in use" in capsys.readouterr().err
    assert main(["serve", "--model", str(box_model), "--port", str(free_port())]) == 2
    assert "records no ingestion protocol" in capsys.readouterr().err
    assert main(["serve", "--model", str(unet_model), "--name", "../x"]) == 2
    assert "--name '../x' is not a valid name" in capsys.readouterr().err
