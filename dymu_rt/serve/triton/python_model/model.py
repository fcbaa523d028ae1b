"""One ONNX model of a dymu-rt repository, run with ONNX Runtime inside Triton's Python backend.

Written into ``REPO/<model>/<version>/`` by ``dymu-rt export triton --backend python``; do not
edit the copy. For servers with no ONNX Runtime backend (the ``nvidia-pytriton`` wheel's
``tritonserver``, a CPU-only edge box with only the Python backend): each model instance
loads ``model.onnx`` (next to this file) into one ONNX Runtime CPU session when Triton
initializes it, so the weights are held once per instance; ``execute`` runs all the requests
Triton's dynamic batcher hands it as one batch (the rows of every request concatenated along
the batch axis) and splits the outputs back per request.

Model parameters (``config.pbtxt``): ``dymu_rt.threads`` (ONNX Runtime intra-op threads of
each instance, default 1); ``dymu_rt.site_packages`` (read by ``dymu_site`` next to this
file: where numpy and onnxruntime are installed).
"""

import json
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import dymu_site  # noqa: E402  (first: the server's site-packages, when config.pbtxt names them)

dymu_site.add_site_dirs(_HERE.parent / "config.pbtxt")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


def _parameter(config, key, default):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return default if value is None else value


class TritonPythonModel:
    """model.onnx in one ONNX Runtime session per instance."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(_parameter(config, "dymu_rt.threads", "1"))
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(_HERE / "model.onnx"), so, providers=["CPUExecutionProvider"])

    def _feeds(self, request):
        feeds = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input {name!r} is missing")
            feeds[name] = tensor.as_numpy()
        return feeds

    def execute(self, requests):
        responses = [None] * len(requests)
        feeds = []
        for i, request in enumerate(requests):
            try:
                feeds.append((i, self._feeds(request)))
            except ValueError as e:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"error: {e}"))
        if self.batched and len(feeds) > 1:
            rows = [len(f[self.inputs[0]]) for _, f in feeds]
            batch = {n: np.concatenate([f[n] for _, f in feeds]) for n in self.inputs}
            try:
                outs = self.session.run(self.outputs, batch)
            except Exception:   # one bad request must not fail its batch mates: run them one by one
                outs = None
            if outs is not None:
                start = 0
                for (i, _), n in zip(feeds, rows):
                    responses[i] = pb_utils.InferenceResponse(
                        [pb_utils.Tensor(name, np.ascontiguousarray(o[start:start + n]))
                         for name, o in zip(self.outputs, outs)])
                    start += n
                return responses
        for i, f in feeds:
            try:
                outs = self.session.run(self.outputs, f)
                responses[i] = pb_utils.InferenceResponse(
                    [pb_utils.Tensor(name, o) for name, o in zip(self.outputs, outs)])
            except Exception as e:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"error: {e}"))
        return responses

    def finalize(self):
        self.session = None
