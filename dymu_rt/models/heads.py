"""Task heads: the light DeepLabv3+ decoder (BMTAS), the full DeepLabv3+ head, DeepLab-v2, linear.

* ``light`` (the paper presets and synth presets): the stream's last node is an R-ASPP
  (dymu_rt.models.backbones.RASPP); the head is the decoder only — the low-level skip
  reduced to ``low_channels`` (48), two depthwise-separable 3x3 convs at
  ``decoder_channels`` (128), the task's logits, a bilinear upsample to the input. Its BNs
  are modulated by the weight hypernet like the nodes' (docs/INTERFACES.md, "BN
  modulation").
* ``deeplab`` (older runs): full ASPP + decoder, plain (unmodulated) BNs.
* ``deeplabv2`` (the DAG paper's heads, Choi & Im 2023 Sec. 4.1; AdaShare's too): DeepLab-v2's
  ASPP-L (Chen et al., TPAMI 2017, Fig. 4): one branch per rate (6, 12, 18, 24), each a
  dilated 3x3 conv to ``aspp_channels`` (1024), a 1x1 conv at that width and 1x1 logits,
  ReLU + dropout 0.5 between them; the branches' logits summed and upsampled to the input.
  No BN, no low-level skip.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dymu_rt.models.layers import ConvBN, Resize


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """Head configuration shared by every task of a preset."""

    kind: str = "deeplab"                 # light | deeplab | deeplabv2 | linear
    aspp_channels: int = 256
    aspp_rates: tuple[int, ...] = (12, 24, 36)
    low_channels: int = 48
    decoder_channels: int = 256


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3): 1x1, dilated 3x3s, image pooling."""

    def __init__(self, cin: int, c: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBN(cin, c, 1, modulated=False)]
            + [ConvBN(cin, c, 3, dilation=r, modulated=False) for r in rates]
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        # A 1x1 map cannot be batch-normalized with batch 1 in training; the pooling
        # branch uses a biased conv instead of ConvBN (as several DeepLab ports do).
        self.pool_conv = nn.Conv2d(cin, c, 1)
        self.project = ConvBN(c * (len(rates) + 2), c, 1, modulated=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        outs = [self.relu(b(x)) for b in self.branches]
        p = self.relu(self.pool_conv(self.pool(x)))
        outs.append(p.expand(-1, -1, x.shape[2], x.shape[3]))
        return self.relu(self.project(torch.cat(outs, dim=1)))


class DeepLabV3PlusHead(nn.Module):
    """DeepLabv3+ head: ASPP on the top feature, decoder fusing a stride-4 skip."""

    def __init__(self, cin: int, low_cin: int, out_channels: int, spec: HeadSpec) -> None:
        super().__init__()
        c = spec.aspp_channels
        self.aspp = ASPP(cin, c, spec.aspp_rates)
        self.low_reduce = ConvBN(low_cin, spec.low_channels, 1, modulated=False)
        self.dec1 = ConvBN(c + spec.low_channels, spec.decoder_channels, 3, modulated=False)
        self.dec2 = ConvBN(spec.decoder_channels, spec.decoder_channels, 3, modulated=False)
        self.classifier = nn.Conv2d(spec.decoder_channels, out_channels, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, low: Optional[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:  # noqa: D102
        y = self.aspp(x)
        lo = self.relu(self.low_reduce(low))
        y = F.interpolate(y, size=lo.shape[-2:], mode="bilinear", align_corners=False)
        y = self.relu(self.dec1(torch.cat([y, lo], dim=1)))
        y = self.relu(self.dec2(y))
        y = self.classifier(y)
        return F.interpolate(y, size=out_size, mode="bilinear", align_corners=False)


class SeparableConvBN(nn.Module):
    """Depthwise 3x3 ConvBN + ReLU, then pointwise 1x1 ConvBN + ReLU (DeepLabv3+'s decoder)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.dw = ConvBN(cin, cin, 3, groups=cin)
        self.pw = ConvBN(cin, cout, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.relu(self.pw(self.relu(self.dw(x))))


class LightDecoderHead(nn.Module):
    """BMTAS's light DeepLabv3+ decoder: the R-ASPP output (top node) upsampled to the
    stride-4 skip, concatenated with the skip reduced to ``low_channels``, two separable
    3x3 convs at ``decoder_channels``, 1x1 logits, bilinear upsample to the input."""

    def __init__(self, cin: int, low_cin: int, out_channels: int, spec: HeadSpec) -> None:
        super().__init__()
        self.low_reduce = ConvBN(low_cin, spec.low_channels, 1)
        self.up = Resize()
        self.sep1 = SeparableConvBN(cin + spec.low_channels, spec.decoder_channels)
        self.sep2 = SeparableConvBN(spec.decoder_channels, spec.decoder_channels)
        self.classifier = nn.Conv2d(spec.decoder_channels, out_channels, 1)
        self.out_up = Resize()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, low: Optional[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:  # noqa: D102
        lo = self.relu(self.low_reduce(low))
        y = self.up(x, lo.shape[-2:])
        y = self.sep2(self.sep1(torch.cat([y, lo], dim=1)))
        return self.out_up(self.classifier(y), out_size)


class DeepLabV2Head(nn.Module):
    """DeepLab-v2 ASPP-L: per rate, conv3x3(dilated) -> 1x1 -> 1x1 logits; sum; upsample."""

    def __init__(self, cin: int, out_channels: int, spec: HeadSpec) -> None:
        super().__init__()
        if not spec.aspp_rates:
            raise ValueError("deeplabv2 head needs at least one ASPP rate")
        c = spec.aspp_channels
        self.branches = nn.ModuleList(nn.Sequential(
            nn.Conv2d(cin, c, 3, padding=r, dilation=r), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Conv2d(c, c, 1), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Conv2d(c, out_channels, 1)) for r in spec.aspp_rates)
        self.out_up = Resize()

    def forward(self, x: torch.Tensor, low: Optional[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:  # noqa: D102
        y = self.branches[0](x)
        for b in self.branches[1:]:
            y = y + b(x)
        return self.out_up(y, out_size)


def head_uses_skip(spec: HeadSpec) -> bool:
    """Whether heads of ``spec`` read a stride-4 low-level feature (the DeepLabv3+ decoders)."""
    return spec.kind in ("deeplab", "light")


class LinearHead(nn.Module):
    """Global average pooling + linear classifier (CIFAR-100 tasks)."""

    def __init__(self, cin: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, out_channels)

    def forward(self, x: torch.Tensor, low: Optional[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:  # noqa: D102
        return self.fc(torch.flatten(self.pool(x), 1))


def build_head(spec: HeadSpec, cin: int, low_cin: int, out_channels: int) -> nn.Module:
    """A head of ``spec.kind`` for a task with ``out_channels`` outputs."""
    if spec.kind == "light":
        return LightDecoderHead(cin, low_cin, out_channels, spec)
    if spec.kind == "deeplab":
        return DeepLabV3PlusHead(cin, low_cin, out_channels, spec)
    if spec.kind == "deeplabv2":
        return DeepLabV2Head(cin, out_channels, spec)
    if spec.kind == "linear":
        return LinearHead(cin, out_channels)
    raise ValueError(f"unknown head kind {spec.kind!r}")
