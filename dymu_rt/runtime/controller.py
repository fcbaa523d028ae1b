"""The bundle's controller at run time: edge hypernet -> exact tree, weight hypernet -> BN deltas.

Both hypernets are small ONNX graphs (inputs ``r`` [1, N], ``c`` [1, 1]) run with ONNX
Runtime on the CPU whatever the inference backend (no torch on the device), so a preference
off the grid gets the tree and weights the trained controller really predicts for it
(DESIGN.md §2); tests/runtime/test_runtime_controller.py checks them against the torch
hypernets (same tree, deltas within 1e-5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dymu_rt.core.errors import BundleError
from dymu_rt.core.tree import topology_id, tree_from_logits


class Controller:
    """Edge and weight hypernets of a bundle; thread-safe (ORT sessions allow concurrent runs)."""

    def __init__(self, edge_path: Path, weight_path: Path, num_layers: int, n_tasks: int,
                 delta_size: int, salt: str = "") -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1          # tiny MLPs: threads only add overhead
        # Basic (constant folding, redundant nodes) is all a 4-layer MLP gains from; the full
        # optimizer only adds session-creation time to every cold start.
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.log_severity_level = 3
        try:
            self._edge = ort.InferenceSession(str(edge_path), so, providers=["CPUExecutionProvider"])
            self._weight = ort.InferenceSession(str(weight_path), so, providers=["CPUExecutionProvider"])
        except Exception as e:   # ORT raises its own exception types for malformed graphs
            raise BundleError(f"cannot load the controller hypernets ({e}); rebuild the bundle") from None
        self.num_layers, self.n_tasks, self.delta_size, self.salt = num_layers, n_tasks, delta_size, salt

    @staticmethod
    def _feeds(r, c) -> dict[str, np.ndarray]:
        return {"r": np.asarray(r, np.float32).reshape(1, -1), "c": np.asarray([[c]], np.float32)}

    def logits(self, r, c) -> np.ndarray:
        """The edge hypernet's parent logits [L-1, N, N] for (r, c)."""
        return self._edge.run(None, self._feeds(r, c))[0]

    def tree(self, r, c) -> np.ndarray:
        """Canonical parent table (L, N) of the maximum-likelihood tree for (r, c)."""
        logits = self.logits(r, c)
        try:
            return tree_from_logits(logits, self.num_layers, self.n_tasks)
        except ValueError as e:
            raise BundleError(f"{e}; rebuild the bundle") from None

    def topology(self, r, c) -> tuple[str, np.ndarray]:
        """(topology id, canonical parent table) for (r, c)."""
        parents = self.tree(r, c)
        return topology_id(parents, self.salt), parents

    def deltas(self, r, c) -> np.ndarray:
        """BN deltas [D] for (r, c)."""
        d = np.asarray(self._weight.run(None, self._feeds(r, c))[0], np.float32).reshape(-1)
        if d.size != self.delta_size:
            raise BundleError(f"weight hypernet gives {d.size} deltas, expected bn_delta_size={self.delta_size}")
        return d
