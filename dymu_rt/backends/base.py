"""The protocol every inference backend implements.

A backend turns one topology graph (ONNX, BN folded) into an *engine* for a device
profile, loads it, binds a preference's folded weights into it, runs batches, and
reports memory. ONNX Runtime (CPU) is the default and works everywhere; TensorRT is an
optional extra, imported lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Engine(Protocol):
    """A loaded, runnable topology."""

    topology: str

    def bind(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace named initializers (stable names, e.g. ``node3_1.block.conv2.conv.weight``)
        with the folded weights of another preference of the same topology."""

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run a float32 NCHW batch; returns task name -> raw output (NCHW or NC)."""

    def memory_bytes(self) -> int:
        """Approximate resident memory of this engine (weights + workspace)."""

    def close(self) -> None:
        """Release the engine's resources."""


@runtime_checkable
class Backend(Protocol):
    """Factory of engines for one backend kind (``onnxruntime``, ``tensorrt``)."""

    name: str

    def device_facts(self) -> dict:
        """Facts an engine is tied to (backend version, device name, compute capability...).
        Stored with built engines; a mismatch on load is refused."""

    def compile(self, graph: Path, out_dir: Path, profile: "object") -> dict:
        """Build the engine artifact(s) for ``graph`` under ``out_dir`` for a device profile;
        returns a JSON-able record ({file, sha256, ...}) for the manifest. Atomic."""

    def load(self, graph: Path, artifact: dict | None, profile: "object", topology: str) -> Engine:
        """Load an engine (from its compiled artifact if any, else from the graph)."""
