"""dymu-rt router for Triton Inference Server (Python backend, BLS).

Written into ``REPO/dymu/<version>/`` by ``dymu-rt export triton``; do not edit the copy.
Inputs per image: ``image`` [3, H, W] float32 (preprocessed, values in [0, 1]), ``r`` [N],
``c`` [1]. For each image the router validates (r, c) with dymu-rt's own rules, runs the
edge hypernet to find the exact tree (or falls back to the nearest grid point, as
``dymu_rt.runtime.Runtime`` does), runs the weight hypernet for the BN deltas, turns them
into the topology model's scale/shift inputs, and calls that topology's model: one call per
topology per batch, whatever mix of preferences its images carry. Outputs per image: one
raw tensor per task, plus ``topology``, ``binding`` ("exact" | "nearest-grid"),
``grid_point`` (the (r, c) whose weights were bound), ``gmacs`` and ``params``.

A request with a bad preference or image gets an error response (``error: ...``, the
message the dymu-rt CLI would print); the other requests of the batch are served.

Only numpy and the vendored ``dymu_vendor`` package (dymu_rt.core's files, next to this file) are imported, after
``dymu_site`` (next to this file) has put the site-packages folders that ``config.pbtxt``
names, if any, on ``sys.path``.
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
import triton_python_backend_utils as pb_utils  # noqa: E402

from dymu_vendor.errors import ValidationError  # noqa: E402
from dymu_vendor.routing import RouterSpec, group_rows, hypernet_feeds  # noqa: E402


class _CallError(Exception):
    """A BLS call to another model of the repository failed."""


class TritonPythonModel:
    """The router: request rows -> (topology, BN inputs) -> topology models -> responses."""

    def initialize(self, args):
        self.spec = RouterSpec.load(_HERE)
        # Outputs of GPU instances (--backend tensorrt) come back in GPU memory unless host
        # memory is asked for; numpy needs them on the host. (PreferredMemory: Triton >= 23.04.)
        self.bls_kwargs = {}
        if hasattr(pb_utils, "PreferredMemory"):
            self.bls_kwargs["preferred_memory"] = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)
        self.version = int(args.get("model_version") or self.spec.spec["version"])
        self.max_batch = int(json.loads(args["model_config"]).get("max_batch_size", 0)) or self.spec.spec["max_batch"]
        self.task_outputs = list(self.spec.spec["outputs"])

    # -- BLS -------------------------------------------------------------------------------

    def _call(self, model, inputs, outputs):
        request = pb_utils.InferenceRequest(
            model_name=model, model_version=self.version, requested_output_names=list(outputs),
            inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in inputs.items()], **self.bls_kwargs)
        response = request.exec()
        if response.has_error():
            raise _CallError(f"model {model} version {self.version}: {response.error().message()}")
        try:
            return {k: pb_utils.get_output_tensor_by_name(response, k).as_numpy() for k in outputs}
        except Exception as e:   # e.g. an output left in GPU memory: this call fails, not the batch
            raise _CallError(f"model {model} version {self.version}: cannot read its outputs ({e})") from None

    def _controller(self, pref):
        """Decision and BN deltas for one preference (both hypernets, batch 1)."""
        models = self.spec.models
        logits = self._call(models["edge_hypernet"], hypernet_feeds(pref), [models["edge_output"]])
        decision = self.spec.decide(pref, logits[models["edge_output"]])
        deltas = self._call(models["weight_hypernet"], hypernet_feeds(decision.weights_at),
                            [models["weight_output"]])[models["weight_output"]]
        return decision, deltas

    # -- execute ---------------------------------------------------------------------------

    def execute(self, requests):
        responses = [None] * len(requests)
        rows = []              # (request index, image [3, H, W], preference)
        for i, request in enumerate(requests):
            try:
                r = pb_utils.get_input_tensor_by_name(request, "r").as_numpy()
                c = pb_utils.get_input_tensor_by_name(request, "c").as_numpy()
                image = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
                prefs = self.spec.preferences(r, c)
                self.spec.check_images(image, len(prefs))
            except ValidationError as e:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"error: {e}"))
                continue
            rows += [(i, image[j], p) for j, p in enumerate(prefs)]

        failed = {}            # request index -> message
        plans = {}             # preference -> (decision, deltas)
        for i, _, pref in rows:
            if pref not in plans and i not in failed:
                try:
                    plans[pref] = self._controller(pref)
                except (_CallError, ValueError) as e:
                    failed[i] = f"error: {e}"
        live = [row for row in rows if row[0] not in failed]
        decisions = [plans[p][0] for _, _, p in live]
        results = [None] * len(live)
        for topology, idx in group_rows(decisions, self.max_batch):
            inputs = {"image": np.stack([live[k][1] for k in idx])}
            per_row = [self.spec.affine_inputs(topology, plans[live[k][2]][1]) for k in idx]
            for name in per_row[0]:
                inputs[name] = np.stack([a[name] for a in per_row])
            try:
                outs = self._call(self.spec.topologies[topology]["model"], inputs, self.task_outputs)
            except _CallError as e:
                for k in idx:
                    failed[live[k][0]] = f"error: {e}"
                continue
            for n, k in enumerate(idx):
                results[k] = {name: outs[name][n] for name in self.task_outputs}

        for i in range(len(requests)):
            if responses[i] is not None:
                continue
            if i in failed:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(failed[i]))
                continue
            mine = [k for k, row in enumerate(live) if row[0] == i]
            tensors = [pb_utils.Tensor(name, np.stack([results[k][name] for k in mine]))
                       for name in self.task_outputs]
            info = [self._info(decisions[k]) for k in mine]
            for name in ("topology", "binding"):
                tensors.append(pb_utils.Tensor(name, np.array([[d[name]] for d in info], dtype=np.object_)))
            tensors.append(pb_utils.Tensor("grid_point", np.stack([d["grid_point"] for d in info])))
            tensors.append(pb_utils.Tensor("gmacs", np.array([[d["gmacs"]] for d in info], np.float32)))
            tensors.append(pb_utils.Tensor("params", np.array([[d["params"]] for d in info], np.int64)))
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def _info(self, decision):
        topo = self.spec.topologies[decision.topology]
        return {"topology": decision.topology.encode(), "binding": decision.binding.encode(),
                "grid_point": self.spec.grid_point_row(decision), "gmacs": topo["gmacs"], "params": topo["params"]}

    def finalize(self):
        self.spec = None
