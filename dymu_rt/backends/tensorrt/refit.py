"""Bind a preference's folded weights into a refittable TensorRT engine.

Points of one topology differ only in folded BN scale/shift (DESIGN.md §2), so the engine
is built once with ``BuilderFlag.REFIT`` and refitted on a switch: ``Refitter(engine,
logger)``, ``set_named_weights(name, trt.Weights(array))`` for each changed initializer,
``get_missing_weights()`` (TensorRT lists weights that were fused with the ones given and
must come too) and ``refit_cuda_engine_async(stream)`` (``refit_cuda_engine()`` where the
async form is absent). The names are the graph's initializer names: the stable
``<slot>.conv.weight``/``.conv.bias`` for FP32/FP16 graphs, and for Q/DQ graphs the
per-channel ``<slot>.conv.weight_scale`` (+ ``_quantized`` int8 values, + float bias) that
:class:`dymu_rt.backends.precision.GraphWeights` computes.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from dymu_rt.core.errors import BundleError


class EngineRefitter:
    """A TensorRT ``Refitter`` for one engine, with loud failures naming the weight."""

    def __init__(self, trt, engine, logger, name: str = "engine",
                 baked: Optional[Mapping[str, np.ndarray]] = None) -> None:
        if not getattr(engine, "refittable", True):
            raise BundleError(f"TensorRT {name} is not refittable; build it with a profile that has "
                              "[tensorrt] refittable = true")
        self._trt, self.name = trt, name
        self._refitter = trt.Refitter(engine, logger)
        self.refittable = set(self._refitter.get_all_weights())
        # Values built into the engine: a non-refittable name may be skipped only if unchanged.
        self._baked = baked or {}

    def refit(self, weights: Mapping[str, np.ndarray], stream=None) -> list[str]:
        """Set ``weights`` (graph initializer name -> array) and refit; returns names sent."""
        keep, sent = [], []
        for name, value in weights.items():
            arr = np.ascontiguousarray(value)
            if name not in self.refittable:
                base = self._baked.get(name)
                if base is not None and np.array_equal(base, arr):
                    continue
                raise BundleError(f"TensorRT {self.name}: weight '{name}' is not refittable in this engine "
                                  f"({len(self.refittable)} refittable weights); rebuild with stable "
                                  "initializer names")
            keep.append(arr)         # the buffer must outlive the (async) refit
            if not self._refitter.set_named_weights(name, self._trt.Weights(arr)):
                raise BundleError(f"TensorRT {self.name}: refit rejected weight '{name}' "
                                  f"(shape {arr.shape}, dtype {arr.dtype})")
            sent.append(name)
        missing = list(self._refitter.get_missing_weights())
        if missing:
            raise BundleError(f"TensorRT {self.name}: refit is missing weights {missing[:5]}"
                              f"{' ...' if len(missing) > 5 else ''}; they must be supplied with the others")
        if stream is not None and hasattr(self._refitter, "refit_cuda_engine_async"):
            ok = self._refitter.refit_cuda_engine_async(stream.handle)
            stream.synchronize()
        else:
            ok = self._refitter.refit_cuda_engine()
        if not ok:
            raise BundleError(f"TensorRT {self.name}: refit failed (see the TensorRT log)")
        del keep
        return sent
