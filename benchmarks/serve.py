"""``medseg serve`` latency over loopback: p50/p95 and requests per second for ``--requests`` v2 infer requests
(JSON, one ``--size`` x ``--size`` UINT8 slice each) sent ``--concurrency`` at a time, against two baselines
measured in the same run on the same model and image: the same requests one at a time over HTTP, and the
same segmentation in process without HTTP (``medseg.serve.inference``: decode, replay, segment, resize back);
then the same slice one at a time with KServe's binary tensor extension (raw bytes in and out).

The model is a random-init baseline or SAM strategy exported with a min-max protocol (timing does not depend
on the weights), or ``--model`` an exported ``model.pt``. The server runs as ``medseg serve`` in a subprocess
on 127.0.0.1 (a free port) and is stopped at the end. Nothing is downloaded.

    .venv/bin/python benchmarks/serve.py --strategy unet --size 256 --requests 200 --concurrency 4
    .venv/bin/python benchmarks/serve.py --strategy vit_t_dec_vanilla --size 256 --requests 40
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from predict import _model  # the random-init exported model of the predict benchmark

REPO = Path(__file__).resolve().parents[1]
JSON = {"content-type": "application/json"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _body(size: int) -> bytes:
    image = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    return json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [size, size],
                                   "data": image.ravel().tolist()}]}).encode()


def _binary_body(size: int) -> tuple[bytes, dict[str, str]]:
    """The same slice with KServe's binary tensor extension: a JSON header, then the raw bytes; the mask is
    asked back as raw bytes too."""
    image = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    header = json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [size, size],
                                     "parameters": {"binary_data_size": image.nbytes}}],
                         "outputs": [{"name": "mask", "parameters": {"binary_data": True}}]}).encode()
    return header + image.tobytes(), {"content-type": "application/octet-stream",
                                      "inference-header-content-length": str(len(header))}


def _in_process(model: Path, body: bytes, count: int) -> list[float]:
    """Seconds per request without HTTP: the body parsed, checked and segmented as the server does (in a worker
    thread, as the server runs it off its event loop)."""
    from medseg.infer.replay import ProtocolChoice
    from medseg.serve.inference import load_served, segment_request
    from medseg.serve.tensors import Tensor, parse_request

    served = load_served(model, ProtocolChoice(), "cpu", 8)

    def one() -> float:
        started = time.perf_counter()
        (item,) = json.loads(body)["inputs"]
        array = np.asarray(item["data"], dtype=np.uint8).reshape(item["shape"])
        tensor = Tensor("image", item["datatype"], tuple(item["shape"]), lambda: array)
        segment_request(served, parse_request([tensor], {}, served.mode, served.protocol.max_voxels))
        return time.perf_counter() - started

    with ThreadPoolExecutor(1) as pool:
        pool.submit(one).result()  # warm-up
        return [pool.submit(one).result() for _ in range(count)]


def _start(model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "medseg.cli", "serve", "--model", str(model), "--port",
                                    str(port), "--device", "cpu"], cwd=REPO, env=env, stdout=sink, stderr=sink)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"medseg serve exited:\n{log.read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.3)
    process.terminate()
    raise SystemExit(f"medseg serve not ready after 180 s:\n{log.read_text()}")


def _load(port: int, body: bytes, count: int, concurrency: int,
          headers: dict[str, str] | None = None) -> tuple[list[float], float]:
    """Latencies of ``count`` requests sent ``concurrency`` at a time (one keep-alive connection per worker),
    and the wall time of the whole load."""
    def worker(share: int) -> list[float]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        times = []
        for _ in range(share):
            started = time.perf_counter()
            connection.request("POST", "/v2/models/medseg/infer", body, headers or JSON)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise SystemExit(f"request failed ({response.status}): {payload[:200]!r}")
            times.append(time.perf_counter() - started)
        connection.close()
        return times

    shares = [count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(worker, shares))
    return [t for times in results for t in times], time.perf_counter() - started


def _row(name: str, times: list[float], wall: float) -> dict[str, float | str]:
    p50, p95 = np.percentile(np.asarray(times) * 1000, [50, 95])
    return {"run": name, "p50_ms": float(p50), "p95_ms": float(p95), "req_per_s": len(times) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="unet", help="a baseline (unet, swinunet) or SAM strategy id")
    parser.add_argument("--size", type=int, default=256, help="model input and request image size")
    parser.add_argument("--model", type=Path, default=None, help="an exported model.pt instead")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    body = _body(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or _model(args.strategy, args.size, Path(tmp))
        in_process = _in_process(model, body, args.requests)
        rows = [_row("in process, no HTTP", in_process, sum(in_process))]
        port = _free_port()
        server = _start(model, port, Path(tmp) / "server.log")
        try:
            _load(port, body, 5, 1)  # warm-up
            rows.append(_row("HTTP, 1 at a time", *_load(port, body, args.requests, 1)))
            rows.append(_row(f"HTTP, {args.concurrency} at a time", *_load(port, body, args.requests,
                                                                            args.concurrency)))
            binary, headers = _binary_body(args.size)
            _load(port, binary, 5, 1, headers)  # warm-up
            rows.append(_row("HTTP binary, 1 at a time", *_load(port, binary, args.requests, 1, headers)))
        finally:
            server.terminate()
            server.wait(timeout=60)
    _report(rows, model if args.model else args.strategy, args)


def _report(rows: list[dict[str, float | str]], model: object, args: argparse.Namespace) -> None:
    base, single = rows[0], rows[1]
    print(f"medseg serve on 127.0.0.1: {model}, {args.size}x{args.size} UINT8 slices as JSON, {args.requests} "
          f"requests per run, CPU ({os.cpu_count()} cores)")
    print(f"{'run':<24} {'p50 ms':>9} {'p95 ms':>9} {'req/s':>8} {'p50 / in-process':>17} {'req/s / 1 at a time':>20}")
    for row in rows:
        print(f"{row['run']:<24} {row['p50_ms']:>9.1f} {row['p95_ms']:>9.1f} {row['req_per_s']:>8.1f} "
              f"{float(row['p50_ms']) / float(base['p50_ms']):>17.2f} "
              f"{float(row['req_per_s']) / float(single['req_per_s']):>20.2f}")


if __name__ == "__main__":
    main()
