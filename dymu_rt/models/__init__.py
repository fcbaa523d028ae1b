"""Models: backbones split into nodes, heads, the anchor net, costs and presets.

Also the torch-free parts a runtime needs: :mod:`~dymu_rt.models.tree` (parent tables,
canonical topology ids) and :mod:`~dymu_rt.models.fold` (the BN-folding formula on
arrays). The names below are loaded on first use (PEP 562), so importing one of those
submodules never imports torch.
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
