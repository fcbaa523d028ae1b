"""K ONNX Runtime sessions, one copy of the weights (hold once).

Measured at the nyuv2 preset (``benchmarks/exp_ort_sharing.py``, onnxruntime 1.32, 8
sessions of 8 different topology graphs, process RSS after one inference each):

==========================================================  ===========  ==========
mechanism                                                   RSS 1 -> 8   ratio
==========================================================  ===========  ==========
``InferenceSession(path)``, ORT_ENABLE_ALL                  502 -> 2655  5.29x
``add_external_initializers`` (one buffer), ENABLE_ALL      775 -> 3342  4.31x
  the same at ENABLE_EXTENDED                               700 -> 2571  3.67x
graphs optimized offline, shared buffer, DISABLE_ALL        636 -> 4194  6.59x
``add_initializer`` (one memory map), ENABLE_EXTENDED,
  prepacking off                                            396 ->  804  2.03x
  + one arena in the ORT environment, memory pattern off    347 ->  415  1.19x
==========================================================  ===========  ==========

ORT copies every initializer handed in by ``add_external_initializers`` (even with all
optimizations off); ``add_initializer`` keeps a reference to the caller's OrtValue, so one
read-only memory map of ``weights.bin`` (and one derived array per raw conv weight) serves
every session. Two things undo it and are switched off: the NCHWc layout transformer of
ORT_ENABLE_ALL (it re-lays conv weights out into new tensors, and ignores the override:
docs/INTERFACES.md) and kernel pre-packing (``session.disable_prepacking``; MatMul/Gemm
pack a private copy). The remaining per-session growth (~58 MB at nyuv2) was each session's
own activation arena sized by its memory pattern: sessions here allocate from one arena
registered in the ORT environment (``session.use_env_allocators``) with the memory pattern
off, so K sessions need the activations of one run, not of K. The Python API has no
``PrepackedWeightsContainer`` (C/C++/C# only), so that route is not available here.

What it costs: no NCHWc kernels (measured in ``benchmarks/exp_int8.py``, variant
``fp32-affine-ext``, and in ``benchmarks/bench_scale.py``).
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

import numpy as np

_ENV_LOCK = threading.Lock()
_ENV_ARENA = False


def register_env_arena(ort) -> None:
    """Register one CPU arena allocator in ORT's process-wide environment (once)."""
    global _ENV_ARENA
    with _ENV_LOCK:
        if _ENV_ARENA:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
        _ENV_ARENA = True


def shared_options(ort, so) -> None:
    """Make session options ``so`` share weights and activations with other sessions."""
    register_env_arena(ort)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.add_session_config_entry("session.disable_prepacking", "1")
    so.add_session_config_entry("session.use_env_allocators", "1")
    so.enable_mem_pattern = False


class OrtValueCache:
    """One OrtValue per named host array, reused by every session (zero-copy views).

    ``arrays`` maps initializer name -> a callable returning the host array (a memory-mapped
    stored tensor or a derived raw weight); the OrtValue borrows that memory, so the cache
    keeps the array alive as long as the OrtValue.
    """

    def __init__(self) -> None:
        self._values: dict[str, tuple[Any, np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, ort, name: str, array) -> Any:
        with self._lock:
            hit = self._values.get(name)
            if hit is None:
                arr = array() if callable(array) else array
                if not arr.flags.c_contiguous:
                    arr = np.ascontiguousarray(arr)
                hit = (ort.OrtValue.ortvalue_from_numpy(arr), arr)
                self._values[name] = hit
            return hit[0]

    def add_to(self, ort, so, arrays: Mapping[str, Any]) -> None:
        """``so.add_initializer`` every name of ``arrays`` with its shared OrtValue."""
        for name, array in arrays.items():
            so.add_initializer(name, self.get(ort, name, array))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


def pool_values(pool) -> OrtValueCache:
    """The one OrtValue cache of ``pool`` (made on first use, shared by every engine)."""
    with _ENV_LOCK:
        return pool.views.setdefault("onnxruntime", OrtValueCache())


def external_names(model) -> list[str]:
    """Names of ``model``'s initializers whose data is external (in the bundle's store)."""
    return [i.name for i in model.graph.initializer if i.data_location == 1]      # TensorProto.EXTERNAL
