"""Models: backbones split into nodes, heads, the anchor net, costs and presets."""

from dymu_rt.models.anchor import AnchorNet, BNSlot, TaskSpec, node_name
from dymu_rt.models.backbones import BackboneSpec
from dymu_rt.models.cost import Cost, CostModel
from dymu_rt.models.heads import HeadSpec
from dymu_rt.models.presets import PRESETS, Preset, get_preset

__all__ = ["AnchorNet", "BNSlot", "TaskSpec", "node_name", "BackboneSpec", "Cost", "CostModel",
           "HeadSpec", "PRESETS", "Preset", "get_preset"]
