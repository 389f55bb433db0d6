"""TEST STAND-IN for Triton's C++ onnxruntime backend (``libtriton_onnxruntime.so``).

What it stands in for: the backend that the real ``nvcr.io/nvidia/tritonserver`` image uses for a
model whose config says ``backend: "onnxruntime"``. That image cannot be pulled here, and the only
real ``tritonserver`` we can run (from the ``nvidia-pytriton`` wheel) ships the python backend
only. Triton's "python-based backends" feature runs this file for such configs when it sits at
``<backend-directory>/onnxruntime/model.py`` and no ``libtriton_onnxruntime.so`` is there, so the
UNCHANGED config.pbtxt the deploy renders loads, and health, metadata, dynamic batching, HTTP,
gRPC and metrics are all Triton's own. Only the model execution is ours.

What it does like the real backend (onnxruntime_backend ``src/onnxruntime.cc``):

- loads ``<model dir>/<version>/<default_model_filename or model.onnx>`` (external data next to it)
  with ONNX Runtime on the CPU;
- checks the config's inputs and outputs against the graph: an unknown name, a wrong data type or a
  wrong rank fails the model load with the real backend's wording ("unexpected inference output
  'X', allowed outputs are: ...");
- reads the ``intra_op_thread_count`` / ``inter_op_thread_count`` parameters;
- runs a dynamic batch of same-shaped requests as one ONNX Runtime call and splits the result;
- returns only the outputs a request asks for (all of them when it names none).

Not covered (real-backend features the tests don't need): GPU execution, TensorRT, sequence
batching, string tensors, ragged batching.
"""

from __future__ import annotations

import json
import os
import site
from typing import Any

# The stub embeds libpython with the environment ignored (PYTHONPATH is not read): the tests pass the
# site-packages holding numpy and onnxruntime in STANDIN_SITE_PACKAGES. In an image, they are simply
# installed system-wide and the variable is unset.
for _path in filter(None, os.environ.get("STANDIN_SITE_PACKAGES", "").split(os.pathsep)):
    site.addsitedir(_path)

import numpy as np  # noqa: E402 - after the path set-up above
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

# Triton config data types ↔ ONNX Runtime type strings.
ORT_TYPES = {
    "TYPE_BOOL": "tensor(bool)",
    "TYPE_UINT8": "tensor(uint8)",
    "TYPE_INT8": "tensor(int8)",
    "TYPE_INT16": "tensor(int16)",
    "TYPE_INT32": "tensor(int32)",
    "TYPE_INT64": "tensor(int64)",
    "TYPE_FP16": "tensor(float16)",
    "TYPE_FP32": "tensor(float)",
    "TYPE_FP64": "tensor(double)",
}


def _parameter(config: dict[str, Any], key: str) -> str | None:
    """A ``parameters { key: ... value { string_value: ... } }`` entry of the model config."""
    value = (config.get("parameters") or {}).get(key)
    return None if value is None else str(value.get("string_value", ""))


def _session_options(config: dict[str, Any]) -> ort.SessionOptions:
    """Session options from the config parameters the real backend reads."""
    options = ort.SessionOptions()
    for key, attribute in (("intra_op_thread_count", "intra_op_num_threads"), ("inter_op_thread_count", "inter_op_num_threads")):
        value = _parameter(config, key)
        if value:
            setattr(options, attribute, int(value))
    return options


def _check_tensors(model_name: str, kind: str, configured: list[dict[str, Any]], graph: list[Any], batching: bool) -> None:
    """Fail like the real backend when the config names a tensor the graph lacks, or types/ranks differ."""
    allowed = {t.name: t for t in graph}
    for tensor in configured:
        name = tensor["name"]
        if name not in allowed:
            raise pb_utils.TritonModelException(
                f"unable to load model '{model_name}', unexpected inference {kind} '{name}', "
                f"allowed {kind}s are: {', '.join(sorted(allowed))}"
            )
        expected = ORT_TYPES.get(tensor["data_type"])
        if expected != allowed[name].type:
            raise pb_utils.TritonModelException(
                f"unable to load model '{model_name}', unexpected datatype {tensor['data_type']} for {kind} '{name}', "
                f"model provides {allowed[name].type}"
            )
        dims = [int(d) for d in tensor.get("dims", [])]
        rank = len(dims) + (1 if batching else 0)
        if rank != len(allowed[name].shape):
            raise pb_utils.TritonModelException(
                f"unable to load model '{model_name}', {kind} '{name}' has rank {rank} in the configuration "
                f"(dims {dims}{' plus the batch dimension' if batching else ''}), model provides shape {allowed[name].shape}"
            )


class TritonPythonModel:
    """One model instance: an ONNX Runtime CPU session on the version's model.onnx."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.model_name = config["name"]
        self.batching = int(config.get("max_batch_size", 0)) > 0
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"unable to load model '{self.model_name}': no model file at {path}")
        self.session = ort.InferenceSession(path, sess_options=_session_options(config), providers=["CPUExecutionProvider"])
        _check_tensors(self.model_name, "input", config.get("input", []), self.session.get_inputs(), self.batching)
        _check_tensors(self.model_name, "output", config.get("output", []), self.session.get_outputs(), self.batching)
        self.input_names = [t["name"] for t in config.get("input", [])]
        self.output_names = [t["name"] for t in config.get("output", [])]

    def _requested(self, request: Any) -> list[str]:
        names = list(request.requested_output_names())
        return names or self.output_names

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run same-shaped requests together (the dynamic batcher's batch), each other shape alone."""
        inputs = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names} for r in requests]
        groups: dict[tuple, list[int]] = {}
        for index, tensors in enumerate(inputs):
            key = tuple(tensors[name].shape[1:] for name in self.input_names)
            groups.setdefault(key, []).append(index)
        responses: list[Any] = [None] * len(requests)
        for indexes in groups.values():
            batch = {name: np.concatenate([inputs[i][name] for i in indexes]) for name in self.input_names}
            try:
                results = dict(zip(self.output_names, self.session.run(self.output_names, batch), strict=True))
            except Exception as error:
                for i in indexes:
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"onnx runtime error: {error}"))
                continue
            start = 0
            for i in indexes:
                size = inputs[i][self.input_names[0]].shape[0]
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(results[name][start : start + size]))
                    for name in self._requested(requests[i])
                ]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += size
        return responses

    def finalize(self) -> None:
        self.session = None
