"""``medseg serve``: one exported model on a local port, with KServe's model server (REST, one worker).

kserve 0.21's REST server always binds ``0.0.0.0``; :class:`BoundModelServer` binds the host asked for
(``127.0.0.1`` by default: the machine itself only) and refuses the model repository's load/unload calls
(the server holds one model, loaded once before it listens).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.infer.replay import ProtocolChoice
from medseg.serve.predictor import ModelRepositoryExtension, SegmentationPredictor, kserve

LOG = logging.getLogger("medseg.serve")


@dataclass(frozen=True)
class ServeSettings:
    """What ``medseg serve`` was asked to do."""

    model: Path
    name: str
    host: str = "127.0.0.1"
    port: int = 8080
    device: str = "auto"
    batch_size: int = 8
    protocol: ProtocolChoice = field(default_factory=ProtocolChoice)
    max_request_bytes: int = 1024 * 2**20


class _OneModelRepository(ModelRepositoryExtension):  # type: ignore[misc]
    """The repository extension's index, without load/unload: the served model is fixed at start."""

    async def load(self, model_name: str) -> None:
        raise NotImplementedError("medseg serve holds one model, loaded at start; restart it to serve another")

    async def unload(self, model_name: str) -> None:
        raise NotImplementedError("medseg serve holds one model, loaded at start; stop the server instead")


class BoundModelServer(kserve.ModelServer):  # type: ignore[misc]
    """KServe's ``ModelServer`` on one host and port: REST only, one worker."""

    def __init__(self, host: str, port: int, max_request_bytes: int) -> None:
        super().__init__(http_port=port, workers=1, enable_grpc=False, enable_docs_url=False)
        self.host, self.max_request_bytes = host, max_request_bytes
        self.model_repository_extension = _OneModelRepository(model_registry=self.registered_models)

    def start(self, models: list[Any]) -> None:
        """Register the (loaded) models and serve until a signal stops the server."""
        from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
        from kserve.protocol.rest.server import RESTServer

        from medseg.serve.limits import BodySizeLimit

        limit = self.max_request_bytes

        class LimitedRESTServer(RESTServer):  # type: ignore[misc]
            def _add_middlewares(self, app: Any) -> None:
                super()._add_middlewares(app)
                app.add_middleware(BodySizeLimit, limit=limit)  # outermost: before anything reads the body

        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = LimitedRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port, workers=1,
            grace_period=self.grace_period, event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive)
        self._rest_server.config.host = self.host
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def check_port(host: str, port: int) -> None:
    """Refuse a host this machine cannot bind or a port already in use, before the model is loaded."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        problem = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        raise MedsegError(f"--host {host} --port {port}: the address {problem}") from exc


# kserve's handlers of answers that are not the server failing: a wrong request, a refused call, a model
# that is absent or not ready yet
EXPECTED_ANSWERS = {"invalid_input_handler": "400 bad request", "model_not_found_handler": "404 model not found",
                    "not_implemented_error_handler": "501 not implemented",
                    "unsupported_protocol_error_handler": "501 not implemented",
                    "model_not_ready_handler": "503 model not ready"}


class _ExpectedAnswersInOneLine(logging.Filter):
    """kserve logs every error answer with the server-side traceback: log the expected ones (``EXPECTED_ANSWERS``)
    as one warning line with the message the client got; server failures (500) keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        answer = EXPECTED_ANSWERS.get(record.funcName)
        if answer and record.exc_info:
            message = " ".join(str(record.exc_info[1]).split())
            record.msg, record.args, record.exc_info, record.exc_text = f"{answer}: %s", (message,), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _log_to_stderr() -> None:
    from kserve.logging import KSERVE_LOGGER_NAME

    logging.getLogger(KSERVE_LOGGER_NAME).addFilter(_ExpectedAnswersInOneLine())
    # fastapi deprecates a response class kserve uses: a warning per response that no operator can act on
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    if not LOG.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
        LOG.propagate = False


def serve(settings: ServeSettings) -> None:
    """Load the model once, then answer the open inference protocol on ``host:port`` until stopped."""
    from medseg.serve.inference import load_served

    check_port(settings.host, settings.port)
    _log_to_stderr()
    server = BoundModelServer(settings.host, settings.port, settings.max_request_bytes)
    predictor = SegmentationPredictor(settings.name, lambda: load_served(
        settings.model, settings.protocol, settings.device, settings.batch_size))
    predictor.load()
    LOG.info("medseg serve: model '%s' at http://%s:%d/v2/models/%s (open inference protocol)", settings.name,
             settings.host, settings.port, settings.name)
    server.start([predictor])
