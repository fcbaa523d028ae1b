"""Models: backbones split into nodes, heads, the anchor net, costs and presets.

The torch-free parts a runtime needs (parent tables and topology ids, the BN-folding
formula on arrays) live in :mod:`dymu_rt.core` (``tree``, ``bn_fold``). The names below are
loaded on first use (PEP 562).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AnchorNet": "anchor", "BNSlot": "anchor", "TaskSpec": "anchor", "node_name": "anchor",
    "BackboneSpec": "backbones", "Cost": "cost", "CostModel": "cost", "HeadSpec": "heads",
    "PRESETS": "presets", "Preset": "presets", "get_preset": "presets",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
