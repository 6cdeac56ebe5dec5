"""``medseg serve`` in a subprocess on a free loopback port, and v2 requests to it (standard library only)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers import REPO

START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """A running server: its base URL, process and log file."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> tuple[int, Any]:
        return _send(urllib.request.Request(self.url + path))

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return _send(urllib.request.Request(self.url + path, data=data, method="POST",
                                            headers={"content-type": "application/json"}))

    def infer(self, inputs: list[dict[str, Any]], **parameters: Any) -> tuple[int, Any]:
        body: dict[str, Any] = {"inputs": inputs}
        if parameters:
            body["parameters"] = parameters
        return self.post("/v2/models/medseg/infer", body)


def _send(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def raw_exchange(url: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    """A POST written on a plain socket as given (headers, then ``body``, which may stop short of what the
    headers announce), and the server's answer: how a client sees a server that answers before reading."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        head = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
        connection.sendall(f"POST {path} HTTP/1.1\r\nhost: {host}\r\n{head}\r\n".encode() + body)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, json.loads(response.read())


def tensor(name: str, array: np.ndarray, datatype: str) -> dict[str, Any]:
    """A v2 request input with its data as a flat JSON list."""
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}


def mask_of(body: dict[str, Any]) -> np.ndarray:
    (output,) = body["outputs"]
    assert output["name"] == "mask" and output["datatype"] == "UINT8"
    return np.asarray(output["data"], dtype=np.uint8).reshape(output["shape"])


@contextlib.contextmanager
def serving(model: Path, log: Path, *extra: str) -> Iterator[Served]:
    """Start ``medseg serve`` on 127.0.0.1, wait until it is ready, and always stop it."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "medseg.cli", "serve", "--model", str(model), "--port",
                                    str(port), *extra], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    server = Served(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Served) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"medseg serve exited ({server.process.returncode}):\n{server.log.read_text()}")
        with contextlib.suppress(OSError):
            if server.get("/v2/health/ready")[0] == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"medseg serve not ready after {START_TIMEOUT_S} s:\n{server.log.read_text()}")
