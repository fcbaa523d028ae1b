"""AdaShare (Sun et al., NeurIPS 2020): per-task block-skipping policies over one shared
ResNet/MobileNetV2, trained by :func:`dymu_rt.training.adashare.train_adashare`, lowered by
:func:`dymu_rt.models.adashare.lower_policy` into one static graph."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch

from dymu_rt.core.errors import ValidationError
from dymu_rt.methods._registry import register_method
from dymu_rt.methods._static import StaticMethod
from dymu_rt.models.adashare import AdaShareNet
from dymu_rt.training import static
from dymu_rt.training.adashare import AdaShareConfig, train_adashare


@register_method
class AdaShare(StaticMethod):
    name = "adashare"
    trainer = train_adashare
    final_stage_word = "retrain"

    def config(self, preset, overrides: dict, flow: Optional[int]) -> dict[str, Any]:
        return dataclasses.asdict(AdaShareConfig(**static.stage_steps(preset, overrides)))

    def check_preset(self, preset) -> None:
        # AdaShare skips residual blocks (a skipped block is the identity); VGG-16 has none.
        if preset.backbone.kind == "vgg16":
            raise ValidationError(f"--method adashare skips residual blocks; preset '{preset.name}' has a VGG-16 "
                                  "backbone without any (use --method dag or dymu, or a ResNet/MobileNetV2 preset)")

    def net(self, run):
        return AdaShareNet(run.preset())

    def decisions_forward(self, net, decisions: dict):
        v = torch.as_tensor(decisions["policy"], dtype=torch.float32)
        return lambda x: net(x, v)

    def label(self, cfg: dict) -> str:
        return "AdaShare"
