"""The affine graph: a topology's folded graph rewritten so that a preference's BN is two
graph inputs instead of baked-in weights (``affine`` binding; see :func:`affine_graph`).

Plain protobuf edits (:mod:`dymu_rt.backends.onnx_proto`): the base install needs neither onnx
nor onnx-graphsurgeon. Every engine that binds a preference without rebuilding (ONNX Runtime's
``affine`` sessions, its INT8 Q/DQ graph in :mod:`~dymu_rt.backends.int8_affine`, OpenVINO, the
Triton export) starts from this graph, so it lives below all of them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from dymu_rt.backends import onnx_proto
from dymu_rt.core.errors import ValidationError

#: the symbolic first dimension of the affine inputs (see :func:`affine_graph`): 1 (one preference
#: for every image) or the image's batch (one each). Its own symbol, not the image's ``batch``:
#: ONNX Runtime takes two dims with the same dim_param to be equal, and its memory planner
#: reuses buffers on that promise, so a 1-row scale next to a 2-image batch under one symbol
#: crashed the INT8 Q/DQ graph ("Shape mismatch attempting to re-use buffer {1,1,1,32} != {2,1,1,32}").
AFFINE_BATCH = "pref_batch"


def modulated_convs(model, slots: Sequence[str]) -> list[str]:
    """Slots of ``slots`` whose folded conv (``<slot>.conv.weight``) the graph holds."""
    names = {i.name for i in model.graph.initializer}
    missing = [s for s in slots if f"{s}.conv.weight" not in names]
    if missing:
        raise ValidationError(f"graph lacks the folded conv initializers of slots {missing[:3]} "
                              "(expected stable names '<slot>.conv.weight'); rebuild the bundle")
    return list(slots)


def affine_graph(model, raw: Mapping[str, np.ndarray], slots: Sequence[str]):
    """Graph surgery for ``affine`` binding: folded conv -> raw conv · scale + shift.

    ``raw`` maps ``<slot>.weight`` to the raw (unfolded) conv weight (fold_params); ``None``
    for a graph loaded without its external data (the raw weight ``<slot>.conv.raw_weight``
    is then an external reference for the session to override, ``ort_sharing``). The
    scale/shift become graph inputs ``<slot>.scale`` / ``<slot>.shift`` of shape
    ``[pref_batch, C, 1, 1]`` (:data:`AFFINE_BATCH`, a symbol of its own: it is not always the
    image's batch): 1 applies one preference to every image (broadcast), B
    gives each image its own, so a server's dynamic batcher can mix preferences of one
    topology in one run. Returns a new ModelProto (the input is left untouched). Plain protobuf edits
    (:mod:`dymu_rt.backends.onnx_proto`), so the base install needs neither onnx nor
    onnx-graphsurgeon; the Mul/Add go right after their conv, which keeps the node list in
    topological order.
    """
    new = type(model)()
    new.CopyFrom(model)
    g = new.graph
    inits = {t.name: t for t in g.initializer}
    by_index = {}
    for slot in slots:
        i = next((i for i, n in enumerate(g.node) if n.op_type == "Conv" and len(n.input) > 1
                  and n.input[1] == f"{slot}.conv.weight"), None)
        if i is None or f"{slot}.conv.weight" not in inits:
            raise ValidationError(f"graph has no Conv with weight '{slot}.conv.weight'; rebuild the bundle")
        by_index[i] = slot
    nodes = [type(n)() for n in g.node]
    for n, src in zip(nodes, g.node):
        n.CopyFrom(src)
    del g.node[:]
    replaced: set[str] = set()
    for i, src in enumerate(nodes):
        slot = by_index.get(i)
        if slot is None:
            g.node.append(src)
            continue
        out = src.output[0]
        replaced.update(src.input[1:])
        raw_name, y, scaled = f"{slot}.conv.raw_weight", f"{slot}.raw_conv_out", f"{slot}.scaled"
        folded = inits[f"{slot}.conv.weight"]
        c = int(folded.dims[0])
        if raw is None:
            # Structure only: the raw weight keeps the folded one's external reference (same
            # shape); it is never read from there, the session gets the pool's array.
            t = g.initializer.add()
            t.CopyFrom(folded)
            t.name = raw_name
        else:
            w = np.ascontiguousarray(raw[f"{slot}.weight"], dtype=np.float32)
            g.initializer.append(onnx_proto.array_to_tensor(w, raw_name, like=folded))
        conv = g.node.add()
        conv.CopyFrom(src)
        del conv.input[1:]
        conv.input.append(raw_name)                    # no bias: the shift carries it
        conv.output[0] = y
        for op, name, ins, o in (("Mul", f"{slot}/bn_scale", [y, f"{slot}.scale"], scaled),
                                 ("Add", f"{slot}/bn_shift", [scaled, f"{slot}.shift"], out)):
            n = g.node.add()
            n.op_type, n.name = op, name
            n.input.extend(ins)
            n.output.append(o)
        for k in ("scale", "shift"):
            vi = g.input.add()
            vi.name = f"{slot}.{k}"
            vi.type.tensor_type.elem_type = 1                      # float32
            vi.type.tensor_type.shape.dim.add().dim_param = AFFINE_BATCH    # 1 or the image's batch
            for d in (c, 1, 1):
                vi.type.tensor_type.shape.dim.add().dim_value = d
    # Drop the folded weights/biases nothing reads any more.
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name not in replaced or t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    new.ir_version = min(model.ir_version, 10)
    return new
