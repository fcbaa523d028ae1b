"""Backbones split into L nodes, so any node can read any stream's previous node.

A node is a slice of a standard backbone (one residual / inverted-residual block each,
preceded by the stem unless the stem is shared, and optionally followed by an R-ASPP).
Every stream of an anchor net has the same node structure, so a node's output shape is the
same in every stream and cross-task edges are always well-typed.

The paper's dense nets follow BMTAS (supplement G): **one shared stem** outside the
branchable layers (``shared_stem=True``; paid once, never modulated), per task the backbone
at output stride 16 (MobileNetV2's 17 inverted residuals without the final 1280-channel
conv; ResNet-34's 16 basic blocks), and a reduced ASPP (``raspp_channels``) as the stream's
last branchable node. PASCAL's nets have no affine parameters in the last BN of each
inverted residual and of the R-ASPP projection (``affine_last_bn=False``).

* ResNet-18/34 (basic blocks), with dilated last stages for dense prediction
  (DeepLab; output stride 8 or 16).
* MobileNetV2 (inverted residuals), dilated for output stride 8/16.
* ResNet-9, the CIFAR "fast" ResNet (Page, 2018).
* VGG-16 as DeepLab-v2 uses it (Chen et al., TPAMI 2017): 13 3x3 convs, 3x3/2 max pools
  (pad 1, so every stride-s map has ceil(H/s) rows whatever the path), the pools past the
  output stride at stride 1 and the convs after them dilated; BN after every conv (the
  DAG paper trains from scratch). conv1_1 is the shared stem, the other 12 convs are the
  nodes: the 12 hidden states of Choi & Im's central network (dymu_rt.models.dag).

Width multiplier and input size come from the spec, so tiny CPU models and the paper-size
models are the same code.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn as nn

from dymu_rt.models.layers import ConvBN, Resize


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Which backbone, how wide, how deep, at what output stride."""

    kind: str = "resnet"            # resnet | mobilenetv2 | resnet9 | vgg16
    depth: int = 18                 # resnet: 18 or 34
    width_mult: float = 1.0
    output_stride: int = 8          # dense prediction: 8 or 16; 32 = no dilation
    stem: str = "imagenet"          # imagenet (7x7/2 + maxpool) | small (3x3/1)
    shared_stem: bool = False       # stem outside the streams (AnchorNet.stem), paid once
    raspp_channels: int = 0         # > 0: an R-ASPP with this width is the last node
    affine_last_bn: bool = True     # False: last BN of each IR block / R-ASPP projection has no γ, β


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    """Static facts about one node: output channels, cumulative stride, and the dilation
    of its (last) 3x3 conv (what a layer producing this node's map at this stride uses)."""

    out_channels: int
    stride: int
    dilation: int = 1


def _ch(c: float, mult: float, divisor: int = 8) -> int:
    v = max(divisor, int(c * mult + divisor / 2) // divisor * divisor)
    return v


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 ConvBN, identity or 1x1 ConvBN shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride=stride, dilation=dilation)
        self.conv2 = ConvBN(cout, cout, 3, dilation=dilation)
        self.downsample = ConvBN(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.conv1(x))
        return self.relu(self.conv2(y) + idt)


class ResNetStem(nn.Module):
    """ResNet stem: 7x7/2 conv + 3x3/2 max pool ("imagenet") or one 3x3 conv ("small")."""

    def __init__(self, cout: int, kind: str, modulated: bool = True) -> None:
        super().__init__()
        if kind == "imagenet":
            self.conv = ConvBN(3, cout, 7, stride=2, modulated=modulated)
            self.pool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        elif kind == "small":
            self.conv = ConvBN(3, cout, 3, modulated=modulated)
            self.pool = nn.Identity()
        else:
            raise ValueError(f"unknown stem {kind!r}")
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.pool(self.relu(self.conv(x)))


def resnet_nodes(spec: BackboneSpec) -> tuple[list[nn.Module], list[NodeInfo]]:
    """ResNet-18/34 as [stem, block, block, ...] ([block, ...] with a shared stem)."""
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}
    if spec.depth not in blocks:
        raise ValueError(f"resnet depth must be 18 or 34, got {spec.depth}")
    widths = [_ch(w, spec.width_mult) for w in (64, 128, 256, 512)]
    stem_stride = 4 if spec.stem == "imagenet" else 1
    nodes: list[nn.Module] = [] if spec.shared_stem else [ResNetStem(widths[0], spec.stem)]
    infos = [] if spec.shared_stem else [NodeInfo(widths[0], stem_stride)]
    cin, stride_now, dilation = widths[0], stem_stride, 1
    for n, w, s in zip(blocks[spec.depth], widths, (1, 2, 2, 2)):
        # DeepLab (torchvision's replace_stride_with_dilation): a stage that would exceed
        # the output stride keeps stride 1 and dilates instead; its first block still uses
        # the previous dilation.
        previous = dilation
        if s > 1 and stride_now * s > spec.output_stride:
            dilation, s = dilation * s, 1
        for b in range(n):
            stride = s if b == 0 else 1
            nodes.append(BasicBlock(cin, w, stride=stride, dilation=previous if b == 0 else dilation))
            stride_now *= stride
            infos.append(NodeInfo(w, stride_now))
            cin = w
    return nodes, infos


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, dilation: int = 1,
                 affine_last: bool = True) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [ConvBN(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [ConvBN(hidden, hidden, 3, stride=stride, dilation=dilation, groups=hidden),
                   nn.ReLU6(inplace=True), ConvBN(hidden, cout, 1, affine=affine_last)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = self.block(x)
        return x + y if self.use_res else y


class Stem(nn.Module):
    """A ConvBN + activation used as the first node."""

    def __init__(self, cin: int, cout: int, stride: int, act: str = "relu6", modulated: bool = True) -> None:
        super().__init__()
        self.conv = ConvBN(cin, cout, 3, stride=stride, modulated=modulated)
        self.act = nn.ReLU6(inplace=True) if act == "relu6" else nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.act(self.conv(x))


def mobilenetv2_nodes(spec: BackboneSpec) -> tuple[list[nn.Module], list[NodeInfo]]:
    """MobileNetV2 (without the final 1x1 conv, as DeepLab uses it) as [stem, block, ...]
    ([block, ...], 17 of them, with a shared stem)."""
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    c0 = _ch(32, spec.width_mult)
    nodes: list[nn.Module] = [] if spec.shared_stem else [Stem(3, c0, 2)]
    infos = [] if spec.shared_stem else [NodeInfo(c0, 2)]
    cin, stride_now, dilation = c0, 2, 1
    for t, c, n, s in cfg:
        cout = _ch(c, spec.width_mult)
        for i in range(n):
            stride = s if i == 0 else 1
            if stride > 1 and stride_now * stride > spec.output_stride:
                dilation_here, stride = dilation, 1
                dilation *= s
            else:
                dilation_here = dilation
            nodes.append(InvertedResidual(cin, cout, stride, t, dilation=dilation_here if i == 0 else dilation,
                                          affine_last=spec.affine_last_bn))
            stride_now *= stride
            infos.append(NodeInfo(cout, stride_now))
            cin = cout
    return nodes, infos


class ConvPool(nn.Module):
    """ResNet-9 stage: ConvBN + ReLU (+ 2x2 max pool)."""

    def __init__(self, cin: int, cout: int, pool: bool) -> None:
        super().__init__()
        self.conv = ConvBN(cin, cout, 3)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.pool(self.relu(self.conv(x)))


class Residual(nn.Module):
    """ResNet-9 residual: x + relu(bn(conv(relu(bn(conv(x))))))."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(c, c, 3)
        self.conv2 = ConvBN(c, c, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.relu(self.conv2(self.relu(self.conv1(x))))


def resnet9_nodes(spec: BackboneSpec) -> tuple[list[nn.Module], list[NodeInfo]]:
    """ResNet-9 as [prep, layer1, res1, layer2, layer3, res3]."""
    w = [_ch(c, spec.width_mult) for c in (64, 128, 256, 512)]
    nodes = [ConvPool(3, w[0], False), ConvPool(w[0], w[1], True), Residual(w[1]),
             ConvPool(w[1], w[2], True), ConvPool(w[2], w[3], True), Residual(w[3])]
    infos = [NodeInfo(w[0], 1), NodeInfo(w[1], 2), NodeInfo(w[1], 2), NodeInfo(w[2], 4),
             NodeInfo(w[3], 8), NodeInfo(w[3], 8)]
    return nodes, infos


def vgg_pool(stride: int) -> nn.MaxPool2d:
    """DeepLab-v2's VGG pool: 3x3, pad 1 (stride 2 maps H to ceil(H/2); stride 1 keeps H)."""
    return nn.MaxPool2d(3, stride=stride, padding=1)


class VGGConv(nn.Module):
    """One VGG-16 layer as a node: the max pool before it (if any), 3x3 ConvBN, ReLU."""

    def __init__(self, cin: int, cout: int, pool_stride: int = 0, dilation: int = 1,
                 modulated: bool = True) -> None:
        super().__init__()
        self.pool: nn.Module = vgg_pool(pool_stride) if pool_stride else nn.Identity()
        self.conv = ConvBN(cin, cout, 3, dilation=dilation, modulated=modulated)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.relu(self.conv(self.pool(x)))


# VGG-16's convs per stage and their widths (conv1_1 .. conv5_3).
_VGG16 = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def vgg16_nodes(spec: BackboneSpec) -> tuple[list[nn.Module], list[NodeInfo]]:
    """VGG-16 after conv1_1 (the shared stem, :func:`build_stem`): 12 nodes conv1_2 .. conv5_3.

    A pool precedes the first conv of stages 2-5 (DeepLab-v2: pool1-pool3 at stride 2,
    pool4 at stride 1 for output stride 8, and conv5 dilated 2; output stride 16 keeps
    pool4 at stride 2). pool5 and the fc layers are DeepLab-v2's head (``deeplabv2``).
    """
    if not spec.shared_stem:
        raise ValueError("vgg16: conv1_1 is the shared stem; set shared_stem=True")
    if spec.output_stride not in (8, 16, 32):
        raise ValueError(f"vgg16 output stride must be 8, 16 or 32, got {spec.output_stride}")
    nodes: list[nn.Module] = []
    infos: list[NodeInfo] = []
    cin, stride_now, dilation = _ch(64, spec.width_mult), 1, 1
    for stage, (n, width) in enumerate(_VGG16):
        cout = _ch(width, spec.width_mult)
        for i in range(n):
            if stage == 0 and i == 0:
                continue                                   # conv1_1 = the stem
            pool = 0
            if i == 0:
                if stride_now * 2 <= spec.output_stride:
                    pool, stride_now = 2, stride_now * 2
                else:                                      # past the output stride: dilate
                    pool, dilation = 1, dilation * 2
            nodes.append(VGGConv(cin, cout, pool, dilation))
            infos.append(NodeInfo(cout, stride_now, dilation))
            cin = cout
    return nodes, infos


class RASPP(nn.Module):
    """Reduced ASPP (BMTAS): a 1x1 branch and an image-pooling branch of ``c`` channels
    each, concatenated and projected 2c -> c. The last branchable node of a stream.

    The pooling branch is Conv-BN-ReLU on the 1x1 pooled map (torchvision's ASPPPooling);
    its BN needs batches of 2 or more in training mode, as every trainer here uses.
    """

    def __init__(self, cin: int, c: int, affine_project: bool = True) -> None:
        super().__init__()
        self.conv = ConvBN(cin, c, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pool_conv = ConvBN(cin, c, 1)
        self.up = Resize()
        self.project = ConvBN(2 * c, c, 1, affine=affine_project)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        a = self.relu(self.conv(x))
        p = self.up(self.relu(self.pool_conv(self.pool(x))), x.shape[-2:])
        return self.relu(self.project(torch.cat([a, p], dim=1)))


def build_stem(spec: BackboneSpec) -> Optional[tuple[nn.Module, NodeInfo]]:
    """The shared stem (not modulated) and its output facts, or None when each stream has its own."""
    if not spec.shared_stem:
        return None
    if spec.kind == "resnet":
        c0 = _ch(64, spec.width_mult)
        return ResNetStem(c0, spec.stem, modulated=False), NodeInfo(c0, 4 if spec.stem == "imagenet" else 1)
    if spec.kind == "mobilenetv2":
        c0 = _ch(32, spec.width_mult)
        return Stem(3, c0, 2, modulated=False), NodeInfo(c0, 2)
    if spec.kind == "vgg16":
        c0 = _ch(64, spec.width_mult)
        return VGGConv(3, c0, modulated=False), NodeInfo(c0, 1)
    raise ValueError(f"backbone {spec.kind!r} has no shared-stem form")


def build_nodes(spec: BackboneSpec) -> tuple[list[nn.Module], list[NodeInfo]]:
    """The node list and node facts of one stream of a backbone spec (R-ASPP included)."""
    if spec.kind == "resnet":
        nodes, infos = resnet_nodes(spec)
    elif spec.kind == "mobilenetv2":
        nodes, infos = mobilenetv2_nodes(spec)
    elif spec.kind == "resnet9":
        nodes, infos = resnet9_nodes(spec)
    elif spec.kind == "vgg16":
        nodes, infos = vgg16_nodes(spec)
    else:
        raise ValueError(f"unknown backbone kind {spec.kind!r}")
    if spec.raspp_channels > 0:
        nodes.append(RASPP(infos[-1].out_channels, spec.raspp_channels, spec.affine_last_bn))
        infos.append(NodeInfo(spec.raspp_channels, infos[-1].stride))
    return nodes, infos


def low_level_layer(spec: BackboneSpec, infos: list[NodeInfo]) -> Optional[int]:
    """Node whose output feeds the DeepLabv3+ decoder skip: the last node at stride 4."""
    cands = [i for i, n in enumerate(infos) if n.stride == 4]
    if not cands:
        cands = [i for i, n in enumerate(infos) if n.stride <= 4]
    return cands[-1] if cands else 0
