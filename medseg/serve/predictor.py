"""The KServe custom predictor: an exported model behind the open inference protocol (v2).

The model is loaded once, in :meth:`SegmentationPredictor.load` (before the server starts listening);
requests are checked (``medseg.serve.tensors``: a bad one is a 400 with one clear line), then segmented
one at a time off the event loop, so health and readiness answer while a request is computed.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from typing import Any


def _import_kserve() -> Any:
    """``kserve`` parses ``sys.argv`` when first imported (its own server options): import it without ours."""
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve
    finally:
        sys.argv = saved
    return kserve


kserve = _import_kserve()

from kserve.errors import InvalidInput  # noqa: E402  (after the guarded import above)
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse  # noqa: E402
from kserve.protocol.model_repository_extension import ModelRepositoryExtension  # noqa: E402

__all__ = ["ModelRepositoryExtension", "SegmentationPredictor", "kserve"]

from medseg.errors import MedsegError  # noqa: E402
from medseg.serve.inference import Served, label_names, response_parameters, segment_request  # noqa: E402
from medseg.serve.tensors import PROMPT_WIDTH, Tensor, parse_request  # noqa: E402


class SegmentationPredictor(kserve.Model):  # type: ignore[misc]
    """One exported medseg model as a KServe ``Model``."""

    def __init__(self, name: str, loader: Callable[[], Served]) -> None:
        super().__init__(name)
        self._loader = loader
        self.served: Served | None = None
        self.loads = 0
        self._busy = asyncio.Lock()

    def load(self) -> bool:
        """Load the model (once: a second call keeps the loaded one)."""
        if self.served is None:
            self.served = self._loader()
            self.loads += 1
        self.ready = True
        return self.ready

    def _loaded(self) -> Served:
        if self.served is None:
            raise kserve.errors.ModelNotReady(self.name)
        return self.served

    def get_input_types(self) -> list[dict[str, Any]]:
        """The inputs (shapes: -1 is any size; ``image`` also takes [H, W], any numeric datatype)."""
        served = self._loaded()
        inputs = [{"name": "image", "datatype": "FP32", "shape": [-1, -1, -1]}]
        if served.mode != "automated":
            name, width = PROMPT_WIDTH[served.mode]
            inputs += [{"name": name, "datatype": "FP32", "shape": [-1, width]},
                       {"name": "prompt_image", "datatype": "INT64", "shape": [-1]},
                       {"name": "prompt_label", "datatype": "INT64", "shape": [-1]}]
        return inputs

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": "mask", "datatype": "UINT8", "shape": [-1, -1, -1]}]

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> InferResponse:
        """Segment the request's slices: output ``mask`` UINT8 [N, H, W], parameters naming the model."""
        served = self._loaded()
        if not isinstance(payload, InferRequest):
            raise InvalidInput(f"medseg serve speaks the open inference protocol (v2): POST /v2/models/{self.name}"
                               "/infer with inputs 'image' (and prompts for point/box models)")
        tensors = [Tensor(item.name, item.datatype, tuple(int(n) for n in item.shape), item.as_numpy)
                   for item in payload.inputs]
        try:
            request = parse_request(tensors, dict(payload.parameters or {}), served.mode, served.protocol.max_voxels)
        except MedsegError as exc:
            raise InvalidInput(exc.one_line()) from exc
        async with self._busy:  # one request at a time on the model; the event loop stays free
            masks = await asyncio.get_running_loop().run_in_executor(None, segment_request, served, request)
        output = InferOutput("mask", list(masks.shape), "UINT8", parameters={"labels": label_names(served)})
        output.set_data_from_numpy(masks, binary_data=False)
        return InferResponse(payload.id or str(uuid.uuid4()), self.name, [output],
                             parameters=response_parameters(served), use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)
